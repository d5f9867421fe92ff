package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"github.com/twinmail/twinmail/imapbackend"
	"github.com/twinmail/twinmail/lmtp"
	"github.com/twinmail/twinmail/store"
)

// defaultIMAPAddr is where serve and dev listen for IMAP unless told otherwise.
const defaultIMAPAddr = "127.0.0.1:1143"

// defaultLMTPAddr is where serve accepts LMTP deliveries unless told otherwise.
const defaultLMTPAddr = "127.0.0.1:2424"

// imapShutdownGrace is how long shutdown waits for IMAP sessions to end after their BYE.
const imapShutdownGrace = 5 * time.Second

// serveCmd is "twinmail serve": the IMAP server of one replica.
//
// Flag name reserved for later work: --replica-id ID.
type serveCmd struct {
	fs        *flagSet
	db        string
	logs      logFlags
	imap      imapConfig
	tlsCert   string
	tlsKey    string
	migrate   bool
	replicaID string
	logger    *slog.Logger
}

func newServeCmd(sio stdio) *serveCmd {
	c := &serveCmd{}
	c.fs = newFlagSet(sio, "serve", "twinmail serve --db DSN [--imap ADDR] [flags]", `
Serve IMAP from the database until SIGINT or SIGTERM, then close the listeners and
connections and exit with status 0. The database must be migrated to this binary's schema
(see "twinmail migrate" and --migrate); a newer schema is refused.

Without TLS, LOGIN and AUTHENTICATE are refused unless --insecure-auth is given. With
--tls-cert and --tls-key, the --imap listener offers STARTTLS and --imaps, if given, speaks
TLS from the first byte.

--lmtp accepts mail for final delivery over LMTP (RFC 2033), on a TCP host:port or, when
the address contains a '/', on a unix socket at that path (a stale socket file is removed
first). LMTP has no authentication: keep it on loopback or a socket only the MTA can open.
See docs/lmtp.md.`)
	c.fs.dbFlag(&c.db)
	c.fs.StringVar(&c.imap.addr, "imap", envOr(envIMAP, defaultIMAPAddr), "`address` to serve IMAP on (host:port; env $"+envIMAP+"); empty: none")
	c.fs.StringVar(&c.imap.imapsAddr, "imaps", "", "`address` to serve IMAP over implicit TLS on (needs --tls-cert and --tls-key)")
	c.fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate chain `file` for STARTTLS and --imaps")
	c.fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key `file` for --tls-cert")
	c.fs.BoolVar(&c.imap.insecureAuth, "insecure-auth", false, "allow LOGIN and AUTHENTICATE PLAIN without TLS (passwords cross the network in clear)")
	c.fs.Uint64Var(&c.imap.appendLimit, "append-limit", imapbackend.DefaultAppendLimit, "largest message, in `bytes`, that APPEND accepts (advertised as APPENDLIMIT)")
	c.fs.StringVar(&c.imap.lmtpAddr, "lmtp", envOr(envLMTP, defaultLMTPAddr), "`address` to accept LMTP deliveries on: host:port, or a unix socket path (contains '/') (env $"+envLMTP+"); empty: none")
	c.fs.Int64Var(&c.imap.lmtpMaxSize, "lmtp-max-size", lmtp.DefaultMaxSize, "largest message, in `bytes`, that LMTP accepts (bigger ones get 552 5.3.4)")
	c.fs.IntVar(&c.imap.maxConnsPerIP, "max-conns-per-ip", imapbackend.DefaultMaxConnsPerIP, "allow at most `N` IMAP connections from one client address (IPv6: one /64); 0: no limit (use behind a proxy)")
	c.fs.IntVar(&c.imap.maxConnsPerAccount, "max-conns-per-account", imapbackend.DefaultMaxConnsPerAccount, "allow at most `N` logged-in IMAP connections per account; 0: no limit")
	c.fs.DurationVar(&c.imap.idleTimeout, "idle-timeout", imapbackend.DefaultIdleTimeout, "log out a logged-in IMAP connection silent for this `duration` (RFC 3501: at least 30m); 0: never")
	c.fs.DurationVar(&c.imap.loginDelay, "login-delay", imapbackend.DefaultLoginDelay, "after repeated failed logins from an address or for an account, delay each attempt by this `duration`, doubling up to 8 times as long; 0: no delay")
	c.fs.BoolVar(&c.migrate, "migrate", false, "apply pending schema migrations before serving")
	c.fs.StringVar(&c.replicaID, "replica-id", "", "give this database the replica `id` if it has none yet (a replica's id never\n"+
		"changes: a different one is refused); default: a random id at first use")
	c.fs.logFlags(&c.logs)
	return c
}

func (c *serveCmd) parseFlags(args []string) error {
	if _, err := c.fs.parse(args, 0, 0); err != nil {
		return err
	}
	if err := requireDB(c.db); err != nil {
		return err
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	if c.imap.imapsAddr != "" && c.tlsCert == "" {
		return usageError{errors.New("--imaps needs --tls-cert and --tls-key")}
	}
	if c.imap.appendLimit == 0 || c.imap.appendLimit > math.MaxUint32 {
		return usageError{fmt.Errorf("--append-limit must be between 1 and %d", uint64(math.MaxUint32))}
	}
	if c.imap.lmtpMaxSize <= 0 {
		return usageError{errors.New("--lmtp-max-size must be at least 1")}
	}
	if err := c.imap.limitsFromFlags(); err != nil {
		return err
	}
	if c.imap.addr == "" && c.imap.imapsAddr == "" && c.imap.lmtpAddr == "" {
		return usageError{errors.New("nothing to serve: give --imap, --imaps or --lmtp an address")}
	}
	var err error
	c.logger, err = c.logs.logger(c.fs.sio.err)
	return err
}

func (c *serveCmd) run(ctx context.Context) error {
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		c.imap.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	st, err := store.Open(ctx, c.db, store.Options{Logger: c.logger})
	if err != nil {
		return err
	}
	defer st.Close()
	if c.migrate {
		if err := st.Migrate(ctx); err != nil {
			return schemaError(err)
		}
	}
	if err := st.CheckSchema(ctx); err != nil {
		if errors.Is(err, store.ErrSchemaTooOld) {
			return fmt.Errorf("%w (or start serve with --migrate)", err)
		}
		return schemaError(err)
	}
	if c.replicaID != "" {
		if err := st.SetReplicaID(ctx, c.replicaID); err != nil {
			return err
		}
	}
	lns, err := c.imap.listen(ctx)
	if err != nil {
		return err
	}
	return serveIMAP(ctx, c.logger, st, c.imap, lns)
}

// schemaError adds to a "schema too new" error what to do about it. (The store's "not
// migrated" error already says to run twinmail migrate.)
func schemaError(err error) error {
	if errors.Is(err, store.ErrSchemaTooNew) {
		return fmt.Errorf("%w: upgrade twinmail", err)
	}
	return err
}

// imapConfig says where and how to serve IMAP.
type imapConfig struct {
	addr         string      // plain IMAP, with STARTTLS when tls is set; "" for none
	imapsAddr    string      // IMAP over implicit TLS; "" for none
	tls          *tls.Config // nil: no STARTTLS, no IMAPS
	insecureAuth bool        // allow authentication without TLS
	appendLimit  uint64      // largest APPEND in bytes, at most MaxUint32; 0: the backend's default
	lmtpAddr     string      // LMTP: host:port, or a unix socket path (contains '/'); "" for none
	lmtpMaxSize  int64       // largest LMTP message in bytes; 0: lmtp.DefaultMaxSize

	// IMAP limits, as in imapbackend.Options: 0 means the backend's default, negative none.
	maxConnsPerIP, maxConnsPerAccount int
	idleTimeout, loginDelay           time.Duration
}

// limitsFromFlags turns the limit flags, where 0 means no limit, into imapbackend.Options
// values, where 0 means the default and a negative value no limit.
func (cfg *imapConfig) limitsFromFlags() error {
	if cfg.maxConnsPerIP < 0 || cfg.maxConnsPerAccount < 0 || cfg.idleTimeout < 0 || cfg.loginDelay < 0 {
		return usageError{errors.New("--max-conns-per-ip, --max-conns-per-account, --idle-timeout and --login-delay cannot be negative")}
	}
	off := func(v *int) {
		if *v == 0 {
			*v = -1
		}
	}
	offDur := func(v *time.Duration) {
		if *v == 0 {
			*v = -1
		}
	}
	off(&cfg.maxConnsPerIP)
	off(&cfg.maxConnsPerAccount)
	offDur(&cfg.idleTimeout)
	offDur(&cfg.loginDelay)
	return nil
}

// imapListeners are the bound sockets that serveIMAP serves; nil for none.
type imapListeners struct {
	imap, imaps net.Listener
	lmtp        net.Listener // TCP or unix
}

// listen binds the addresses of cfg.
func (cfg imapConfig) listen(ctx context.Context) (*imapListeners, error) {
	var lc net.ListenConfig
	lns := &imapListeners{}
	if cfg.addr != "" {
		ln, err := lc.Listen(ctx, "tcp", cfg.addr)
		if err != nil {
			return nil, fmt.Errorf("listen for IMAP: %w", err)
		}
		lns.imap = ln
	}
	if cfg.imapsAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", cfg.imapsAddr)
		if err != nil {
			lns.close()
			return nil, fmt.Errorf("listen for IMAPS: %w", err)
		}
		lns.imaps = ln
	}
	if cfg.lmtpAddr != "" {
		network := "tcp"
		if strings.Contains(cfg.lmtpAddr, "/") {
			network = "unix"
			if err := removeStaleSocket(cfg.lmtpAddr); err != nil {
				lns.close()
				return nil, err
			}
		}
		ln, err := lc.Listen(ctx, network, cfg.lmtpAddr)
		if err != nil {
			lns.close()
			return nil, fmt.Errorf("listen for LMTP: %w", err)
		}
		lns.lmtp = ln
	}
	return lns, nil
}

// removeStaleSocket removes the socket file at path if a process that is gone left it
// behind. It refuses to remove anything but a socket, or a socket that still answers.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("LMTP socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("LMTP socket %s: the file exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("LMTP socket %s: another process is listening on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale LMTP socket: %w", err)
	}
	return nil
}

func (lns *imapListeners) close() {
	for _, ln := range []net.Listener{lns.imap, lns.imaps, lns.lmtp} {
		if ln != nil {
			ln.Close()
		}
	}
}

// serveIMAP serves IMAP from st on lns until ctx ends or a listener fails. On return the
// listeners, the connections and the backend's change listener are closed. It returns nil
// when ctx ended.
func serveIMAP(ctx context.Context, log *slog.Logger, st *store.Store, cfg imapConfig, lns *imapListeners) error {
	defer lns.close()
	imapLn, imapsLn, lmtpLn := lns.imap, lns.imaps, lns.lmtp
	be := imapbackend.New(imapbackend.Options{
		Store:        st,
		Logger:       log,
		TLSConfig:    cfg.tls,
		InsecureAuth: cfg.insecureAuth,
		AppendLimit:  uint32(cfg.appendLimit),

		MaxConnsPerIP:      cfg.maxConnsPerIP,
		MaxConnsPerAccount: cfg.maxConnsPerAccount,
		IdleTimeout:        cfg.idleTimeout,
		LoginDelay:         cfg.loginDelay,
	})
	srv := be.Server()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every goroutine sends exactly one value on errc.
	errc := make(chan error, 4)
	running := 0
	start := func(fn func() error) {
		running++
		go func() { errc <- fn() }()
	}
	start(func() error { return be.Run(ctx) }) // returns nil only once ctx has ended
	if imapLn != nil {
		log.Info("serving IMAP", "addr", imapLn.Addr().String(), "starttls", cfg.tls != nil, "insecure_auth", cfg.insecureAuth)
		if cfg.insecureAuth && cfg.tls == nil && !isLoopback(imapLn.Addr()) {
			log.Warn("plaintext authentication allowed on a non-loopback address: passwords cross the network in clear", "addr", imapLn.Addr().String())
		}
		start(func() error { return wrap("serve IMAP", srv.Serve(be.Listener(imapLn))) })
	}
	if imapsLn != nil {
		log.Info("serving IMAPS", "addr", imapsLn.Addr().String())
		tlsLn := tls.NewListener(be.Listener(imapsLn), cfg.tls)
		start(func() error { return wrap("serve IMAPS", srv.Serve(tlsLn)) })
	}
	var lmtpSrv *lmtp.Server
	if lmtpLn != nil {
		lmtpSrv = lmtp.New(lmtp.Options{Store: st, Logger: log, MaxSize: cfg.lmtpMaxSize})
		log.Info("serving LMTP", "addr", lmtpLn.Addr().String(), "max_size", cfg.lmtpMaxSize)
		start(func() error { return wrap("serve LMTP", lmtpSrv.Serve(lmtpLn)) })
	}
	// Run until ctx ends or the first goroutine ends (Serve and Run return early only on
	// failure); then close everything and wait for the rest.
	var err error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case e := <-errc:
		running--
		if ctx.Err() == nil {
			err = e
			if err == nil {
				err = errors.New("server stopped unexpectedly") // Serve returned nil

			}
		}
	}
	cancel()
	// BYE to the IMAP clients first: srv.Close cuts connections without a word.
	byeCtx, byeCancel := context.WithTimeout(context.Background(), imapShutdownGrace)
	be.Shutdown(byeCtx)
	byeCancel()
	if cerr := srv.Close(); cerr != nil {
		log.Debug("close IMAP server", "err", cerr)
	}
	if lmtpSrv != nil {
		// Waits for deliveries in progress, so the store outlives them.
		if cerr := lmtpSrv.Close(); cerr != nil {
			log.Debug("close LMTP server", "err", cerr)
		}
	}
	for ; running > 0; running-- {
		<-errc // after shutdown, what the rest return is moot
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// wrap prefixes a non-nil err with what was being done.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isLoopback reports whether a listener's address is on a loopback interface only.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
