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
}

// Backend creates IMAP sessions over one store and fans change notifications out to them.
type Backend struct {
	store        *store.Store
	log          *slog.Logger
	appendLimit  uint32
	tlsConfig    *tls.Config
	insecureAuth bool
	hub          *hub

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
		hub:          newHub(),
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

// Server returns an imapserver serving this backend. The caller calls Serve or
// ListenAndServe on it and Close at shutdown.
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
			// literal before draining it and then parses its bytes as commands.
		},
		Logger:       slog.NewLogLogger(b.log.Handler(), slog.LevelError),
		TLSConfig:    b.tlsConfig,
		InsecureAuth: b.insecureAuth,
	})
}

func (b *Backend) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ctx, cancel := context.WithCancel(b.ctx)
	log := b.log
	if nc := conn.NetConn(); nc != nil {
		log = log.With(logKeyRemote, nc.RemoteAddr().String())
	}
	return &Session{
		b:      b,
		conn:   conn,
		log:    log,
		ctx:    ctx,
		cancel: cancel,
	}, nil, nil
}
