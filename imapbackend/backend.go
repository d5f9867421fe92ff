package imapbackend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/store"
)

// DefaultAppendLimit is the largest message APPEND accepts when Options.AppendLimit is 0.
const DefaultAppendLimit = 64 << 20

// cmdTimeout bounds the store work of one command (one batch, for FETCH).
const cmdTimeout = 2 * time.Minute

// Log attribute keys.
const (
	logKeyRemote  = "remote"
	logKeyAccount = "account"
	logKeyMailbox = "mailbox"
	logKeyErr     = "err"
	logKeyUID     = "uid"
)

// Options configure a Backend.
type Options struct {
	Store        *store.Store
	Logger       *slog.Logger // nil = discard
	AppendLimit  uint32       // 0 = DefaultAppendLimit; advertised as APPENDLIMIT
	TLSConfig    *tls.Config  // nil = no STARTTLS
	InsecureAuth bool         // allow LOGIN/AUTHENTICATE without TLS

	// Limits (limits.go), counted per Backend, i.e. per process. For each, 0 means the
	// default named and a negative value means no limit.

	// MaxConnsPerIP caps the connections from one client address (IPv6: one /64); one more
	// is greeted with BYE [LIMIT]. 0 = DefaultMaxConnsPerIP. Behind a proxy every client has
	// the proxy's address: turn it off there.
	MaxConnsPerIP int
	// MaxConnsPerAccount caps the logged-in connections of one account; one more LOGIN gets
	// NO [LIMIT]. 0 = DefaultMaxConnsPerAccount.
	MaxConnsPerAccount int
	// IdleTimeout ends with BYE a logged-in connection on which nothing has been read or
	// written for this long (an IDLE with no updates counts as idle). 0 = DefaultIdleTimeout.
	// It needs the listener to come through Backend.Listener; go-imap itself closes, without
	// BYE, a logged-in connection that sends no command for 35 minutes.
	IdleTimeout time.Duration
	// LoginDelay is the first delay imposed on login attempts after repeated failures from one
	// address or for one account name; it doubles up to 8 × LoginDelay. 0 = DefaultLoginDelay.
	LoginDelay time.Duration
}

// Backend creates IMAP sessions over one store and fans change notifications out to them.
type Backend struct {
	store        *store.Store
	log          *slog.Logger
	appendLimit  uint32
	tlsConfig    *tls.Config
	insecureAuth bool
	idleTimeout  time.Duration // 0: no autologout
	hub          *hub
	views        viewCache // cache.go: SELECT's UID lists
	lim          *limiter

	// ctx is the server's context that sessions derive theirs from; cancel ends it when
	// Run's context ends.
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a Backend. Call Run to receive changes made by other processes, and Server to
// get the imapserver that serves it.
func New(opts Options) *Backend {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AppendLimit == 0 {
		opts.AppendLimit = DefaultAppendLimit
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Backend{
		store:        opts.Store,
		log:          opts.Logger,
		appendLimit:  opts.AppendLimit,
		tlsConfig:    opts.TLSConfig,
		insecureAuth: opts.InsecureAuth,
		idleTimeout:  limitOr(opts.IdleTimeout, DefaultIdleTimeout),
		hub:          newHub(),
		lim:          newLimiter(opts),
		ctx:          ctx,
		cancel:       cancel,
	}
}

// Run listens for changes committed by any process on the database and wakes the sessions
// that have the changed mailboxes selected. It returns when ctx ends, and then also cancels
// the work of every session.
func (b *Backend) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, b.cancel)
	defer stop()
	err := b.store.Listen(ctx, b.hub.notify)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("listener stopped")
	}
	return fmt.Errorf("listen for mailbox changes: %w", err)
}

// Server returns an imapserver serving this backend. The caller calls Serve on it with
// listeners from b.Listener, and at shutdown b.Shutdown, then the server's Close.
func (b *Backend) Server() *imapserver.Server {
	return imapserver.New(&imapserver.Options{
		NewSession: b.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:        {},
			imap.CapIMAP4rev2:        {},
			imap.CapNamespace:        {},
			imap.CapUIDPlus:          {},
			imap.CapESearch:          {},
			imap.CapSearchRes:        {},
			imap.CapListExtended:     {},
			imap.CapListStatus:       {},
			imap.CapMove:             {},
			imap.CapStatusSize:       {},
			imap.CapBinary:           {},
			imap.CapChildren:         {},
			imap.CapSpecialUse:       {},
			imap.CapCreateSpecialUse: {},
			// LITERAL+ stays off: beta.8 refuses an over-limit non-synchronizing APPEND
			// literal (NO [TOOBIG]) before reading it, and then parses the literal's bytes
			// as commands. Without LITERAL+, clients send non-synchronizing literals of at
			// most 4096 bytes (LITERAL-, implied by IMAP4rev2), below any sensible append
			// limit, and an over-limit synchronizing literal is refused before the "+", so
			// it is never sent and the connection stays in sync (notes/go-imap-v2.md §5
			// item 4; limits_test.go checks it).
		},
		Logger:       serverLogger{b.log},
		TLSConfig:    b.tlsConfig,
		InsecureAuth: b.insecureAuth,
	})
}

// newSession is imapserver's NewSession. Returning a BYE error refuses the connection.
func (b *Backend) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	s := &Session{b: b, conn: conn, log: b.log}
	if nc := conn.NetConn(); nc != nil {
		s.log = s.log.With(logKeyRemote, nc.RemoteAddr().String())
		s.ip = clientIP(nc.RemoteAddr())
		s.activity = findActivity(nc)
	}
	if err := b.lim.connect(s, s.ip); err != nil {
		s.log.Info("connection refused", logKeyErr, err)
		return nil, nil, err
	}
	s.ctx, s.cancel = context.WithCancel(b.ctx)
	return s, nil, nil
}
