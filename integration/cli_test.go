package integration

import (
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twinmail/twinmail/store/storetest"
)

// psqlPath finds psql on PATH or next to the installed server binaries.
func psqlPath(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(m) == 0 {
		tb.Fatalf("psql not found on PATH or under /usr/lib/postgresql/*/bin (install postgresql-client)")
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// psql runs one SQL statement on dsn and returns its unaligned, tuples-only output.
func psql(tb testing.TB, dsn, sql string) string {
	tb.Helper()
	cmd := exec.Command(psqlPath(tb), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-t", "-A", "-d", dsn, "-c", sql)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("psql %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

var dbnameRe = regexp.MustCompile(`dbname=\S+`)

// withDatabase returns dsn pointing at database name instead.
func withDatabase(tb testing.TB, dsn, name string) string {
	tb.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatalf("parse DSN: %v", err)
		}
		u.Path = "/" + name
		return u.String()
	}
	if dbnameRe.MatchString(dsn) {
		return dbnameRe.ReplaceAllString(dsn, "dbname="+name)
	}
	return dsn + " dbname=" + name
}

// emptyDatabase creates an empty (unmigrated) database next to a storetest one.
func emptyDatabase(tb testing.TB) string {
	tb.Helper()
	base := storetest.DSN(tb)
	name := fmt.Sprintf("twinmail_empty_%d", time.Now().UnixNano())
	psql(tb, base, "CREATE DATABASE "+name)
	tb.Cleanup(func() {
		exec.Command(psqlPath(tb), "-X", "-q", "-d", base, "-c", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)").Run()
	})
	return withDatabase(tb, base, name)
}

// oneLineError checks a failed command's error output: non-empty, one line.
func oneLineError(tb testing.TB, what string, res cliResult) {
	tb.Helper()
	if res.Code == 0 {
		tb.Errorf("%s: exit status 0, want non-zero\nstdout: %s\nstderr: %s", what, res.Stdout, res.Stderr)
		return
	}
	msg := strings.TrimSpace(res.Stderr)
	if msg == "" || strings.Contains(msg, "\n") {
		tb.Errorf("%s: stderr = %q, want a one-line error", what, res.Stderr)
	}
	if strings.Contains(res.Stderr, "panic") || strings.Contains(res.Stderr, "goroutine ") {
		tb.Errorf("%s: stderr shows a panic:\n%s", what, res.Stderr)
	}
}

func TestCLIHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string // words the help must mention
	}{
		{[]string{"--help"}, []string{"serve", "migrate", "user", "dev"}},
		{[]string{"serve", "--help"}, []string{"-db", "-imap", "-insecure-auth"}},
		{[]string{"migrate", "--help"}, []string{"-db"}},
		{[]string{"user", "--help"}, []string{"add", "list", "del", "passwd"}},
		{[]string{"user", "add", "--help"}, []string{"-db", "-password-stdin"}},
		{[]string{"user", "passwd", "--help"}, []string{"-password-stdin"}},
		{[]string{"dev", "--help"}, []string{"-dir"}},
	}
	for _, tt := range tests {
		res := runCLI(t, nil, "", tt.args...)
		out := res.Stdout + res.Stderr
		if res.Code != 0 {
			t.Errorf("twinmail %s: exit status %d, want 0\n%s", strings.Join(tt.args, " "), res.Code, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("twinmail %s does not mention %q:\n%s", strings.Join(tt.args, " "), w, out)
			}
		}
	}
	// An unknown command may print the usage, but must end with the error and fail.
	res := runCLI(t, nil, "", "frobnicate")
	lines := strings.Split(strings.TrimSpace(res.Stderr), "\n")
	if last := lines[len(lines)-1]; res.Code == 0 || !strings.Contains(last, "frobnicate") {
		t.Errorf("twinmail frobnicate: exit %d, stderr ending %q; want non-zero and the error as the last line", res.Code, last)
	}
	oneLineError(t, "twinmail serve --no-such-flag", runCLI(t, nil, "", "serve", "--no-such-flag"))
	oneLineError(t, "twinmail user add (no name)", runCLI(t, nil, "pw\n", "user", "add", "--db", "postgres://127.0.0.1:1/x", "--password-stdin"))
}

func TestCLIMigrate(t *testing.T) {
	t.Parallel()
	dsn := emptyDatabase(t)
	version := func() string {
		return psql(t, dsn, "SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied")
	}
	tables := func() string {
		return psql(t, dsn, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
	}
	if res := runCLI(t, nil, "", "migrate", "--db", dsn); res.Code != 0 {
		t.Fatalf("twinmail migrate on an empty database: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	v1, t1 := version(), tables()
	if v1 == "0" || !strings.Contains(t1, "mailboxes") {
		t.Fatalf("after migrate: version %s, tables %s; want the schema", v1, t1)
	}
	// Idempotent, and TWINMAIL_DB is the default for --db.
	if res := runCLI(t, []string{"TWINMAIL_DB=" + dsn}, "", "migrate"); res.Code != 0 {
		t.Fatalf("second twinmail migrate (TWINMAIL_DB): exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if v2, t2 := version(), tables(); v2 != v1 || t2 != t1 {
		t.Errorf("second migrate changed the schema: version %s → %s, tables %s → %s", v1, v2, t1, t2)
	}
	// A binary refuses a database whose schema is newer than it knows.
	psql(t, dsn, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (999999, true)")
	res := runCLI(t, nil, "", "migrate", "--db", dsn)
	oneLineError(t, "twinmail migrate on a newer schema", res)
	if !strings.Contains(strings.ToLower(res.Stderr), "newer") {
		t.Errorf("twinmail migrate on a newer schema: stderr %q does not say the schema is newer", res.Stderr)
	}
	p := startProc(t, "twinmail serve", "serve", "--db", dsn, "--imap", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--lmtp", "", "--insecure-auth")
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("twinmail serve on a newer schema kept running; output:\n%s", p.output)
	}
	if p.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(strings.ToLower(p.output.String()), "newer") {
		t.Errorf("twinmail serve on a newer schema: exit %d, output %q; want non-zero and a message that the schema is newer", p.cmd.ProcessState.ExitCode(), p.output)
	}
	p.checkLog(t)
	// Unreachable database: one line, non-zero, quickly.
	start := time.Now()
	oneLineError(t, "twinmail migrate on an unreachable database", runCLI(t, nil, "", "migrate", "--db", "postgres://twinmail@127.0.0.1:1/none?connect_timeout=5"))
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("twinmail migrate on an unreachable database took %v", d)
	}
}

func TestCLIUsers(t *testing.T) {
	t.Parallel()
	dsn := storetest.DSN(t)
	user := func(stdin string, args ...string) cliResult {
		return runCLI(t, nil, stdin, append([]string{"user", args[0], "--db", dsn}, args[1:]...)...)
	}
	if res := user("old password\n", "add", "--password-stdin", "alice"); res.Code != 0 {
		t.Fatalf("user add alice: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := runCLI(t, []string{"TWINMAIL_DB=" + dsn}, "bob pw\n", "user", "add", "--password-stdin", "bob"); res.Code != 0 {
		t.Fatalf("user add bob with TWINMAIL_DB: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	oneLineError(t, "user add alice a second time", user("other\n", "add", "--password-stdin", "alice"))
	oneLineError(t, "user add with an empty password", user("", "add", "--password-stdin", "carol"))

	res := user("", "list")
	if res.Code != 0 {
		t.Fatalf("user list: exit %d\n%s", res.Code, res.Stderr)
	}
	listed := strings.Fields(res.Stdout)
	for _, want := range []string{"alice", "bob"} {
		if !slices.Contains(listed, want) {
			t.Errorf("user list = %q, missing %s", res.Stdout, want)
		}
	}
	if slices.Contains(listed, "carol") {
		t.Errorf("user list = %q lists carol, whose add failed", res.Stdout)
	}
	hash := psql(t, dsn, "SELECT password_hash FROM accounts WHERE name = 'alice'")
	if strings.Contains(hash, "old password") || !(strings.HasPrefix(hash, "$2") || strings.HasPrefix(hash, "$argon2id$")) {
		t.Errorf("alice's stored password = %q, want a bcrypt or argon2id hash", hash)
	}

	s := startServer(t, dsn)
	login := func(user, pass string) error {
		c := dialNoLogin(t, s.Addr)
		return c.Login(user, pass).Wait()
	}
	if err := login("alice", "old password"); err != nil {
		t.Fatalf("LOGIN alice with the password from user add = %v", err)
	}
	if res := user("new password\n", "passwd", "--password-stdin", "alice"); res.Code != 0 {
		t.Fatalf("user passwd alice: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	wantNO(t, "LOGIN alice with the old password after passwd", login("alice", "old password"), "")
	if err := login("alice", "new password"); err != nil {
		t.Errorf("LOGIN alice with the new password = %v", err)
	}
	oneLineError(t, "user passwd of an unknown user", user("x\n", "passwd", "--password-stdin", "nobody"))

	if res := user("", "del", "alice"); res.Code != 0 {
		t.Fatalf("user del alice: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := user("", "list"); slices.Contains(strings.Fields(res.Stdout), "alice") || !slices.Contains(strings.Fields(res.Stdout), "bob") {
		t.Errorf("user list after del alice = %q, want bob only", res.Stdout)
	}
	wantNO(t, "LOGIN alice after user del", login("alice", "new password"), "")
	if err := login("bob", "bob pw"); err != nil {
		t.Errorf("LOGIN bob after deleting alice = %v", err)
	}
	oneLineError(t, "user del of an unknown user", user("", "del", "alice"))
	// A deleted name can be added again, as a new, empty account.
	if res := user("again\n", "add", "--password-stdin", "alice"); res.Code != 0 {
		t.Errorf("user add alice after del: exit %d\n%s", res.Code, res.Stderr)
	} else if err := login("alice", "again"); err != nil {
		t.Errorf("LOGIN re-added alice = %v", err)
	}
}
