package imapbackend_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmail/twinmail/imapbackend"
	"github.com/twinmail/twinmail/store/storetest"
)

// limitedServer is a backend served the way cmd/twinmail serves it: through
// Backend.Listener, so autologout works, with its log kept for inspection.
type limitedServer struct {
	*server
	b    *imapbackend.Backend
	logs *logBuffer
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// errorLines returns the lines logged at error level.
func (l *logBuffer) errorLines() []string {
	return grep(strings.Split(l.String(), "\n"), "level=ERROR")
}

func startLimited(t *testing.T, opts imapbackend.Options, users ...string) *limitedServer {
	t.Helper()
	st := storetest.New(t)
	ctx := context.Background()
	for _, u := range append([]string{testUser}, users...) {
		pw := testPassword
		if u != testUser {
			pw = u + "-password"
		}
		if _, err := st.CreateAccount(ctx, u, pw); err != nil {
			t.Fatalf("CreateAccount %s: %v", u, err)
		}
	}
	logs := new(logBuffer)
	opts.Store = st
	opts.InsecureAuth = true
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := imapbackend.New(opts)
	runCtx, cancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(runCtx) }()
	srv := b.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		srv.Serve(b.Listener(ln))
	}()
	t.Cleanup(func() {
		srv.Close()
		<-serveDone
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run = %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return &limitedServer{server: &server{store: st, addr: ln.Addr().String()}, b: b, logs: logs}
}

// dialLine connects and returns the connection and its first line.
func dialLine(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting: %v", err)
	}
	return c, r, strings.TrimSuffix(l, "\r\n")
}

// wantClosed reads from r until EOF, failing on anything but a clean end within d.
func wantClosed(t *testing.T, c net.Conn, r *bufio.Reader, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Errorf("connection not closed within %v: %v (read %q)", d, err, rest)
	} else if len(rest) > 0 {
		t.Errorf("read %q before the connection closed, want nothing", rest)
	}
}

func TestConnsPerIPCap(t *testing.T) {
	s := startLimited(t, imapbackend.Options{MaxConnsPerIP: 2})
	first := s.dialRaw(t)
	s.raw(t)
	c, r, greeting := dialLine(t, s.addr)
	if greeting != "* BYE [LIMIT] Too many connections from your address" {
		t.Errorf("third connection greeted with %q, want BYE [LIMIT]", greeting)
	}
	wantClosed(t, c, r, 5*time.Second)

	// Closing one gives its place back.
	first.c.Close()
	waitFor(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := bufio.NewReader(c).ReadString('\n')
		if !strings.HasPrefix(l, "* OK") {
			return fmt.Errorf("greeting %q, %v", l, err)
		}
		return nil
	})
}

func TestConnsPerAccountCap(t *testing.T) {
	s := startLimited(t, imapbackend.Options{MaxConnsPerAccount: 2}, "bob")
	first := s.raw(t)
	s.raw(t)
	third := s.dialRaw(t)
	if _, status := third.cmd("LOGIN " + testUser + " " + testPassword); status != "NO [LIMIT] Too many connections for this account" {
		t.Errorf("third LOGIN = %q, want NO [LIMIT] Too many connections for this account", status)
	}
	third.ok("NOOP") // still connected, not logged in
	if _, status := third.cmd("SELECT INBOX"); strings.HasPrefix(status, "OK") {
		t.Errorf("SELECT after a refused LOGIN = %q, want it refused", status)
	}
	// Other accounts are not affected.
	bob := s.dialRaw(t)
	bob.ok("LOGIN bob bob-password")

	// A LOGOUT gives the place back.
	first.ok("LOGOUT")
	waitFor(t, 5*time.Second, func() error {
		if _, status := third.cmd("LOGIN " + testUser + " " + testPassword); !strings.HasPrefix(status, "OK") {
			return fmt.Errorf("LOGIN = %q", status)
		}
		return nil
	})
	third.ok("SELECT INBOX")
}

// timedLogin runs one LOGIN and returns its tagged status and how long it took.
func timedLogin(rc *rawConn, user, pass string) (string, time.Duration) {
	rc.tb.Helper()
	start := time.Now()
	_, status := rc.cmd("LOGIN " + user + " " + pass)
	return status, time.Since(start)
}

func TestFailedLoginDelayPerAccount(t *testing.T) {
	const delay = 300 * time.Millisecond
	s := startLimited(t, imapbackend.Options{LoginDelay: delay})
	rc := s.dialRaw(t)
	for i := 1; i <= 3; i++ {
		if status, _ := timedLogin(rc, testUser, "wrong"); !strings.HasPrefix(status, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("wrong password %d = %q", i, status)
		}
	}
	// From the fourth attempt on, each waits: 1, 2 times the delay...
	if status, d := timedLogin(rc, testUser, "wrong"); !strings.HasPrefix(status, "NO [AUTHENTICATIONFAILED]") || d < delay {
		t.Errorf("4th attempt = %q after %v, want NO after at least %v", status, d, delay)
	}
	// ... on another connection too, and for the right password as well.
	other := s.dialRaw(t)
	if status, d := timedLogin(other, testUser, testPassword); !strings.HasPrefix(status, "OK") || d < 2*delay {
		t.Errorf("5th attempt (right password) = %q after %v, want OK after at least %v", status, d, 2*delay)
	}
	// The success forgot the failures: without that this attempt would wait 2 × delay again.
	if status, d := timedLogin(s.dialRaw(t), testUser, "wrong"); !strings.HasPrefix(status, "NO [AUTHENTICATIONFAILED]") || d >= 2*delay {
		t.Errorf("wrong password after a success = %q after %v, want NO in less than %v", status, d, 2*delay)
	}
	if lines := s.logs.errorLines(); len(lines) > 0 {
		t.Errorf("error-level log lines: %q", lines)
	}
}

func TestFailedLoginDelayPerAddress(t *testing.T) {
	const delay = 200 * time.Millisecond
	var users []string
	for i := range 11 {
		users = append(users, fmt.Sprintf("user%d", i))
	}
	s := startLimited(t, imapbackend.Options{LoginDelay: delay}, users...)
	rc := s.dialRaw(t)
	// One failure per account, ten from the address: nothing waits yet.
	for _, u := range users[:10] {
		if status, d := timedLogin(rc, u, "wrong"); !strings.HasPrefix(status, "NO [AUTHENTICATIONFAILED]") || d >= delay {
			t.Fatalf("LOGIN %s with a wrong password = %q after %v, want NO without delay", u, status, d)
		}
	}
	// The address has failed ten times: the next attempt waits, whatever the account.
	if status, d := timedLogin(s.dialRaw(t), users[10], users[10]+"-password"); !strings.HasPrefix(status, "OK") || d < delay {
		t.Errorf("LOGIN after ten failures from the address = %q after %v, want OK after at least %v", status, d, delay)
	}
}

func TestAuthFailureIsTheSameForUnknownUsers(t *testing.T) {
	s := startLimited(t, imapbackend.Options{LoginDelay: -1})
	rc := s.dialRaw(t)
	_, wrongPass := rc.cmd("LOGIN " + testUser + " wrong")
	_, unknown := rc.cmd("LOGIN nobody wrong")
	if !strings.HasPrefix(wrongPass, "NO ") || wrongPass != unknown {
		t.Errorf("LOGIN with a wrong password = %q, of an unknown user = %q; want the same NO", wrongPass, unknown)
	}
	plain := func(user, pass string) string {
		return "AUTHENTICATE PLAIN " + base64PLAIN(user, pass)
	}
	_, wrongPass = rc.cmd(plain(testUser, "wrong"))
	_, unknown = rc.cmd(plain("nobody", "wrong"))
	if !strings.HasPrefix(wrongPass, "NO ") || wrongPass != unknown {
		t.Errorf("AUTHENTICATE with a wrong password = %q, of an unknown user = %q; want the same NO", wrongPass, unknown)
	}
}

func TestAutologout(t *testing.T) {
	const timeout = time.Second
	s := startLimited(t, imapbackend.Options{IdleTimeout: timeout})

	// A silent logged-in connection gets BYE after the timeout; so does one in IDLE with
	// nothing happening.
	silent := s.raw(t)
	silent.ok("SELECT INBOX")
	idler := s.raw(t)
	idler.ok("SELECT INBOX")
	idler.send("i1 IDLE")
	if l := idler.readLine(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE = %q, want a continuation", l)
	}
	// A connection that keeps sending commands stays.
	busy := s.raw(t)
	start := time.Now()
	for time.Since(start) < 3*timeout {
		busy.ok("NOOP")
		time.Sleep(timeout / 4)
	}
	for name, rc := range map[string]*rawConn{"silent": silent, "idling": idler} {
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := rc.r.ReadString('\n')
		if l != "* BYE Autologout; idle for too long\r\n" {
			t.Errorf("%s connection: read %q, %v; want * BYE Autologout", name, l, err)
			continue
		}
		wantClosed(t, rc.c, rc.r, 5*time.Second)
	}
	busy.ok("NOOP")
	if lines := s.logs.errorLines(); len(lines) > 0 {
		t.Errorf("error-level log lines: %q", lines)
	}
}

func TestShutdownSaysBye(t *testing.T) {
	s := startLimited(t, imapbackend.Options{})
	selected := s.raw(t)
	selected.ok("SELECT INBOX")
	idler := s.raw(t)
	idler.send("i1 IDLE")
	if l := idler.readLine(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE = %q, want a continuation", l)
	}
	anon := s.dialRaw(t)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	s.b.Shutdown(ctx)
	if ctx.Err() != nil {
		t.Errorf("Shutdown waited %v, until its context ended", time.Since(start))
	}
	for name, rc := range map[string]*rawConn{"selected": selected, "idling": idler} {
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := rc.r.ReadString('\n')
		if l != "* BYE Server shutting down\r\n" {
			t.Errorf("%s connection: read %q, %v; want * BYE Server shutting down", name, l, err)
			continue
		}
		wantClosed(t, rc.c, rc.r, 5*time.Second)
	}
	wantClosed(t, anon.c, anon.r, 5*time.Second) // not logged in: closed without a word
	c, r, greeting := dialLine(t, s.addr)
	if greeting != "* BYE [UNAVAILABLE] Server shutting down" {
		t.Errorf("greeting after Shutdown = %q, want BYE [UNAVAILABLE]", greeting)
	}
	wantClosed(t, c, r, 5*time.Second)
	if lines := s.logs.errorLines(); len(lines) > 0 {
		t.Errorf("error-level log lines: %q", lines)
	}
}

// TestAppendLimitKeepsSync: an over-limit APPEND with a synchronizing literal is refused
// before the continuation request, so the client never sends the literal and the next
// command is read as a command. LITERAL+, which would let the client send it anyway, is not
// offered.
func TestAppendLimitKeepsSync(t *testing.T) {
	s := startLimited(t, imapbackend.Options{AppendLimit: 100})
	rc := s.raw(t)
	caps := rc.ok("CAPABILITY")
	if len(grep(caps, "APPENDLIMIT=100")) != 1 || len(grep(caps, "LITERAL+")) != 0 {
		t.Errorf("CAPABILITY = %q, want APPENDLIMIT=100 and no LITERAL+", caps)
	}
	rc.n++
	rc.send(fmt.Sprintf("t%d APPEND INBOX {101}", rc.n))
	if l := rc.readLine(); !strings.HasPrefix(l, fmt.Sprintf("t%d NO [TOOBIG]", rc.n)) {
		t.Fatalf("APPEND of 101 bytes with APPENDLIMIT=100 = %q, want NO [TOOBIG] (and no continuation)", l)
	}
	rc.ok("NOOP")
	msg := "Subject: fits\r\n\r\nsmall\r\n"
	rc.n++
	rc.send(fmt.Sprintf("t%d APPEND INBOX {%d}", rc.n, len(msg)))
	if l := rc.readLine(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND within the limit = %q, want a continuation", l)
	}
	rc.send(msg)
	if l := rc.readLine(); !strings.HasPrefix(l, fmt.Sprintf("t%d OK [APPENDUID ", rc.n)) {
		t.Fatalf("APPEND within the limit = %q, want OK [APPENDUID ...]", l)
	}
	if got := rc.ok("STATUS INBOX (MESSAGES)"); len(got) != 1 || !strings.Contains(got[0], "MESSAGES 1") {
		t.Errorf("STATUS after the APPENDs = %q, want MESSAGES 1", got)
	}
}

// base64PLAIN is the SASL PLAIN initial response for user and pass.
func base64PLAIN(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}
