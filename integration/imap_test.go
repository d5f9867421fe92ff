package integration

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/twinmail/twinmail/store"
)

var defaultMailboxes = map[string]imap.MailboxAttr{
	"INBOX":   "",
	"Sent":    imap.MailboxAttrSent,
	"Drafts":  imap.MailboxAttrDrafts,
	"Trash":   imap.MailboxAttrTrash,
	"Junk":    imap.MailboxAttrJunk,
	"Archive": imap.MailboxAttrArchive,
}

func listAll(tb testing.TB, c *client, pattern string, opts *imap.ListOptions) map[string]*imap.ListData {
	tb.Helper()
	list, err := c.List("", pattern, opts).Collect()
	if err != nil {
		tb.Fatalf("LIST %q = %v", pattern, err)
	}
	out := map[string]*imap.ListData{}
	for _, l := range list {
		if _, dup := out[l.Mailbox]; dup {
			tb.Errorf("LIST %q returned %q twice", pattern, l.Mailbox)
		}
		out[l.Mailbox] = l
	}
	return out
}

func names(m map[string]*imap.ListData) []string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

// capTokens returns the capability names of a raw "* CAPABILITY ..." line.
func capTokens(untagged []string) []string {
	for _, l := range untagged {
		if strings.HasPrefix(strings.ToUpper(l), "* CAPABILITY ") {
			return strings.Fields(l)[2:]
		}
	}
	return nil
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")

	t.Run("capabilities", func(t *testing.T) {
		rc := dialRaw(t, s.Addr)
		if !strings.HasPrefix(rc.Greeting, "* OK") {
			t.Errorf("greeting = %q, want * OK", rc.Greeting)
		}
		pre := capTokens(rc.mustOK("c1", "CAPABILITY"))
		for _, want := range []string{"IMAP4rev1", "IMAP4rev2", "AUTH=PLAIN"} {
			if !slices.Contains(pre, want) {
				t.Errorf("CAPABILITY before login = %q, missing %s", pre, want)
			}
		}
		if slices.Contains(pre, "LOGINDISABLED") {
			t.Errorf("CAPABILITY before login = %q: LOGINDISABLED despite --insecure-auth", pre)
		}
		rc.mustOK("c2", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		post := capTokens(rc.mustOK("c3", "CAPABILITY"))
		for _, want := range []string{"IMAP4rev1", "IMAP4rev2", "UIDPLUS", "MOVE", "SPECIAL-USE", "IDLE", "ESEARCH", "NAMESPACE", "UNSELECT"} {
			if !slices.Contains(post, want) {
				t.Errorf("CAPABILITY after login = %q, missing %s", post, want)
			}
		}
	})

	t.Run("LOGIN", func(t *testing.T) {
		c := dialNoLogin(t, s.Addr)
		wantNO(t, "LOGIN with a wrong password", c.Login("alice", "wrong").Wait(), "")
		if err := c.Login("alice", pw("alice")).Wait(); err != nil {
			t.Fatalf("LOGIN alice after a failed attempt = %v", err)
		}
		waitState(t, c, imap.ConnStateAuthenticated, "LOGIN")
		if _, ok := listAll(t, c, "*", nil)["INBOX"]; !ok {
			t.Errorf("LIST after LOGIN has no INBOX")
		}
	})

	t.Run("AUTHENTICATE PLAIN", func(t *testing.T) {
		c := dialNoLogin(t, s.Addr)
		err := c.Authenticate(sasl.NewPlainClient("", "alice", "not the password"))
		wantNO(t, "AUTHENTICATE PLAIN with a wrong password", err, "")
		if err := c.Authenticate(sasl.NewPlainClient("", "alice", pw("alice"))); err != nil {
			t.Fatalf("AUTHENTICATE PLAIN alice = %v", err)
		}
		waitState(t, c, imap.ConnStateAuthenticated, "AUTHENTICATE")
		selectMbox(t, c, "INBOX", false)
	})

	t.Run("commands need authentication", func(t *testing.T) {
		rc := dialRaw(t, s.Addr)
		for i, cmd := range []string{"SELECT INBOX", "LIST \"\" *", "STATUS INBOX (MESSAGES)", "CREATE Foo"} {
			tag := fmt.Sprintf("u%d", i)
			if _, final := rc.cmd(tag, cmd); strings.HasPrefix(final, "OK") {
				t.Errorf("%s before login -> %q, want NO or BAD", cmd, final)
			}
		}
		rc.alive("u9")
	})
}

func TestMailboxes(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))

	t.Run("default folders and special-use", func(t *testing.T) {
		got := listAll(t, c, "*", nil)
		if len(got) != len(defaultMailboxes) {
			t.Errorf("LIST \"\" * = %q, want exactly %d default mailboxes", names(got), len(defaultMailboxes))
		}
		for name, attr := range defaultMailboxes {
			l, ok := got[name]
			if !ok {
				t.Errorf("LIST \"\" * = %q, missing %s", names(got), name)
				continue
			}
			if l.Delim != '/' {
				t.Errorf("LIST %s delimiter = %q, want '/'", name, l.Delim)
			}
			if attr != "" && !hasAttr(l.Attrs, attr) {
				t.Errorf("LIST %s attrs = %v, want %s", name, l.Attrs, attr)
			}
		}
		special := listAll(t, c, "*", &imap.ListOptions{SelectSpecialUse: true})
		if want := []string{"Archive", "Drafts", "Junk", "Sent", "Trash"}; !slices.Equal(names(special), want) {
			t.Errorf("LIST (SPECIAL-USE) \"\" * = %q, want %q", names(special), want)
		}
		// Clients that show only subscribed folders (Thunderbird's default) must see them.
		rc := dialRaw(t, s.Addr)
		rc.mustOK("l1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		lsub := strings.Join(rc.mustOK("l2", `LSUB "" "*"`), "\n")
		for name := range defaultMailboxes {
			if !strings.Contains(lsub, name) {
				t.Errorf("LSUB \"\" * = %q, want the default %s subscribed", lsub, name)
			}
		}
	})

	t.Run("NAMESPACE", func(t *testing.T) {
		ns, err := c.Namespace().Wait()
		if err != nil {
			t.Fatalf("NAMESPACE = %v", err)
		}
		if len(ns.Personal) != 1 || ns.Personal[0].Prefix != "" || ns.Personal[0].Delim != '/' {
			t.Errorf("NAMESPACE personal = %+v, want one (\"\" \"/\")", ns.Personal)
		}
		if len(ns.Other) != 0 || len(ns.Shared) != 0 {
			t.Errorf("NAMESPACE other, shared = %+v, %+v, want none", ns.Other, ns.Shared)
		}
	})

	t.Run("CREATE", func(t *testing.T) {
		for _, name := range []string{"Projects", "Projects/Alpha", "Projects/Beta", "Caf\u00e9 & Co", "Spaces in name"} {
			if err := c.Create(name, nil).Wait(); err != nil {
				t.Fatalf("CREATE %q = %v", name, err)
			}
		}
		got := listAll(t, c, "*", nil)
		for _, name := range []string{"Projects", "Projects/Alpha", "Projects/Beta", "Caf\u00e9 & Co", "Spaces in name"} {
			if _, ok := got[name]; !ok {
				t.Errorf("LIST after CREATE = %q, missing %q", names(got), name)
			}
		}
		sub := listAll(t, c, "Projects/%", nil)
		if want := []string{"Projects/Alpha", "Projects/Beta"}; !slices.Equal(names(sub), want) {
			t.Errorf("LIST \"\" Projects/%% = %q, want %q", names(sub), want)
		}
		wantNO(t, "CREATE Projects again", c.Create("Projects", nil).Wait(), imap.ResponseCodeAlreadyExists)
		wantNO(t, "CREATE INBOX", c.Create("INBOX", nil).Wait(), "")
		wantNO(t, "CREATE inbox", c.Create("inbox", nil).Wait(), "")
		if e := imapErr(c.Create("bad*name", nil).Wait()); e == nil {
			t.Errorf("CREATE bad*name succeeded, want NO or BAD")
		}
	})

	t.Run("SUBSCRIBE and UNSUBSCRIBE", func(t *testing.T) {
		if err := c.Subscribe("Projects/Alpha").Wait(); err != nil {
			t.Fatalf("SUBSCRIBE = %v", err)
		}
		subs := listAll(t, c, "*", &imap.ListOptions{SelectSubscribed: true})
		l, ok := subs["Projects/Alpha"]
		if !ok {
			t.Fatalf("LIST (SUBSCRIBED) = %q, missing Projects/Alpha", names(subs))
		}
		if !hasAttr(l.Attrs, imap.MailboxAttrSubscribed) {
			t.Errorf("LIST (SUBSCRIBED) Projects/Alpha attrs = %v, want \\Subscribed", l.Attrs)
		}
		if _, ok := subs["Projects/Beta"]; ok {
			t.Errorf("LIST (SUBSCRIBED) lists unsubscribed Projects/Beta")
		}
		if err := c.Unsubscribe("Projects/Alpha").Wait(); err != nil {
			t.Fatalf("UNSUBSCRIBE = %v", err)
		}
		if _, ok := listAll(t, c, "*", &imap.ListOptions{SelectSubscribed: true})["Projects/Alpha"]; ok {
			t.Errorf("LIST (SUBSCRIBED) still lists Projects/Alpha after UNSUBSCRIBE")
		}
		rc := dialRaw(t, s.Addr)
		rc.mustOK("s1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
		rc.mustOK("s2", "SUBSCRIBE Projects/Beta")
		if lsub := strings.Join(rc.mustOK("s3", `LSUB "" "Projects/*"`), "\n"); !strings.Contains(lsub, "Projects/Beta") || strings.Contains(lsub, "Projects/Alpha") {
			t.Errorf("LSUB \"\" Projects/* = %q, want Projects/Beta only", lsub)
		}
		rc.mustOK("s4", "UNSUBSCRIBE Projects/Beta")
		if lsub := rc.mustOK("s5", `LSUB "" "Projects/*"`); len(lsub) != 0 {
			t.Errorf("LSUB after UNSUBSCRIBE = %q, want nothing", lsub)
		}
	})

	t.Run("STATUS and SELECT", func(t *testing.T) {
		date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		m1, m2, m3 := simpleMsg("one", "a@example.org", "1", date), simpleMsg("two", "b@example.org", "22", date), simpleMsg("three", "c@example.org", "333", date)
		appendMsg(t, c, "Projects", m1, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
		appendMsg(t, c, "Projects", m2, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDeleted}})
		last := appendMsg(t, c, "Projects", m3, nil)

		st, err := c.Status("Projects", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, NumDeleted: true, Size: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS Projects = %v", err)
		}
		if st.NumMessages == nil || *st.NumMessages != 3 {
			t.Errorf("STATUS MESSAGES = %v, want 3", deref(st.NumMessages))
		}
		if st.NumUnseen == nil || *st.NumUnseen != 2 {
			t.Errorf("STATUS UNSEEN = %v, want 2", deref(st.NumUnseen))
		}
		if st.NumDeleted == nil || *st.NumDeleted != 1 {
			t.Errorf("STATUS DELETED = %v, want 1", deref(st.NumDeleted))
		}
		if want := int64(len(m1) + len(m2) + len(m3)); st.Size == nil || *st.Size != want {
			t.Errorf("STATUS SIZE = %v, want %d", deref(st.Size), want)
		}
		if st.UIDNext != last.UID+1 {
			t.Errorf("STATUS UIDNEXT = %d, want %d", st.UIDNext, last.UID+1)
		}
		if st.UIDValidity != last.UIDValidity {
			t.Errorf("STATUS UIDVALIDITY = %d, want APPENDUID's %d", st.UIDValidity, last.UIDValidity)
		}
		wantNO(t, "STATUS of a missing mailbox", func() error { _, err := c.Status("Nope", &imap.StatusOptions{NumMessages: true}).Wait(); return err }(), imap.ResponseCodeNonExistent)

		sel := selectMbox(t, c, "Projects", false)
		if sel.NumMessages != 3 || sel.UIDNext != last.UID+1 || sel.UIDValidity != last.UIDValidity {
			t.Errorf("SELECT Projects = %d EXISTS, UIDNEXT %d, UIDVALIDITY %d; want 3, %d, %d", sel.NumMessages, sel.UIDNext, sel.UIDValidity, last.UID+1, last.UIDValidity)
		}
		for _, f := range []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft} {
			if !hasFlag(sel.Flags, f) {
				t.Errorf("SELECT FLAGS = %v, missing %s", sel.Flags, f)
			}
		}
		if !hasFlag(sel.PermanentFlags, imap.FlagWildcard) {
			t.Errorf("SELECT PERMANENTFLAGS = %v, want \\* (keywords allowed)", sel.PermanentFlags)
		}
		if err := c.Unselect().Wait(); err != nil {
			t.Fatalf("UNSELECT = %v", err)
		}
		wantNO(t, "SELECT of a missing mailbox", func() error { _, err := c.Select("Nope", nil).Wait(); return err }(), imap.ResponseCodeNonExistent)
	})

	t.Run("RENAME", func(t *testing.T) {
		before, err := c.Status("Projects", &imap.StatusOptions{NumMessages: true, UIDValidity: true, UIDNext: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS Projects = %v", err)
		}
		appendMsg(t, c, "Projects/Alpha", simpleMsg("alpha", "a@example.org", "alpha body", time.Now()), nil)
		if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
			t.Fatalf("RENAME Projects Work = %v", err)
		}
		got := listAll(t, c, "*", nil)
		for _, name := range []string{"Work", "Work/Alpha", "Work/Beta"} {
			if _, ok := got[name]; !ok {
				t.Errorf("LIST after RENAME = %q, missing %q", names(got), name)
			}
		}
		for _, name := range []string{"Projects", "Projects/Alpha", "Projects/Beta"} {
			if _, ok := got[name]; ok {
				t.Errorf("LIST after RENAME = %q, still has %q", names(got), name)
			}
		}
		after, err := c.Status("Work", &imap.StatusOptions{NumMessages: true, UIDValidity: true, UIDNext: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS Work = %v", err)
		}
		if deref(after.NumMessages) != deref(before.NumMessages) || after.UIDValidity != before.UIDValidity || after.UIDNext != before.UIDNext {
			t.Errorf("STATUS after RENAME = %d msgs, UIDVALIDITY %d, UIDNEXT %d; before %d, %d, %d",
				deref(after.NumMessages), after.UIDValidity, after.UIDNext, deref(before.NumMessages), before.UIDValidity, before.UIDNext)
		}
		alpha, err := c.Status("Work/Alpha", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || deref(alpha.NumMessages) != uint32(1) {
			t.Errorf("STATUS Work/Alpha = %v, %v; want 1 message carried by the rename", deref(alpha.NumMessages), err)
		}
		wantNO(t, "RENAME onto an existing mailbox", c.Rename("Work", "Sent", nil).Wait(), imap.ResponseCodeAlreadyExists)
		wantNO(t, "RENAME of a missing mailbox", c.Rename("Nope", "Nope2", nil).Wait(), imap.ResponseCodeNonExistent)
	})

	t.Run("RENAME INBOX", func(t *testing.T) {
		appendMsg(t, c, "INBOX", simpleMsg("inbox msg", "a@example.org", "x", time.Now()), nil)
		if err := c.Rename("INBOX", "Old Inbox", nil).Wait(); err != nil {
			t.Fatalf("RENAME INBOX = %v", err)
		}
		in, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || deref(in.NumMessages) != uint32(0) {
			t.Errorf("STATUS INBOX after RENAME INBOX = %v, %v; want an existing, empty INBOX", deref(in.NumMessages), err)
		}
		old, err := c.Status("Old Inbox", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || deref(old.NumMessages) != uint32(1) {
			t.Errorf("STATUS \"Old Inbox\" = %v, %v; want the 1 former INBOX message", deref(old.NumMessages), err)
		}
	})

	t.Run("DELETE", func(t *testing.T) {
		if err := c.Delete("Work/Beta").Wait(); err != nil {
			t.Fatalf("DELETE Work/Beta = %v", err)
		}
		if _, ok := listAll(t, c, "*", nil)["Work/Beta"]; ok {
			t.Errorf("LIST still has Work/Beta after DELETE")
		}
		wantNO(t, "DELETE of a missing mailbox", c.Delete("Work/Beta").Wait(), imap.ResponseCodeNonExistent)
		wantNO(t, "DELETE INBOX", c.Delete("INBOX").Wait(), "")
		if _, ok := listAll(t, c, "*", nil)["INBOX"]; !ok {
			t.Errorf("INBOX gone after a refused DELETE INBOX")
		}
	})
}

// waitState waits for the client to record state after cmd: imapclient updates its state
// just after Wait returns.
func waitState(tb testing.TB, c *client, want imap.ConnState, cmd string) {
	tb.Helper()
	waitFor(tb, 5*time.Second, func() error {
		if st := c.State(); st != want {
			return fmt.Errorf("client state after %s = %v, want %v", cmd, st, want)
		}
		return nil
	})
}

func deref[T any](p *T) any {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// section returns the bytes of a body section a FETCH returned, failing if it is missing.
func section(tb testing.TB, m *imapclient.FetchMessageBuffer, sec *imap.FetchItemBodySection) []byte {
	tb.Helper()
	for _, s := range m.BodySection {
		if s.Section.Specifier == sec.Specifier && slices.Equal(s.Section.Part, sec.Part) &&
			len(s.Section.HeaderFields) == len(sec.HeaderFields) && len(s.Section.HeaderFieldsNot) == len(sec.HeaderFieldsNot) &&
			(s.Section.Partial == nil) == (sec.Partial == nil) && (sec.Partial == nil || s.Section.Partial.Offset == sec.Partial.Offset) {
			return s.Bytes
		}
	}
	tb.Errorf("FETCH response of UID %d has no section %+v", m.UID, sec)
	return nil
}

// headerLines splits a header block into its lines (without CRLF), requiring the block to
// end with an empty line.
func headerLines(tb testing.TB, what string, b []byte) []string {
	tb.Helper()
	s := string(b)
	if !strings.HasSuffix(s, "\r\n\r\n") && s != "\r\n" {
		tb.Errorf("%s = %q, want a header block ending in an empty line", what, s)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\r\n\r\n"), "\r\n")
	sort.Strings(lines)
	return lines
}

func TestAppendFetch(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))
	selectMbox(t, c, "INBOX", false)

	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.FixedZone("", 2*3600))
	nested := appendMsg(t, c, "INBOX", nestedMsg, &imap.AppendOptions{Time: date})

	t.Run("exact bytes", func(t *testing.T) {
		big := bigMsg(600<<10, 1)
		tests := []struct {
			name string
			raw  []byte
			want []byte
		}{
			{"nested multipart", nestedMsg, nestedMsg},
			{"8bit CRLF", eightBitMsg, eightBitMsg},
			// Stored with CRLF endings (RFC 5322 on the wire): bare LFs become CRLF, nothing else changes.
			{"LF only, 8bit", lfOnlyMsg, crlf(lfOnlyMsg)},
			{"600 KiB", big, big},
		}
		for _, tt := range tests {
			uid := nested.UID
			if tt.name != "nested multipart" {
				uid = appendMsg(t, c, "INBOX", tt.raw, nil).UID
			}
			whole := &imap.FetchItemBodySection{Peek: true}
			m := fetchOne(t, c, uid, &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{whole}})
			got := section(t, m, whole)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("%s: BODY[] differs from what was appended (got %d bytes, want %d); first difference at %d",
					tt.name, len(got), len(tt.want), firstDiff(got, tt.want))
			}
			if m.RFC822Size != int64(len(tt.want)) {
				t.Errorf("%s: RFC822.SIZE = %d, want %d", tt.name, m.RFC822Size, len(tt.want))
			}
		}
	})

	t.Run("FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE", func(t *testing.T) {
		m := fetchOne(t, c, nested.UID, &imap.FetchOptions{Flags: true, UID: true, InternalDate: true, RFC822Size: true, Envelope: true})
		if m.UID != nested.UID {
			t.Errorf("UID = %d, want %d", m.UID, nested.UID)
		}
		if len(m.Flags) != 0 {
			t.Errorf("FLAGS = %v, want none", m.Flags)
		}
		if !m.InternalDate.Equal(date) {
			t.Errorf("INTERNALDATE = %v, want %v (the APPEND date)", m.InternalDate, date)
		}
		if m.RFC822Size != int64(len(nestedMsg)) {
			t.Errorf("RFC822.SIZE = %d, want %d", m.RFC822Size, len(nestedMsg))
		}
		env := m.Envelope
		if env == nil {
			t.Fatalf("no ENVELOPE")
		}
		if env.Subject != "Nested parts" || env.MessageID != "nested-1@example.org" {
			t.Errorf("ENVELOPE subject, message-id = %q, %q", env.Subject, env.MessageID)
		}
		if !env.Date.Equal(time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)) {
			t.Errorf("ENVELOPE date = %v", env.Date)
		}
		if len(env.From) != 1 || env.From[0] != (imap.Address{Name: "Alice Example", Mailbox: "alice", Host: "example.org"}) {
			t.Errorf("ENVELOPE from = %+v", env.From)
		}
		if len(env.To) != 1 || env.To[0].Addr() != "bob@example.net" {
			t.Errorf("ENVELOPE to = %+v", env.To)
		}
		// RFC 3501: an absent Sender and Reply-To default to From.
		if len(env.Sender) != 1 || env.Sender[0].Addr() != "alice@example.org" || len(env.ReplyTo) != 1 || env.ReplyTo[0].Addr() != "alice@example.org" {
			t.Errorf("ENVELOPE sender, reply-to = %+v, %+v, want From", env.Sender, env.ReplyTo)
		}

		u8 := appendMsg(t, c, "INBOX", eightBitMsg, nil)
		m = fetchOne(t, c, u8.UID, &imap.FetchOptions{Envelope: true})
		if m.Envelope == nil || m.Envelope.Subject != "Übergrößen" || len(m.Envelope.From) != 1 || m.Envelope.From[0].Name != "Jürgen" {
			t.Errorf("ENVELOPE of an RFC 2047 message = %+v, want subject Übergrößen from Jürgen", m.Envelope)
		}
		// An APPEND without a date gets about now.
		if m := fetchOne(t, c, u8.UID, &imap.FetchOptions{InternalDate: true}); time.Since(m.InternalDate).Abs() > 5*time.Minute {
			t.Errorf("INTERNALDATE of an APPEND without date = %v, want about now", m.InternalDate)
		}
	})

	t.Run("BODYSTRUCTURE", func(t *testing.T) {
		m := fetchOne(t, c, nested.UID, &imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{Extended: true}})
		mixed, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
		if !ok || !strings.EqualFold(mixed.Subtype, "mixed") || len(mixed.Children) != 2 {
			t.Fatalf("BODYSTRUCTURE = %#v, want multipart/mixed with 2 children", m.BodyStructure)
		}
		alt, ok := mixed.Children[0].(*imap.BodyStructureMultiPart)
		if !ok || !strings.EqualFold(alt.Subtype, "alternative") || len(alt.Children) != 2 {
			t.Fatalf("BODYSTRUCTURE part 1 = %#v, want multipart/alternative with 2 children", mixed.Children[0])
		}
		plain, ok1 := alt.Children[0].(*imap.BodyStructureSinglePart)
		html, ok2 := alt.Children[1].(*imap.BodyStructureSinglePart)
		if !ok1 || !ok2 || plain.MediaType() != "text/plain" || html.MediaType() != "text/html" {
			t.Fatalf("BODYSTRUCTURE parts 1.1, 1.2 = %#v, %#v, want text/plain, text/html", alt.Children[0], alt.Children[1])
		}
		if plain.Size != uint32(len(nestedPlain)) || html.Size != uint32(len(nestedHTML)) {
			t.Errorf("BODYSTRUCTURE sizes of 1.1, 1.2 = %d, %d, want %d, %d", plain.Size, html.Size, len(nestedPlain), len(nestedHTML))
		}
		if !strings.EqualFold(plain.Params["charset"], "utf-8") {
			t.Errorf("BODYSTRUCTURE 1.1 params = %v, want charset utf-8", plain.Params)
		}
		att, ok := mixed.Children[1].(*imap.BodyStructureSinglePart)
		if !ok || att.MediaType() != "application/octet-stream" || !strings.EqualFold(att.Encoding, "base64") || att.Size != uint32(len(nestedB64)) {
			t.Fatalf("BODYSTRUCTURE part 2 = %#v, want application/octet-stream base64 of %d bytes", mixed.Children[1], len(nestedB64))
		}
		if d := att.Disposition(); d == nil || !strings.EqualFold(d.Value, "attachment") || d.Params["filename"] != "data.bin" {
			t.Errorf("BODYSTRUCTURE part 2 disposition = %+v, want attachment filename=data.bin", d)
		}
	})

	t.Run("sections and partials", func(t *testing.T) {
		secs := map[string]*imap.FetchItemBodySection{
			"1.1":               {Part: []int{1, 1}, Peek: true},
			"1.2":               {Part: []int{1, 2}, Peek: true},
			"2":                 {Part: []int{2}, Peek: true},
			"HEADER":            {Specifier: imap.PartSpecifierHeader, Peek: true},
			"TEXT":              {Specifier: imap.PartSpecifierText, Peek: true},
			"HEADER.FIELDS":     {Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "From"}, Peek: true},
			"HEADER.FIELDS.NOT": {Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject", "From"}, Peek: true},
			"<10.20>":           {Partial: &imap.SectionPartial{Offset: 10, Size: 20}, Peek: true},
			"1.1<6.4>":          {Part: []int{1, 1}, Partial: &imap.SectionPartial{Offset: 6, Size: 4}, Peek: true},
			"<beyond end>":      {Partial: &imap.SectionPartial{Offset: int64(len(nestedMsg)) - 5, Size: 100}, Peek: true},
		}
		var list []*imap.FetchItemBodySection
		for _, s := range secs {
			list = append(list, s)
		}
		m := fetchOne(t, c, nested.UID, &imap.FetchOptions{UID: true, BodySection: list})
		text := string(nestedMsg[len(nestedHeader):])
		exact := map[string]string{
			"1.1":          nestedPlain,
			"1.2":          nestedHTML,
			"2":            nestedB64,
			"HEADER":       nestedHeader,
			"TEXT":         text,
			"<10.20>":      string(nestedMsg[10:30]),
			"1.1<6.4>":     nestedPlain[6:10],
			"<beyond end>": string(nestedMsg[len(nestedMsg)-5:]),
		}
		for name, want := range exact {
			if got := string(section(t, m, secs[name])); got != want {
				t.Errorf("BODY[%s] = %q, want %q", name, got, want)
			}
		}
		got := headerLines(t, "BODY[HEADER.FIELDS (Subject From)]", section(t, m, secs["HEADER.FIELDS"]))
		if want := []string{"From: Alice Example <alice@example.org>", "Subject: Nested parts"}; !slices.Equal(got, want) {
			t.Errorf("BODY[HEADER.FIELDS (Subject From)] lines = %q, want %q", got, want)
		}
		got = headerLines(t, "BODY[HEADER.FIELDS.NOT (Subject From)]", section(t, m, secs["HEADER.FIELDS.NOT"]))
		want := headerLines(t, "header", []byte(nestedHeader))
		want = slices.DeleteFunc(want, func(l string) bool { return strings.HasPrefix(l, "Subject:") || strings.HasPrefix(l, "From:") })
		if !slices.Equal(got, want) {
			t.Errorf("BODY[HEADER.FIELDS.NOT (Subject From)] lines = %q, want %q", got, want)
		}

		// Peeking did not set \Seen.
		if f := fetchOne(t, c, nested.UID, &imap.FetchOptions{Flags: true}).Flags; hasFlag(f, imap.FlagSeen) {
			t.Errorf("FLAGS after BODY.PEEK fetches = %v, want no \\Seen", f)
		}
	})

	t.Run("non-PEEK fetch sets Seen", func(t *testing.T) {
		sec := &imap.FetchItemBodySection{Part: []int{1, 2}}
		m := fetchOne(t, c, nested.UID, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}})
		if got := string(section(t, m, sec)); got != nestedHTML {
			t.Errorf("BODY[1.2] = %q, want %q", got, nestedHTML)
		}
		if f := fetchOne(t, c, nested.UID, &imap.FetchOptions{Flags: true}).Flags; !hasFlag(f, imap.FlagSeen) {
			t.Errorf("FLAGS after FETCH BODY[1.2] = %v, want \\Seen", f)
		}
	})

	t.Run("APPEND flags and errors", func(t *testing.T) {
		d := appendMsg(t, c, "INBOX", simpleMsg("flagged", "a@example.org", "x", time.Now()), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged, "$Label1"}})
		f := fetchOne(t, c, d.UID, &imap.FetchOptions{Flags: true}).Flags
		if !hasFlag(f, imap.FlagFlagged) || !hasFlag(f, "$Label1") || hasFlag(f, imap.FlagSeen) || len(f) != 2 {
			t.Errorf("FLAGS of a message appended with (\\Flagged $Label1) = %v", f)
		}
		_, err := tryAppend(c, "No Such Folder", simpleMsg("x", "a@example.org", "x", time.Now()), nil)
		wantNO(t, "APPEND to a missing mailbox", err, imap.ResponseCodeTryCreate)
		// The selected mailbox learns of its own APPENDs.
		waitFor(t, 5*time.Second, func() error {
			if err := c.Noop().Wait(); err != nil {
				return err
			}
			st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
			if err != nil {
				return err
			}
			if n := c.Mailbox().NumMessages; n != *st.NumMessages {
				return fmt.Errorf("selected INBOX EXISTS = %d, STATUS MESSAGES = %d", n, *st.NumMessages)
			}
			return nil
		})
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestStoreSearch(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))

	day := func(m int) time.Time { return time.Date(2020, time.Month(m), 10, 12, 0, 0, 0, time.UTC) }
	msgs := []struct {
		raw   []byte
		flags []imap.Flag
		date  time.Time
	}{
		{simpleMsg("apple pie", "alice@example.org", "delicious crust", day(1)), []imap.Flag{imap.FlagSeen}, day(1)},
		{simpleMsg("banana split", "bob@example.org", "ice cream", day(2)), []imap.Flag{imap.FlagFlagged}, day(2)},
		{simpleMsg("cherry tart", "alice@example.org", "crust and cherries\r\n"+strings.Repeat("padding line\r\n", 600), day(3)), nil, day(3)},
		{append([]byte("X-Custom: yes\r\n"), simpleMsg("Apple crumble", "carol@example.org", "oven", day(4))...), []imap.Flag{imap.FlagDeleted}, day(4)},
	}
	var uid []imap.UID
	for _, m := range msgs {
		uid = append(uid, appendMsg(t, c, "INBOX", m.raw, &imap.AppendOptions{Flags: m.flags, Time: m.date}).UID)
	}
	selectMbox(t, c, "INBOX", false)

	t.Run("SEARCH", func(t *testing.T) {
		u := func(i ...int) []imap.UID {
			out := []imap.UID{}
			for _, x := range i {
				out = append(out, uid[x])
			}
			return out
		}
		tests := []struct {
			name string
			c    imap.SearchCriteria
			want []imap.UID
		}{
			{"ALL", imap.SearchCriteria{}, u(0, 1, 2, 3)},
			{"SUBJECT apple", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "apple"}}}, u(0, 3)},
			{"FROM alice", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "alice"}}}, u(0, 2)},
			{"HEADER X-Custom present", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "X-Custom", Value: ""}}}, u(3)},
			{"BODY crust", imap.SearchCriteria{Body: []string{"crust"}}, u(0, 2)},
			{"TEXT cream", imap.SearchCriteria{Text: []string{"cream"}}, u(1)},
			{"TEXT banana (header)", imap.SearchCriteria{Text: []string{"BANANA"}}, u(1)},
			{"SEEN", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, u(0)},
			{"UNSEEN", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, u(1, 2, 3)},
			{"DELETED", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, u(3)},
			{"LARGER 5000", imap.SearchCriteria{Larger: 5000}, u(2)},
			{"SMALLER 5000", imap.SearchCriteria{Smaller: 5000}, u(0, 1, 3)},
			{"SINCE 1-Feb-2020", imap.SearchCriteria{Since: time.Date(2020, 2, 1, 0, 0, 0, 0, time.UTC)}, u(1, 2, 3)},
			{"BEFORE 1-Feb-2020", imap.SearchCriteria{Before: time.Date(2020, 2, 1, 0, 0, 0, 0, time.UTC)}, u(0)},
			{"SENTSINCE 1-Mar-2020", imap.SearchCriteria{SentSince: time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC)}, u(2, 3)},
			{"NOT SUBJECT apple", imap.SearchCriteria{Not: []imap.SearchCriteria{{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "apple"}}}}}, u(1, 2)},
			{"OR SUBJECT banana FROM alice", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{
				{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "banana"}}},
				{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "alice"}}},
			}}}, u(0, 1, 2)},
			{"SEEN SUBJECT apple", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}, Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "apple"}}}, u(0)},
			{"UID 2:3 relative", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: uid[1], Stop: uid[2]}}}}, u(1, 2)},
			{"UID n:*", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: uid[2], Stop: 0}}}}, u(2, 3)},
			{"seq 1:2", imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(1, 2)}}, u(0, 1)},
			{"no match", imap.SearchCriteria{Body: []string{"zzz-nothing"}}, u()},
		}
		for _, tt := range tests {
			data, err := c.UIDSearch(&tt.c, nil).Wait()
			if err != nil {
				t.Errorf("UID SEARCH %s = %v", tt.name, err)
				continue
			}
			got := data.AllUIDs()
			if got == nil {
				got = []imap.UID{}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("UID SEARCH %s = %v, want %v", tt.name, got, tt.want)
			}
		}
		data, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "apple"}}}, nil).Wait()
		if err != nil || !slices.Equal(data.AllSeqNums(), []uint32{1, 4}) {
			t.Errorf("SEARCH SUBJECT apple = %v, %v, want seqnums [1 4]", data.AllSeqNums(), err)
		}
		data, err = c.UIDSearch(&imap.SearchCriteria{}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
		if err != nil || data.Min != uint32(uid[0]) || data.Max != uint32(uid[3]) || data.Count != 4 {
			t.Errorf("UID SEARCH RETURN (MIN MAX COUNT) ALL = %+v, %v; want min %d max %d count 4", data, err, uid[0], uid[3])
		}
	})

	t.Run("STORE", func(t *testing.T) {
		flagsOf := func(u imap.UID) []imap.Flag {
			return fetchOne(t, c, u, &imap.FetchOptions{Flags: true}).Flags
		}
		res, err := c.Store(imap.UIDSetNum(uid[1]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered, "$Work"}}, nil).Collect()
		if err != nil || len(res) != 1 || !hasFlag(res[0].Flags, imap.FlagAnswered) || !hasFlag(res[0].Flags, "$Work") || !hasFlag(res[0].Flags, imap.FlagFlagged) {
			t.Errorf("UID STORE +FLAGS (\\Answered $Work) = %v, %v; want one FETCH with \\Flagged \\Answered $Work", res, err)
		}
		// Keywords are case-insensitive: a second spelling must not add a second flag.
		if _, err := c.Store(imap.UIDSetNum(uid[1]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{"$WORK"}}, nil).Collect(); err != nil {
			t.Errorf("STORE +FLAGS ($WORK) = %v", err)
		}
		n := 0
		for _, f := range flagsOf(uid[1]) {
			if strings.EqualFold(string(f), "$work") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("FLAGS after +$Work and +$WORK = %v, want the keyword once", flagsOf(uid[1]))
		}
		if _, err := c.Store(imap.UIDSetNum(uid[1]), &imap.StoreFlags{Op: imap.StoreFlagsDel, Flags: []imap.Flag{imap.FlagFlagged, "$work"}}, nil).Collect(); err != nil {
			t.Errorf("STORE -FLAGS = %v", err)
		}
		if f := flagsOf(uid[1]); len(f) != 1 || !hasFlag(f, imap.FlagAnswered) {
			t.Errorf("FLAGS after -FLAGS (\\Flagged $work) = %v, want (\\Answered)", f)
		}
		if _, err := c.Store(imap.SeqSetNum(1, 2, 3), &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: []imap.Flag{imap.FlagDraft}}, nil).Collect(); err != nil {
			t.Errorf("STORE 1:3 FLAGS (\\Draft) = %v", err)
		}
		for _, u := range uid[:3] {
			if f := flagsOf(u); len(f) != 1 || !hasFlag(f, imap.FlagDraft) {
				t.Errorf("FLAGS of UID %d after FLAGS (\\Draft) = %v, want (\\Draft)", u, f)
			}
		}
		res, err = c.Store(imap.UIDSetNum(uid[0]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
		if err != nil || len(res) != 0 {
			t.Errorf("UID STORE +FLAGS.SILENT = %v, %v; want OK with no FETCH", res, err)
		}
		if f := flagsOf(uid[0]); !hasFlag(f, imap.FlagSeen) {
			t.Errorf("FLAGS after +FLAGS.SILENT (\\Seen) = %v", f)
		}
	})
}

func TestCopyMove(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))
	st := openStore(t, s.DSN)
	acct := storeAccount(t, st, "alice")

	raw := simpleMsg("copy me", "a@example.org", "shared body", time.Now())
	src := appendMsg(t, c, "INBOX", raw, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged, "$Keep"}})
	other := appendMsg(t, c, "INBOX", simpleMsg("move me", "a@example.org", "moving body", time.Now()), nil)
	selectMbox(t, c, "INBOX", false)
	inbox := storeMailbox(t, st, acct, "INBOX")

	t.Run("COPY shares the body", func(t *testing.T) {
		archive := storeMailbox(t, st, acct, "Archive")
		data, err := c.Copy(imap.UIDSetNum(src.UID), "Archive").Wait()
		if err != nil {
			t.Fatalf("UID COPY to Archive = %v", err)
		}
		srcUIDs, _ := data.SourceUIDs.Nums()
		dstUIDs, _ := data.DestUIDs.Nums()
		if data.UIDValidity != archive.UIDValidity || !slices.Equal(srcUIDs, []imap.UID{src.UID}) || len(dstUIDs) != 1 {
			t.Fatalf("COPYUID = %d %v %v, want %d [%d] [one UID]", data.UIDValidity, srcUIDs, dstUIDs, archive.UIDValidity, src.UID)
		}
		orig := storeMeta(t, st, acct, inbox.ID, src.UID)
		cp := storeMeta(t, st, acct, archive.ID, dstUIDs[0])
		if cp.Message == orig.Message {
			t.Errorf("COPY reused the message UUID %v; a copy is a new message", cp.Message)
		}
		if !bytes.Equal(cp.Digest, orig.Digest) || len(cp.Digest) == 0 {
			t.Errorf("COPY body digest = %x, original %x; want the shared body", cp.Digest, orig.Digest)
		}
		if !slices.Contains(cp.Flags, `\Flagged`) || !slices.Contains(cp.Flags, "$Keep") {
			t.Errorf("COPY flags = %v, want the source's \\Flagged $Keep", cp.Flags)
		}
		// Both are still there, with the same bytes.
		whole := &imap.FetchItemBodySection{Peek: true}
		if got := section(t, fetchOne(t, c, src.UID, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{whole}}), whole); !bytes.Equal(got, raw) {
			t.Errorf("source BODY[] after COPY differs")
		}
		c2 := dial(t, s.Addr, "alice", pw("alice"))
		selectMbox(t, c2, "Archive", true)
		if got := section(t, fetchOne(t, c2, dstUIDs[0], &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{whole}}), whole); !bytes.Equal(got, raw) {
			t.Errorf("copy's BODY[] differs from the original")
		}
		_, err = c.Copy(imap.UIDSetNum(src.UID), "Nowhere").Wait()
		wantNO(t, "COPY to a missing mailbox", err, imap.ResponseCodeTryCreate)
	})

	t.Run("MOVE keeps the UUID", func(t *testing.T) {
		trash := storeMailbox(t, st, acct, "Trash")
		before := storeMeta(t, st, acct, inbox.ID, other.UID)
		n := c.Mailbox().NumMessages
		c.Events.take()
		data, err := c.Move(imap.UIDSetNum(other.UID), "Trash").Wait()
		if err != nil {
			t.Fatalf("UID MOVE to Trash = %v", err)
		}
		var dstUIDs []imap.UID
		if set, ok := data.DestUIDs.(imap.UIDSet); ok {
			dstUIDs, _ = set.Nums()
		}
		if data.UIDValidity != trash.UIDValidity || len(dstUIDs) != 1 {
			t.Fatalf("MOVE COPYUID = %d %v, want UIDVALIDITY %d and one UID", data.UIDValidity, dstUIDs, trash.UIDValidity)
		}
		moved := storeMeta(t, st, acct, trash.ID, dstUIDs[0])
		if moved.Message != before.Message {
			t.Errorf("MOVE changed the message UUID from %v to %v", before.Message, moved.Message)
		}
		if !bytes.Equal(moved.Digest, before.Digest) {
			t.Errorf("MOVE changed the body digest")
		}
		for _, m := range storeMetas(t, st, acct, inbox.ID) {
			if m.UID == store.UID(other.UID) {
				t.Errorf("UID %d still live in INBOX after MOVE", other.UID)
			}
		}
		ch, err := st.ChangesSince(context.Background(), acct, inbox.ID, 0)
		if err != nil {
			t.Fatalf("store ChangesSince = %v", err)
		}
		if !slices.Contains(ch.Expunged, store.UID(other.UID)) {
			t.Errorf("INBOX tombstones after MOVE = %v, want UID %d", ch.Expunged, other.UID)
		}
		_, expunges, _ := c.Events.take()
		if len(expunges) != 1 || expunges[0] != 2 {
			t.Errorf("EXPUNGE responses to MOVE = %v, want [2] (the moved message's seqnum)", expunges)
		}
		if got := c.Mailbox().NumMessages; got != n-1 {
			t.Errorf("EXISTS after MOVE = %d, want %d", got, n-1)
		}
		_, err = c.Move(imap.UIDSetNum(src.UID), "Nowhere").Wait()
		wantNO(t, "MOVE to a missing mailbox", err, imap.ResponseCodeTryCreate)
		if len(fetch(t, c, imap.UIDSetNum(src.UID), &imap.FetchOptions{UID: true})) != 1 {
			t.Errorf("message gone after a failed MOVE")
		}
	})
}

// applyExpunges replays EXPUNGE seqnums on a list of UIDs.
func applyExpunges(uids []imap.UID, seqs []uint32) ([]imap.UID, error) {
	out := slices.Clone(uids)
	for _, s := range seqs {
		if s == 0 || int(s) > len(out) {
			return nil, fmt.Errorf("EXPUNGE %d out of range (%d messages)", s, len(out))
		}
		out = slices.Delete(out, int(s)-1, int(s))
	}
	return out, nil
}

func TestExpunge(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))
	st := openStore(t, s.DSN)
	acct := storeAccount(t, st, "alice")
	if err := c.Create("Exp", nil).Wait(); err != nil {
		t.Fatalf("CREATE Exp = %v", err)
	}
	var uids []imap.UID
	for i := range 5 {
		uids = append(uids, appendMsg(t, c, "Exp", simpleMsg(fmt.Sprintf("m%d", i), "a@example.org", "x", time.Now()), nil).UID)
	}
	for i := 1; i < len(uids); i++ {
		if uids[i] <= uids[i-1] {
			t.Fatalf("APPENDUIDs %v not increasing", uids)
		}
	}
	sel := selectMbox(t, c, "Exp", false)
	mbox := storeMailbox(t, st, acct, "Exp")
	tombstones := func() []store.UID {
		ch, err := st.ChangesSince(context.Background(), acct, mbox.ID, 0)
		if err != nil {
			t.Fatalf("store ChangesSince = %v", err)
		}
		return ch.Expunged
	}

	t.Run("EXPUNGE", func(t *testing.T) {
		if _, err := c.Store(imap.SeqSetNum(2, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
			t.Fatalf("STORE 2,4 +FLAGS (\\Deleted) = %v", err)
		}
		seqs, err := c.Expunge().Collect()
		if err != nil {
			t.Fatalf("EXPUNGE = %v", err)
		}
		left, err := applyExpunges(uids, seqs)
		if err != nil || !slices.Equal(left, []imap.UID{uids[0], uids[2], uids[4]}) {
			t.Errorf("EXPUNGE responses %v leave %v (%v), want UIDs %v", seqs, left, err, []imap.UID{uids[0], uids[2], uids[4]})
		}
		if got := uidsOf(fetch(t, c, imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true})); !slices.Equal(got, []imap.UID{uids[0], uids[2], uids[4]}) {
			t.Errorf("FETCH 1:3 UID after EXPUNGE = %v", got)
		}
		ts := tombstones()
		if !slices.Contains(ts, store.UID(uids[1])) || !slices.Contains(ts, store.UID(uids[3])) || len(ts) != 2 {
			t.Errorf("tombstones = %v, want exactly UIDs %d and %d", ts, uids[1], uids[3])
		}
	})

	t.Run("UID EXPUNGE", func(t *testing.T) {
		if _, err := c.Store(imap.UIDSetNum(uids[0], uids[2]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
			t.Fatalf("UID STORE +FLAGS (\\Deleted) = %v", err)
		}
		seqs, err := c.UIDExpunge(imap.UIDSetNum(uids[2])).Collect()
		if err != nil {
			t.Fatalf("UID EXPUNGE %d = %v", uids[2], err)
		}
		if !slices.Equal(seqs, []uint32{2}) {
			t.Errorf("UID EXPUNGE %d responses = %v, want [2]", uids[2], seqs)
		}
		if got := uidsOf(fetch(t, c, imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})); !slices.Equal(got, []imap.UID{uids[0], uids[4]}) {
			t.Errorf("UIDs after UID EXPUNGE = %v, want %v (the other \\Deleted one stays)", got, []imap.UID{uids[0], uids[4]})
		}
		if !slices.Contains(tombstones(), store.UID(uids[2])) {
			t.Errorf("no tombstone for UID %d after UID EXPUNGE", uids[2])
		}
	})

	t.Run("UIDs are never reused", func(t *testing.T) {
		highest := uids[4]
		if _, err := c.Store(imap.UIDSetNum(highest), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
			t.Fatalf("STORE = %v", err)
		}
		if _, err := c.UIDExpunge(imap.UIDSetNum(highest)).Collect(); err != nil {
			t.Fatalf("UID EXPUNGE = %v", err)
		}
		d := appendMsg(t, c, "Exp", simpleMsg("after expunge", "a@example.org", "x", time.Now()), nil)
		if d.UID <= highest || d.UIDValidity != sel.UIDValidity {
			t.Errorf("APPEND after expunging the highest UID %d = UID %d UIDVALIDITY %d, want a bigger UID and UIDVALIDITY %d", highest, d.UID, d.UIDValidity, sel.UIDValidity)
		}
		highest = d.UID
		if err := c.Unselect().Wait(); err != nil {
			t.Fatalf("UNSELECT = %v", err)
		}

		// DELETE and CREATE the same name: the UIDs continue, UIDVALIDITY stays.
		if err := c.Delete("Exp").Wait(); err != nil {
			t.Fatalf("DELETE Exp = %v", err)
		}
		if err := c.Create("Exp", nil).Wait(); err != nil {
			t.Fatalf("CREATE Exp again = %v", err)
		}
		stat, err := c.Status("Exp", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS Exp = %v", err)
		}
		if stat.UIDValidity != sel.UIDValidity || stat.UIDNext <= highest || deref(stat.NumMessages) != uint32(0) {
			t.Errorf("STATUS of re-created Exp = UIDVALIDITY %d UIDNEXT %d MESSAGES %v; want UIDVALIDITY %d, UIDNEXT > %d, 0 messages",
				stat.UIDValidity, stat.UIDNext, deref(stat.NumMessages), sel.UIDValidity, highest)
		}
		d = appendMsg(t, c, "Exp", simpleMsg("after re-create", "a@example.org", "x", time.Now()), nil)
		if d.UID <= highest || d.UIDValidity != sel.UIDValidity {
			t.Errorf("APPEND into re-created Exp = UID %d UIDVALIDITY %d, want UID > %d and UIDVALIDITY %d", d.UID, d.UIDValidity, highest, sel.UIDValidity)
		}
		highest = d.UID

		// The same holds for a name that was renamed away and created again.
		if err := c.Rename("Exp", "Exp moved", nil).Wait(); err != nil {
			t.Fatalf("RENAME Exp = %v", err)
		}
		if err := c.Create("Exp", nil).Wait(); err != nil {
			t.Fatalf("CREATE Exp after RENAME = %v", err)
		}
		d = appendMsg(t, c, "Exp", simpleMsg("after rename", "a@example.org", "x", time.Now()), nil)
		if d.UID <= highest || d.UIDValidity != sel.UIDValidity {
			t.Errorf("APPEND into Exp re-created after RENAME = UID %d UIDVALIDITY %d, want UID > %d and UIDVALIDITY %d", d.UID, d.UIDValidity, highest, sel.UIDValidity)
		}
	})
}

func TestExamineReadOnly(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))
	a := appendMsg(t, c, "INBOX", nestedMsg, nil)
	b := appendMsg(t, c, "INBOX", simpleMsg("deleted", "a@example.org", "x", time.Now()), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDeleted}})

	rc := dialRaw(t, s.Addr)
	rc.mustOK("r1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
	if _, final := rc.cmd("r2", "EXAMINE INBOX"); !strings.HasPrefix(final, "OK [READ-ONLY]") {
		t.Errorf("EXAMINE INBOX -> %q, want OK [READ-ONLY]", final)
	}
	if _, final := rc.cmd("r3", "SELECT INBOX"); !strings.HasPrefix(final, "OK [READ-WRITE]") {
		t.Errorf("SELECT INBOX -> %q, want OK [READ-WRITE]", final)
	}

	selectMbox(t, c, "INBOX", true)
	_, err := c.Store(imap.UIDSetNum(a.UID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
	wantNO(t, "STORE under EXAMINE", err, "")
	_, err = c.Expunge().Collect()
	wantNO(t, "EXPUNGE under EXAMINE", err, "")
	_, err = c.UIDExpunge(imap.UIDSetNum(b.UID)).Collect()
	wantNO(t, "UID EXPUNGE under EXAMINE", err, "")
	_, err = c.Move(imap.UIDSetNum(b.UID), "Trash").Wait()
	wantNO(t, "MOVE out of an EXAMINEd mailbox", err, "")

	sec := &imap.FetchItemBodySection{} // not PEEK
	m := fetchOne(t, c, a.UID, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}})
	if got := section(t, m, sec); !bytes.Equal(got, nestedMsg) {
		t.Errorf("BODY[] under EXAMINE differs from the message")
	}
	if _, err := c.Copy(imap.UIDSetNum(a.UID), "Archive").Wait(); err != nil {
		t.Errorf("COPY out of an EXAMINEd mailbox = %v, want OK", err)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatalf("CLOSE after EXAMINE = %v", err)
	}

	selectMbox(t, c, "INBOX", false)
	msgs := fetch(t, c, imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true})
	if got := uidsOf(msgs); !slices.Equal(got, []imap.UID{a.UID, b.UID}) {
		t.Fatalf("UIDs after CLOSE of an EXAMINE = %v, want %v (nothing expunged)", got, []imap.UID{a.UID, b.UID})
	}
	if hasFlag(msgs[0].Flags, imap.FlagSeen) || hasFlag(msgs[0].Flags, imap.FlagFlagged) {
		t.Errorf("FLAGS after EXAMINE session = %v, want no \\Seen (BODY[] under EXAMINE) and no \\Flagged (refused STORE)", msgs[0].Flags)
	}
	if !hasFlag(msgs[1].Flags, imap.FlagDeleted) {
		t.Errorf("FLAGS of the \\Deleted message = %v", msgs[1].Flags)
	}
}

func TestUnselectClose(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	c := dial(t, s.Addr, "alice", pw("alice"))
	st := openStore(t, s.DSN)
	acct := storeAccount(t, st, "alice")
	keep := appendMsg(t, c, "INBOX", simpleMsg("keep", "a@example.org", "x", time.Now()), nil)
	del := appendMsg(t, c, "INBOX", simpleMsg("delete", "a@example.org", "x", time.Now()), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDeleted}})

	selectMbox(t, c, "INBOX", false)
	if err := c.Unselect().Wait(); err != nil {
		t.Fatalf("UNSELECT = %v", err)
	}
	waitState(t, c, imap.ConnStateAuthenticated, "UNSELECT")
	if sel := selectMbox(t, c, "INBOX", false); sel.NumMessages != 2 {
		t.Errorf("EXISTS after UNSELECT = %d, want 2 (UNSELECT expunges nothing)", sel.NumMessages)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatalf("CLOSE = %v", err)
	}
	waitState(t, c, imap.ConnStateAuthenticated, "CLOSE")
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true}).Collect(); err == nil {
		t.Errorf("FETCH after CLOSE succeeded, want BAD/NO (no mailbox selected)")
	}
	sel := selectMbox(t, c, "INBOX", false)
	if got := uidsOf(fetch(t, c, imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})); sel.NumMessages != 1 || !slices.Equal(got, []imap.UID{keep.UID}) {
		t.Errorf("after CLOSE: EXISTS %d, UIDs %v; want 1, [%d]", sel.NumMessages, got, keep.UID)
	}
	inbox := storeMailbox(t, st, acct, "INBOX")
	ch, err := st.ChangesSince(context.Background(), acct, inbox.ID, 0)
	if err != nil || !slices.Contains(ch.Expunged, store.UID(del.UID)) {
		t.Errorf("tombstones after CLOSE = %v, %v; want UID %d", ch.Expunged, err, del.UID)
	}
}

// TestIdle runs two servers on one database: a client IDLEs on one, another changes the
// mailbox through the other, and the updates must arrive promptly (NOTIFY, not a poll timer).
func TestIdle(t *testing.T) {
	t.Parallel()
	s1 := newServer(t, "alice")
	s2 := startServer(t, s1.DSN)
	a := dial(t, s1.Addr, "alice", pw("alice"))
	b := dial(t, s2.Addr, "alice", pw("alice"))
	first := appendMsg(t, b, "INBOX", simpleMsg("first", "a@example.org", "x", time.Now()), nil)
	if sel := selectMbox(t, a, "INBOX", false); sel.NumMessages != 1 {
		t.Fatalf("SELECT INBOX = %d messages, want 1", sel.NumMessages)
	}
	a.Events.take()

	idle, err := a.Idle()
	if err != nil {
		t.Fatalf("IDLE = %v", err)
	}
	const prompt = 3 * time.Second
	start := time.Now()
	appendMsg(t, b, "INBOX", simpleMsg("second", "a@example.org", "x", time.Now()), nil)
	waitFor(t, 10*time.Second, func() error {
		if ex, _, _ := a.Events.peek(); !slices.Contains(ex, 2) {
			return fmt.Errorf("IDLE client got EXISTS %v, want 2", ex)
		}
		return nil
	})
	t.Logf("EXISTS reached the IDLE client after %v", time.Since(start))
	if d := time.Since(start); d > prompt {
		t.Errorf("EXISTS reached the IDLE client after %v, want well under %v", d, prompt)
	}

	selectMbox(t, b, "INBOX", false)
	start = time.Now()
	if _, err := b.Store(imap.UIDSetNum(first.UID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatalf("STORE = %v", err)
	}
	waitFor(t, 10*time.Second, func() error {
		_, _, fs := a.Events.peek()
		for _, f := range fs {
			if f.SeqNum == 1 && hasFlag(f.Flags, imap.FlagFlagged) {
				return nil
			}
		}
		return fmt.Errorf("IDLE client got no FETCH 1 (FLAGS (\\Flagged)); got %d FETCHes", len(fs))
	})
	if d := time.Since(start); d > prompt {
		t.Errorf("flag change reached the IDLE client after %v, want well under %v", d, prompt)
	}

	if _, err := b.Store(imap.UIDSetNum(first.UID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatalf("STORE = %v", err)
	}
	start = time.Now()
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatalf("EXPUNGE = %v", err)
	}
	waitFor(t, 10*time.Second, func() error {
		if _, ex, _ := a.Events.peek(); !slices.Equal(ex, []uint32{1}) {
			return fmt.Errorf("IDLE client got EXPUNGE %v, want [1]", ex)
		}
		return nil
	})
	if d := time.Since(start); d > prompt {
		t.Errorf("EXPUNGE reached the IDLE client after %v, want well under %v", d, prompt)
	}
	if err := idle.Close(); err != nil {
		t.Fatalf("DONE = %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE = %v", err)
	}
	if n := a.Mailbox().NumMessages; n != 1 {
		t.Errorf("IDLE client's EXISTS after the updates = %d, want 1", n)
	}

	// Without IDLE, NOOP delivers the same updates.
	a.Events.take()
	appendMsg(t, b, "INBOX", simpleMsg("third", "a@example.org", "x", time.Now()), nil)
	waitFor(t, 10*time.Second, func() error {
		if err := a.Noop().Wait(); err != nil {
			return err
		}
		if ex, _, _ := a.Events.peek(); !slices.Contains(ex, 2) {
			return fmt.Errorf("NOOP client got EXISTS %v, want 2", ex)
		}
		return nil
	})
	msgs := fetch(t, a, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	if len(msgs) != 2 || msgs[0].SeqNum != 1 || msgs[1].SeqNum != 2 || msgs[0].UID >= msgs[1].UID {
		t.Errorf("FETCH 1:* after the updates = %v (UIDs %v), want seqnums 1, 2 with increasing UIDs", len(msgs), uidsOf(msgs))
	}
}

// TestIsolation: alice cannot reach bob's mailboxes through any command.
func TestIsolation(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice", "bob")
	bob := dial(t, s.Addr, "bob", pw("bob"))
	alice := dial(t, s.Addr, "alice", pw("alice"))
	secret := simpleMsg("bob's secret", "bob@example.org", "the secret body", time.Now())
	if err := bob.Create("Secret", nil).Wait(); err != nil {
		t.Fatalf("bob CREATE Secret = %v", err)
	}
	bobSecret := appendMsg(t, bob, "Secret", secret, &imap.AppendOptions{Flags: []imap.Flag{"$BobOnly"}})
	appendMsg(t, bob, "INBOX", secret, nil)
	aliceOwn := appendMsg(t, alice, "INBOX", simpleMsg("alice's", "alice@example.org", "x", time.Now()), nil)

	if got := listAll(t, alice, "*", nil); len(got) != len(defaultMailboxes) {
		t.Errorf("alice LIST * = %q, want only her %d default mailboxes", names(got), len(defaultMailboxes))
	}
	for _, name := range []string{"Secret", "bob/Secret", "~bob/Secret", "#shared/bob/Secret", "Other Users/bob/Secret", "user/bob/Secret", "user.bob.Secret"} {
		_, err := alice.Select(name, nil).Wait()
		wantNO(t, "alice SELECT "+name, err, "")
		_, err = alice.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
		wantNO(t, "alice EXAMINE "+name, err, "")
		_, err = alice.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		wantNO(t, "alice STATUS "+name, err, "")
		if l := listAll(t, alice, name, nil); len(l) != 0 {
			t.Errorf("alice LIST %q = %q, want nothing", name, names(l))
		}
	}
	_, err := tryAppend(alice, "Secret", simpleMsg("intrusion", "alice@example.org", "x", time.Now()), nil)
	wantNO(t, "alice APPEND Secret", err, imap.ResponseCodeTryCreate)
	wantNO(t, "alice RENAME Secret", alice.Rename("Secret", "Mine", nil).Wait(), imap.ResponseCodeNonExistent)
	wantNO(t, "alice DELETE Secret", alice.Delete("Secret").Wait(), imap.ResponseCodeNonExistent)

	sel := selectMbox(t, alice, "INBOX", false)
	if sel.NumMessages != 1 {
		t.Errorf("alice SELECT INBOX = %d messages, want only her 1", sel.NumMessages)
	}
	if got := uidsOf(fetch(t, alice, imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})); !slices.Equal(got, []imap.UID{aliceOwn.UID}) {
		t.Errorf("alice UID FETCH 1:* = %v, want [%d]", got, aliceOwn.UID)
	}
	if res, err := alice.UIDSearch(&imap.SearchCriteria{Body: []string{"secret body"}}, nil).Wait(); err != nil || len(res.AllUIDs()) != 0 {
		t.Errorf("alice SEARCH BODY \"secret body\" = %v, %v, want nothing", res.AllUIDs(), err)
	}
	_, err = alice.Copy(imap.UIDSetNum(aliceOwn.UID), "Secret").Wait()
	wantNO(t, "alice COPY into Secret", err, imap.ResponseCodeTryCreate)
	_, err = alice.Move(imap.UIDSetNum(aliceOwn.UID), "Secret").Wait()
	wantNO(t, "alice MOVE into Secret", err, imap.ResponseCodeTryCreate)

	// alice may have a Secret of her own; it is a different mailbox.
	if err := alice.Create("Secret", nil).Wait(); err != nil {
		t.Fatalf("alice CREATE her own Secret = %v", err)
	}
	if _, err := alice.Copy(imap.UIDSetNum(aliceOwn.UID), "Secret").Wait(); err != nil {
		t.Fatalf("alice COPY into her Secret = %v", err)
	}
	if err := alice.Rename("Secret", "Renamed", nil).Wait(); err != nil {
		t.Fatalf("alice RENAME her Secret = %v", err)
	}
	if err := alice.Delete("Renamed").Wait(); err != nil {
		t.Fatalf("alice DELETE Renamed = %v", err)
	}

	// bob's data is intact.
	st, err := bob.Status("Secret", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
	if err != nil || deref(st.NumMessages) != uint32(1) || st.UIDNext != bobSecret.UID+1 {
		t.Fatalf("bob STATUS Secret = %v msgs UIDNEXT %v, %v; want 1 and %d", deref(st.NumMessages), st.UIDNext, err, bobSecret.UID+1)
	}
	selectMbox(t, bob, "Secret", true)
	whole := &imap.FetchItemBodySection{Peek: true}
	m := fetchOne(t, bob, bobSecret.UID, &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{whole}})
	if !bytes.Equal(section(t, m, whole), secret) || len(m.Flags) != 1 || !hasFlag(m.Flags, "$BobOnly") {
		t.Errorf("bob's Secret message after alice's attempts: flags %v, body intact %v", m.Flags, bytes.Equal(section(t, m, whole), secret))
	}
	if names := names(listAll(t, bob, "*", nil)); !slices.Contains(names, "Secret") || slices.Contains(names, "Renamed") || slices.Contains(names, "Mine") {
		t.Errorf("bob LIST * = %q", names)
	}
	bst, err := bob.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || deref(bst.NumMessages) != uint32(1) {
		t.Errorf("bob STATUS INBOX = %v, %v, want 1 message", deref(bst.NumMessages), err)
	}
}

// untaggedMatching returns the untagged lines matching re.
func untaggedMatching(lines []string, re *regexp.Regexp) []string {
	var out []string
	for _, l := range lines {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

var (
	expungeLine = regexp.MustCompile(`^\* \d+ EXPUNGE`)
	existsLine  = regexp.MustCompile(`^\* \d+ EXISTS`)
	fetchLine   = regexp.MustCompile(`^\* (\d+) FETCH \((.*)\)$`)
	uidItem     = regexp.MustCompile(`UID (\d+)`)
)

// TestSessionViews: sequence numbers are each session's own view. Another session's
// expunge reaches a session only where RFC 3501 allows EXPUNGE (not during FETCH), a message
// the session was not told about never comes out as "* 0 FETCH", and a session's own STORE is
// not echoed a second time.
func TestSessionViews(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	b := dial(t, s.Addr, "alice", pw("alice"))
	var uids []imap.UID
	for i := range 3 {
		uids = append(uids, appendMsg(t, b, "INBOX", simpleMsg(fmt.Sprintf("v%d", i), "a@example.org", "x", time.Now()), nil).UID)
	}
	a := dialRaw(t, s.Addr)
	a.mustOK("a1", fmt.Sprintf("LOGIN alice %q", pw("alice")))
	if ex := untaggedMatching(a.mustOK("a2", "SELECT INBOX"), existsLine); len(ex) != 1 || ex[0] != "* 3 EXISTS" {
		t.Fatalf("SELECT INBOX -> %q, want * 3 EXISTS", ex)
	}

	selectMbox(t, b, "INBOX", false)
	if _, err := b.Store(imap.UIDSetNum(uids[1]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatalf("STORE = %v", err)
	}
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatalf("EXPUNGE = %v", err)
	}
	// Give the change time to reach a's session (NOTIFY); a must still hold it back during FETCH.
	time.Sleep(300 * time.Millisecond)
	lines := a.mustOK("f1", "FETCH 1:* (UID)")
	if ex := untaggedMatching(lines, expungeLine); len(ex) != 0 {
		t.Errorf("FETCH 1:* -> %q: EXPUNGE sent during FETCH (RFC 3501 7.4.1 forbids it)", ex)
	}
	for _, l := range untaggedMatching(lines, fetchLine) {
		if strings.HasPrefix(l, "* 0 ") {
			t.Errorf("FETCH 1:* -> %q", l)
		}
	}
	waitFor(t, 5*time.Second, func() error {
		if ex := untaggedMatching(a.mustOK("n1", "NOOP"), expungeLine); len(ex) != 1 || ex[0] != "* 2 EXPUNGE" {
			return fmt.Errorf("NOOP after another session's expunge -> %q, want * 2 EXPUNGE", ex)
		}
		return nil
	})

	newUID := appendMsg(t, b, "INBOX", simpleMsg("v3", "a@example.org", "x", time.Now()), nil).UID
	lines = a.mustOK("u1", fmt.Sprintf("UID FETCH %d (UID)", newUID))
	sawExists := false
	for _, l := range lines {
		if existsLine.MatchString(l) {
			sawExists = l == "* 3 EXISTS"
		}
		if m := fetchLine.FindStringSubmatch(l); m != nil {
			if m[1] == "0" {
				t.Errorf("UID FETCH of a message the session was not told about -> %q", l)
			} else if !sawExists || m[1] != "3" {
				t.Errorf("UID FETCH %d -> %q without first announcing it as * 3 EXISTS (lines %q)", newUID, l, lines)
			}
		}
	}
	announced := sawExists
	waitFor(t, 5*time.Second, func() error {
		if !announced && !slices.Contains(untaggedMatching(a.mustOK("n2", "NOOP"), existsLine), "* 3 EXISTS") {
			return fmt.Errorf("another session's APPEND not announced as * 3 EXISTS")
		}
		announced = true
		return nil
	})
	var got []string
	for _, l := range untaggedMatching(a.mustOK("f2", "FETCH 1:* (UID)"), fetchLine) {
		m := fetchLine.FindStringSubmatch(l)
		got = append(got, m[1]+":"+uidItem.FindStringSubmatch(m[2])[1])
	}
	if want := []string{fmt.Sprintf("1:%d", uids[0]), fmt.Sprintf("2:%d", uids[2]), fmt.Sprintf("3:%d", newUID)}; !slices.Equal(got, want) {
		t.Errorf("FETCH 1:* (UID) = %q, want seq:UID %q", got, want)
	}

	lines = a.mustOK("s1", "STORE 1 +FLAGS (\\Flagged)")
	if f := untaggedMatching(lines, fetchLine); len(f) != 1 || !strings.HasPrefix(f[0], "* 1 FETCH") || !strings.Contains(f[0], `\Flagged`) {
		t.Errorf("STORE 1 +FLAGS (\\Flagged) -> %q, want one * 1 FETCH with \\Flagged", f)
	}
	if f := untaggedMatching(a.mustOK("n3", "NOOP"), fetchLine); len(f) != 0 {
		t.Errorf("NOOP after the session's own STORE -> %q: the change was echoed twice", f)
	}
	// FETCH * is the session's last message.
	if f := untaggedMatching(a.mustOK("f3", "FETCH * (UID)"), fetchLine); len(f) != 1 || !strings.HasPrefix(f[0], "* 3 FETCH") || !strings.Contains(f[0], fmt.Sprintf("UID %d", newUID)) {
		t.Errorf("FETCH * (UID) -> %q, want * 3 FETCH (UID %d)", f, newUID)
	}
}

// TestShutdown: SIGTERM with clients connected, one of them in IDLE, ends serve promptly with
// status 0 and closes the connections.
func TestShutdown(t *testing.T) {
	t.Parallel()
	s := newServer(t, "alice")
	idler := dial(t, s.Addr, "alice", pw("alice"))
	selectMbox(t, idler, "INBOX", false)
	if _, err := idler.Idle(); err != nil {
		t.Fatalf("IDLE = %v", err)
	}
	busy := dial(t, s.Addr, "alice", pw("alice"))
	selectMbox(t, busy, "INBOX", false)
	start := time.Now()
	s.stop(t, syscall.SIGTERM)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("serve took %v to stop with clients connected", d)
	}
	for name, c := range map[string]*client{"idling": idler, "selected": busy} {
		select {
		case <-c.Closed():
		case <-time.After(10 * time.Second):
			t.Errorf("%s client's connection still open after serve exited", name)
		}
	}
}
