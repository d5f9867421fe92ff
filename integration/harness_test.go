package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

// The twinmail binary is built once per test binary, in the background while storetest
// starts its PostgreSQL cluster.
var (
	binDone chan struct{} // closed when the build finished
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "twinmail-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: create binary folder:", err)
		os.Exit(1)
	}
	binDone = make(chan struct{})
	go func() {
		defer close(binDone)
		binPath, binErr = buildBinary(dir)
	}()
	code := storetest.Main(m)
	<-binDone
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot returns the folder holding go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// buildBinary builds cmd/twinmail into dir, with -race when this test binary races.
func buildBinary(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "twinmail")
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/twinmail")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// twinmailBin returns the path of the built binary, failing the test if the build failed.
func twinmailBin(tb testing.TB) string {
	tb.Helper()
	<-binDone
	if binErr != nil {
		tb.Fatalf("build cmd/twinmail: %v", binErr)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer safe for a child process and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tailBuffer keeps the last max bytes written to it (a protocol trace for failure logs).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// cliResult is what one run of the binary produced.
type cliResult struct {
	Stdout, Stderr string
	Code           int
}

// runCLI runs the twinmail binary to completion with stdin and returns its output and exit
// status. env entries are added to the test process's environment (minus TWINMAIL_*).
func runCLI(tb testing.TB, env []string, stdin string, args ...string) cliResult {
	tb.Helper()
	return runCLIWithin(tb, 2*time.Minute, env, stdin, args...)
}

// runCLIWithin is runCLI with a deadline of its own.
func runCLIWithin(tb testing.TB, timeout time.Duration, env []string, stdin string, args ...string) cliResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, twinmailBin(tb), args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.Code = exitErr.ExitCode()
	default:
		tb.Fatalf("run twinmail %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		tb.Fatalf("twinmail %s did not finish within %s; stderr:\n%s", strings.Join(args, " "), timeout, res.Stderr)
	}
	return res
}

// cleanEnv is the test's environment without TWINMAIL_* variables, so a developer's
// settings cannot leak into the binary under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TWINMAIL_") {
			env = append(env, kv)
		}
	}
	return env
}

// addUser creates an account through `twinmail user add --password-stdin`.
func addUser(tb testing.TB, dsn, name, pw string) {
	tb.Helper()
	res := runCLI(tb, nil, pw+"\n", "user", "add", "--db", dsn, "--password-stdin", name)
	if res.Code != 0 {
		tb.Fatalf("twinmail user add %s: exit %d\nstdout: %s\nstderr: %s", name, res.Code, res.Stdout, res.Stderr)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen on a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a long-running twinmail process (serve or dev).
type proc struct {
	stopped bool // stop was called
	name    string
	cmd     *exec.Cmd
	output  *syncBuffer // stdout and stderr together
	done    chan struct{}
}

func startProc(tb testing.TB, name string, args ...string) *proc {
	tb.Helper()
	p := &proc{name: name, output: new(syncBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(twinmailBin(tb), args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start twinmail %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits for the process to end and checks that it exited with status 0 and
// logged no panic or data race.
func (p *proc) stop(tb testing.TB, sig os.Signal) {
	tb.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	if p.exited() {
		tb.Errorf("%s exited before the test stopped it (%v); output:\n%s", p.name, p.cmd.ProcessState, p.output)
		return
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		tb.Errorf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		tb.Errorf("%s did not exit within 30s of %v; killed it", p.name, sig)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		tb.Errorf("%s exit status after %v = %d, want 0", p.name, sig, code)
	}
	p.checkLog(tb)
}

// checkLog fails the test if the process logged a panic (go-imap recovers per-connection
// panics and logs them) or a data race.
func (p *proc) checkLog(tb testing.TB) {
	tb.Helper()
	out := p.output.String()
	for _, bad := range []string{"panic", "DATA RACE"} {
		if strings.Contains(out, bad) {
			tb.Errorf("%s output contains %q", p.name, bad)
		}
	}
}

// server is a running `twinmail serve`.
type server struct {
	*proc
	Addr     string
	LMTPAddr string
	DSN      string
}

// startServer runs `twinmail serve --db dsn --imap 127.0.0.1:<free port> --lmtp
// 127.0.0.1:<free port> --insecure-auth`,
// waits until it answers with a greeting and stops it with SIGTERM (asserting exit status 0)
// when the test ends. Its output goes to the test log if the test failed.
func startServer(tb testing.TB, dsn string) *server {
	tb.Helper()
	return startServeArgs(tb, dsn, "--insecure-auth")
}

// waitGreeting polls addr until it answers with an untagged OK greeting.
func waitGreeting(addr string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("process exited (%v) before it answered", p.cmd.ProcessState)
		}
		last = func() error {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil {
				return fmt.Errorf("read greeting: %w", err)
			}
			if !strings.HasPrefix(line, "* OK") {
				return fmt.Errorf("greeting = %q, want * OK", line)
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no greeting within %v: %v", timeout, last)
}

// waitFor calls fn until it returns nil, failing the test with fn's last error at timeout.
func waitFor(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waited %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// events records the unilateral data a client received.
type events struct {
	mu       sync.Mutex
	exists   []uint32 // every EXISTS count, in order
	expunges []uint32 // every EXPUNGE sequence number, in order
	fetches  []*imapclient.FetchMessageBuffer
}

func (e *events) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.expunges = append(e.expunges, seq)
		},
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			if data.NumMessages == nil {
				return
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			e.exists = append(e.exists, *data.NumMessages)
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err != nil {
				return
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			e.fetches = append(e.fetches, buf)
		},
	}
}

// take returns what was recorded since the last take and clears it.
func (e *events) take() (exists, expunges []uint32, fetches []*imapclient.FetchMessageBuffer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	exists, expunges, fetches = e.exists, e.expunges, e.fetches
	e.exists, e.expunges, e.fetches = nil, nil, nil
	return exists, expunges, fetches
}

// peek returns what was recorded since the last take, leaving it recorded.
func (e *events) peek() (exists, expunges []uint32, fetches []*imapclient.FetchMessageBuffer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]uint32(nil), e.exists...), append([]uint32(nil), e.expunges...), append([]*imapclient.FetchMessageBuffer(nil), e.fetches...)
}

// client is an imapclient.Client with its unilateral updates recorded.
type client struct {
	*imapclient.Client
	Events *events
	trace  *tailBuffer
}

// dial connects and logs in with LOGIN.
func dial(tb testing.TB, addr, user, pw string) *client {
	tb.Helper()
	c := dialNoLogin(tb, addr)
	if err := c.Login(user, pw).Wait(); err != nil {
		tb.Fatalf("LOGIN %s: %v", user, err)
	}
	return c
}

// dialNoLogin connects without logging in. The connection is logged out and closed when the
// test ends; on failure the tail of its protocol trace goes to the test log.
func dialNoLogin(tb testing.TB, addr string) *client {
	tb.Helper()
	ev := new(events)
	trace := &tailBuffer{max: 16 << 10}
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{
		UnilateralDataHandler: ev.handler(),
		DebugWriter:           trace,
	})
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	if err := c.WaitGreeting(); err != nil {
		tb.Fatalf("greeting from %s: %v", addr, err)
	}
	tb.Cleanup(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Logout().Wait()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		c.Close()
		if tb.Failed() {
			tb.Logf("IMAP trace (tail) of a client of %s:\n%s", addr, trace)
		}
	})
	return &client{Client: c, Events: ev, trace: trace}
}

// rawConn speaks IMAP line by line, for inputs imapclient would never send.
type rawConn struct {
	tb   testing.TB
	conn net.Conn
	r    *bufio.Reader
	// Greeting is the server's first line.
	Greeting string
}

func dialRaw(tb testing.TB, addr string) *rawConn {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { conn.Close() })
	rc := &rawConn{tb: tb, conn: conn, r: bufio.NewReader(conn)}
	g, err := rc.readLine()
	if err != nil {
		tb.Fatalf("read greeting: %v", err)
	}
	rc.Greeting = g
	return rc
}

var literalSuffix = regexp.MustCompile(`\{(\d+)\+?\}$`)

// readLine reads one response line, with any literals it announces inlined.
func (rc *rawConn) readLine() (string, error) {
	rc.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var line strings.Builder
	for {
		s, err := rc.r.ReadString('\n')
		if err != nil {
			return line.String() + s, err
		}
		s = strings.TrimRight(s, "\r\n")
		line.WriteString(s)
		m := literalSuffix.FindStringSubmatch(s)
		if m == nil {
			return line.String(), nil
		}
		n, _ := strconv.Atoi(m[1])
		lit := make([]byte, n)
		if _, err := io.ReadFull(rc.r, lit); err != nil {
			return line.String(), err
		}
		line.Write(lit)
	}
}

// send writes one line (CRLF added).
func (rc *rawConn) send(line string) {
	rc.tb.Helper()
	rc.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := rc.conn.Write([]byte(line + "\r\n")); err != nil {
		rc.tb.Fatalf("write %q: %v", line, err)
	}
}

// cmd sends "tag line" and reads until the tagged response or a continuation request. It
// returns the untagged lines and the final line without its tag (e.g. "OK [READ-ONLY] done",
// or "+ Ready" for a continuation request).
func (rc *rawConn) cmd(tag, line string) (untagged []string, final string) {
	rc.tb.Helper()
	rc.send(tag + " " + line)
	return rc.readUntil(tag)
}

// readUntil reads response lines until the tagged response for tag or a continuation.
func (rc *rawConn) readUntil(tag string) (untagged []string, final string) {
	rc.tb.Helper()
	for {
		l, err := rc.readLine()
		if err != nil {
			rc.tb.Fatalf("waiting for %s response: read: %v (after %q)", tag, err, untagged)
		}
		switch {
		case strings.HasPrefix(l, tag+" "):
			return untagged, strings.TrimPrefix(l, tag+" ")
		case strings.HasPrefix(l, "+"):
			return untagged, l
		default:
			untagged = append(untagged, l)
		}
	}
}

// mustOK runs a command and fails the test unless it completes with OK.
func (rc *rawConn) mustOK(tag, line string) []string {
	rc.tb.Helper()
	untagged, final := rc.cmd(tag, line)
	if !strings.HasPrefix(final, "OK") {
		rc.tb.Fatalf("%s %s -> %q, want OK", tag, line, final)
	}
	return untagged
}

// alive checks that the connection still answers NOOP with OK.
func (rc *rawConn) alive(tag string) {
	rc.tb.Helper()
	rc.mustOK(tag, "NOOP")
}

// ---- IMAP helpers over imapclient ----

func appendMsg(tb testing.TB, c *client, mailbox string, raw []byte, opts *imap.AppendOptions) *imap.AppendData {
	tb.Helper()
	cmd := c.Append(mailbox, int64(len(raw)), opts)
	if _, err := cmd.Write(raw); err != nil {
		tb.Fatalf("APPEND %s: write: %v", mailbox, err)
	}
	if err := cmd.Close(); err != nil {
		tb.Fatalf("APPEND %s: close literal: %v", mailbox, err)
	}
	data, err := cmd.Wait()
	if err != nil {
		tb.Fatalf("APPEND %s = %v", mailbox, err)
	}
	if data.UID == 0 || data.UIDValidity == 0 {
		tb.Fatalf("APPEND %s = %+v, want APPENDUID with non-zero UID and UIDVALIDITY", mailbox, data)
	}
	return data
}

func tryAppend(c *client, mailbox string, raw []byte, opts *imap.AppendOptions) (*imap.AppendData, error) {
	cmd := c.Append(mailbox, int64(len(raw)), opts)
	if _, err := cmd.Write(raw); err != nil {
		return nil, err
	}
	if err := cmd.Close(); err != nil {
		return nil, err
	}
	return cmd.Wait()
}

func selectMbox(tb testing.TB, c *client, name string, readOnly bool) *imap.SelectData {
	tb.Helper()
	data, err := c.Select(name, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
	if err != nil {
		tb.Fatalf("SELECT/EXAMINE %s = %v", name, err)
	}
	return data
}

func fetch(tb testing.TB, c *client, set imap.NumSet, opts *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	tb.Helper()
	msgs, err := c.Fetch(set, opts).Collect()
	if err != nil {
		tb.Fatalf("FETCH %v = %v", set, err)
	}
	return msgs
}

// fetchOne fetches exactly one message by UID.
func fetchOne(tb testing.TB, c *client, uid imap.UID, opts *imap.FetchOptions) *imapclient.FetchMessageBuffer {
	tb.Helper()
	msgs := fetch(tb, c, imap.UIDSetNum(uid), opts)
	if len(msgs) != 1 {
		tb.Fatalf("UID FETCH %d returned %d messages, want 1", uid, len(msgs))
	}
	return msgs[0]
}

func uidsOf(msgs []*imapclient.FetchMessageBuffer) []imap.UID {
	var uids []imap.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	return uids
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

// imapErr returns err as an *imap.Error, or nil.
func imapErr(err error) *imap.Error {
	var e *imap.Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// wantNO fails the test unless err is a tagged NO (and, when code is set, carries that code).
func wantNO(tb testing.TB, what string, err error, code imap.ResponseCode) {
	tb.Helper()
	e := imapErr(err)
	switch {
	case err == nil:
		tb.Errorf("%s succeeded, want NO", what)
	case e == nil:
		tb.Errorf("%s = %v, want a tagged NO (connection error?)", what, err)
	case e.Type != imap.StatusResponseTypeNo:
		tb.Errorf("%s = %v, want NO", what, err)
	case code != "" && e.Code != code:
		tb.Errorf("%s = %v, want NO [%s]", what, err, code)
	}
}

// crlf converts bare LF line endings to CRLF, as the server stores messages.
func crlf(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// ---- read-only store access for assertions ----

func openStore(tb testing.TB, dsn string) *store.Store {
	tb.Helper()
	st, err := store.Open(context.Background(), dsn, store.Options{MaxConns: 4})
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(st.Close)
	return st
}

func storeAccount(tb testing.TB, st *store.Store, name string) store.AccountID {
	tb.Helper()
	a, err := st.LookupAccount(context.Background(), name)
	if err != nil {
		tb.Fatalf("store LookupAccount(%q) = %v", name, err)
	}
	return a.ID
}

func storeMailbox(tb testing.TB, st *store.Store, acct store.AccountID, name string) store.Mailbox {
	tb.Helper()
	m, err := st.GetMailbox(context.Background(), acct, name)
	if err != nil {
		tb.Fatalf("store GetMailbox(%q) = %v", name, err)
	}
	return m
}

// storeMetas returns the live messages of a mailbox, ascending by UID.
func storeMetas(tb testing.TB, st *store.Store, acct store.AccountID, mbox store.MailboxID) []store.MessageMeta {
	tb.Helper()
	var out []store.MessageMeta
	err := st.FetchMeta(context.Background(), acct, mbox, store.UIDSet{{Start: 1, Stop: 0}}, store.MetaFields{}, func(m *store.MessageMeta) error {
		c := *m
		c.Flags = append([]string(nil), m.Flags...)
		c.Digest = append([]byte(nil), m.Digest...)
		out = append(out, c)
		return nil
	})
	if err != nil {
		tb.Fatalf("store FetchMeta = %v", err)
	}
	return out
}

// storeMeta returns the live message at uid.
func storeMeta(tb testing.TB, st *store.Store, acct store.AccountID, mbox store.MailboxID, uid imap.UID) store.MessageMeta {
	tb.Helper()
	for _, m := range storeMetas(tb, st, acct, mbox) {
		if m.UID == store.UID(uid) {
			return m
		}
	}
	tb.Fatalf("store: no live message at UID %d", uid)
	return store.MessageMeta{}
}
