package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/imapbackend"
	"github.com/twinmail/twinmail/internal/pgcluster"
	"github.com/twinmail/twinmail/lmtp"
	"github.com/twinmail/twinmail/replica"
	"github.com/twinmail/twinmail/store"
)

// EnvOptions configure where scenarios run.
type EnvOptions struct {
	// ServerA and ServerB are PostgreSQL servers on which each scenario creates its own
	// databases (the user needs CREATEDB). Empty: start two private clusters in Dir.
	ServerA, ServerB string
	// Dir holds the private clusters; empty: a temporary folder, removed by Close.
	Dir    string
	Logger *slog.Logger
	// DisableReinjection builds a deliberately broken worker (clashes are never resolved),
	// to show that the checks can fail.
	DisableReinjection bool
}

// Env is where scenarios run: one PostgreSQL server per side, with a migrated template
// database from which each scenario's databases are cloned.
type Env struct {
	opts     EnvOptions
	log      *slog.Logger
	clusters [2]*pgcluster.Cluster
	servers  [2]string // admin DSNs
	tmpDir   string
	seq      atomic.Int64
}

const templateDB = "twinmail_scenario_template"

// NewEnv prepares the two servers.
func NewEnv(ctx context.Context, opts EnvOptions) (*Env, error) {
	e := &Env{opts: opts, log: opts.Logger}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if (opts.ServerA == "") != (opts.ServerB == "") {
		return nil, errors.New("give both --a and --b, or neither (private clusters)")
	}
	if opts.ServerA != "" {
		e.servers = [2]string{opts.ServerA, opts.ServerB}
	} else {
		dir := opts.Dir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "twinmail-scenario-")
			if err != nil {
				return nil, err
			}
			e.tmpDir, dir = tmp, tmp
		}
		for i, name := range []string{"a", "b"} {
			cl, err := pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(dir, name), Fast: true, Logger: e.log.With("component", "postgres-"+name)})
			if err != nil {
				e.Close()
				return nil, fmt.Errorf("replica %s: %w", name, err)
			}
			e.clusters[i] = cl
			e.servers[i] = cl.DSN("postgres")
		}
	}
	for i := range e.servers {
		if err := e.prepareTemplate(ctx, i); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

func (e *Env) prepareTemplate(ctx context.Context, side int) error {
	_ = store.DropDatabase(ctx, e.servers[side], templateDB)
	if err := store.CreateDatabase(ctx, e.servers[side], templateDB, ""); err != nil {
		return err
	}
	dsn, err := store.WithDatabase(e.servers[side], templateDB)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, dsn, store.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Migrate(ctx)
}

// Close stops private clusters and removes their temporary folder.
func (e *Env) Close() {
	for _, cl := range e.clusters {
		if cl != nil {
			_ = cl.Stop()
		}
	}
	if e.tmpDir != "" {
		os.RemoveAll(e.tmpDir)
	}
}

var sideNames = [2]string{"A", "B"}

// side is one replica of a running pair.
type side struct {
	name    string
	dbName  string
	dsn     string
	st      *store.Store
	imapLn  net.Listener
	lmtpLn  net.Listener
	be      *imapbackend.Backend
	srv     *imapserver.Server
	lsrv    *lmtp.Server
	cancel  context.CancelFunc
	done    sync.WaitGroup
	imapAdr string
	lmtpAdr string
}

// Pair is a running pair of replicas for one scenario.
type Pair struct {
	env    *Env
	sides  [2]*side
	worker *replica.Worker
	wstop  context.CancelFunc
	wdone  chan struct{}
	rng    *rand.Rand
	crash  atomic.Bool // the next round dies at a random fault point
	paused bool
}

// NewPair creates fresh databases on both servers and starts both replicas' IMAP and LMTP
// servers on loopback, and the worker (running, not paused).
func (e *Env) NewPair(ctx context.Context, seed uint64) (*Pair, error) {
	n := e.seq.Add(1)
	p := &Pair{env: e, rng: rand.New(rand.NewPCG(seed, uint64(n)))}
	for i := range p.sides {
		s := &side{name: sideNames[i], dbName: fmt.Sprintf("twinmail_scenario_%d_%d_%s", os.Getpid(), n, sideNames[i])}
		p.sides[i] = s
		if err := store.CreateDatabase(ctx, e.servers[i], s.dbName, templateDB); err != nil {
			p.Close()
			return nil, err
		}
		dsn, err := store.WithDatabase(e.servers[i], s.dbName)
		if err != nil {
			p.Close()
			return nil, err
		}
		s.dsn = dsn
		if s.st, err = store.Open(ctx, dsn, store.Options{Logger: e.log, BcryptCost: 4}); err != nil {
			p.Close()
			return nil, err
		}
		if err := s.st.SetReplicaID(ctx, "scenario-"+s.name); err != nil {
			p.Close()
			return nil, err
		}
		if err := p.startServers(s, "127.0.0.1:0", "127.0.0.1:0"); err != nil {
			p.Close()
			return nil, err
		}
	}
	w, err := replica.New(ctx, replica.Options{
		A: p.sides[0].st, B: p.sides[1].st, Logger: e.log.With("component", "worker"),
		Sweep: 2 * time.Second, MaxBackoff: 500 * time.Millisecond,
		DisableReinjection: e.opts.DisableReinjection,
		Fault:              p.fault,
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	p.worker = w
	p.startWorker()
	return p, nil
}

// fault makes the round after `worker crash` die at a random point.
func (p *Pair) fault(point string) error {
	if !p.crash.Load() {
		return nil
	}
	// Each point is reached with probability 1/2 of dying there; the last always dies.
	if p.rng.IntN(2) == 0 || point == replica.FaultPoints[len(replica.FaultPoints)-1] {
		p.crash.Store(false)
		return errors.New("worker crashed (scenario)")
	}
	return nil
}

func (p *Pair) startServers(s *side, imapAddr, lmtpAddr string) error {
	var err error
	if s.imapLn, err = net.Listen("tcp", imapAddr); err != nil {
		return fmt.Errorf("replica %s: listen for IMAP: %w", s.name, err)
	}
	if s.lmtpLn, err = net.Listen("tcp", lmtpAddr); err != nil {
		s.imapLn.Close()
		return fmt.Errorf("replica %s: listen for LMTP: %w", s.name, err)
	}
	s.imapAdr, s.lmtpAdr = s.imapLn.Addr().String(), s.lmtpLn.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	log := p.env.log.With("replica", s.name)
	s.be = imapbackend.New(imapbackend.Options{Store: s.st, Logger: log, InsecureAuth: true})
	s.srv = s.be.Server()
	s.lsrv = lmtp.New(lmtp.Options{Store: s.st, Logger: log, Hostname: "replica-" + s.name})
	s.done.Add(3)
	go func() { defer s.done.Done(); _ = s.be.Run(ctx) }()
	go func() { defer s.done.Done(); _ = s.srv.Serve(s.imapLn) }()
	go func() { defer s.done.Done(); _ = s.lsrv.Serve(s.lmtpLn) }()
	return nil
}

func (p *Pair) stopServers(s *side) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.srv.Close()
	s.lsrv.Close()
	s.done.Wait()
	s.cancel = nil
}

// restartServers drops every connection of a side and serves again on the same ports.
func (p *Pair) restartServers(s *side) error {
	p.stopServers(s)
	for range 20 {
		if err := p.startServers(s, s.imapAdr, s.lmtpAdr); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Someone else took a port meanwhile (an outgoing connection's ephemeral port, say):
	// serve on new ones; clients follow the side's current addresses.
	return p.startServers(s, "127.0.0.1:0", "127.0.0.1:0")
}

func (p *Pair) startWorker() {
	ctx, cancel := context.WithCancel(context.Background())
	p.wstop = cancel
	p.wdone = make(chan struct{})
	if p.paused {
		p.worker.Pause()
	}
	go func() { defer close(p.wdone); _ = p.worker.Run(ctx) }()
}

func (p *Pair) stopWorker() {
	if p.wstop == nil {
		return
	}
	p.wstop()
	<-p.wdone
	p.wstop = nil
}

// killPostgres kills or restarts a side's PostgreSQL server (private clusters only).
func (p *Pair) postgres(ctx context.Context, i int, action string) error {
	cl := p.env.clusters[i]
	if cl == nil {
		return errors.New("postgres kill/restart needs private clusters (run without --a/--b)")
	}
	if action == "kill" {
		return cl.Kill()
	}
	return cl.Restart(ctx)
}

// Close stops everything and drops the scenario's databases. A killed PostgreSQL is
// restarted first, so the next scenario finds it running.
func (p *Pair) Close() {
	p.stopWorker()
	ctx := context.Background()
	for i, s := range p.sides {
		if s == nil {
			continue
		}
		p.stopServers(s)
		if s.st != nil {
			s.st.Close()
		}
		if cl := p.env.clusters[i]; cl != nil {
			if _, err := pgclusterAlive(ctx, p.env.servers[i]); err != nil {
				_ = cl.Restart(ctx)
			}
		}
		_ = store.DropDatabase(ctx, p.env.servers[i], s.dbName)
	}
}

// pgclusterAlive checks that a server answers.
func pgclusterAlive(ctx context.Context, dsn string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := store.Open(ctx, dsn, store.Options{MaxConns: 1})
	if err != nil {
		return false, err
	}
	st.Close()
	return true, nil
}
