package lmtp

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/twinmail/twinmail/store"
)

const (
	// DefaultMaxSize is the message size limit when Options.MaxSize is 0.
	DefaultMaxSize = 64 << 20
	// DefaultMaxRecipients is the recipient limit per transaction when
	// Options.MaxRecipients is 0.
	DefaultMaxRecipients = 100

	// maxLineLength bounds a command line and a line of message data. RFC 5321 allows
	// 1000 bytes, but the MTA has already accepted the message: refusing a long line at
	// final delivery would bounce mail for no gain. The bound only caps memory per line.
	maxLineLength = 64 << 10
	// readTimeout bounds the wait for a command, and for all the data after DATA
	// (RFC 5321 4.5.3.2 suggests 5 and 10 minutes).
	readTimeout  = 10 * time.Minute
	writeTimeout = time.Minute
	// storeTimeout bounds each store call (a recipient lookup, one copy's Append).
	storeTimeout = 30 * time.Second
)

// Attribute keys of the log records.
const (
	keyID      = "id"
	keyRcpt    = "rcpt"
	keyAccount = "account"
	keyFolder  = "folder"
	keySize    = "size"
	keyUID     = "uid"
	keyRemote  = "remote"
	keyErr     = "err"
)

// Options configure a Server. Only Store is required.
type Options struct {
	Store  *store.Store
	Logger *slog.Logger // nil: discard
	// Hostname names this server in the greeting and in the Received header;
	// "": os.Hostname().
	Hostname string
	// MaxSize is the largest message, in bytes as received after DATA (before the trace
	// headers are added), that is accepted; a larger one gets 552 5.3.4 and nothing is
	// stored. 0: DefaultMaxSize.
	MaxSize int64
	// MaxRecipients is the most RCPT commands accepted per transaction; further ones get
	// 452 4.5.3. 0: DefaultMaxRecipients.
	MaxRecipients int
}

// Server is an LMTP server delivering into a store. It is safe for concurrent use.
type Server struct {
	store    *store.Store
	log      *slog.Logger
	hostname string
	maxSize  int64
	smtp     *smtp.Server

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // LMTPData calls; Add only under mu while !closed
}

// New returns a server for opts. Call Serve to accept connections.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
		if opts.Hostname == "" {
			opts.Hostname = "localhost"
		}
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxRecipients <= 0 {
		opts.MaxRecipients = DefaultMaxRecipients
	}
	s := &Server{
		store:    opts.Store,
		log:      opts.Logger,
		hostname: opts.Hostname,
		maxSize:  opts.MaxSize,
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.LMTP = true
	srv.Domain = opts.Hostname
	// go-smtp's DATA reader refuses a message of exactly MaxMessageBytes bytes (it reports
	// the limit before it sees the final dot), so it gets one byte more and LMTPData
	// enforces MaxSize exactly. The advertised SIZE is therefore MaxSize+1.
	srv.MaxMessageBytes = opts.MaxSize + 1
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = maxLineLength
	srv.ReadTimeout = readTimeout
	srv.WriteTimeout = writeTimeout
	srv.EnableSMTPUTF8 = true // the message is stored as received; UTF-8 addresses are fine
	srv.ErrorLog = slog.NewLogLogger(opts.Logger.Handler(), slog.LevelError)
	s.smtp = srv
	return s
}

// errServerClosed is returned by Serve after Close.
var errServerClosed = errors.New("lmtp: server closed")

// Serve accepts LMTP connections on ln (TCP or unix) until Close. It returns nil after
// Close, or the error that made accepting fail.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		ln.Close()
		return errServerClosed
	}
	return s.smtp.Serve(ln)
}

// Close closes the listeners and the connections, then waits for deliveries already in
// progress to finish (each store call is bounded), so the store can be closed after it.
// A copy committed while its connection was being closed is kept; the client never saw
// its 250, so it will deliver again.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.smtp.Close()
	s.inflight.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil // a listener that Serve's caller closed already
	}
	return err
}

// beginDelivery registers a delivery with Close; it reports false once Close has begun.
func (s *Server) beginDelivery() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	sess := &session{srv: s, conn: c, remote: remoteAddr(c.Conn())}
	s.log.Debug("lmtp connection", keyRemote, sess.remote)
	return sess, nil
}

// remoteAddr describes the client for the Received header: an address literal for TCP.
func remoteAddr(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		if ip4 := a.IP.To4(); ip4 != nil {
			return "[" + ip4.String() + "]"
		}
		return "[IPv6:" + a.IP.String() + "]"
	case *net.UnixAddr:
		return "unix socket"
	default:
		return "unknown"
	}
}
