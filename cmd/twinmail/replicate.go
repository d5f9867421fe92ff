package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twinmail/twinmail/replica"
	"github.com/twinmail/twinmail/store"
)

// Environment variables for the two sides of a pair.
const (
	envA = "TWINMAIL_A"
	envB = "TWINMAIL_B"
)

// pairFlags are --a and --b, the two replicas' databases.
type pairFlags struct{ a, b string }

func (fs *flagSet) pairFlags(p *pairFlags) {
	fs.StringVar(&p.a, "a", os.Getenv(envA), "PostgreSQL `address` of replica A (default $"+envA+")")
	fs.StringVar(&p.b, "b", os.Getenv(envB), "PostgreSQL `address` of replica B (default $"+envB+")")
}

func (p pairFlags) require() error {
	if p.a == "" || p.b == "" {
		return usageError{errors.New("missing --a or --b: give both replicas' PostgreSQL addresses")}
	}
	return nil
}

// open opens both replicas and checks their schemas.
func (p pairFlags) open(ctx context.Context, log *slog.Logger) (a, b *store.Store, err error) {
	open := func(name, dsn string) (*store.Store, error) {
		s, err := store.Open(ctx, dsn, store.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("replica %s: %w", name, err)
		}
		if err := s.CheckSchema(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("replica %s: %w", name, schemaError(err))
		}
		return s, nil
	}
	if a, err = open("A", p.a); err != nil {
		return nil, nil, err
	}
	if b, err = open("B", p.b); err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// replicateCmd is "twinmail replicate": the replication worker of a pair.
type replicateCmd struct {
	fs        *flagSet
	pair      pairFlags
	once      bool
	sweep     time.Duration
	batchSize int
	logs      logFlags
	logger    *slog.Logger
}

func newReplicateCmd(sio stdio) *replicateCmd {
	c := &replicateCmd{}
	c.fs = newFlagSet(sio, "replicate", "twinmail replicate --a DSN --b DSN [--once]", `
Converge two replicas. The worker reacts to changes on either side within a second
(LISTEN/NOTIFY), sweeps periodically, and retries an unreachable side with backoff while
the other keeps serving. Only one worker per pair is active; a second one waits. Killing
it at any moment and starting it again is safe.

With --once it runs rounds until both sides agree, then exits 0.
SIGUSR1 pauses the worker (as if the link were cut), SIGUSR2 resumes it.`)
	c.fs.pairFlags(&c.pair)
	c.fs.BoolVar(&c.once, "once", false, "run until both sides agree, then exit")
	c.fs.DurationVar(&c.sweep, "sweep", 30*time.Second, "`period` of a full round without notifications")
	c.fs.IntVar(&c.batchSize, "batch-size", 2000, "changes read per mailbox and round")
	c.fs.logFlags(&c.logs)
	return c
}

func (c *replicateCmd) parseFlags(args []string) error {
	if _, err := c.fs.parse(args, 0, 0); err != nil {
		return err
	}
	if err := c.pair.require(); err != nil {
		return err
	}
	var err error
	c.logger, err = c.logs.logger(c.fs.sio.err)
	return err
}

func (c *replicateCmd) run(ctx context.Context) error {
	a, b, err := c.pair.open(ctx, c.logger)
	if err != nil {
		return err
	}
	defer a.Close()
	defer b.Close()
	w, err := replica.New(ctx, replica.Options{A: a, B: b, Logger: c.logger, Sweep: c.sweep, BatchSize: c.batchSize,
		DisableReinjection: os.Getenv("TWINMAIL_TEST_DISABLE_REINJECTION") == "1"})
	if err != nil {
		return err
	}
	if c.once {
		if err := w.SyncOnce(ctx); err != nil {
			return err
		}
		st := w.Stats()
		fmt.Fprintf(c.fs.sio.out, "in sync: %d rounds, %d copied, %d reinjected, %d clashes, %d bytes\n",
			st.Rounds, st.Copied, st.Reinjected, st.Clashes, st.Bytes)
		return nil
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				if s == syscall.SIGUSR1 {
					w.Pause()
					c.logger.Info("replication paused (SIGUSR1); SIGUSR2 resumes")
				} else {
					w.Resume()
					c.logger.Info("replication resumed (SIGUSR2)")
				}
			}
		}
	}()
	return w.Run(ctx)
}

// verifyCmd is "twinmail verify": compare two replicas.
type verifyCmd struct {
	fs        *flagSet
	pair      pairFlags
	maxDetail int
}

func newVerifyCmd(sio stdio) *verifyCmd {
	c := &verifyCmd{}
	c.fs = newFlagSet(sio, "verify", "twinmail verify --a DSN --b DSN", `
Compare two replicas: accounts, mailboxes (id, name, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
subscription), and per mailbox the UID to message map, flags and expunged UIDs. Per-mailbox
digests are compared first; details are listed only where they differ.
Exit status 0: identical; 1: they differ (or an error).`)
	c.fs.pairFlags(&c.pair)
	c.fs.IntVar(&c.maxDetail, "max-detail", 20, "differences listed per mailbox")
	return c
}

func (c *verifyCmd) parseFlags(args []string) error {
	if _, err := c.fs.parse(args, 0, 0); err != nil {
		return err
	}
	return c.pair.require()
}

func (c *verifyCmd) run(ctx context.Context) error {
	a, b, err := c.pair.open(ctx, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer a.Close()
	defer b.Close()
	diffs, err := replica.Verify(ctx, a, b, c.maxDetail)
	if err != nil {
		return err
	}
	replica.PrintDifferences(c.fs.sio.out, diffs)
	if len(diffs) > 0 {
		return fmt.Errorf("replicas differ in %d place(s)", len(diffs))
	}
	return nil
}

// statusCmd is "twinmail status": how far the pair is from agreement.
type statusCmd struct {
	fs   *flagSet
	pair pairFlags
}

func newStatusCmd(sio stdio) *statusCmd {
	c := &statusCmd{}
	c.fs = newFlagSet(sio, "status", "twinmail status --a DSN --b DSN", `
Show the replication state of a pair: per direction, how many mailboxes and changes wait to
be replicated, the worker's last round and last error, and the clashes resolved so far.`)
	c.fs.pairFlags(&c.pair)
	return c
}

func (c *statusCmd) parseFlags(args []string) error {
	if _, err := c.fs.parse(args, 0, 0); err != nil {
		return err
	}
	return c.pair.require()
}

func (c *statusCmd) run(ctx context.Context) error {
	a, b, err := c.pair.open(ctx, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer a.Close()
	defer b.Close()
	idA, err := a.ReplicaID(ctx)
	if err != nil {
		return err
	}
	idB, err := b.ReplicaID(ctx)
	if err != nil {
		return err
	}
	out := c.fs.sio.out
	for _, side := range []struct {
		name     string
		s        *store.Store
		id, peer string
	}{{"A", a, idA, idB}, {"B", b, idB, idA}} {
		lag, err := side.s.SyncLag(ctx, side.peer)
		if err != nil {
			return fmt.Errorf("replica %s: %w", side.name, err)
		}
		fmt.Fprintf(out, "replica %s (%s) -> peer: %d mailbox(es) with %d change(s) not yet replicated; oldest pending since %s\n",
			side.name, side.id, lag.Mailboxes, lag.Changes, fmtTime(lag.Oldest))
		stats, err := side.s.SyncStatus(ctx)
		if err != nil {
			return fmt.Errorf("replica %s: %w", side.name, err)
		}
		for _, st := range stats {
			if st.Peer != side.peer {
				continue
			}
			fmt.Fprintf(out, "  worker: last round %s, %d rounds, %d messages and %d bytes copied, %d clashes resolved\n",
				fmtTime(st.LastRoundAt), st.Rounds, st.MessagesCopied, st.BytesCopied, st.Clashes)
			if st.LastError != "" {
				fmt.Fprintf(out, "  last error (%s): %s\n", fmtTime(st.LastErrorAt), st.LastError)
			}
		}
	}
	return nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "never"
	}
	return t.Format(time.RFC3339) + " (" + time.Since(t).Round(time.Second).String() + " ago)"
}
