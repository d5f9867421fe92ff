package imapbackend_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/imapbackend"
)

func TestLoginAndCapabilities(t *testing.T) {
	s := newServer(t, imapbackend.Options{AppendLimit: 1 << 20})

	rc := s.dialRaw(t)
	if _, status := rc.cmd("LOGIN " + testUser + " wrong"); !strings.HasPrefix(status, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("LOGIN with a wrong password = %q, want NO [AUTHENTICATIONFAILED]", status)
	}
	if _, status := rc.cmd("LOGIN nobody " + testPassword); !strings.HasPrefix(status, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("LOGIN of an unknown user = %q, want NO [AUTHENTICATIONFAILED]", status)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPassword))
	rc.ok("AUTHENTICATE PLAIN " + ir)
	caps := strings.Join(rc.ok("CAPABILITY"), " ")
	for _, want := range []string{"IMAP4rev2", "IMAP4rev1", "MOVE", "UIDPLUS", "SPECIAL-USE", "CREATE-SPECIAL-USE", "NAMESPACE", "ESEARCH", "LIST-STATUS", "APPENDLIMIT=1048576"} {
		if !slices.Contains(strings.Fields(caps), want) {
			t.Errorf("CAPABILITY %q lacks %s", caps, want)
		}
	}
	if strings.Contains(caps, "LITERAL+") {
		t.Errorf("CAPABILITY %q advertises LITERAL+", caps)
	}
	if got := rc.ok("NAMESPACE"); !slices.Equal(got, []string{`* NAMESPACE (("" "/")) NIL NIL`}) {
		t.Errorf("NAMESPACE = %q", got)
	}
}

func TestMailboxCommands(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	rc := s.raw(t)

	rc.ok("CREATE Work (USE (\\Flagged))")
	rc.ok("CREATE a/b/c")
	if _, status := rc.cmd("CREATE inbox"); !strings.HasPrefix(status, "NO [ALREADYEXISTS]") {
		t.Errorf("CREATE inbox = %q, want NO [ALREADYEXISTS]", status)
	}
	if _, status := rc.cmd("CREATE Odd (USE (\\Important))"); !strings.HasPrefix(status, "NO [USEATTR]") {
		t.Errorf("CREATE with an unsupported use = %q, want NO [USEATTR]", status)
	}
	list := rc.ok(`LIST "" "*"`)
	for _, want := range []string{
		`* LIST (\HasNoChildren) "/" INBOX`,
		`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
		`* LIST (\HasNoChildren \Flagged) "/" "Work"`,
		`* LIST (\HasChildren) "/" "a"`,
		`* LIST (\HasNoChildren) "/" "a/b/c"`,
	} {
		if !slices.Contains(list, want) {
			t.Errorf("LIST * = %q, lacks %q", list, want)
		}
	}
	if list[0] != `* LIST (\HasNoChildren) "/" INBOX` {
		t.Errorf("LIST * starts with %q, want INBOX first", list[0])
	}
	if got := rc.ok(`LIST "" ""`); !slices.Equal(got, []string{`* LIST (\Noselect) "/" ""`}) {
		t.Errorf(`LIST "" "" = %q`, got)
	}
	if got := rc.ok(`LIST (SPECIAL-USE) "" "*"`); len(got) != 6 {
		t.Errorf("LIST (SPECIAL-USE) = %q, want the 5 default special mailboxes and Work", got)
	}

	rc.ok("RENAME Work Play")
	rc.ok("DELETE Play")
	if _, status := rc.cmd("DELETE Play"); !strings.HasPrefix(status, "NO [NONEXISTENT]") {
		t.Errorf("second DELETE = %q, want NO [NONEXISTENT]", status)
	}
	if _, status := rc.cmd("DELETE INBOX"); !strings.HasPrefix(status, "NO [CANNOT]") {
		t.Errorf("DELETE INBOX = %q, want NO [CANNOT]", status)
	}
	if _, status := rc.cmd("SELECT Nope"); !strings.HasPrefix(status, "NO [NONEXISTENT]") {
		t.Errorf("SELECT Nope = %q, want NO [NONEXISTENT]", status)
	}

	rc.ok("SUBSCRIBE a/b/c")
	if got := rc.ok(`LSUB "" "*"`); len(grep(got, "a/b/c")) != 1 {
		t.Errorf("LSUB after SUBSCRIBE = %q", got)
	}
	if got := rc.ok(`LSUB "" "%"`); !slices.Contains(got, `* LSUB (\Noselect \HasChildren) "/" "a"`) {
		t.Errorf(`LSUB "" "%%" = %q, want a as \Noselect`, got)
	}
	rc.ok("UNSUBSCRIBE a/b/c")
	if got := rc.ok(`LSUB "" "*"`); len(grep(got, "a/b/c")) != 0 {
		t.Errorf("LSUB after UNSUBSCRIBE = %q", got)
	}

	c := s.client(t, nil)
	appendMsg(t, c, "INBOX", testMessage("status"), imap.FlagDeleted)
	got := rc.ok("STATUS inbox (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE APPENDLIMIT)")
	if len(got) != 1 || !strings.HasPrefix(got[0], "* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ") ||
		!strings.Contains(got[0], "UNSEEN 1 DELETED 1 SIZE ") || !strings.Contains(got[0], fmt.Sprintf("APPENDLIMIT %d RECENT 0)", imapbackend.DefaultAppendLimit)) {
		t.Errorf("STATUS = %q", got)
	}
	got = rc.ok(`LIST "" "%" RETURN (STATUS (MESSAGES UNSEEN))`)
	if !slices.Contains(got, "* STATUS INBOX (MESSAGES 1 UNSEEN 1)") || len(grep(got, "* STATUS")) != 7 {
		t.Errorf("LIST RETURN (STATUS) = %q", got)
	}
}

func TestAppendAndFetch(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	raw := testMessage("fetch me")
	if uid := appendMsg(t, c, "INBOX", raw, imap.FlagFlagged, "$Label1"); uid != 1 {
		t.Errorf("APPEND UID = %d, want 1", uid)
	}
	cmd := c.Append("Nope", 3, nil)
	cmd.Write([]byte("x\r\n"))
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Errorf("APPEND to a missing mailbox = %v, want NO [TRYCREATE]", err)
	}

	rc := s.raw(t)
	sel := rc.ok("SELECT INBOX")
	for _, want := range []string{"* 1 EXISTS", "* OK [UNSEEN 1] First unseen message", "* OK [UIDNEXT 2] Predicted next UID"} {
		if !slices.Contains(sel, want) {
			t.Errorf("SELECT = %q, lacks %q", sel, want)
		}
	}
	got := rc.ok("FETCH 1 (UID FLAGS RFC822.SIZE ENVELOPE)")
	if len(got) != 1 || !strings.Contains(got[0], fmt.Sprintf("RFC822.SIZE %d", len(raw))) ||
		!strings.Contains(got[0], `"fetch me"`) || !strings.Contains(got[0], `FLAGS ($Label1 \Flagged)`) {
		t.Errorf("FETCH meta = %q", got)
	}
	got = rc.ok("FETCH 1 (BODYSTRUCTURE BODY)")
	if len(got) != 1 || !strings.Contains(got[0], `BODYSTRUCTURE ("text" "plain"`) {
		t.Errorf("FETCH BODYSTRUCTURE = %q", got)
	}

	sections := []struct{ item, want string }{
		{"BODY.PEEK[]", "BODY[] {" + fmt.Sprint(len(raw)) + "}" + raw},
		{"BODY.PEEK[]<0.4>", "BODY[]<0> {4}From"},
		{"BODY.PEEK[]<5000.10>", "BODY[]<5000> {0}"},
		{"BODY.PEEK[HEADER.FIELDS (Subject)]", `BODY[HEADER.FIELDS ("Subject")] {21}` + "Subject: fetch me\r\n\r\n"},
		{"BODY.PEEK[TEXT]", "BODY[TEXT] {26}Hello, this is fetch me.\r\n"},
		{"BODY.PEEK[1]", "BODY[1] {26}Hello, this is fetch me.\r\n"},
		{"BINARY.PEEK[1]", "BINARY[1] ~{26}Hello, this is fetch me.\r\n"},
		{"BINARY.SIZE[1]", "BINARY.SIZE[1] 26"},
		{"RFC822.HEADER", "RFC822.HEADER {"},
	}
	for _, sec := range sections {
		got := rc.ok("FETCH 1 (" + sec.item + ")")
		if len(got) != 1 || !strings.Contains(got[0], sec.want) {
			t.Errorf("FETCH %s = %q, want it to contain %q", sec.item, got, sec.want)
		}
	}
	if got := rc.ok("FETCH 1 FLAGS"); strings.Contains(got[0], `\Seen`) {
		t.Errorf("PEEK fetches set \\Seen: %q", got)
	}
	got = rc.ok("FETCH 1 BODY[TEXT]")
	if len(got) != 1 || !strings.Contains(got[0], `FLAGS ($Label1 \Flagged \Seen)`) {
		t.Errorf("FETCH BODY[TEXT] = %q, want FLAGS with \\Seen", got)
	}
	if got := rc.ok("NOOP"); len(got) != 0 {
		t.Errorf("NOOP after the \\Seen fetch = %q, want nothing (already reported)", got)
	}
	got = rc.ok("UID FETCH 1 (FLAGS)")
	if len(got) != 1 || !strings.HasPrefix(got[0], "* 1 FETCH (UID 1 FLAGS") {
		t.Errorf("UID FETCH = %q, want the UID first", got)
	}
}

func TestBodyStructureOfEmptyMultipart(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	appendMsg(t, c, "INBOX", "Subject: empty\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\nno parts at all\r\n")
	appendMsg(t, c, "INBOX", "Subject: closed\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX--\r\n")
	rc := s.raw(t)
	rc.ok("SELECT INBOX")
	for _, item := range []string{"BODYSTRUCTURE", "BODY", "BODY.PEEK[1]", "BODY.PEEK[1.MIME]"} {
		if got := rc.ok("FETCH 1:2 (" + item + ")"); len(got) != 2 {
			t.Errorf("FETCH %s = %q, want 2 responses", item, got)
		}
	}
	rc.ok("NOOP")
}

func TestExpungeByOtherDuringFetch(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	b := s.client(t, nil)
	fill(t, b, 3)
	a := s.raw(t)
	a.ok("SELECT INBOX")

	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Expunge().Close(); err != nil {
		t.Fatal(err)
	}

	got := a.ok("FETCH 1:* (UID)")
	if want := []string{"* 1 FETCH (UID 1)", "* 3 FETCH (UID 3)"}; !slices.Equal(got, want) {
		t.Errorf("FETCH 1:* after another session's expunge = %q, want %q (no EXPUNGE during FETCH)", got, want)
	}
	if got := a.ok("FETCH 2 (UID FLAGS)"); len(got) != 0 {
		t.Errorf("FETCH of the expunged message = %q, want nothing", got)
	}
	if _, status := a.cmd("STORE 2 +FLAGS (\\Seen)"); !strings.HasPrefix(status, "OK") {
		t.Errorf("STORE on the expunged message = %q", status)
	}
	if got := a.ok("SEARCH ALL"); !slices.Equal(got, []string{"* SEARCH 1 3"}) {
		t.Errorf("SEARCH ALL = %q, want 1 3 and no EXPUNGE", got)
	}
	if got := a.ok("NOOP"); !slices.Equal(got, []string{"* 2 EXPUNGE"}) {
		t.Errorf("NOOP = %q, want the EXPUNGE now", got)
	}
	if got := a.ok("NOOP"); len(got) != 0 {
		t.Errorf("second NOOP = %q, want nothing", got)
	}
	if got := a.ok("FETCH 2 (UID)"); !slices.Equal(got, []string{"* 2 FETCH (UID 3)"}) {
		t.Errorf("FETCH 2 after the EXPUNGE = %q", got)
	}
}

func TestMoveExpungesOncePerMessage(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	fill(t, c, 4)
	rc := s.raw(t)
	rc.ok("SELECT INBOX")

	got := rc.ok("MOVE 2:3 Archive")
	if len(got) != 3 || !strings.HasPrefix(got[0], "* OK [COPYUID ") || !strings.Contains(got[0], " 2:3 1:2]") ||
		got[1] != "* 3 EXPUNGE" || got[2] != "* 2 EXPUNGE" {
		t.Errorf("MOVE = %q, want COPYUID then EXPUNGE 3 and 2", got)
	}
	if got := rc.ok("NOOP"); len(got) != 0 {
		t.Errorf("NOOP after MOVE = %q, want nothing", got)
	}
	if got := rc.ok("FETCH 1:* (UID)"); !slices.Equal(got, []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 4)"}) {
		t.Errorf("FETCH after MOVE = %q", got)
	}
	got = rc.ok("UID MOVE 4 Archive")
	if len(got) != 2 || got[1] != "* 2 EXPUNGE" {
		t.Errorf("UID MOVE = %q", got)
	}
	if _, status := rc.cmd("MOVE 1 Nope"); !strings.HasPrefix(status, "NO [TRYCREATE]") {
		t.Errorf("MOVE to a missing mailbox = %q, want NO [TRYCREATE]", status)
	}
	if got := rc.ok("STATUS Archive (MESSAGES)"); !slices.Equal(got, []string{`* STATUS "Archive" (MESSAGES 3)`}) {
		t.Errorf("STATUS Archive = %q", got)
	}

	got = rc.ok("COPY 1 INBOX")
	if !slices.Contains(got, "* 2 EXISTS") {
		t.Errorf("COPY into the selected mailbox = %q, want EXISTS", got)
	}
	if _, status := rc.cmd("COPY 1 Nope"); !strings.HasPrefix(status, "NO [TRYCREATE]") {
		t.Errorf("COPY to a missing mailbox = %q, want NO [TRYCREATE]", status)
	}
	if _, status := rc.cmd("COPY 1:2 Sent"); !strings.HasPrefix(status, "OK [COPYUID ") {
		t.Errorf("COPY = %q, want COPYUID", status)
	}
}

func TestStarIsTheClientsLastMessage(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	fill(t, c, 3)
	rc := s.raw(t)
	rc.ok("SELECT INBOX")

	appendMsg(t, c, "INBOX", testMessage("late"))
	got := rc.ok("FETCH * (UID)")
	if want := []string{"* 3 FETCH (UID 3)", "* 4 EXISTS"}; !slices.Equal(got, want) {
		t.Errorf("FETCH * with an unannounced message = %q, want %q", got, want)
	}
	if got := rc.ok("FETCH * (UID)"); !slices.Equal(got, []string{"* 4 FETCH (UID 4)"}) {
		t.Errorf("FETCH * after EXISTS = %q", got)
	}

	appendMsg(t, c, "INBOX", testMessage("later"))
	got = rc.ok("UID FETCH 1:* (UID)")
	if want := []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)", "* 4 FETCH (UID 4)", "* 5 EXISTS"}; !slices.Equal(got, want) {
		t.Errorf("UID FETCH 1:* = %q, want %q", got, want)
	}
	if got := rc.ok("UID FETCH 100:* (UID)"); !slices.Equal(got, []string{"* 5 FETCH (UID 5)"}) {
		t.Errorf("UID FETCH 100:* = %q, want the last message", got)
	}
	if got := rc.ok("SEARCH *"); !slices.Equal(got, []string{"* SEARCH 5"}) {
		t.Errorf("SEARCH * = %q", got)
	}
}

func TestStoreEchoIsNotRepeated(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	fill(t, c, 2)
	rc := s.raw(t)
	rc.ok("SELECT INBOX")

	if got := rc.ok(`STORE 1 +FLAGS (\Flagged)`); !slices.Equal(got, []string{`* 1 FETCH (UID 1 FLAGS (\Flagged))`}) {
		t.Errorf("STORE = %q", got)
	}
	if got := rc.ok("NOOP"); len(got) != 0 {
		t.Errorf("NOOP after STORE = %q, want nothing", got)
	}
	if got := rc.ok(`STORE 2 +FLAGS.SILENT (\Seen)`); len(got) != 0 {
		t.Errorf("STORE .SILENT = %q, want nothing", got)
	}
	if got := rc.ok("NOOP"); len(got) != 0 {
		t.Errorf("NOOP after STORE .SILENT = %q, want nothing", got)
	}
	if got := rc.ok(`UID STORE 1 FLAGS (\Flagged Important)`); !slices.Equal(got, []string{`* 1 FETCH (UID 1 FLAGS (Important \Flagged))`}) {
		t.Errorf("UID STORE = %q", got)
	}
	if _, status := rc.cmd(`STORE 1 +FLAGS (\Bogus)`); !strings.HasPrefix(status, "BAD") {
		t.Errorf("STORE of an unknown system flag = %q, want BAD", status)
	}

	// A change by another session is reported once.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if got := rc.ok("NOOP"); !slices.Equal(got, []string{`* 1 FETCH (UID 1 FLAGS (Important \Answered \Flagged))`}) {
		t.Errorf("NOOP after another session's STORE = %q", got)
	}
	if got := rc.ok("NOOP"); len(got) != 0 {
		t.Errorf("second NOOP = %q, want nothing", got)
	}
}

func TestExamineIsReadOnly(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	appendMsg(t, c, "INBOX", testMessage("deleted"), imap.FlagDeleted)
	appendMsg(t, c, "INBOX", testMessage("unread"))
	rc := s.raw(t)
	if _, status := rc.cmd("EXAMINE INBOX"); !strings.HasPrefix(status, "OK [READ-ONLY]") {
		t.Fatalf("EXAMINE = %q", status)
	}
	for _, cmd := range []string{`STORE 2 +FLAGS (\Seen)`, "EXPUNGE", "UID EXPUNGE 1", "MOVE 1 Archive"} {
		if _, status := rc.cmd(cmd); !strings.HasPrefix(status, "NO") {
			t.Errorf("%s after EXAMINE = %q, want NO", cmd, status)
		}
	}
	if got := rc.ok("FETCH 2 BODY[TEXT]"); len(got) != 1 || strings.Contains(got[0], "FLAGS") {
		t.Errorf("FETCH BODY[] after EXAMINE = %q, want no flag change", got)
	}
	if got := rc.ok("FETCH 2 FLAGS"); !slices.Equal(got, []string{"* 2 FETCH (FLAGS ())"}) {
		t.Errorf("flags after EXAMINE's body fetch = %q, want none", got)
	}
	rc.ok("COPY 1 Archive")
	rc.ok("CLOSE")
	if got := rc.ok("STATUS INBOX (MESSAGES)"); !slices.Equal(got, []string{"* STATUS INBOX (MESSAGES 2)"}) {
		t.Errorf("after CLOSE of EXAMINE: %q, want nothing expunged", got)
	}

	rc.ok("SELECT INBOX")
	rc.ok("CLOSE")
	if got := rc.ok("STATUS INBOX (MESSAGES)"); !slices.Equal(got, []string{"* STATUS INBOX (MESSAGES 1)"}) {
		t.Errorf("after CLOSE of SELECT: %q, want the \\Deleted message gone", got)
	}
}

func TestExpungeOrder(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	for i := 1; i <= 4; i++ {
		appendMsg(t, c, "INBOX", testMessage(fmt.Sprint("doomed ", i)), imap.FlagDeleted)
	}
	rc := s.raw(t)
	rc.ok("SELECT INBOX")
	if got := rc.ok("UID EXPUNGE 2"); !slices.Equal(got, []string{"* 2 EXPUNGE"}) {
		t.Errorf("UID EXPUNGE 2 = %q", got)
	}
	if got := rc.ok("EXPUNGE"); !slices.Equal(got, []string{"* 3 EXPUNGE", "* 2 EXPUNGE", "* 1 EXPUNGE"}) {
		t.Errorf("EXPUNGE = %q, want highest first", got)
	}
	if got := rc.ok("NOOP"); len(got) != 0 {
		t.Errorf("NOOP after EXPUNGE = %q, want nothing", got)
	}
}

func TestSearch(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	for i := 1; i <= 4; i++ {
		var flags []imap.Flag
		if i%2 == 0 {
			flags = []imap.Flag{imap.FlagFlagged}
		}
		appendMsg(t, c, "INBOX", testMessage(fmt.Sprint("message ", i)), flags...)
	}
	rc := s.raw(t)
	rc.ok("SELECT INBOX")
	tests := []struct{ cmd, want string }{
		{"SEARCH FLAGGED", "* SEARCH 2 4"},
		{"UID SEARCH NOT FLAGGED", "* SEARCH 1 3"},
		{`SEARCH OR 1 SUBJECT "message 3"`, "* SEARCH 1 3"},
		{"SEARCH 2:*", "* SEARCH 2 3 4"},
		{"SEARCH 2,4 UNFLAGGED", "* SEARCH"},
		{"SEARCH RECENT", "* SEARCH"},
		{"SEARCH UNSEEN NOT 3", "* SEARCH 1 2 4"},
		{`SEARCH FROM bob`, "* SEARCH 1 2 3 4"},
		{`SEARCH BODY "this is message 2"`, "* SEARCH 2"},
		{"SEARCH UID 3:*", "* SEARCH 3 4"},
	}
	for _, tt := range tests {
		if got := rc.ok(tt.cmd); !slices.Equal(got, []string{tt.want}) {
			t.Errorf("%s = %q, want %q", tt.cmd, got, tt.want)
		}
	}
	got := rc.ok("SEARCH RETURN (MIN MAX COUNT) FLAGGED")
	if len(got) != 1 || !strings.HasSuffix(got[0], "MIN 2 MAX 4 COUNT 2") {
		t.Errorf("SEARCH RETURN (MIN MAX COUNT) = %q", got)
	}
	rc.ok("SEARCH RETURN (SAVE) FLAGGED")
	if got := rc.ok("FETCH $ (UID)"); !slices.Equal(got, []string{"* 2 FETCH (UID 2)", "* 4 FETCH (UID 4)"}) {
		t.Errorf("FETCH $ = %q", got)
	}
	if got := rc.ok(`SEARCH $ SUBJECT "message 4"`); !slices.Equal(got, []string{"* SEARCH 4"}) {
		t.Errorf("SEARCH $ = %q", got)
	}
	rc.ok("SEARCH RETURN (SAVE MIN) FLAGGED")
	if got := rc.ok("UID FETCH $ (FLAGS)"); len(got) != 1 || !strings.HasPrefix(got[0], "* 2 FETCH (UID 2 ") {
		t.Errorf("UID FETCH $ after SAVE MIN = %q", got)
	}
}

func TestAppendLimit(t *testing.T) {
	s := newServer(t, imapbackend.Options{AppendLimit: 100})
	rc := s.raw(t)
	if caps := rc.ok("CAPABILITY"); !strings.Contains(caps[0], "APPENDLIMIT=100") {
		t.Errorf("CAPABILITY = %q, want APPENDLIMIT=100", caps)
	}
	rc.n++
	rc.send(fmt.Sprintf("t%d APPEND INBOX {200}", rc.n))
	if l := rc.readLine(); !strings.HasPrefix(l, fmt.Sprintf("t%d NO [TOOBIG]", rc.n)) {
		t.Errorf("APPEND over the limit = %q, want NO [TOOBIG]", l)
	}
	rc.ok("NOOP")
}

func TestIMAP4rev2Mode(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	fill(t, c, 2)
	rc := s.raw(t)
	rc.ok("ENABLE IMAP4rev2")
	got := rc.ok("SELECT Archive")
	if !slices.Contains(got, `* LIST (\Archive) "/" "Archive"`) {
		t.Errorf("SELECT in IMAP4rev2 mode = %q, want a LIST response", got)
	}
	if len(grep(got, "RECENT")) != 0 || len(grep(got, "UNSEEN")) != 0 {
		t.Errorf("SELECT in IMAP4rev2 mode = %q, want no RECENT or UNSEEN", got)
	}
	rc.ok("SELECT INBOX")
	if got := rc.ok("SEARCH ALL"); len(got) != 1 || !strings.HasSuffix(got[0], "ALL 1:2") {
		t.Errorf("SEARCH in IMAP4rev2 mode = %q, want ESEARCH ALL 1:2", got)
	}
	if got := rc.ok("UID SEARCH SUBJECT nothing"); len(got) != 1 || strings.Contains(got[0], "ALL") {
		t.Errorf("empty UID SEARCH = %q, want ESEARCH without ALL", got)
	}

	plain := s.raw(t)
	if got := plain.ok("SELECT INBOX"); len(grep(got, "* LIST")) != 0 {
		t.Errorf("SELECT in IMAP4rev1 mode = %q, want no LIST response", got)
	}
}
