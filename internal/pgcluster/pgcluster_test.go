package pgcluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// psql runs sql on database postgres of c with the psql client and returns its unaligned
// output.
func psql(t *testing.T, c *Cluster, sql string) string {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", c.DSN("postgres"), "-c", sql)
	cmd.Env = childEnv(nil)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql -c %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func mustStart(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := Options{Dir: dir, Fast: true}
	c := mustStart(t, opts)
	port := c.Port()

	if got, want := c.DSN("db1"), fmt.Sprintf("postgres://twinmail@127.0.0.1:%d/db1?sslmode=disable", port); got != want {
		t.Errorf("DSN(db1) = %q, want %q", got, want)
	}
	if got := psql(t, c, "SHOW listen_addresses"); got != "127.0.0.1" {
		t.Errorf("listen_addresses = %q, want 127.0.0.1", got)
	}
	if got := psql(t, c, "SHOW fsync"); got != "off" {
		t.Errorf("fsync = %q with Fast, want off", got)
	}
	if got := psql(t, c, "SELECT current_user"); got != "twinmail" {
		t.Errorf("current_user = %q, want twinmail", got)
	}
	if os.Geteuid() == 0 {
		// t.TempDir's parent is 0700; Start must have let the postgres user through.
		fi, err := os.Stat(filepath.Dir(dir))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			t.Errorf("mode of %s = %04o, want o+x", filepath.Dir(dir), fi.Mode().Perm())
		}
	}
	for range 2 { // the second call finds it exists
		if err := c.CreateDatabase(t.Context(), "other db"); err != nil {
			t.Fatalf("CreateDatabase: %v", err)
		}
	}
	if got := psql(t, c, "SELECT count(*) FROM pg_database WHERE datname = 'other db'"); got != "1" {
		t.Errorf("databases named 'other db' = %s, want 1", got)
	}
	psql(t, c, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before stop')")
	for range 2 { // Stop is idempotent
		if err := c.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}

	// Second run: same data, same port.
	c = mustStart(t, opts)
	if c.Port() != port {
		t.Errorf("Port() after restart = %d, want the remembered %d", c.Port(), port)
	}
	if got := psql(t, c, "SELECT string_agg(v, ',') FROM kept"); got != "before stop" {
		t.Errorf("kept after Stop and Start = %q, want %q", got, "before stop")
	}

	// Crash: the killed server leaves its postmaster.pid behind, and Start recovers.
	psql(t, c, "INSERT INTO kept VALUES ('before kill')")
	for range 2 {
		if err := c.Kill(); err != nil {
			t.Fatalf("Kill: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(c.pgdata, "postmaster.pid")); err != nil {
		t.Fatalf("no stale postmaster.pid after Kill: %v", err)
	}
	c = mustStart(t, opts)
	if got := psql(t, c, "SELECT string_agg(v, ',' ORDER BY v) FROM kept"); got != "before kill,before stop" {
		t.Errorf("kept after Kill and Start = %q, want %q", got, "before kill,before stop")
	}

	if err := c.Restart(t.Context()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got := psql(t, c, "SELECT count(*) FROM kept"); got != "2" {
		t.Errorf("rows in kept after Restart = %s, want 2", got)
	}

	// Kill then Restart recovers too.
	if err := c.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := c.Restart(t.Context()); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	if got := psql(t, c, "SELECT count(*) FROM kept"); got != "2" {
		t.Errorf("rows in kept after Kill and Restart = %s, want 2", got)
	}
	if c.Port() != port {
		t.Errorf("Port() = %d, want %d throughout", c.Port(), port)
	}

	log, err := os.ReadFile(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "database system is ready to accept connections") {
		t.Errorf("postgres.log holds no server output:\n%s", log)
	}
}

// A data folder too deep for a unix socket path gets its socket in a short temporary folder.
func TestLongDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	c := mustStart(t, Options{Dir: dir, Fast: true})
	if got := psql(t, c, "SELECT 1"); got != "1" {
		t.Errorf("SELECT 1 = %q", got)
	}
	sock := c.sockDir
	if strings.HasPrefix(sock, dir) || len(sock)+len(socketFile) > maxSocketPath {
		t.Errorf("socket directory %q, want a short one outside the data folder", sock)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary socket directory left after Stop: %v", err)
	}
}

// A failed start names the problem and quotes the server's log.
func TestStartFailureQuotesLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := mustStart(t, Options{Dir: dir, Fast: true})
	// A second server on the same data directory is refused by postgres itself.
	_, err := Start(t.Context(), Options{Dir: dir, Fast: true, Port: c.Port() + 1})
	if err == nil {
		t.Fatal("second Start on a running cluster succeeded")
	}
	for _, want := range []string{"start postgres in " + dir, "postgres.log", "postmaster.pid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("second Start error %q does not mention %q", err, want)
		}
	}
	if got := psql(t, c, "SELECT 1"); got != "1" {
		t.Errorf("first server broken by the failed second start: SELECT 1 = %q", got)
	}
}

func TestNotInstalled(t *testing.T) {
	t.Setenv("PATH", "")
	saved := binGlobs
	binGlobs = []string{filepath.Join(t.TempDir(), "*", "bin")}
	t.Cleanup(func() { binGlobs = saved })

	if _, err := BinDir(); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("BinDir() error = %v, want ErrNotInstalled", err)
	}
	_, err := Start(t.Context(), Options{Dir: t.TempDir()})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Start error = %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("Start error %q gives no install hint", err)
	}
}

func TestBinDirPicksHighestComplete(t *testing.T) {
	root := t.TempDir()
	fake := map[string][]string{ // version folder → binaries in it
		"9.6": {"initdb", "postgres"},
		"15":  {"initdb", "postgres"},
		"16":  {"initdb"}, // incomplete
		"10":  {"initdb", "postgres"},
	}
	for v, names := range fake {
		bin := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("PATH", "")
	saved := binGlobs
	binGlobs = []string{filepath.Join(root, "*", "bin")}
	t.Cleanup(func() { binGlobs = saved })

	got, err := BinDir()
	if want := filepath.Join(root, "15", "bin"); got != want || err != nil {
		t.Errorf("BinDir() = %q, %v, want %q", got, err, want)
	}

	// PATH comes first.
	t.Setenv("PATH", filepath.Join(root, "9.6", "bin"))
	got, err = BinDir()
	if want := filepath.Join(root, "9.6", "bin"); got != want || err != nil {
		t.Errorf("BinDir() with PATH = %q, %v, want %q", got, err, want)
	}
}

// As root, a data folder the postgres user cannot reach, and that Start may not open up
// (not created by it, not temporary), gets its data directory in a stand-in folder.
func TestUnreachableDirAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("tests the handling of root, which runs the server as the postgres user")
	}
	mk := func(mode os.FileMode) string {
		d, err := os.MkdirTemp("/tmp", "twpgtest")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		return d
	}
	locked := mk(0o700)
	otherTmp := mk(0o755)
	standIn := mk(0o755)
	t.Setenv("TMPDIR", otherTmp) // so locked is no temporary folder of ours
	relocateRoot = standIn
	t.Cleanup(func() { relocateRoot = "" })

	dir := filepath.Join(locked, "data")
	opts := Options{Dir: dir, Fast: true}
	c := mustStart(t, opts)
	psql(t, c, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)")
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(locked)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode of %s = %04o, want it left 0700", locked, fi.Mode().Perm())
	}
	target, err := os.Readlink(filepath.Join(dir, dataName))
	if err != nil {
		t.Fatalf("data directory is no link to a stand-in: %v", err)
	}
	if !strings.HasPrefix(target, standIn+"/") {
		t.Errorf("data directory link points to %s, want a folder under %s", target, standIn)
	}

	c = mustStart(t, opts)
	if got := psql(t, c, "SELECT sum(v) FROM kept"); got != "1" {
		t.Errorf("kept after second start = %q, want 1", got)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	// A deleted data folder starts empty next time, though its stand-in is still there.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	c = mustStart(t, opts)
	if got := psql(t, c, "SELECT to_regclass('kept') IS NULL"); got != "t" {
		t.Errorf("table kept exists in a new cluster made after deleting the data folder")
	}
}
