package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLimits: the connection caps and the APPENDLIMIT refusal, through serve's flags.
func TestLimits(t *testing.T) {
	t.Parallel()
	s := newServerArgs(t, []string{"alice", "bob"}, "--insecure-auth",
		"--max-conns-per-ip", "3", "--max-conns-per-account", "2", "--append-limit", "1000")

	t.Run("APPENDLIMIT keeps the connection in sync", func(t *testing.T) {
		rc := dialRaw(t, s.Addr)
		rc.mustOK("a1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		caps := capTokens(rc.mustOK("a2", "CAPABILITY"))
		if !containsToken(caps, "APPENDLIMIT=1000") || containsToken(caps, "LITERAL+") {
			t.Errorf("CAPABILITY = %q, want APPENDLIMIT=1000 and no LITERAL+", caps)
		}
		// Refused before the continuation request, so the client never sends the literal.
		if _, final := rc.cmd("a3", "APPEND INBOX {1001}"); !strings.HasPrefix(final, "NO [TOOBIG]") {
			t.Fatalf("APPEND of 1001 bytes with --append-limit 1000 -> %q, want NO [TOOBIG] and no continuation", final)
		}
		rc.alive("a4")
		msg := simpleMsg("fits", "bob@example.org", "small", time.Now())
		if _, final := rc.cmd("a5", fmt.Sprintf("APPEND INBOX {%d}", len(msg))); !strings.HasPrefix(final, "+") {
			t.Fatalf("APPEND within the limit -> %q, want a continuation request", final)
		}
		rc.conn.Write(msg)
		rc.send("")
		if _, final := rc.readUntil("a5"); !strings.HasPrefix(final, "OK [APPENDUID ") {
			t.Fatalf("APPEND within the limit -> %q, want OK [APPENDUID ...]", final)
		}
		if got := rc.mustOK("a6", "STATUS INBOX (MESSAGES)"); len(got) != 1 || !strings.Contains(got[0], "MESSAGES 1") {
			t.Errorf("STATUS INBOX = %q, want MESSAGES 1", got)
		}
		rc.mustOK("a7", "LOGOUT")
	})

	t.Run("connection caps", func(t *testing.T) {
		// The greeting probe and the subtest above may not have been released yet: retry
		// until three connections are all greeted.
		var conns []*rawConn
		waitFor(t, 10*time.Second, func() error {
			for _, rc := range conns {
				rc.conn.Close()
			}
			conns = nil
			for range 3 {
				rc := dialRaw(t, s.Addr)
				conns = append(conns, rc)
				if !strings.HasPrefix(rc.Greeting, "* OK") {
					return fmt.Errorf("greeting %q", rc.Greeting)
				}
			}
			return nil
		})
		conns[0].mustOK("c1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		conns[1].mustOK("c2", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		if _, final := conns[2].cmd("c3", fmt.Sprintf("LOGIN alice %q", pw("alice"))); final != "NO [LIMIT] Too many connections for this account" {
			t.Errorf("third LOGIN of alice -> %q, want NO [LIMIT] Too many connections for this account", final)
		}
		conns[2].mustOK("c4", fmt.Sprintf("LOGIN bob %q", pw("bob")))

		fourth := dialRaw(t, s.Addr)
		if fourth.Greeting != "* BYE [LIMIT] Too many connections from your address" {
			t.Errorf("fourth connection greeted with %q, want * BYE [LIMIT]", fourth.Greeting)
		}
		if l, err := fourth.readLine(); !errors.Is(err, io.EOF) {
			t.Errorf("after the BYE: read %q, %v; want EOF", l, err)
		}
	})
}

func containsToken(tokens []string, want string) bool {
	for _, tok := range tokens {
		if strings.EqualFold(tok, want) {
			return true
		}
	}
	return false
}

// TestLimitsAutologoutAndShutdown: --idle-timeout ends silent connections with BYE on both
// listeners, and SIGTERM says BYE to the rest, without error-level log lines.
func TestLimitsAutologoutAndShutdown(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t)
	imapsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const idle = 2 * time.Second
	s := newServerArgs(t, []string{"alice"}, "--insecure-auth", "--idle-timeout", idle.String(),
		"--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile, "--imaps", imapsAddr)

	login := func(c net.Conn) *bufio.Reader {
		t.Helper()
		r := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if l, err := r.ReadString('\n'); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("greeting %q, %v", l, err)
		}
		fmt.Fprintf(c, "l1 LOGIN alice %q\r\n", pw("alice"))
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("LOGIN: %v", err)
			}
			if strings.HasPrefix(l, "l1 ") {
				if !strings.HasPrefix(l, "l1 OK") {
					t.Fatalf("LOGIN -> %q", l)
				}
				return r
			}
		}
	}
	wantBye := func(what string, c net.Conn, r *bufio.Reader, text string, within time.Duration) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(within))
		l, err := r.ReadString('\n')
		if l != "* BYE "+text+"\r\n" {
			t.Errorf("%s: read %q, %v; want * BYE %s", what, l, err, text)
			return
		}
		if rest, err := io.ReadAll(r); err != nil || len(rest) > 0 {
			t.Errorf("%s: after the BYE read %q, %v; want EOF", what, rest, err)
		}
	}

	plain, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	overTLS, err := tls.Dial("tcp", imapsAddr, cert.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer overTLS.Close()
	start := time.Now()
	plainR, tlsR := login(plain), login(overTLS)
	wantBye("silent plaintext connection", plain, plainR, "Autologout; idle for too long", idle+5*time.Second)
	wantBye("silent IMAPS connection", overTLS, tlsR, "Autologout; idle for too long", idle+5*time.Second)
	if d := time.Since(start); d < idle {
		t.Errorf("autologout after %v, want at least %v", d, idle)
	}

	// Shutdown: a logged-in connection gets BYE.
	busy, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyR := login(busy)
	s.stop(t, syscall.SIGTERM)
	wantBye("connection at shutdown", busy, busyR, "Server shutting down", 5*time.Second)
	var errLines []string
	for l := range bytes.Lines([]byte(s.output.String())) {
		if bytes.Contains(l, []byte("level=ERROR")) {
			errLines = append(errLines, string(l))
		}
	}
	if len(errLines) > 0 {
		t.Errorf("serve logged errors:\n%s", strings.Join(errLines, ""))
	}
}
