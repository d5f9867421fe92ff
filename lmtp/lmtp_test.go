package lmtp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/twinmail/twinmail/internal/mailparse"
	"github.com/twinmail/twinmail/lmtp"
	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

const testHost = "mx.test"

// serve serves LMTP from st on ln until the test ends.
func serve(tb testing.TB, st *store.Store, ln net.Listener, opts lmtp.Options) {
	tb.Helper()
	opts.Store = st
	opts.Hostname = testHost
	if opts.Logger == nil {
		opts.Logger = storetest.Logger(tb)
	}
	srv := lmtp.New(opts)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("Close() = %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("Serve() = %v", err)
		}
	})
}

func listenTCP(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	return ln
}

// openStore opens another store on dsn, closed when the test ends.
func openStore(tb testing.TB, dsn string) *store.Store {
	tb.Helper()
	st, err := store.Open(context.Background(), dsn, store.Options{BcryptCost: 4})
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(st.Close)
	return st
}

// newServer serves LMTP over TCP on a fresh database and returns its store and address.
func newServer(tb testing.TB, opts lmtp.Options) (*store.Store, string) {
	tb.Helper()
	st := storetest.New(tb)
	ln := listenTCP(tb)
	serve(tb, st, ln, opts)
	return st, ln.Addr().String()
}

func createAccount(tb testing.TB, st *store.Store, name string) store.Account {
	tb.Helper()
	acct, err := st.CreateAccount(context.Background(), name, "pw-"+name)
	if err != nil {
		tb.Fatalf("CreateAccount(%q): %v", name, err)
	}
	return acct
}

// stored is a message as read back from the store.
type stored struct {
	uid    store.UID
	digest string
	raw    string
	env    []byte
}

// messages returns the messages of an account's mailbox, by UID.
func messages(tb testing.TB, st *store.Store, acct store.AccountID, mailbox string) []stored {
	tb.Helper()
	ctx := context.Background()
	m, err := st.GetMailbox(ctx, acct, mailbox)
	if err != nil {
		tb.Fatalf("GetMailbox(%q): %v", mailbox, err)
	}
	var out []stored
	err = st.FetchMeta(ctx, acct, m.ID, store.UIDSet{{Start: 1, Stop: 0}}, store.MetaFields{Envelope: true}, func(mm *store.MessageMeta) error {
		out = append(out, stored{uid: mm.UID, digest: string(mm.Digest), env: append([]byte(nil), mm.Envelope...)})
		return nil
	})
	if err != nil {
		tb.Fatalf("FetchMeta(%q): %v", mailbox, err)
	}
	for i := range out {
		rc, _, err := st.OpenBody(ctx, acct, []byte(out[i].digest))
		if err != nil {
			tb.Fatalf("OpenBody: %v", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			tb.Fatalf("read body: %v", err)
		}
		out[i].raw = string(b)
	}
	return out
}

// client is a raw LMTP dialogue, for exact replies.
type client struct {
	tb testing.TB
	c  *textproto.Conn
}

func dial(tb testing.TB, network, addr string) *client {
	tb.Helper()
	nc, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	nc.SetDeadline(time.Now().Add(time.Minute))
	c := &client{tb: tb, c: textproto.NewConn(nc)}
	tb.Cleanup(func() { c.c.Close() })
	if code, msg := c.read(); code != 220 || !strings.HasPrefix(msg, testHost+" LMTP") {
		tb.Fatalf("greeting = %d %s, want 220 %s LMTP ...", code, msg, testHost)
	}
	return c
}

// read reads one (possibly multi-line) reply.
func (c *client) read() (int, string) {
	c.tb.Helper()
	code, msg, err := c.c.ReadResponse(0)
	if err != nil {
		c.tb.Fatalf("read reply: %v", err)
	}
	return code, msg
}

// cmd sends a command line and returns the reply.
func (c *client) cmd(line string) (int, string) {
	c.tb.Helper()
	if err := c.c.PrintfLine("%s", line); err != nil {
		c.tb.Fatalf("send %q: %v", line, err)
	}
	return c.read()
}

// expect sends a command line and checks the reply's code and text prefix (the enhanced
// status code, usually).
func (c *client) expect(line string, code int, prefix string) string {
	c.tb.Helper()
	got, msg := c.cmd(line)
	if got != code || !strings.HasPrefix(msg, prefix) {
		c.tb.Fatalf("%s: reply %d %s, want %d %s...", line, got, msg, code, prefix)
	}
	return msg
}

// data sends DATA and then wire, which must be dot-stuffed and end with CRLF, and the end
// marker. It returns the n replies that follow.
func (c *client) data(wire string, n int) []string {
	c.tb.Helper()
	c.expect("DATA", 354, "")
	if _, err := c.c.W.WriteString(wire + ".\r\n"); err != nil {
		c.tb.Fatalf("send message: %v", err)
	}
	if err := c.c.W.Flush(); err != nil {
		c.tb.Fatalf("send message: %v", err)
	}
	replies := make([]string, n)
	for i := range replies {
		code, msg := c.read()
		replies[i] = fmt.Sprintf("%d %s", code, msg)
	}
	return replies
}

const testBody = "From: Carol <carol@example.org>\r\n" +
	"To: alice@example.org\r\n" +
	"Subject: Hello\r\n" +
	"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hi Alice,\r\n" +
	".a line that starts with a dot\r\n" +
	"bye\r\n"

// dotStuff returns body as it goes on the wire.
func dotStuff(body string) string {
	body = strings.ReplaceAll(body, "\r\n.", "\r\n..")
	if strings.HasPrefix(body, ".") {
		body = "." + body
	}
	return body
}

var reTrace = regexp.MustCompile(`^Return-Path: <([^>]*)>\r\n` +
	`Received: from (\S+) \(([^)]*)\)\r\n` +
	`\tby mx\.test \(twinmail\) with LMTP id ([A-Z2-7]{12})(?:\r\n\tfor <([^>]*)>)?; ([^\r\n]+)\r\n`)

// trace splits a stored message into its added headers' parts and the original message.
type traceParts struct {
	from, helo, remote, id, forRcpt string
	date                            time.Time
	rest                            string
}

func splitTrace(tb testing.TB, raw string) traceParts {
	tb.Helper()
	m := reTrace.FindStringSubmatch(raw)
	if m == nil {
		tb.Fatalf("stored message does not start with the trace headers:\n%q", raw)
	}
	date, err := mail.ParseDate(m[6])
	if err != nil {
		tb.Fatalf("Received date %q: %v", m[6], err)
	}
	return traceParts{from: m[1], helo: m[2], remote: m[3], id: m[4], forRcpt: m[5], date: date, rest: raw[len(m[0]):]}
}

func TestDeliverOne(t *testing.T) {
	dsn := storetest.DSN(t)
	st := openStore(t, dsn)
	ln := listenTCP(t)
	serve(t, st, ln, lmtp.Options{})
	alice := createAccount(t, st, "alice")

	c := dial(t, "tcp", ln.Addr().String())
	c.expect("HELO client.example", 500, "5.5.1")
	caps := c.expect("LHLO client.example", 250, "")
	for _, want := range []string{"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE "} {
		if !strings.Contains(caps, want) {
			t.Errorf("LHLO reply %q lacks %s", caps, want)
		}
	}
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	before := time.Now().Add(-time.Second)
	replies := c.data(dotStuff(testBody), 1)
	after := time.Now().Add(time.Second)
	if !regexp.MustCompile(`^250 2\.0\.0 <alice@example\.org> Delivered \(id [A-Z2-7]{12}\)$`).MatchString(replies[0]) {
		t.Fatalf("DATA reply = %q, want 250 2.0.0 <alice@example.org> Delivered (id ...)", replies[0])
	}

	// The 250 means committed: another connection pool sees the message at once.
	msgs := messages(t, openStore(t, dsn), alice.ID, "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", len(msgs))
	}
	tr := splitTrace(t, msgs[0].raw)
	if tr.rest != testBody {
		t.Errorf("stored message after the trace headers = %q, want %q", tr.rest, testBody)
	}
	if tr.from != "carol@example.org" || tr.helo != "client.example" || tr.remote != "[127.0.0.1]" || tr.forRcpt != "alice@example.org" {
		t.Errorf("trace = from %q helo %q remote %q for %q, want carol@example.org, client.example, [127.0.0.1], alice@example.org",
			tr.from, tr.helo, tr.remote, tr.forRcpt)
	}
	if !strings.HasSuffix(replies[0], "(id "+tr.id+")") {
		t.Errorf("reply %q does not carry the Received id %s", replies[0], tr.id)
	}
	if tr.date.Before(before) || tr.date.After(after) {
		t.Errorf("Received date = %v, want between %v and %v", tr.date, before, after)
	}
	env, err := mailparse.UnmarshalEnvelope(msgs[0].env)
	if err != nil {
		t.Fatalf("UnmarshalEnvelope: %v", err)
	}
	if env.Subject != "Hello" || env.MessageID != "1@example.org" {
		t.Errorf("envelope subject %q, message-id %q, want Hello, 1@example.org", env.Subject, env.MessageID)
	}

	// The connection goes on: a second transaction, with the null reverse-path.
	c.expect("MAIL FROM:<>", 250, "2.0.0")
	c.expect("RCPT TO:<alice>", 501, "") // go-smtp wants a domain
	c.expect("RCPT TO:<ALICE@example.org>", 550, "5.1.1")
	c.expect("RCPT TO:<alice@other.example>", 250, "2.0.0")
	if r := c.data("Subject: bounce\r\n\r\nx\r\n", 1); !strings.HasPrefix(r[0], "250 2.0.0 <alice@other.example> ") {
		t.Fatalf("DATA reply = %q, want 250", r[0])
	}
	msgs = messages(t, st, alice.ID, "INBOX")
	if len(msgs) != 2 || msgs[0].uid >= msgs[1].uid {
		t.Fatalf("INBOX holds %d messages, want 2 with rising UIDs", len(msgs))
	}
	if tr := splitTrace(t, msgs[1].raw); tr.from != "" || tr.rest != "Subject: bounce\r\n\r\nx\r\n" {
		t.Errorf("second message: Return-Path <%s>, rest %q", tr.from, tr.rest)
	}
	c.expect("QUIT", 221, "2.0.0")
}

func TestRecipients(t *testing.T) {
	st, addr := newServer(t, lmtp.Options{})
	alice := createAccount(t, st, "alice")
	bob := createAccount(t, st, "bob")
	if _, err := st.CreateMailbox(context.Background(), bob.ID, "Lists", ""); err != nil {
		t.Fatalf("CreateMailbox: %v", err)
	}

	c := dial(t, "tcp", addr)
	c.expect("LHLO client.example", 250, "")
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	// Accepted recipients get their reply after DATA, in this order.
	accepted := []string{
		"alice@example.org",
		"bob+Lists@example.org",    // an existing folder
		"alice+NoSuch@example.org", // a missing folder: INBOX
		"alice+inbox@example.org",  // any case of INBOX
		"bob+lists@example.org",    // folder names are case-sensitive: INBOX
	}
	c.expect("RCPT TO:<"+accepted[0]+">", 250, "2.0.0")
	c.expect("RCPT TO:<nobody@example.org>", 550, "5.1.1")
	c.expect("RCPT TO:<"+accepted[1]+">", 250, "2.0.0")
	c.expect("RCPT TO:<nobody+Lists@example.org>", 550, "5.1.1")
	for _, a := range accepted[2:] {
		c.expect("RCPT TO:<"+a+">", 250, "2.0.0")
	}
	replies := c.data(dotStuff(testBody), len(accepted))
	for i, a := range accepted {
		if want := "250 2.0.0 <" + a + "> Delivered"; !strings.HasPrefix(replies[i], want) {
			t.Errorf("reply %d = %q, want %s...", i, replies[i], want)
		}
	}

	aliceInbox := messages(t, st, alice.ID, "INBOX")
	bobLists := messages(t, st, bob.ID, "Lists")
	bobInbox := messages(t, st, bob.ID, "INBOX")
	if len(aliceInbox) != 3 || len(bobLists) != 1 || len(bobInbox) != 1 {
		t.Fatalf("alice INBOX, bob Lists, bob INBOX hold %d, %d, %d messages, want 3, 1, 1",
			len(aliceInbox), len(bobLists), len(bobInbox))
	}
	// One body for all recipients: no per-recipient "for" in Received.
	for _, m := range append(append(aliceInbox, bobLists...), bobInbox...) {
		if m.raw != aliceInbox[0].raw {
			t.Errorf("copies differ:\n%q\n%q", m.raw, aliceInbox[0].raw)
		}
		if tr := splitTrace(t, m.raw); tr.forRcpt != "" || tr.rest != testBody {
			t.Errorf("copy: for <%s>, rest %q; want no for, the message", tr.forRcpt, tr.rest)
		}
	}
	for _, m := range aliceInbox[1:] {
		if m.digest != aliceInbox[0].digest {
			t.Errorf("alice's copies have different bodies")
		}
	}

	// A transaction whose recipients were all refused has nothing to send.
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<nobody@example.org>", 550, "5.1.1")
	c.expect("DATA", 502, "5.5.1")
}

func TestBadAddresses(t *testing.T) {
	st, addr := newServer(t, lmtp.Options{MaxRecipients: 2})
	createAccount(t, st, "alice")
	c := dial(t, "tcp", addr)
	c.expect("LHLO client.example", 250, "")
	c.expect("RCPT TO:<alice@example.org>", 502, "5.5.1") // no MAIL yet
	c.expect("MAIL FROM:<ca\x01rol@example.org>", 553, "5.1.7")
	c.expect("MAIL FROM:<"+strings.Repeat("c", 300)+"@example.org>", 501, "5.1.7")
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	for _, tc := range []struct {
		rcpt   string
		code   int
		prefix string
	}{
		{"<>", 501, "5.5.2"}, // empty: go-smtp's parser refuses it
		{"<" + strings.Repeat("a", 300) + "@example.org>", 501, "5.1.3"},
		{"<\"al\x01ice\"@example.org>", 553, "5.1.3"},
		{"<\"al\xffice\"@example.org>", 553, "5.1.3"},
		{"<alice@example.org>", 250, "2.0.0"},
		{"<alice@example.org>", 250, "2.0.0"}, // a repeated recipient: one copy, two replies
		{"<alice@example.org>", 452, "4.5.3"}, // over MaxRecipients
	} {
		c.expect("RCPT TO:"+tc.rcpt, tc.code, tc.prefix)
	}
	replies := c.data("Subject: x\r\n\r\nx\r\n", 2)
	for i, r := range replies {
		if !strings.HasPrefix(r, "250 2.0.0 <alice@example.org> Delivered") {
			t.Errorf("reply %d = %q, want 250", i, r)
		}
	}
	acct, err := st.LookupAccount(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(messages(t, st, acct.ID, "INBOX")); n != 1 {
		t.Errorf("INBOX holds %d messages, want 1", n)
	}
}

// sized returns a message of exactly n bytes (n >= 64), CRLF-terminated.
func sized(n int) string {
	head := "Subject: sized\r\n\r\n"
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < n {
		line := min(n-b.Len(), 78)
		if line < 2 {
			// cannot happen for the lengths used; keep the CRLF ending
			panic("sized: bad length")
		}
		b.WriteString(strings.Repeat("x", line-2) + "\r\n")
	}
	return b.String()
}

func TestSizeLimit(t *testing.T) {
	const limit = 4096
	st, addr := newServer(t, lmtp.Options{MaxSize: limit})
	alice := createAccount(t, st, "alice")
	createAccount(t, st, "bob")

	c := dial(t, "tcp", addr)
	c.expect("LHLO client.example", 250, "")
	c.expect(fmt.Sprintf("MAIL FROM:<carol@example.org> SIZE=%d", 2*limit), 552, "5.3.4")

	// Over the limit by one byte: 552 for each recipient, nothing stored.
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<bob@example.org>", 250, "2.0.0")
	msg := sized(limit + 1)
	if len(msg) != limit+1 {
		t.Fatalf("sized(%d) has %d bytes", limit+1, len(msg))
	}
	for i, r := range c.data(msg, 2) {
		if !strings.HasPrefix(r, "552 5.3.4 ") {
			t.Errorf("reply %d = %q, want 552 5.3.4", i, r)
		}
	}
	// Far over the limit: refused too, and the connection stays in step.
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	if r := c.data(sized(100*limit), 1); !strings.HasPrefix(r[0], "552 5.3.4 ") {
		t.Errorf("reply = %q, want 552 5.3.4", r[0])
	}
	if n := len(messages(t, st, alice.ID, "INBOX")); n != 0 {
		t.Fatalf("INBOX holds %d messages after refusals, want 0", n)
	}

	// Exactly at the limit, declared with SIZE=: accepted.
	c.expect(fmt.Sprintf("MAIL FROM:<carol@example.org> SIZE=%d", limit), 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	if r := c.data(sized(limit), 1); !strings.HasPrefix(r[0], "250 2.0.0 ") {
		t.Errorf("reply = %q, want 250", r[0])
	}
	msgs := messages(t, st, alice.ID, "INBOX")
	if len(msgs) != 1 || splitTrace(t, msgs[0].raw).rest != sized(limit) {
		t.Fatalf("INBOX holds %d messages, want the one of %d bytes", len(msgs), limit)
	}
}

func TestBareLF(t *testing.T) {
	st, addr := newServer(t, lmtp.Options{})
	alice := createAccount(t, st, "alice")
	c := dial(t, "tcp", addr)
	c.expect("LHLO client.example", 250, "")
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	// Only CRLF.CRLF ends DATA, so the last line ends with CRLF.
	c.data("From: carol@example.org\nSubject: bare LF\n\nline 1\nline 2\r\nline 3\n\nend\r\n", 1)
	msgs := messages(t, st, alice.ID, "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", len(msgs))
	}
	want := "From: carol@example.org\r\nSubject: bare LF\r\n\r\nline 1\r\nline 2\r\nline 3\r\n\r\nend\r\n"
	if got := splitTrace(t, msgs[0].raw).rest; got != want {
		t.Errorf("stored = %q, want %q", got, want)
	}
	env, err := mailparse.UnmarshalEnvelope(msgs[0].env)
	if err != nil || env.Subject != "bare LF" {
		t.Errorf("envelope subject = %q (%v), want %q", env.Subject, err, "bare LF")
	}
}

// TestStoreFailure: when the store fails, the recipient gets 451, never 250.
func TestStoreFailure(t *testing.T) {
	dsn := storetest.DSN(t)
	check := openStore(t, dsn)
	alice := createAccount(t, check, "alice")
	st, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln := listenTCP(t)
	serve(t, st, ln, lmtp.Options{})

	c := dial(t, "tcp", ln.Addr().String())
	c.expect("LHLO client.example", 250, "")
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 250, "2.0.0")
	st.Close() // the database goes away between RCPT and DATA
	if r := c.data(dotStuff(testBody), 1); !strings.HasPrefix(r[0], "451 4.3.0 <alice@example.org> ") {
		t.Errorf("reply = %q, want 451 4.3.0", r[0])
	}
	c.expect("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	c.expect("RCPT TO:<alice@example.org>", 451, "4.3.0")
	if n := len(messages(t, check, alice.ID, "INBOX")); n != 0 {
		t.Errorf("INBOX holds %d messages, want 0", n)
	}
}

// send delivers body to rcpts with go-smtp's LMTP client and returns the replies.
func send(c *smtp.Client, from string, rcpts []string, body string) (map[string]*smtp.DataResponse, error) {
	if err := c.Mail(from, nil); err != nil {
		return nil, fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return nil, fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return nil, fmt.Errorf("DATA: %w", err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		return nil, fmt.Errorf("write message: %w", err)
	}
	return w.CloseWithLMTPResponse()
}

func dialClient(tb testing.TB, network, addr string) *smtp.Client {
	tb.Helper()
	nc, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	c := smtp.NewClientLMTP(nc)
	tb.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example"); err != nil {
		tb.Fatalf("Hello: %v", err)
	}
	return c
}

func TestUnixSocket(t *testing.T) {
	st := storetest.New(t)
	alice := createAccount(t, st, "alice")
	path := filepath.Join(t.TempDir(), "lmtp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	serve(t, st, ln, lmtp.Options{})

	c := dialClient(t, "unix", path)
	resp, err := send(c, "carol@example.org", []string{"alice@example.org"}, testBody)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if r := resp["alice@example.org"]; r == nil || !strings.HasPrefix(r.StatusText, "2.0.0 <alice@example.org> Delivered") {
		t.Errorf("reply = %+v, want Delivered", r)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("Quit: %v", err)
	}
	msgs := messages(t, st, alice.ID, "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", len(msgs))
	}
	if tr := splitTrace(t, msgs[0].raw); tr.remote != "unix socket" || tr.rest != testBody {
		t.Errorf("stored: remote %q, rest %q", tr.remote, tr.rest)
	}
}

func TestConcurrentClients(t *testing.T) {
	const clients, perClient = 8, 20
	st, addr := newServer(t, lmtp.Options{Logger: discard()})
	alice := createAccount(t, st, "alice")

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		c := dialClient(t, "tcp", addr)
		wg.Go(func() {
			for j := range perClient {
				body := fmt.Sprintf("Message-ID: <%d.%d@example.org>\r\nSubject: %d/%d\r\n\r\nhello\r\n", i, j, i, j)
				if _, err := send(c, "carol@example.org", []string{"alice@example.org"}, body); err != nil {
					errs <- fmt.Errorf("client %d message %d: %w", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	msgs := messages(t, st, alice.ID, "INBOX")
	if len(msgs) != clients*perClient {
		t.Fatalf("INBOX holds %d messages, want %d", len(msgs), clients*perClient)
	}
	uids := map[store.UID]bool{}
	ids := map[string]bool{}
	for _, m := range msgs {
		uids[m.uid] = true
		env, err := mailparse.UnmarshalEnvelope(m.env)
		if err != nil {
			t.Fatal(err)
		}
		ids[env.MessageID] = true
	}
	if len(uids) != len(msgs) || len(ids) != len(msgs) {
		t.Errorf("%d messages with %d distinct UIDs and %d distinct Message-IDs", len(msgs), len(uids), len(ids))
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
