package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/twinmail/twinmail/internal/pgcluster"
	"github.com/twinmail/twinmail/lmtp"
	"github.com/twinmail/twinmail/store"
)

// Fixed names of the development setup.
const (
	devDir      = ".twinmail-dev"
	devDatabase = "twinmail"
	devUser     = "demo"
	devPassword = "demo"
)

// devCmd is "twinmail dev": a private PostgreSQL cluster, a migrated database, a demo account
// and an IMAP server on loopback, all in one process, for trying twinmail out.
type devCmd struct {
	fs     *flagSet
	dir    string
	imap   string
	pgPort int
	// --pair: two replicas and the worker
	pair        bool
	noReplicate bool
	imapB       string
	lmtp        string
	lmtpB       string
	logs        logFlags
	logger      *slog.Logger
}

func newDevCmd(sio stdio) *devCmd {
	c := &devCmd{}
	c.fs = newFlagSet(sio, "dev", "twinmail dev [--dir DIR] [--imap ADDR] [--pair [--no-replicate]]", `
Run twinmail for trying it out, with nothing configured: start a private PostgreSQL
cluster in DIR/pg (initdb on the first run; later runs reuse the data), create and
migrate the database "twinmail", create the account "demo" with password "demo" if it
is missing, serve IMAP on a loopback address with plaintext login allowed, and print
how to connect. Ctrl-C (or SIGTERM) stops the IMAP server and then the cluster.

With --pair it runs two replicas instead, each with its own cluster (DIR/a, DIR/b) and
IMAP server (--imap, --imap-b), and the replication worker between them, so a UID clash
can be watched resolving on one machine. --no-replicate starts them cut off; SIGUSR2
resumes the worker and SIGUSR1 pauses it again.

Needs the PostgreSQL server programs (initdb, pg_ctl, postgres) on PATH or under
/usr/lib/postgresql/*/bin; on Debian and Ubuntu: apt-get install postgresql. When run as
root, PostgreSQL runs as the unprivileged "postgres" user.`)
	c.fs.StringVar(&c.dir, "dir", devDir, "`directory` that holds the development data (created if missing)")
	c.fs.StringVar(&c.imap, "imap", defaultIMAPAddr, "loopback `address` to serve IMAP on")
	c.fs.StringVar(&c.lmtp, "lmtp", defaultLMTPAddr, "loopback `address` to accept LMTP deliveries on (with --pair: replica a's)")
	c.fs.StringVar(&c.lmtpB, "lmtp-b", "127.0.0.1:2425", "with --pair: loopback `address` of replica b's LMTP server")
	c.fs.BoolVar(&c.pair, "pair", false, "run two replicas (DIR/a, DIR/b) and the replication worker between them")
	c.fs.BoolVar(&c.noReplicate, "no-replicate", false, "with --pair: start with the worker paused (replicas cut off); SIGUSR2 resumes, SIGUSR1 pauses")
	c.fs.StringVar(&c.imapB, "imap-b", "127.0.0.1:1144", "with --pair: loopback `address` of replica b's IMAP server (--imap is replica a's)")
	c.fs.IntVar(&c.pgPort, "pg-port", 0, "TCP `port` for PostgreSQL on 127.0.0.1 (0: a free one, preferably last run's)")
	c.fs.logFlags(&c.logs)
	return c
}

func (c *devCmd) parseFlags(args []string) error {
	if _, err := c.fs.parse(args, 0, 0); err != nil {
		return err
	}
	if c.dir == "" {
		return usageError{errors.New("--dir must not be empty")}
	}
	if err := checkLoopback(c.imap); err != nil {
		return usageError{err}
	}
	for _, a := range []string{c.lmtp, c.lmtpB} {
		if err := checkLoopback(a); err != nil {
			return usageError{fmt.Errorf("LMTP: %w", err)}
		}
	}
	if c.pair {
		if err := checkLoopback(c.imapB); err != nil {
			return usageError{err}
		}
	} else if c.noReplicate {
		return usageError{errors.New("--no-replicate needs --pair")}
	}
	if c.pgPort < 0 || c.pgPort > 65535 {
		return usageError{fmt.Errorf("bad --pg-port %d", c.pgPort)}
	}
	var err error
	c.logger, err = c.logs.logger(c.fs.sio.err)
	return err
}

// checkLoopback refuses an address that is not on a loopback interface: dev lets anyone log
// in as demo/demo in plaintext.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad --imap %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--imap %q is not a loopback address: dev allows plaintext demo/demo logins, so it serves only on 127.0.0.1, ::1 or localhost", addr)
	}
	return nil
}

func (c *devCmd) run(ctx context.Context) (err error) {
	if c.pair {
		return c.runPair(ctx)
	}
	// Bind the IMAP port first: if it is taken, say so before spending seconds on PostgreSQL.
	cfg := imapConfig{addr: c.imap, lmtpAddr: c.lmtp, lmtpMaxSize: lmtp.DefaultMaxSize, insecureAuth: true}
	lns, err := cfg.listen(ctx)
	if err != nil {
		return err
	}
	defer lns.close()

	dir, err := filepath.Abs(c.dir)
	if err != nil {
		return fmt.Errorf("resolve --dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}

	log := c.logger
	cl, err := pgcluster.Start(ctx, pgcluster.Options{
		Dir:    filepath.Join(dir, "pg"),
		Port:   c.pgPort,
		Logger: log.With("component", "postgres"),
	})
	if errors.Is(err, pgcluster.ErrNotInstalled) {
		return pgcluster.ErrNotInstalled // it says what to install; the folder does not matter
	} else if err != nil {
		return err
	}
	defer func() {
		if serr := cl.Stop(); serr != nil {
			if err == nil {
				err = serr
			} else {
				log.Error("stop PostgreSQL", "err", serr)
			}
		}
	}()

	if err := cl.CreateDatabase(ctx, devDatabase); err != nil {
		return err
	}
	dsn := cl.DSN(devDatabase)
	st, err := store.Open(ctx, dsn, store.Options{Logger: log.With("component", "store")})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return schemaError(err)
	}
	if _, err := st.CreateAccount(ctx, devUser, devPassword); err != nil && !errors.Is(err, store.ErrAccountExists) {
		return fmt.Errorf("create account %s: %w", devUser, err)
	}

	c.printWelcome(dir, lns.imap.Addr(), dsn)
	fmt.Fprintf(c.fs.sio.out, "  LMTP delivery on %s (deliver to demo@localhost, or demo+Folder@localhost)\n\n", lns.lmtp.Addr())
	return serveIMAP(ctx, log, st, cfg, lns)
}

// printWelcome tells the user, on stdout, how to reach what dev started.
func (c *devCmd) printWelcome(dir string, imapAddr net.Addr, dsn string) {
	host, port := "127.0.0.1", "1143"
	if ta, ok := imapAddr.(*net.TCPAddr); ok {
		host, port = ta.IP.String(), strconv.Itoa(ta.Port)
	}
	fmt.Fprintf(c.fs.sio.out, `
twinmail dev is running; press Ctrl-C to stop it.

  IMAP server  %[1]s, port %[2]s, no TLS (connection security "None"), plaintext password login
  user         %[3]s
  password     %[4]s

Try it:
  python3 -c "import imaplib; m = imaplib.IMAP4('%[1]s', %[2]s); print(m.login('%[3]s', '%[4]s')); print(m.list())"
  mutt -f 'imap://%[3]s:%[4]s@%[5]s/INBOX'
  Thunderbird: add a mail account for %[3]s@localhost with password %[4]s, choose "Configure manually":
    incoming IMAP, server %[1]s, port %[2]s, connection security None,
    authentication "Normal password", username %[3]s

The database:
  psql '%[6]s'
  export TWINMAIL_DB='%[6]s'
  printf '%%s\n' 'secret' | %[8]s user add --password-stdin alice    # another account

Data lives in %[7]s; the next run reuses it. Delete the folder to start over.

`, host, port, devUser, devPassword, net.JoinHostPort(host, port), dsn, dir, selfCommand())
}

// selfCommand is how the user runs this binary: "go run ./cmd/twinmail" under go run (whose
// binary lives in a go-build temporary folder), else "twinmail".
func selfCommand() string {
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/twinmail"
	}
	return "twinmail"
}
