package integration

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twinmail/twinmail/store/storetest"
)

// crlfLines joins lines with CRLF and ends with CRLF.
func crlfLines(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// Parts of nestedMsg, as BODY[section] must return them.
const (
	nestedPlain = "Plain body line one.\r\nPlain body line two."
	nestedHTML  = "<p>HTML body</p>"
	nestedB64   = "AAECAwQFBgcICQ=="
)

// nestedMsg is multipart/mixed { multipart/alternative { text/plain, text/html }, attachment }.
var nestedMsg = crlfLines(
	"From: Alice Example <alice@example.org>",
	"To: Bob <bob@example.net>",
	"Subject: Nested parts",
	"Date: Mon, 02 Jan 2006 15:04:05 +0000",
	"Message-ID: <nested-1@example.org>",
	"MIME-Version: 1.0",
	`Content-Type: multipart/mixed; boundary="outer"`,
	"",
	"This is a multi-part message in MIME format.",
	"--outer",
	`Content-Type: multipart/alternative; boundary="inner"`,
	"",
	"--inner",
	"Content-Type: text/plain; charset=utf-8",
	"",
	"Plain body line one.",
	"Plain body line two.",
	"--inner",
	"Content-Type: text/html; charset=utf-8",
	"",
	nestedHTML,
	"--inner--",
	"--outer",
	"Content-Type: application/octet-stream",
	`Content-Disposition: attachment; filename="data.bin"`,
	"Content-Transfer-Encoding: base64",
	"",
	nestedB64,
	"--outer--",
)

// nestedHeader is nestedMsg's header block including the blank line.
var nestedHeader = string(nestedMsg[:strings.Index(string(nestedMsg), "\r\n\r\n")+4])

// lfOnlyMsg uses bare LF line endings and 8bit bytes (UTF-8 and a few that are not).
var lfOnlyMsg = []byte("From: Carol <carol@example.org>\n" +
	"To: dave@example.net\n" +
	"Subject: LF only\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x80\x94 caf\xc3\xa9\n" +
	"raw bytes: \x01\x02\x7f\x80\xfe\xff end\n" +
	"\n" +
	"last line without newline")

// eightBitMsg has CRLF endings and 8bit content; it must come back byte for byte.
var eightBitMsg = []byte("From: =?utf-8?q?J=C3=BCrgen?= <juergen@example.org>\r\n" +
	"To: erin@example.net\r\n" +
	"Subject: =?utf-8?b?w5xiZXJncsO2w59lbg==?=\r\n" +
	"Content-Type: text/plain; charset=iso-8859-1\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Gr\xfc\xdfe \xa9 \xb1 \xbf\xff\xfe\x01\x1b[0m\r\n" +
	"  trailing spaces   \r\n" +
	"\t tab line\r\n" +
	".\r\n" +
	"..dot-stuffed looking line\r\n" +
	"From the start of a line\r\n")

// bigMsg returns a message of about n bytes of pseudo-random base64-ish lines.
func bigMsg(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var b strings.Builder
	b.WriteString("From: big@example.org\r\nSubject: big message\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := make([]byte, 76)
	for b.Len() < n {
		for i := range line {
			line[i] = alphabet[r.IntN(len(alphabet))]
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

// simpleMsg returns a small text message.
func simpleMsg(subject, from, body string, date time.Time) []byte {
	return crlfLines(
		"From: "+from,
		"To: someone@example.net",
		"Subject: "+subject,
		"Date: "+date.Format(time.RFC1123Z),
		fmt.Sprintf("Message-ID: <%d.%s@example.org>", date.UnixNano(), strings.ReplaceAll(subject, " ", "-")),
		"Content-Type: text/plain; charset=us-ascii",
		"",
		body,
	)
}

// pw is the password addUser gives every test account.
func pw(user string) string { return user + "-secret pass" }

// newServer gives the test a fresh migrated database with the named accounts (password
// pw(name)) and a `twinmail serve` on it.
func newServer(tb testing.TB, users ...string) *server {
	tb.Helper()
	dsn := storetest.DSN(tb)
	for _, u := range users {
		addUser(tb, dsn, u, pw(u))
	}
	return startServer(tb, dsn)
}
