package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

// runCLI runs the command line args with stdin in and returns the exit status, stdout and
// stderr, as main would produce them.
func runCLI(t testing.TB, in string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, stdio{in: strings.NewReader(in), out: &out, err: &errb})
	code = exitCode(err, &errb)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"--help"}, "Commands:"},
		{[]string{"-h"}, "Commands:"},
		{[]string{"help"}, "Commands:"},
		{[]string{"help", "serve"}, "twinmail serve --db DSN"},
		{[]string{"serve", "--help"}, "--insecure-auth"},
		{[]string{"serve", "-h"}, "--imap address"},
		{[]string{"migrate", "--help"}, "twinmail migrate --db DSN"},
		{[]string{"dev", "--help"}, "--dir directory"},
		{[]string{"version", "--help"}, "twinmail version"},
		{[]string{"user", "--help"}, "passwd"},
		{[]string{"user", "help"}, "passwd"},
		{[]string{"user", "add", "--help"}, "--password-stdin"},
		{[]string{"user", "list", "--help"}, "twinmail user list --db DSN"},
		{[]string{"user", "del", "--help"}, "twinmail user del --db DSN NAME"},
		{[]string{"user", "passwd", "--help"}, "twinmail user passwd --db DSN --password-stdin NAME"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, "", tt.args...)
		if code != 0 || !strings.Contains(stdout, tt.want) || stderr != "" {
			t.Errorf("twinmail %s: status %d, stdout %q, stderr %q; want status 0 and %q on stdout only",
				strings.Join(tt.args, " "), code, stdout, stderr, tt.want)
		}
	}
}

func TestHelpListsDBEnv(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"migrate"}, {"user", "add"}, {"user", "list"}, {"user", "del"}, {"user", "passwd"}} {
		_, stdout, _ := runCLI(t, "", append(args, "--help")...)
		if !strings.Contains(stdout, "--db address") || !strings.Contains(stdout, "$TWINMAIL_DB") {
			t.Errorf("twinmail %s --help = %q, want --db and $TWINMAIL_DB documented", strings.Join(args, " "), stdout)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Setenv(envDB, "")
	tests := []struct {
		args    []string
		wantErr string // the one error line on stderr
	}{
		{nil, "twinmail: no command given\n"},
		{[]string{"frobnicate"}, "twinmail: unknown command \"frobnicate\": want one of serve, migrate, user, "},
		{[]string{"user"}, "twinmail: user: missing command: add, list, del or passwd\n"},
		{[]string{"user", "frob"}, "twinmail: user: unknown command \"frob\": want add, list, del or passwd"},
		{[]string{"migrate"}, "twinmail: migrate: missing --db"},
		{[]string{"serve"}, "twinmail: serve: missing --db"},
		{[]string{"user", "list"}, "twinmail: user list: missing --db"},
		{[]string{"user", "add", "--password-stdin", "bob"}, "twinmail: user add: missing --db"},
		{[]string{"user", "del", "bob"}, "twinmail: user del: missing --db"},
		{[]string{"user", "passwd", "--password-stdin", "bob"}, "twinmail: user passwd: missing --db"},
		{[]string{"user", "add", "--db", "x", "bob"}, "twinmail: user add: missing --password-stdin"},
		{[]string{"user", "passwd", "--db", "x", "bob"}, "twinmail: user passwd: missing --password-stdin"},
		{[]string{"user", "add", "--db", "x", "--password-stdin"}, "twinmail: user add: missing argument: usage: twinmail user add"},
		{[]string{"user", "del", "--db", "x", "bob", "carol"}, "twinmail: user del: unexpected argument \"carol\""},
		{[]string{"migrate", "--db", "x", "extra"}, "twinmail: migrate: unexpected argument \"extra\""},
		{[]string{"migrate", "--bogus"}, "twinmail: migrate: flag provided but not defined: -bogus (see --help)\n"},
		{[]string{"serve", "--db", "x", "--log-level", "loud"}, "twinmail: serve: bad --log-level \"loud\""},
		{[]string{"serve", "--db", "x", "--log-format", "xml"}, "twinmail: serve: bad --log-format \"xml\""},
		{[]string{"serve", "--db", "x", "--tls-cert", "c.pem"}, "twinmail: serve: --tls-cert and --tls-key go together\n"},
		{[]string{"serve", "--db", "x", "--imaps", ":993"}, "twinmail: serve: --imaps needs --tls-cert and --tls-key\n"},
		{[]string{"serve", "--db", "x", "--imap", "", "--lmtp", ""}, "twinmail: serve: nothing to serve"},
		{[]string{"serve", "--db", "x", "--append-limit", "0"}, "twinmail: serve: --append-limit must be between 1 and 4294967295\n"},
		{[]string{"serve", "--db", "x", "--append-limit", "4294967296"}, "twinmail: serve: --append-limit must be between 1 and 4294967295\n"},
		{[]string{"serve", "--db", "x", "--append-limit", "-1"}, "twinmail: serve: invalid value \"-1\" for flag -append-limit"},
		{[]string{"dev", "--imap", "0.0.0.0:1143"}, "twinmail: dev: --imap \"0.0.0.0:1143\" is not a loopback address"},
		{[]string{"dev", "--imap", "1143"}, "twinmail: dev: bad --imap \"1143\""},
		{[]string{"dev", "--dir", ""}, "twinmail: dev: --dir must not be empty\n"},
		{[]string{"version", "now"}, "twinmail: version: unexpected argument \"now\""},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, "", tt.args...)
		lastLine := stderr[strings.LastIndex(strings.TrimSuffix(stderr, "\n"), "\n")+1:]
		if code != 2 || stdout != "" || !strings.HasPrefix(lastLine, tt.wantErr) || !strings.HasSuffix(lastLine, "\n") {
			t.Errorf("twinmail %q: status %d, stdout %q, stderr %q; want status 2, nothing on stdout, last stderr line starting %q",
				tt.args, code, stdout, stderr, tt.wantErr)
		}
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	t.Setenv(envDB, "")
	for _, args := range [][]string{
		{"frobnicate"},
		{"user", "frob"},
		{"serve", "--no-such-flag"},
		{"serve"},
		{"user", "add", "--db", "x", "--password-stdin"},
	} {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 {
			t.Errorf("twinmail %q: status %d, stdout %q, stderr %q; want status 2 and one line on stderr only", args, code, stdout, stderr)
		}
	}
}

func TestNoCommandPrintsUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"user"}} {
		code, _, stderr := runCLI(t, "", args...)
		if code != 2 || !strings.Contains(stderr, "Commands:") {
			t.Errorf("twinmail %q: status %d, stderr %q; want 2 and the usage on stderr", args, code, stderr)
		}
	}
}

func TestDBFromEnv(t *testing.T) {
	const envDSN = "postgres://env@db.example/twinmail"
	const flagDSN = "postgres://flag@db.example/twinmail"
	t.Setenv(envDB, envDSN)
	sio := stdio{in: strings.NewReader(""), out: io.Discard, err: io.Discard}
	// Each parser parses a command line and returns the --db it ended up with.
	serve := func(args []string) (string, error) {
		c := newServeCmd(sio)
		err := c.parseFlags(args)
		return c.db, err
	}
	migrate := func(args []string) (string, error) {
		c := newMigrateCmd(sio)
		err := c.parseFlags(args)
		return c.db, err
	}
	add := func(args []string) (string, error) {
		c := newUserAddCmd(sio)
		err := c.parseFlags(args)
		return c.db, err
	}
	list := func(args []string) (string, error) {
		c := newUserListCmd(sio)
		err := c.parseFlags(args)
		return c.db, err
	}
	del := func(args []string) (string, error) {
		c := newUserDelCmd(sio)
		err := c.parseFlags(args)
		return c.db, err
	}
	passwd := func(args []string) (string, error) {
		c := newUserPasswdCmd(sio)
		err := c.parseFlags(args)
		return c.db, err
	}
	tests := []struct {
		name  string
		parse func([]string) (string, error)
		args  []string
		want  string
	}{
		{"serve", serve, nil, envDSN},
		{"serve", serve, []string{"--db", flagDSN}, flagDSN},
		{"migrate", migrate, nil, envDSN},
		{"migrate", migrate, []string{"--db=" + flagDSN}, flagDSN},
		{"user add", add, []string{"--password-stdin", "bob"}, envDSN},
		{"user list", list, nil, envDSN},
		{"user del", del, []string{"bob"}, envDSN},
		{"user passwd", passwd, []string{"-db", flagDSN, "--password-stdin", "bob"}, flagDSN},
	}
	for _, tt := range tests {
		got, err := tt.parse(tt.args)
		if err != nil || got != tt.want {
			t.Errorf("%s %q: --db %q, error %v; want %q", tt.name, tt.args, got, err, tt.want)
		}
	}
}

func TestServeDefaults(t *testing.T) {
	t.Setenv(envIMAP, "")
	t.Setenv(envLogLevel, "")
	t.Setenv(envLogFormat, "")
	c := newServeCmd(stdio{out: io.Discard, err: io.Discard})
	if err := c.parseFlags([]string{"--db", "x"}); err != nil {
		t.Fatalf("parseFlags = %v", err)
	}
	if c.imap.addr != "127.0.0.1:1143" || c.imap.insecureAuth || c.migrate || c.imap.imapsAddr != "" {
		t.Errorf("serve defaults = %+v, migrate %v; want IMAP on 127.0.0.1:1143, no insecure auth, no IMAPS, no migrate", c.imap, c.migrate)
	}

	t.Setenv(envIMAP, "127.0.0.1:2143")
	c = newServeCmd(stdio{out: io.Discard, err: io.Discard})
	if err := c.parseFlags([]string{"--db", "x", "--insecure-auth", "--migrate", "--log-format", "json", "--log-level", "debug"}); err != nil {
		t.Fatalf("parseFlags = %v", err)
	}
	if c.imap.addr != "127.0.0.1:2143" || !c.imap.insecureAuth || !c.migrate {
		t.Errorf("serve with flags = %+v, migrate %v; want $%s's address, insecure auth and migrate", c.imap, c.migrate, envIMAP)
	}
}

func TestUserArgsAnywhere(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--db", "x", "--password-stdin", "bob"}, "bob"},
		{[]string{"bob", "--db", "x", "--password-stdin"}, "bob"},
		{[]string{"--db", "x", "bob", "--password-stdin"}, "bob"},
		{[]string{"--db", "x", "--password-stdin", "--", "-bob"}, "-bob"},
	}
	for _, tt := range tests {
		c := newUserAddCmd(stdio{out: io.Discard, err: io.Discard})
		if err := c.parseFlags(tt.args); err != nil {
			t.Errorf("user add %q: parseFlags = %v", tt.args, err)
			continue
		}
		if c.name != tt.want || c.db != "x" || !c.pw.stdin {
			t.Errorf("user add %q: name %q, db %q, password-stdin %v; want %q, \"x\", true", tt.args, c.name, c.db, c.pw.stdin, tt.want)
		}
	}
}

func TestReadPassword(t *testing.T) {
	long := strings.Repeat("p", maxPasswordLen+1)
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"secret\n", "secret", false},
		{"secret", "secret", false},
		{"secret\r\n", "secret", false},
		{"two words \n", "two words ", false},
		{"first\nsecond\n", "first", false},
		{"\n", "", true},
		{"", "", true},
		{"\r\n", "", true},
		{long + "\n", "", true},
		{long, "", true},
		{long[1:] + "\n", long[1:], false},
	}
	for _, tt := range tests {
		got, err := readPassword(strings.NewReader(tt.in))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("readPassword(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestEmptyPasswordRefusedBeforeConnecting(t *testing.T) {
	// The database address is unusable: the command must fail on the password first.
	code, _, stderr := runCLI(t, "\n", "user", "add", "--db", "postgres://nobody@127.0.0.1:1/none", "--password-stdin", "bob")
	if code != 1 || !strings.HasPrefix(stderr, "twinmail: user add: empty password") {
		t.Errorf("user add with an empty password: status %d, stderr %q; want 1 and an empty password error", code, stderr)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err      error
		want     int
		wantLine string
	}{
		{nil, 0, ""},
		{errors.New("boom"), 1, "twinmail: boom\n"},
		{prefix("user add", errors.New("boom")), 1, "twinmail: user add: boom\n"},
		{prefix("serve", usageError{errors.New("bad")}), 2, "twinmail: serve: bad\n"},
		{errors.New("connect: failed:\n\t127.0.0.1:1: refused\n\t127.0.0.1:1: refused\n"), 1, "twinmail: connect: failed: 127.0.0.1:1: refused; 127.0.0.1:1: refused\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if got := exitCode(tt.err, &b); got != tt.want || b.String() != tt.wantLine {
			t.Errorf("exitCode(%v) = %d, printed %q; want %d, %q", tt.err, got, b.String(), tt.want, tt.wantLine)
		}
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	c := newMigrateCmd(stdio{out: io.Discard, err: io.Discard})
	if err := c.parseFlags([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("migrate parseFlags(--help) = %v, want flag.ErrHelp", err)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(stdout, "twinmail ") || !strings.Contains(stdout, " go1.") {
		t.Errorf("twinmail version: status %d, stdout %q; want 0 and \"twinmail VERSION goVERSION\"", code, stdout)
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:1143", true},
		{"127.0.0.2:1143", true},
		{"[::1]:1143", true},
		{"localhost:1143", true},
		{"0.0.0.0:1143", false},
		{":1143", false},
		{"192.0.2.1:1143", false},
		{"example.com:1143", false},
	}
	for _, tt := range tests {
		if err := checkLoopback(tt.addr); (err == nil) != tt.ok {
			t.Errorf("checkLoopback(%q) = %v, want ok %v", tt.addr, err, tt.ok)
		}
	}
}

func TestHelpHidesDBFromEnv(t *testing.T) {
	t.Setenv(envDB, "postgres://twinmail:hunter2@db.example/twinmail")
	for _, args := range [][]string{{"serve", "--help"}, {"migrate", "--help"}, {"user", "add", "--help"}} {
		_, stdout, stderr := runCLI(t, "", args...)
		if strings.Contains(stdout+stderr, "hunter2") {
			t.Errorf("twinmail %s printed $%s, which holds a password: %q", strings.Join(args, " "), envDB, stdout)
		}
	}
}
