package imapbackend_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmail/twinmail/imapbackend"
	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

const (
	testUser     = "alice"
	testPassword = "secret-alice"
)

// server is a Backend serving on a loopback port.
type server struct {
	store *store.Store
	acct  store.Account
	addr  string
}

// startServer starts a backend with its own listener on st. Several may share one store, like
// several gateway processes sharing one database.
func startServer(tb testing.TB, st *store.Store, opts imapbackend.Options) *server {
	tb.Helper()
	opts.Store = st
	opts.InsecureAuth = true
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	b := imapbackend.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(ctx) }()
	srv := b.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		srv.Close()
		<-serveDone
		cancel()
		if err := <-runDone; err != nil {
			tb.Errorf("Run = %v", err)
		}
	})
	return &server{store: st, addr: ln.Addr().String()}
}

// newServer starts a backend on a fresh database with the test account.
func newServer(tb testing.TB, opts imapbackend.Options) *server {
	tb.Helper()
	st := storetest.New(tb)
	s := startServer(tb, st, opts)
	acct, err := st.CreateAccount(context.Background(), testUser, testPassword)
	if err != nil {
		tb.Fatalf("CreateAccount: %v", err)
	}
	s.acct = acct
	return s
}

// client dials and logs in with imapclient.
func (s *server) client(tb testing.TB, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	tb.Helper()
	c, err := imapclient.DialInsecure(s.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPassword).Wait(); err != nil {
		tb.Fatalf("LOGIN: %v", err)
	}
	return c
}

// raw dials and logs in with a line-level connection, for checking exact responses.
func (s *server) raw(tb testing.TB) *rawConn {
	tb.Helper()
	rc := s.dialRaw(tb)
	rc.ok("LOGIN " + testUser + " " + testPassword)
	return rc
}

// dialRaw dials a line-level connection and reads the greeting.
func (s *server) dialRaw(tb testing.TB) *rawConn {
	tb.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	rc := &rawConn{tb: tb, c: c, r: bufio.NewReader(c)}
	if greeting := rc.readLine(); !strings.HasPrefix(greeting, "* OK") {
		tb.Fatalf("greeting = %q", greeting)
	}
	return rc
}

// rawConn speaks IMAP line by line. Literals are inlined into their line.
type rawConn struct {
	tb testing.TB
	c  net.Conn
	r  *bufio.Reader
	n  int
}

var literalRE = regexp.MustCompile(`~?\{(\d+)\}$`)

func (rc *rawConn) readLine() string {
	rc.tb.Helper()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var line strings.Builder
	for {
		l, err := rc.r.ReadString('\n')
		if err != nil {
			rc.tb.Fatalf("read response: %v (so far %q)", err, line.String()+l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		line.WriteString(l)
		m := literalRE.FindStringSubmatch(l)
		if m == nil {
			return line.String()
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			rc.tb.Fatalf("read literal: %v", err)
		}
		line.Write(buf)
	}
}

func (rc *rawConn) send(line string) {
	rc.tb.Helper()
	if _, err := io.WriteString(rc.c, line+"\r\n"); err != nil {
		rc.tb.Fatalf("write %q: %v", line, err)
	}
}

// cmd runs a command and returns its untagged responses and the tagged status line.
func (rc *rawConn) cmd(line string) (untagged []string, status string) {
	rc.tb.Helper()
	rc.n++
	tag := fmt.Sprintf("t%d", rc.n)
	rc.send(tag + " " + line)
	for {
		l := rc.readLine()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

// ok runs a command that must succeed and returns its untagged responses.
func (rc *rawConn) ok(line string) []string {
	rc.tb.Helper()
	untagged, status := rc.cmd(line)
	if !strings.HasPrefix(status, "OK") {
		rc.tb.Fatalf("%s: %s (untagged %q)", line, status, untagged)
	}
	return untagged
}

// appendMsg appends a message with imapclient and returns its UID.
func appendMsg(tb testing.TB, c *imapclient.Client, mailbox, raw string, flags ...imap.Flag) imap.UID {
	tb.Helper()
	cmd := c.Append(mailbox, int64(len(raw)), &imap.AppendOptions{Flags: flags})
	if _, err := io.WriteString(cmd, raw); err != nil {
		tb.Fatalf("APPEND write: %v", err)
	}
	if err := cmd.Close(); err != nil {
		tb.Fatalf("APPEND close: %v", err)
	}
	data, err := cmd.Wait()
	if err != nil {
		tb.Fatalf("APPEND: %v", err)
	}
	return data.UID
}

func testMessage(subject string) string {
	return "From: Bob <bob@example.org>\r\n" +
		"To: Alice <alice@example.org>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n" +
		"\r\n" +
		"Hello, this is " + subject + ".\r\n"
}

// fill appends n messages to INBOX.
func fill(tb testing.TB, c *imapclient.Client, n int) {
	tb.Helper()
	for i := 1; i <= n; i++ {
		appendMsg(tb, c, "INBOX", testMessage(fmt.Sprintf("message %d", i)))
	}
}

// waitFor polls f until it returns nil or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("gave up after %v: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// grep returns the lines containing s.
func grep(lines []string, s string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}
