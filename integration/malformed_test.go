package integration

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// nestedMultipart returns a message with depth nested multipart/mixed levels.
func nestedMultipart(depth int) []byte {
	var b strings.Builder
	b.WriteString("From: deep@example.org\r\nSubject: deep nesting\r\nMIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ninnermost\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

var brokenMessages = []struct {
	name string
	raw  []byte
}{
	{"multipart with no parts", crlfLines(
		"From: x@example.org",
		"Subject: empty multipart",
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="b1"`,
		"",
		"--b1--",
	)},
	{"multipart whose boundary never occurs", crlfLines(
		"From: x@example.org",
		"Subject: no delimiters",
		`Content-Type: multipart/alternative; boundary="never"`,
		"",
		"just text, no parts at all",
	)},
	{"missing closing boundary", crlfLines(
		"From: x@example.org",
		"Subject: unterminated",
		`Content-Type: multipart/mixed; boundary="b2"`,
		"",
		"--b2",
		"Content-Type: text/plain",
		"",
		"part one",
		"--b2",
		"Content-Type: text/plain",
		"",
		"part two, never closed",
	)},
	{"multipart without boundary parameter", crlfLines(
		"From: x@example.org",
		"Subject: no boundary",
		"Content-Type: multipart/mixed",
		"",
		"--whatever",
		"",
		"text",
	)},
	{"empty multipart inside a multipart", crlfLines(
		"Subject: empty inner",
		`Content-Type: multipart/mixed; boundary="outer"`,
		"",
		"--outer",
		`Content-Type: multipart/alternative; boundary="inner"`,
		"",
		"--inner--",
		"--outer",
		"Content-Type: text/plain",
		"",
		"sibling",
		"--outer--",
	)},
	{"truncated message/rfc822", crlfLines(
		"From: x@example.org",
		"Subject: forwarded",
		"Content-Type: message/rfc822",
		"",
		"Subject: inner",
		`Content-Type: multipart/mixed; boundary="x"`,
		"",
		"--x",
	)},
	{"bad encodings", crlfLines(
		"From: =?bogus-charset?Q?na=ZZme?= <x@example.org>",
		"Subject: =?utf-8?B?!!!notbase64!!!?=",
		"Date: the day after tomorrow",
		"To: undisclosed-recipients:;, @@@, <>",
		`Content-Type: text/plain; charset="no-such-charset"; format=`,
		"Content-Transfer-Encoding: base64",
		"",
		"!!!! this is not base64 ****",
	)},
	{"garbage", []byte("\xff\xfe garbage {}()[] \r\n***\r\n\x01\x02\x03 no header at all\r\n")},
	{"header only, no blank line", []byte("Subject: no body")},
	{"header line without colon", crlfLines(
		"Subject: ok",
		"this line has no colon",
		"From: x@example.org",
		"",
		"body",
	)},
	{"10 KiB unfolded header line", crlfLines(
		"Subject: "+strings.Repeat("long ", 2048),
		"",
		"body",
	)},
	{"50 nested multiparts", nestedMultipart(50)},
}

// TestBrokenMIME: broken messages are accepted as they are and every FETCH item works on them
// without the connection dropping (go-imap panics on an empty multipart BODYSTRUCTURE).
func TestBrokenMIME(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))
	selectMbox(t, c, "INBOX", false)

	uids := map[string]imap.UID{}
	for _, m := range brokenMessages {
		d, err := tryAppend(c, "INBOX", m.raw, nil)
		if err != nil {
			t.Errorf("APPEND %s = %v, want it accepted", m.name, err)
			continue
		}
		uids[m.name] = d.UID
	}
	for _, m := range brokenMessages {
		uid, ok := uids[m.name]
		if !ok {
			continue
		}
		whole := &imap.FetchItemBodySection{Peek: true}
		text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true}
		part1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
		msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
			UID: true, Flags: true, RFC822Size: true, Envelope: true, InternalDate: true,
			BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
			BodySection:   []*imap.FetchItemBodySection{whole, text, part1},
		}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Errorf("%s: FETCH (BODYSTRUCTURE ENVELOPE BODY[] ...) = %d messages, %v", m.name, len(msgs), err)
			if err := c.Noop().Wait(); err != nil {
				t.Fatalf("%s: connection unusable after the FETCH: NOOP = %v", m.name, err)
			}
			continue
		}
		got := msgs[0]
		if got.BodyStructure == nil {
			t.Errorf("%s: no BODYSTRUCTURE", m.name)
		}
		got.BodyStructure.Walk(func(path []int, part imap.BodyStructure) bool {
			if mp, ok := part.(*imap.BodyStructureMultiPart); ok && len(mp.Children) == 0 {
				t.Errorf("%s: BODYSTRUCTURE part %v is a multipart with no children", m.name, path)
			}
			return true
		})
		want := crlf(m.raw)
		if body := section(t, got, whole); !bytes.Equal(body, want) {
			t.Errorf("%s: BODY[] = %d bytes, want the %d appended (first difference at %d)", m.name, len(body), len(want), firstDiff(body, want))
		}
		if got.RFC822Size != int64(len(want)) {
			t.Errorf("%s: RFC822.SIZE = %d, want %d", m.name, got.RFC822Size, len(want))
		}
	}
	// What a syncing client does first: everything for all messages at once.
	if _, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, RFC822Size: true}).Collect(); err != nil {
		t.Errorf("FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE) = %v", err)
	}
	if _, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{Extended: false}}).Collect(); err != nil {
		t.Errorf("FETCH 1:* (BODY) = %v", err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("NOOP after fetching broken messages = %v", err)
	}
	// SEARCH over broken messages works too.
	if _, err := c.UIDSearch(&imap.SearchCriteria{Text: []string{"nothing-matches-this"}}, nil).Wait(); err != nil {
		t.Errorf("SEARCH TEXT over broken messages = %v", err)
	}
}

// TestBadLogin: an unknown user and a wrong password get the same NO, in about the same time.
func TestBadLogin(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	attempt := func(line string) (string, time.Duration) {
		rc := dialRaw(t, s.Addr)
		start := time.Now()
		_, final := rc.cmd("a1", line)
		d := time.Since(start)
		if final == "" || !strings.HasPrefix(final, "NO") {
			t.Errorf("%s -> %q, want NO", line, final)
		}
		rc.alive("a2") // a failed login leaves the connection usable
		return final, d
	}
	plain := func(user, pass string) string {
		return "AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
	}
	var unknownT, wrongT []time.Duration
	for range 3 {
		u, du := attempt(`LOGIN nosuchuser "some password"`)
		w, dw := attempt(`LOGIN alice "some password"`)
		if u != w {
			t.Errorf("LOGIN of an unknown user -> %q, wrong password -> %q; want identical responses", u, w)
		}
		unknownT, wrongT = append(unknownT, du), append(wrongT, dw)
	}
	u, _ := attempt(plain("nosuchuser", "some password"))
	w, _ := attempt(plain("alice", "some password"))
	if u != w {
		t.Errorf("AUTHENTICATE PLAIN of an unknown user -> %q, wrong password -> %q; want identical responses", u, w)
	}
	// Timing: an unknown user must not be answered much faster than a wrong password
	// (skipping the password hash reveals which accounts exist).
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	if mu, mw := med(unknownT), med(wrongT); mw >= 30*time.Millisecond && mu < mw/4 {
		t.Errorf("LOGIN answered an unknown user in %v and a wrong password in %v; the difference reveals which users exist", mu, mw)
	}
	// And the right password still works afterwards.
	rc := dialRaw(t, s.Addr)
	rc.mustOK("ok1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
}

var appendLimitRe = regexp.MustCompile(`(?i)^APPENDLIMIT=(\d+)$`)

// TestMalformedCommands: bad input gets BAD or NO and leaves the connection and its state usable.
func TestMalformedCommands(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))
	appendMsg(t, c, "INBOX", simpleMsg("one", "a@example.org", "x", time.Now()), nil)

	rc := dialRaw(t, s.Addr)
	if _, final := rc.cmd("p1", "LOGIN"); !strings.HasPrefix(final, "BAD") {
		t.Errorf("LOGIN without arguments -> %q, want BAD", final)
	}
	rc.mustOK("p2", fmt.Sprintf("LOGIN alice %q", pw("alice")))
	rc.mustOK("p3", "SELECT INBOX")

	bad := []struct {
		line string
		want []string // acceptable response types
	}{
		{"FETCH", []string{"BAD"}},
		{"FETCH 1", []string{"BAD"}},
		{"UID FETCH 1:* (FLAGS", []string{"BAD"}},
		// go-imap beta.8 reports bad number sets as NO [SERVERBUG] rather than BAD.
		{"FETCH 0 (UID)", []string{"BAD", "NO"}},
		{"FOOBAR baz", []string{"BAD"}},
		{"GARBAGE!!! @@@ ### $$$", []string{"BAD"}},
		{"SELECT", []string{"BAD"}},
		{"STORE 1 +FLAGS", []string{"BAD"}},
		{"STORE 1 FROBNICATE (\\Seen)", []string{"BAD"}},
		{"SEARCH CHARSET KOI8-R TEXT x", []string{"NO", "BAD"}},
		{"SEARCH FROBNICATE", []string{"BAD", "NO"}},
		{"COPY 1", []string{"BAD"}},
		{"STATUS INBOX (NOSUCHITEM)", []string{"BAD"}},
		{"UID EXPUNGE", []string{"BAD"}},
		{"APPEND", []string{"BAD"}},
		{"NOOP extra arguments", []string{"BAD"}},
	}
	for i, tt := range bad {
		tag := fmt.Sprintf("m%d", i)
		_, final := rc.cmd(tag, tt.line)
		if !slices.ContainsFunc(tt.want, func(p string) bool { return strings.HasPrefix(final, p) }) {
			t.Errorf("%s -> %q, want %s", tt.line, final, strings.Join(tt.want, " or "))
		}
	}
	// A literal over 4 KiB on a non-APPEND command is refused: no continuation request, a
	// tagged BAD or NO, and the connection goes on. (go-imap beta.8 drops the refusal and
	// parses the next line as the rest of the command, so h2 may go unanswered; h3 must not.)
	rc.send("h1 CREATE {100000}")
	rc.send("h2 NOOP")
	rc.send("h3 NOOP")
	var h1, h3 string
	for h3 == "" {
		l, err := rc.readLine()
		if err != nil {
			t.Fatalf("after CREATE {100000}: read: %v", err)
		}
		switch {
		case strings.HasPrefix(l, "+"):
			t.Errorf("CREATE {100000} got a continuation request %q, want a refusal", l)
		case strings.HasPrefix(l, "h1 "):
			h1 = strings.TrimPrefix(l, "h1 ")
		case strings.HasPrefix(l, "h2 "):
		case strings.HasPrefix(l, "h3 "):
			h3 = strings.TrimPrefix(l, "h3 ")
		}
	}
	if !strings.HasPrefix(h1, "NO") && !strings.HasPrefix(h1, "BAD") {
		t.Errorf("CREATE {100000} -> %q, want NO or BAD", h1)
	}
	if !strings.HasPrefix(h3, "OK") {
		t.Errorf("NOOP after a refused literal -> %q, want OK", h3)
	}
	// Pipelined commands are answered in order.
	rc.send("q1 NOOP\r\nq2 NOOP")
	if _, f := rc.readUntil("q1"); !strings.HasPrefix(f, "OK") {
		t.Errorf("pipelined q1 NOOP -> %q", f)
	}
	if _, f := rc.readUntil("q2"); !strings.HasPrefix(f, "OK") {
		t.Errorf("pipelined q2 NOOP -> %q", f)
	}
	// Still logged in, still selected.
	untagged := rc.mustOK("z1", "FETCH 1 (UID FLAGS)")
	if len(untagged) == 0 || !strings.HasPrefix(untagged[0], "* 1 FETCH") {
		t.Errorf("FETCH 1 after the malformed commands -> %q, want * 1 FETCH", untagged)
	}

	t.Run("unparsable line", func(t *testing.T) {
		// go-imap beta.8 drops the connection on a line that is not "tag SP atom"; the
		// server must at least stay up for everyone else.
		rc := dialRaw(t, s.Addr)
		rc.mustOK("u1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		rc.send(")(*&^%$ garbage")
		rc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if l, err := rc.readLine(); err == nil && !strings.Contains(l, "BAD") && !strings.HasPrefix(l, "* BYE") {
			t.Errorf("unparsable line -> %q, want BAD, BYE or a closed connection", l)
		}
		other := dialRaw(t, s.Addr)
		other.mustOK("o1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		if err := c.Noop().Wait(); err != nil {
			t.Errorf("another connection after an unparsable line: NOOP = %v", err)
		}
	})

	t.Run("APPENDLIMIT", func(t *testing.T) {
		rc := dialRaw(t, s.Addr)
		rc.mustOK("l1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		limit := int64(100 << 20) // go-imap's default when none is advertised
		for _, tok := range capTokens(rc.mustOK("l2", "CAPABILITY")) {
			if m := appendLimitRe.FindStringSubmatch(tok); m != nil {
				limit, _ = strconv.ParseInt(m[1], 10, 64)
			}
		}
		_, final := rc.cmd("l3", fmt.Sprintf("APPEND INBOX {%d}", limit+1))
		if strings.HasPrefix(final, "+") {
			// The server asked for the literal; it must still refuse it.
			if limit+1 > 64<<20 {
				t.Fatalf("APPEND of %d bytes (limit %d) got a continuation request instead of NO [TOOBIG]", limit+1, limit)
			}
			rc.conn.Write(bytes.Repeat([]byte("x"), int(limit+1)))
			rc.send("")
			_, final = rc.readUntil("l3")
		}
		if !strings.HasPrefix(final, "NO [TOOBIG]") {
			t.Errorf("APPEND of %d bytes with APPENDLIMIT %d -> %q, want NO [TOOBIG]", limit+1, limit, final)
		}
		rc.alive("l4")
		msg := simpleMsg("after toobig", "a@example.org", "x", time.Now())
		if _, final := rc.cmd("l5", fmt.Sprintf("APPEND INBOX {%d}", len(msg))); !strings.HasPrefix(final, "+") {
			t.Fatalf("APPEND after TOOBIG -> %q, want a continuation request", final)
		}
		rc.conn.Write(msg)
		rc.send("")
		if _, final := rc.readUntil("l5"); !strings.HasPrefix(final, "OK [APPENDUID ") {
			t.Errorf("APPEND after TOOBIG -> %q, want OK [APPENDUID ...]", final)
		}
		st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || deref(st.NumMessages) != uint32(2) {
			t.Errorf("STATUS INBOX after the APPENDs = %v, %v; want 2 (nothing of the refused one)", deref(st.NumMessages), err)
		}
	})
}
