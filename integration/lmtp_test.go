package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/twinmail/twinmail/store"
)

// lmtpDeliver sends one message over LMTP and returns the per-recipient error (nil: 250).
func lmtpDeliver(t *testing.T, addr, rcpt string, raw []byte) error {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("connect to LMTP: %v", err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("test.example"); err != nil {
		t.Fatalf("LHLO: %v", err)
	}
	return c.SendMail("sender@example.org", []string{rcpt}, bytes.NewReader(raw))
}

// TestLMTPAcknowledgedSurvivesKill: a delivery answered 250 is committed. The server is
// SIGKILLed right after each 250; every acknowledged message is there afterwards, through a
// new server and through the store.
func TestLMTPAcknowledgedSurvivesKill(t *testing.T) {
	s := newServer(t, "alice")
	var acked []string
	for round := range 3 {
		for i := range 5 {
			id := fmt.Sprintf("kill-%d-%d@test", round, i)
			raw := []byte("Message-ID: <" + id + ">\r\nSubject: survive\r\n\r\nbody\r\n")
			if err := lmtpDeliver(t, s.LMTPAddr, "alice@example.org", raw); err != nil {
				t.Fatalf("deliver %s: %v", id, err)
			}
			acked = append(acked, id)
		}
		// Kill at once after the last 250, without a chance to flush anything.
		s.proc.stopped = true
		if err := s.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-s.done
		s = startServer(t, s.DSN)
	}
	st, err := store.Open(context.Background(), s.DSN, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	acct, err := st.LookupAccount(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := st.GetMailbox(context.Background(), acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = st.FetchMeta(context.Background(), acct.ID, inbox.ID, store.UIDSet{{Start: 1, Stop: 0}}, store.MetaFields{}, func(*store.MessageMeta) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if n != len(acked) {
		t.Errorf("store holds %d messages after the kills, %d were acknowledged", n, len(acked))
	}
	c := dial(t, s.Addr, "alice", pw("alice"))
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, m := range msgs {
		all.Write(m.FindBodySection(sec))
	}
	for _, id := range acked {
		if strings.Count(all.String(), "<"+id+">") != 1 {
			t.Errorf("acknowledged message %s not there exactly once", id)
		}
	}
}

// TestLMTPRecipients: through the binary, unknown recipients get 550 at RCPT while the known
// ones get their copy, and +folder addressing works.
func TestLMTPRecipients(t *testing.T) {
	s := newServer(t, "alice", "bob")
	conn, err := net.DialTimeout("tcp", s.LMTPAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("test.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice+Archive@example.org", nil); err != nil {
		t.Fatalf("RCPT alice+Archive: %v", err)
	}
	err = c.Rcpt("nobody@example.org", nil)
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 {
		t.Errorf("RCPT nobody = %v, want 550", err)
	}
	if err := c.Rcpt("bob@example.org", nil); err != nil {
		t.Fatalf("RCPT bob: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "Message-ID: <multi@test>\r\nSubject: multi\r\n\r\nhello\r\n")
	resp, err := w.CloseWithLMTPResponse()
	if err != nil {
		t.Fatalf("per-recipient replies: %v", err)
	}
	if len(resp) != 2 {
		t.Errorf("%d per-recipient replies after DATA, want 2 (one per accepted RCPT)", len(resp))
	}
	for _, who := range []struct{ user, box string }{{"alice", "Archive"}, {"bob", "INBOX"}} {
		cl := dial(t, s.Addr, who.user, pw(who.user))
		st, err := cl.Status(who.box, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if *st.NumMessages != 1 {
			t.Errorf("%s/%s holds %d messages, want 1", who.user, who.box, *st.NumMessages)
		}
	}
}
