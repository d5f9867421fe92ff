package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"

	"github.com/twinmail/twinmail/imapbackend"
	"github.com/twinmail/twinmail/store"
)

// defaultIMAPAddr is where serve and dev listen for IMAP unless told otherwise.
const defaultIMAPAddr = "127.0.0.1:1143"

// serveCmd is "twinmail serve": the IMAP server of one replica.
//
// Flag names reserved for later work: --lmtp ADDR (LMTP delivery) and --replica-id ID.
type serveCmd struct {
	fs      *flagSet
	db      string
	logs    logFlags
	imap    imapConfig
	tlsCert string
	tlsKey  string
	migrate bool
	logger  *slog.Logger
}

func newServeCmd(sio stdio) *serveCmd {
	c := &serveCmd{}
	c.fs = newFlagSet(sio, "serve", "twinmail serve --db DSN [--imap ADDR] [flags]", `
Serve IMAP from the database until SIGINT or SIGTERM, then close the listeners and
connections and exit with status 0. The database must be migrated to this binary's schema
(see "twinmail migrate" and --migrate); a newer schema is refused.

Without TLS, LOGIN and AUTHENTICATE are refused unless --insecure-auth is given. With
--tls-cert and --tls-key, the --imap listener offers STARTTLS and --imaps, if given, speaks
TLS from the first byte.`)
	c.fs.dbFlag(&c.db)
	c.fs.StringVar(&c.imap.addr, "imap", envOr(envIMAP, defaultIMAPAddr), "`address` to serve IMAP on (host:port; env $"+envIMAP+"); empty: none")
	c.fs.StringVar(&c.imap.imapsAddr, "imaps", "", "`address` to serve IMAP over implicit TLS on (needs --tls-cert and --tls-key)")
	c.fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate chain `file` for STARTTLS and --imaps")
	c.fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key `file` for --tls-cert")
	c.fs.BoolVar(&c.imap.insecureAuth, "insecure-auth", false, "allow LOGIN and AUTHENTICATE PLAIN without TLS (passwords cross the network in clear)")
	c.fs.Uint64Var(&c.imap.appendLimit, "append-limit", imapbackend.DefaultAppendLimit, "largest message, in `bytes`, that APPEND accepts (advertised as APPENDLIMIT)")
	c.fs.BoolVar(&c.migrate, "migrate", false, "apply pending schema migrations before serving")
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
	if c.imap.addr == "" && c.imap.imapsAddr == "" {
		return usageError{errors.New("nothing to serve: give --imap or --imaps an address")}
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
}

// imapListeners are the bound sockets that serveIMAP serves; nil for none.
type imapListeners struct {
	imap, imaps net.Listener
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
	return lns, nil
}

func (lns *imapListeners) close() {
	for _, ln := range []net.Listener{lns.imap, lns.imaps} {
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
	imapLn, imapsLn := lns.imap, lns.imaps
	be := imapbackend.New(imapbackend.Options{
		Store:        st,
		Logger:       log,
		TLSConfig:    cfg.tls,
		InsecureAuth: cfg.insecureAuth,
		AppendLimit:  uint32(cfg.appendLimit),
	})
	srv := be.Server()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every goroutine sends exactly one value on errc.
	errc := make(chan error, 3)
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
		start(func() error { return wrap("serve IMAP", srv.Serve(imapLn)) })
	}
	if imapsLn != nil {
		log.Info("serving IMAPS", "addr", imapsLn.Addr().String())
		tlsLn := tls.NewListener(imapsLn, cfg.tls)
		start(func() error { return wrap("serve IMAPS", srv.Serve(tlsLn)) })
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
				err = errors.New("IMAP server stopped unexpectedly") // Serve returned nil

			}
		}
	}
	cancel()
	if cerr := srv.Close(); cerr != nil {
		log.Debug("close IMAP server", "err", cerr)
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
