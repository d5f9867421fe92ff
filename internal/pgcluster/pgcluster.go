// Package pgcluster runs a private PostgreSQL cluster for `twinmail dev` and for tests. It
// finds the server binaries (BinDir), creates the cluster with initdb the first time,
// starts the postgres server as a child process listening on 127.0.0.1 only, and stops,
// kills or restarts it. The cluster's superuser is "twinmail" and every connection from
// 127.0.0.1 is trusted, so a cluster is for development and tests only.
//
// When run as root, it runs the server binaries as the "postgres" system user, which
// PostgreSQL requires, and gives that user the data directory.
//
// The package owns nothing but the cluster's data folder and the server process. It uses
// only the standard library: it speaks no SQL itself and must not import pgx or any other
// twinmail package.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names and limits of the cluster's files.
const (
	superuser  = "twinmail"
	dataName   = "pgdata"        // the data directory (PGDATA), or a symlink to it
	logName    = "postgres.log"  // initdb's and the server's output
	portName   = "port"          // the port of the last successful start
	sockName   = "run"           // the unix socket directory
	confName   = "twinmail.conf" // settings rewritten at every start, included by postgresql.conf
	includeCmd = "include_if_exists = '" + confName + "'"

	// maxSocketPath is the longest unix socket path (sun_path holds 108 bytes with the NUL).
	maxSocketPath = 107
	socketFile    = "/.s.PGSQL.65535"

	startTimeout = 2 * time.Minute
	stopTimeout  = time.Minute
	logTailLines = 20
)

// Log attribute keys.
const (
	logKeyDir  = "dir"
	logKeyPort = "port"
	logKeyPID  = "pid"
	logKeyUser = "user"
)

// Options configure Start.
type Options struct {
	// Dir is the data folder. It is created if missing; a cluster already in it is reused,
	// with its data.
	Dir string
	// Port is the TCP port on 127.0.0.1. 0 picks a free one, preferring the port the
	// cluster had last time.
	Port int
	// Logger receives start and stop events; nil discards them. The server's own output
	// goes to postgres.log in Dir.
	Logger *slog.Logger
	// Fast trades durability for speed, for tests: fsync and full_page_writes are off, and
	// initdb does not sync. Committed data survives Kill (a crash of the server's
	// processes), not a crash of the machine. synchronous_commit stays on: with fsync off
	// turning it off gains nothing measurable, and it would lose acknowledged commits on Kill,
	// which crash tests would take for a bug.
	Fast bool
}

// Cluster is a running (or stopped) private PostgreSQL cluster. Its methods are safe for
// concurrent use.
type Cluster struct {
	dir     string   // Options.Dir, absolute and with symlinks resolved
	home    string   // the folder holding the data directory: dir, or a stand-in for it
	pgdata  string   // the data directory
	bin     string   // BinDir
	logPath string   // dir/postgres.log
	acct    *account // the user the server runs as; nil: ourselves
	fast    bool
	log     *slog.Logger

	mu      sync.Mutex
	port    int
	sockDir string
	tmpSock bool    // sockDir is a temporary folder, removed when the server stops
	srv     *server // nil when stopped
}

// server is one run of the postmaster.
type server struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // cmd.Wait's result, set before done is closed
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) exited(within time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(within):
		return false
	}
}

// Start starts the cluster in opts.Dir, creating it first if the folder holds none, and
// returns once the server accepts connections. It fails with ErrNotInstalled when the
// server binaries are missing; other failures include the end of the server's log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start postgres in %s: %w", opts.Dir, err)
	}
	return c, nil
}

func start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("no data folder given")
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	created, err := mkdirAll(opts.Dir)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.EvalSymlinks(opts.Dir)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin, logPath: filepath.Join(dir, logName), acct: acct, fast: opts.Fast, log: log}
	if acct != nil {
		c.log = log.With(logKeyUser, acct.name)
	}
	if err := c.locateData(created); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}

	auto := opts.Port == 0
	c.port = opts.Port
	if auto {
		c.port = c.rememberedPort()
		if c.port == 0 || !portFree(c.port) {
			if c.port, err = freePort(); err != nil {
				return nil, err
			}
		}
	}
	for attempt := 1; ; attempt++ {
		busy, err := c.startServer(ctx)
		if err == nil {
			break
		}
		// Another process may take a free port between our check and the server's bind.
		if !auto || !busy || attempt == 5 {
			return nil, err
		}
		c.log.Debug("port taken meanwhile; trying another", logKeyPort, c.port)
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, portName), []byte(strconv.Itoa(c.port)+"\n"), 0o644); err != nil {
		return c, errors.Join(fmt.Errorf("remember port: %w", err), c.Stop())
	}
	return c, nil
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// DSN returns the address of database on this cluster as a postgres:// URL, connecting as
// the superuser over TCP without TLS or password.
func (c *Cluster) DSN(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port())),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates the database name with the createdb program. A database that
// already exists is not an error.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "createdb"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(c.Port()), "-U", superuser, "-w", "--", name)
	cmd.Env = childEnv(nil)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "already exists") {
			return nil
		}
		return fmt.Errorf("create database %s: %w: %s", name, err, msg)
	}
	return nil
}

// Stop shuts the server down (a fast shutdown: clients are disconnected, open
// transactions roll back) and waits for it to exit. Stopping a stopped cluster does
// nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(); err != nil {
		return fmt.Errorf("stop postgres in %s: %w", c.dir, err)
	}
	return nil
}

// Kill sends SIGKILL to the server's processes, the postmaster and its children, like a
// crash, and waits for them to be gone. A later Start or Restart runs crash recovery. Killing a stopped
// cluster does nothing.
func (c *Cluster) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	srv := c.srv
	if srv == nil {
		return nil
	}
	defer c.stopped()
	if err := killServer(srv); err != nil {
		return fmt.Errorf("kill postgres in %s: %w", c.dir, err)
	}
	c.log.Info("postgres killed", logKeyDir, c.dir, logKeyPID, srv.pid())
	return nil
}

// Restart stops the server if it runs and starts it again on the same port.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(); err != nil {
		return fmt.Errorf("restart postgres in %s: %w", c.dir, err)
	}
	if _, err := c.startServer(ctx); err != nil {
		return fmt.Errorf("restart postgres in %s: %w", c.dir, err)
	}
	return nil
}

// stop is Stop with c.mu held.
func (c *Cluster) stop() error {
	srv := c.srv
	if srv == nil {
		return nil
	}
	defer c.stopped()
	select {
	case <-srv.done:
		return nil // it died on its own, or was killed
	default:
	}
	// SIGINT is what pg_ctl stop -m fast sends.
	if err := srv.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	if srv.exited(stopTimeout) {
		c.log.Info("postgres stopped", logKeyDir, c.dir)
		return nil
	}
	// SIGQUIT is an immediate shutdown (pg_ctl stop -m immediate).
	_ = srv.cmd.Process.Signal(syscall.SIGQUIT)
	if srv.exited(10 * time.Second) {
		return fmt.Errorf("fast shutdown took over %v; shut down immediately instead", stopTimeout)
	}
	if err := killServer(srv); err != nil {
		return err
	}
	return errors.New("server ignored shutdown requests; killed it")
}

// stopped forgets the server process once it is gone.
func (c *Cluster) stopped() {
	c.srv = nil
	if c.tmpSock {
		os.RemoveAll(c.sockDir)
		c.sockDir, c.tmpSock = "", false
	}
}

// killServer SIGKILLs the postmaster and all its processes and waits until none runs: a
// new postmaster refuses to start while an old one's processes still hold its shared
// memory.
func killServer(srv *server) error {
	select {
	case <-srv.done:
		return nil
	default:
	}
	pid := srv.pid()
	_ = syscall.Kill(pid, syscall.SIGSTOP) // no more forks while we collect its children
	kids := childPIDs(pid)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	<-srv.done
	deadline := time.Now().Add(10 * time.Second)
	for _, k := range kids {
		for alive(k) {
			if time.Now().After(deadline) {
				return fmt.Errorf("server process %d still runs 10s after SIGKILL", k)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// locateData decides where the data directory lives. It is dir/pgdata unless the server
// user cannot reach dir, in which case it lives in a stand-in folder (see relocatedHome)
// that dir/pgdata links to. created lists the folders Start created, which it may open up.
func (c *Cluster) locateData(created []string) error {
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		tmp = os.TempDir()
	}
	// We open up (chmod g+x,o+x) only folders we just created or temporary ones, such as the
	// 0700 folders of os.MkdirTemp and t.TempDir. Anything else we do not touch.
	mayChmod := func(p string, _ fs.FileInfo) bool {
		for _, d := range created {
			if d == p {
				return true
			}
		}
		return isUnder(p, tmp)
	}

	link := filepath.Join(c.dir, dataName)
	fi, err := os.Lstat(link)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		// A link to a stand-in folder. Its target may not exist yet if initdb never ran.
		target, err := os.Readlink(link)
		if err != nil {
			return fmt.Errorf("read data directory link: %w", err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(c.dir, target)
		}
		c.home = filepath.Dir(target)
	case err == nil:
		c.home = c.dir
	case errors.Is(err, fs.ErrNotExist):
		c.home = c.dir
		if c.acct == nil {
			break
		}
		var ue *unreachableError
		if err := reach(c.dir, c.acct, mayChmod); errors.As(err, &ue) {
			home, rerr := relocatedHome(c.dir, c.acct)
			if rerr != nil {
				return fmt.Errorf("%w (and no stand-in folder: %v)", err, rerr)
			}
			c.log.Warn("the server user cannot reach the data folder; the data directory lives in a stand-in folder",
				logKeyDir, c.dir, "stand_in", home, "blocked_at", ue.path)
			// Data in the stand-in without a link to it belongs to a data folder that was
			// deleted: a new folder starts empty, as it would anywhere else.
			old := filepath.Join(home, dataName)
			if _, err := os.Stat(old); err == nil {
				c.log.Warn("removing the data of a deleted data folder", logKeyDir, old)
				if err := os.RemoveAll(old); err != nil {
					return fmt.Errorf("remove stale stand-in data: %w", err)
				}
			}
			c.home = home
		} else if err != nil {
			return err
		}
	default:
		return err
	}
	if c.acct != nil {
		if err := reach(c.home, c.acct, mayChmod); err != nil {
			return err
		}
	}
	c.pgdata = filepath.Join(c.home, dataName)
	return nil
}

// initdb creates the cluster unless the data directory holds one. It builds it in a
// scratch folder and renames it into place, so an interrupted initdb leaves no
// half-made cluster behind.
func (c *Cluster) initdb(ctx context.Context) error {
	if c.home != c.dir {
		// Link first: a stand-in's data directory is only ever found through its link.
		link := filepath.Join(c.dir, dataName)
		if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink(c.pgdata, link); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(c.pgdata, "PG_VERSION")); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return c.runInitdb(ctx)
	}
	return nil
}

func (c *Cluster) runInitdb(ctx context.Context) error {
	scratch := c.pgdata + ".init"
	args := []string{"-D", scratch, "-U", superuser, "-A", "trust", "-E", "UTF8"}
	if c.fast {
		args = append(args, "--no-sync")
	}
	// C collation (byte order, stable across libc versions) but UTF-8 character classes, so
	// lower() and ILIKE fold non-ASCII letters. Not every system has C.UTF-8.
	locales := [][]string{{"--locale=C", "--lc-ctype=C.UTF-8"}, {"--locale=C"}}
	var err error
	for _, loc := range locales {
		if err := os.RemoveAll(scratch); err != nil {
			return err
		}
		if err := os.Mkdir(scratch, 0o700); err != nil {
			return err
		}
		if err := chown(scratch, c.acct); err != nil {
			return err
		}
		var out string
		if out, err = c.runTool(ctx, "initdb", append(args, loc...)...); err == nil {
			break
		}
		if !strings.Contains(out, "locale") {
			return err
		}
	}
	if err != nil {
		return err
	}
	if err := os.Rename(scratch, c.pgdata); err != nil {
		return fmt.Errorf("move new cluster into place: %w", err)
	}
	c.log.Info("created PostgreSQL cluster", logKeyDir, c.pgdata)
	return nil
}

// runTool runs one of the server binaries as the server user, its output appended to the
// log. On failure it returns the output too, and an error that ends with it.
func (c *Cluster) runTool(ctx context.Context, name string, args ...string) (string, error) {
	logf, off, err := c.openLog()
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.Env = childEnv(c.acct)
	if c.acct != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.acct.credential()}
	}
	if err := cmd.Run(); err != nil {
		out := c.logSince(off)
		return out, fmt.Errorf("%s: %w%s", name, err, c.formatTail(out))
	}
	return "", nil
}

// startServer starts the postmaster with c.mu held (or before c is shared) and waits until
// it accepts connections. busy reports a failure because the port was taken.
func (c *Cluster) startServer(ctx context.Context) (busy bool, err error) {
	if err := c.prepareRun(); err != nil {
		return false, err
	}
	logf, off, err := c.openLog()
	if err != nil {
		return false, err
	}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", c.pgdata)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.Env = childEnv(c.acct)
	cmd.SysProcAttr = serverProcAttr(c.acct)
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return false, err
	}
	srv := &server{cmd: cmd, done: make(chan struct{})}
	go func() {
		srv.err = cmd.Wait()
		close(srv.done)
	}()
	c.srv = srv

	if err := c.waitReady(ctx, srv); err != nil {
		if killErr := killServer(srv); killErr != nil {
			err = errors.Join(err, killErr)
		}
		c.stopped()
		out := c.logSince(off)
		busy = strings.Contains(out, "could not bind") || strings.Contains(out, "Address already in use")
		return busy, fmt.Errorf("%w%s", err, c.formatTail(out))
	}
	c.log.Info("postgres ready", logKeyDir, c.dir, logKeyPort, c.port, logKeyPID, srv.pid())
	return false, nil
}

// prepareRun writes the per-start settings and makes sure the server user owns what it
// needs.
func (c *Cluster) prepareRun() error {
	if err := c.socketDir(); err != nil {
		return fmt.Errorf("make socket directory: %w", err)
	}
	var b strings.Builder
	b.WriteString("# Written by twinmail at every start of this cluster; edits here are lost.\n")
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = %s\n", c.port, confQuote(c.sockDir))
	b.WriteString("max_connections = 200\n")
	if c.fast {
		b.WriteString("fsync = off\nfull_page_writes = off\n")
	}
	if err := os.WriteFile(filepath.Join(c.pgdata, confName), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	main := filepath.Join(c.pgdata, "postgresql.conf")
	conf, err := os.ReadFile(main)
	if err != nil {
		return fmt.Errorf("read settings: %w", err)
	}
	if !bytes.Contains(conf, []byte(includeCmd)) {
		f, err := os.OpenFile(main, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("include twinmail settings: %w", err)
		}
		_, err = fmt.Fprintf(f, "\n# twinmail's settings, rewritten at every start.\n%s\n", includeCmd)
		if err := errors.Join(err, f.Close()); err != nil {
			return fmt.Errorf("include twinmail settings: %w", err)
		}
	}
	if c.acct != nil {
		// A cluster made or touched by another user (or by an older twinmail) becomes the
		// server user's.
		if err := chownTree(c.pgdata, c.acct); err != nil {
			return fmt.Errorf("give data directory to %s: %w", c.acct.name, err)
		}
	}
	return nil
}

// socketDir makes the unix socket directory: home/run, or a short temporary folder when that
// path would make the socket path too long.
func (c *Cluster) socketDir() error {
	if c.sockDir != "" {
		return nil
	}
	dir := filepath.Join(c.home, sockName)
	if len(dir)+len(socketFile) <= maxSocketPath && !strings.ContainsAny(dir, ",") {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	} else {
		parent := os.TempDir()
		if len(parent)+len("/twpg1234567890")+len(socketFile) > maxSocketPath || strings.ContainsAny(parent, ",") {
			parent = "/tmp"
		}
		d, err := os.MkdirTemp(parent, "twpg")
		if err != nil {
			return err
		}
		dir, c.tmpSock = d, true
	}
	c.sockDir = dir
	return chown(dir, c.acct)
}

// waitReady waits until the postmaster's pid file says it is ready, which is what pg_ctl
// -w watches.
func (c *Cluster) waitReady(ctx context.Context, srv *server) error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pidFile := filepath.Join(c.pgdata, "postmaster.pid")
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) >= 8 && strings.TrimSpace(lines[0]) == strconv.Itoa(srv.pid()) && strings.TrimSpace(lines[7]) == "ready" {
				return nil
			}
		}
		select {
		case <-srv.done:
			return fmt.Errorf("postgres exited while starting (%v)", srv.err)
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres to accept connections: %w", ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("postgres did not accept connections within %v", startTimeout)
		case <-tick.C:
		}
	}
}

// openLog opens the log for appending and returns its current size.
func (c *Cluster) openLog() (*os.File, int64, error) {
	f, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("open server log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open server log: %w", err)
	}
	return f, fi.Size(), nil
}

// logSince returns what was logged from offset on (at most its last 64 KiB).
func (c *Cluster) logSince(off int64) string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-off > 64<<10 {
		off = fi.Size() - 64<<10
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// formatTail renders the last lines of out for the end of an error message.
func (c *Cluster) formatTail(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	if len(lines) == 0 || lines[0] == "" {
		return fmt.Sprintf(" (nothing in %s)", c.logPath)
	}
	return fmt.Sprintf("; last lines of %s:\n\t%s", c.logPath, strings.Join(lines, "\n\t"))
}

func (c *Cluster) rememberedPort() int {
	b, err := os.ReadFile(filepath.Join(c.dir, portName))
	if err != nil {
		return 0
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || p <= 0 || p > 65535 {
		return 0
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// mkdirAll is os.MkdirAll that returns the folders it created (absolute, symlinks resolved).
func mkdirAll(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var missing []string
	for p := abs; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	created := make([]string, 0, len(missing))
	for _, p := range missing {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			created = append(created, real)
		}
	}
	return created, nil
}

// childEnv is our environment for a server binary: without PG* variables, which would
// override our settings, in the C locale so messages are in English, and with the server
// user's HOME when it runs as that user.
func childEnv(a *account) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PG") || strings.HasPrefix(name, "LC_") || name == "LANG" || name == "LANGUAGE" ||
			(a != nil && name == "HOME") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	if a != nil && a.home != "" {
		env = append(env, "HOME="+a.home)
	}
	return env
}

// confQuote quotes s as a postgresql.conf string.
func confQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
