// Package storetest gives each test a real, migrated PostgreSQL database of its own.
//
// A test binary calls Main from TestMain. The first test that asks for a database starts one
// throwaway cluster for the whole binary (internal/pgcluster, in a temporary folder), or uses
// the server at TWINMAIL_TEST_DSN when that is set, and migrates a template database there
// once. Each DSN or New call then clones the template with CREATE DATABASE … TEMPLATE, which
// takes milliseconds, and drops the clone when the test ends.
//
// A missing PostgreSQL fails the tests that need it, with the install hint; they are never
// skipped. Only _test.go files import this package.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/twinmail/twinmail/internal/pgcluster"
	"github.com/twinmail/twinmail/store"
)

// envDSN names the variable that points the tests at an existing server instead of a
// throwaway cluster. Its user must be allowed to create databases.
const envDSN = "TWINMAIL_TEST_DSN"

// setupTimeout bounds starting the cluster and migrating the template.
const setupTimeout = 3 * time.Minute

var (
	mainCalled atomic.Bool

	// The server, set up by the first test that needs it.
	srvOnce sync.Once
	srv     struct {
		cluster *pgcluster.Cluster // nil with TWINMAIL_TEST_DSN
		dir     string             // the cluster's temporary folder
		admin   string             // where CREATE and DROP DATABASE run
		tmpl    string             // the migrated template database
		err     error
	}

	// prefix names this process's databases: unique per process (pid) even when several
	// test binaries share a server, and per run (random) when a crashed run left some behind.
	prefix = fmt.Sprintf("twinmail_test_%d_%s", os.Getpid(), randomHex(3))
	seq    atomic.Int64
)

// Main runs the tests of m and then stops the cluster they used, if they used one. Call it
// from TestMain: func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }.
func Main(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "storetest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// DSN returns the address of a new database for tb, with the schema migrated and no data.
// The database is dropped when tb ends.
func DSN(tb testing.TB) string {
	tb.Helper()
	setup(tb)
	name := fmt.Sprintf("%s_%d", prefix, seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sql := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", ident(name), ident(srv.tmpl))
	if err := execRetry(ctx, srv.admin, sql); err != nil {
		tb.Fatalf("storetest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := execAdmin(ctx, srv.admin, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident(name))); err != nil {
			tb.Errorf("storetest: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(srv.admin, name)
	if err != nil {
		tb.Fatalf("storetest: %v", err)
	}
	return dsn
}

// New opens a store on a new database of tb's (see DSN) with a low bcrypt cost and a logger
// that writes to tb's log. The store is closed when tb ends.
func New(tb testing.TB) *store.Store {
	tb.Helper()
	dsn := DSN(tb)
	log := Logger(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, dsn, store.Options{BcryptCost: 4, Logger: log})
	if err != nil {
		tb.Fatalf("storetest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// ClusterFor returns the cluster the tests of this binary run on, starting it if no test
// has yet, or nil when TWINMAIL_TEST_DSN names the server. Integration tests use it to
// create more databases or to restart and kill the server; they must leave it running.
func ClusterFor(tb testing.TB) *pgcluster.Cluster {
	tb.Helper()
	setup(tb)
	return srv.cluster
}

// Logger returns a logger that writes to tb's log at debug level and is silenced when tb
// ends, so a goroutine that outlives tb cannot make it panic.
func Logger(tb testing.TB) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// setup makes the server and template ready once per binary, or fails tb with the reason.
func setup(tb testing.TB) {
	tb.Helper()
	if !mainCalled.Load() {
		tb.Fatal("storetest: call storetest.Main from TestMain: func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }")
	}
	srvOnce.Do(func() { srv.err = startServer() })
	if srv.err != nil {
		tb.Fatalf("storetest: %v", srv.err)
	}
}

func startServer() error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if dsn := os.Getenv(envDSN); dsn != "" {
		srv.admin = dsn
	} else {
		dir, err := os.MkdirTemp("", "twinmail-test-pg-")
		if err != nil {
			return fmt.Errorf("make cluster folder: %w", err)
		}
		srv.dir = dir
		c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: dir, Fast: true})
		if err != nil {
			return err
		}
		srv.cluster = c
		srv.admin = c.DSN("postgres")
	}

	srv.tmpl = prefix + "_template"
	if err := execAdmin(ctx, srv.admin, "CREATE DATABASE "+ident(srv.tmpl)); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	dsn, err := withDatabase(srv.admin, srv.tmpl)
	if err != nil {
		return err
	}
	s, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		return fmt.Errorf("open template database: %w", err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}
	return nil
}

// teardown drops the template (on a shared server) and stops the cluster.
func teardown() error {
	var errs []error
	if srv.tmpl != "" && srv.cluster == nil && srv.admin != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := execAdmin(ctx, srv.admin, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident(srv.tmpl))); err != nil {
			errs = append(errs, fmt.Errorf("drop template database: %w", err))
		}
	}
	if srv.cluster != nil {
		errs = append(errs, srv.cluster.Stop())
	}
	if srv.dir != "" {
		errs = append(errs, os.RemoveAll(srv.dir))
	}
	return errors.Join(errs...)
}

// execAdmin runs one statement on the admin connection.
func execAdmin(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// execRetry is execAdmin that retries while the template is busy: CREATE DATABASE … TEMPLATE
// fails while another session is connected to the template, such as the migration's
// connections in their last moments.
func execRetry(ctx context.Context, dsn, sql string) error {
	for {
		err := execAdmin(ctx, dsn, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55006" { // object_in_use
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// withDatabase returns dsn with its database replaced by name. dsn is a postgres:// URL or
// a key=value string.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", envDSN, err)
		}
		u.Path, u.RawPath = "/"+name, ""
		q := u.Query()
		if q.Has("dbname") {
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil // a later key wins; name needs no quoting
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
