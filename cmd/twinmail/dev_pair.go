package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/twinmail/twinmail/internal/pgcluster"
	"github.com/twinmail/twinmail/lmtp"
	"github.com/twinmail/twinmail/replica"
	"github.com/twinmail/twinmail/store"
)

// devReplica is one side of `twinmail dev --pair`.
type devReplica struct {
	name string // "a" or "b"
	cl   *pgcluster.Cluster
	st   *store.Store
	lns  *imapListeners
	dsn  string
}

// runPair is `twinmail dev --pair`: two private clusters, an IMAP server on each, and the
// replication worker between them, in one process.
func (c *devCmd) runPair(ctx context.Context) (err error) {
	dir, err := filepath.Abs(c.dir)
	if err != nil {
		return fmt.Errorf("resolve --dir: %w", err)
	}
	log := c.logger
	sides := []*devReplica{{name: "a"}, {name: "b"}}
	addrs := []string{c.imap, c.imapB}
	lmtpAddrs := []string{c.lmtp, c.lmtpB}
	for i, r := range sides {
		if r.lns, err = (imapConfig{addr: addrs[i], lmtpAddr: lmtpAddrs[i], lmtpMaxSize: lmtp.DefaultMaxSize, insecureAuth: true}).listen(ctx); err != nil {
			return fmt.Errorf("replica %s: %w", r.name, err)
		}
		defer r.lns.close()
	}
	for _, r := range sides {
		if err := os.MkdirAll(filepath.Join(dir, r.name), 0o755); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		r.cl, err = pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(dir, r.name, "pg"), Logger: log.With("component", "postgres-"+r.name)})
		if errors.Is(err, pgcluster.ErrNotInstalled) {
			return pgcluster.ErrNotInstalled
		} else if err != nil {
			return fmt.Errorf("replica %s: %w", r.name, err)
		}
		defer func() {
			if serr := r.cl.Stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		if err := r.cl.CreateDatabase(ctx, devDatabase); err != nil {
			return err
		}
		r.dsn = r.cl.DSN(devDatabase)
		if r.st, err = store.Open(ctx, r.dsn, store.Options{Logger: log.With("component", "store-"+r.name)}); err != nil {
			return err
		}
		defer r.st.Close()
		if err := r.st.Migrate(ctx); err != nil {
			return schemaError(err)
		}
		if err := r.st.SetReplicaID(ctx, "dev-"+r.name); err != nil {
			return err
		}
	}
	if _, err := sides[0].st.CreateAccount(ctx, devUser, devPassword); err != nil && !errors.Is(err, store.ErrAccountExists) {
		return fmt.Errorf("create account %s: %w", devUser, err)
	}
	w, err := replica.New(ctx, replica.Options{A: sides[0].st, B: sides[1].st, Logger: log.With("component", "replicate")})
	if err != nil {
		return err
	}
	// Copy the demo account to B even when starting cut off, so both sides accept its login.
	if err := w.SyncOnce(ctx); err != nil {
		return fmt.Errorf("initial replication: %w", err)
	}
	if c.noReplicate {
		w.Pause()
	}
	c.printPairWelcome(dir, sides)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- w.Run(ctx) }()
	for _, r := range sides {
		go func() {
			errc <- serveIMAP(ctx, log.With("replica", r.name), r.st, imapConfig{insecureAuth: true, lmtpMaxSize: lmtp.DefaultMaxSize}, r.lns)
		}()
	}
	running := 3
	for running > 0 {
		select {
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				w.Pause()
				log.Info("replication paused: the replicas are cut off (SIGUSR2 resumes)")
			} else {
				w.Resume()
				log.Info("replication resumed")
			}
		case e := <-errc:
			running--
			if e != nil && err == nil {
				err = e
			}
			cancel()
		}
	}
	return err
}

func (c *devCmd) printPairWelcome(dir string, sides []*devReplica) {
	state := "running"
	if c.noReplicate {
		state = "PAUSED (started with --no-replicate): the replicas are cut off"
	}
	fmt.Fprintf(c.fs.sio.out, "\ntwinmail dev --pair is running; press Ctrl-C to stop it.\n\n")
	for _, r := range sides {
		host, port, _ := net.SplitHostPort(r.lns.imap.Addr().String())
		fmt.Fprintf(c.fs.sio.out, "  replica %s  IMAP %s port %s (user %s, password %s, no TLS)\n             LMTP %s (deliver to %s@localhost)\n             database %s\n",
			r.name, host, port, devUser, devPassword, r.lns.lmtp.Addr(), devUser, r.dsn)
	}
	fmt.Fprintf(c.fs.sio.out, `
  worker     %[1]s
             pause (cut the link):  kill -USR1 %[2]d
             resume (heal it):      kill -USR2 %[2]d
             compare the replicas:  %[3]s verify --a '%[4]s' --b '%[5]s'

To watch a clash: pause, APPEND a message to INBOX on each replica (both get the same UID),
resume, and see both messages move to new UIDs on both sides.
Data lives in %[6]s; the next run reuses it.

`, state, os.Getpid(), selfCommand(), sides[0].dsn, sides[1].dsn, dir)
}
