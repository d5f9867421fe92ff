package imapbackend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmail/twinmail/internal/mailparse"
	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

// envelopeCorpus returns envelopes to decode: those of mailparse's test messages and some
// written to exercise JSON escapes, odd addresses and missing fields.
func envelopeCorpus(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	files, err := filepath.Glob("../internal/mailparse/testdata/*")
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, mailparse.Parse(raw).EnvelopeJSON)
	}
	date := time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("", -(9*3600+30*60)))
	for _, env := range []*imap.Envelope{
		nil,
		{},
		{Date: date, Subject: `Quotes " and \ backslash, tab	and
newline, NUL-free control` + "\x01\x1f" + `, é 日本 🎉`},
		{
			Subject:   "groups",
			From:      []imap.Address{{Name: "A \"B\" C", Mailbox: "a", Host: "example.org"}},
			To:        []imap.Address{{Mailbox: "friends"}, {Name: "X", Mailbox: "x", Host: "h"}, {}},
			Cc:        []imap.Address{{Mailbox: mailparse.MissingMailbox, Host: mailparse.MissingHost}},
			InReplyTo: []string{"a@b", "c@d"},
			MessageID: "id@example.org",
		},
		{Sender: []imap.Address{{Mailbox: "s", Host: "h"}}, ReplyTo: []imap.Address{{Mailbox: "r", Host: "h"}}, Bcc: []imap.Address{{Mailbox: "b", Host: "h"}}},
	} {
		b, err := mailparse.MarshalEnvelope(env)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	// Forms the decoder must hand to the reference decoder, or refuse like it.
	out = append(out,
		[]byte(`{"subject": "\ud83c\udf89 pair"}`),
		[]byte(`{"subject": "\ud83c lone"}`),
		[]byte(`{"subject": "x", "unknown": 1}`),
		[]byte(`{"from": [{"name": "x", "extra": "y"}]}`),
		[]byte(`{"date": "not a date"}`),
		[]byte(`{"subject": "x"} trailing`),
		[]byte(`{"subject": "x",}`),
		[]byte(` null `),
		[]byte(``),
	)
	return out
}

// storedForms returns each envelope as PostgreSQL prints it back (jsonb reorders keys and
// adds spaces), which is what FETCH decodes, next to the compact form.
func storedForms(t *testing.T, envs [][]byte) [][]byte {
	t.Helper()
	ctx := context.Background()
	st := storetest.New(t)
	acct, err := st.CreateAccount(ctx, "env", "pw")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i, e := range envs {
		out = append(out, e)
		if !json.Valid(e) {
			continue
		}
		res, err := st.Append(ctx, acct.ID, "INBOX", store.NewMessage{Raw: fmt.Appendf(nil, "Subject: %d\r\n\r\n", i), Envelope: e})
		if err != nil {
			t.Logf("not stored (PostgreSQL refuses some JSON that Go accepts): %s: %v", e, err)
			continue
		}
		err = st.FetchMeta(ctx, acct.ID, res.Mailbox, store.UIDSet{{Start: res.UID, Stop: res.UID}}, store.MetaFields{Envelope: true}, func(m *store.MessageMeta) error {
			out = append(out, bytes.Clone(m.Envelope))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestEnvelopeDecoder checks envDecoder against mailparse.UnmarshalEnvelope: wherever the
// fast decoder accepts an input, it must give what the reference gives.
func TestEnvelopeDecoder(t *testing.T) {
	var d envDecoder
	accepted := 0
	for _, in := range storedForms(t, envelopeCorpus(t)) {
		want, werr := mailparse.UnmarshalEnvelope(in)
		got, ok := d.decode(string(in))
		if !ok {
			continue // FETCH falls back to the reference decoder
		}
		accepted++
		if werr != nil {
			t.Errorf("decode(%s) accepted what UnmarshalEnvelope refuses: %v", in, werr)
			continue
		}
		if !sameEnvelope(got, want) {
			t.Errorf("decode(%s)\n = %+v\nwant %+v", in, got, want)
		}
	}
	if accepted < 20 {
		t.Errorf("decode accepted only %d inputs", accepted)
	}
}

// sameEnvelope compares envelopes as imapserver writes them: dates by their written form.
func sameEnvelope(a, b *imap.Envelope) bool {
	if a == nil || b == nil {
		return a == b
	}
	const layout = "Mon, 02 Jan 2006 15:04:05 -0700"
	if a.Date.IsZero() != b.Date.IsZero() || a.Date.Format(layout) != b.Date.Format(layout) {
		return false
	}
	x, y := *a, *b
	x.Date, y.Date = time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

// BenchmarkEnvelopeDecode compares the fast decoder with mailparse.UnmarshalEnvelope on a
// typical stored envelope.
func BenchmarkEnvelopeDecode(b *testing.B) {
	in := `{"to": [{"host": "example.org", "name": "Alice", "mailbox": "alice"}], "date": "2020-01-01T00:00:00Z", "from": [{"host": "example.org", "name": "Vozaripe", "mailbox": "vozaripe"}], "sender": [{"host": "example.org", "name": "Vozaripe", "mailbox": "vozaripe"}], "subject": "tarchigu vegufanu famigumon rilo meeting", "reply_to": [{"host": "example.org", "name": "Vozaripe", "mailbox": "vozaripe"}], "message_id": "bench-0@example.org"}`
	b.Run("fast", func(b *testing.B) {
		var d envDecoder
		b.ReportAllocs()
		for range b.N {
			if _, ok := d.decode(in); !ok {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("mailparse", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := mailparse.UnmarshalEnvelope([]byte(in)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestFetchAcrossChunks fetches more messages than one metadata chunk holds, with UID gaps,
// bodies large enough to split the body batches, and a non-PEEK section that sets \Seen.
func TestFetchAcrossChunks(t *testing.T) {
	ctx := context.Background()
	st := storetest.New(t)
	acct, err := st.CreateAccount(ctx, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	n := 2*fetchChunk + 7
	big := map[int]bool{5: true, fetchChunk + 1: true, fetchChunk + 2: true, fetchChunk + 3: true}
	raws := make(map[imap.UID]string)
	var mb store.MailboxID
	for i := range n {
		raw := fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i)
		if big[i] {
			raw += strings.Repeat("0123456789abcdef", fetchBodyBytes/3/16) + "\r\n"
		}
		p := mailparse.Parse([]byte(raw))
		res, err := st.Append(ctx, acct.ID, "INBOX", store.NewMessage{Raw: []byte(raw), Envelope: p.EnvelopeJSON, BodyStructure: p.BodyStructureJSON})
		if err != nil {
			t.Fatal(err)
		}
		mb = res.Mailbox
		raws[imap.UID(res.UID)] = raw
	}
	// Gaps: expunge a few, one of them at a chunk boundary.
	gone := store.UIDSet{{Start: 3, Stop: 4}, {Start: fetchChunk + 1, Stop: fetchChunk + 1}}
	if _, err := st.StoreFlags(ctx, acct.ID, mb, gone, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expunge(ctx, acct.ID, mb, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range gone {
		for u := r.Start; u <= r.Stop; u++ {
			delete(raws, imap.UID(u))
		}
	}
	var want []imap.UID
	for u := range raws {
		want = append(want, u)
	}
	slices.Sort(want)

	c, err := imapclient.DialInsecure(serve(t, st), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	all := imap.SeqSet{{Start: 1, Stop: 0}}

	peek := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, RFC822Size: true, Envelope: true, BodySection: []*imap.FetchItemBodySection{peek}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(want) {
		t.Fatalf("FETCH returned %d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		raw := raws[want[i]]
		if m.SeqNum != uint32(i+1) || m.UID != want[i] {
			t.Fatalf("message %d: seq %d UID %d, want UID %d", i+1, m.SeqNum, m.UID, want[i])
		}
		if got := string(m.FindBodySection(peek)); got != raw || m.RFC822Size != int64(len(raw)) {
			t.Fatalf("UID %d: BODY[] of %d bytes, RFC822.SIZE %d, want %d bytes", m.UID, len(got), m.RFC822Size, len(raw))
		}
		if subj := strings.TrimPrefix(strings.SplitN(raw, "\r\n", 2)[0], "Subject: "); m.Envelope == nil || m.Envelope.Subject != subj {
			t.Fatalf("UID %d: envelope %+v, want subject %q", m.UID, m.Envelope, subj)
		}
		if len(m.Flags) != 0 {
			t.Fatalf("UID %d: PEEK returned FLAGS %v", m.UID, m.Flags)
		}
	}

	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}
	msgs, err = c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{hdr}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(want) {
		t.Fatalf("second FETCH returned %d messages, want %d", len(msgs), len(want))
	}
	for _, m := range msgs {
		if !slices.Contains(m.Flags, imap.FlagSeen) {
			t.Fatalf("UID %d: FETCH BODY[HEADER.FIELDS] gave FLAGS %v, want \\Seen", m.UID, m.Flags)
		}
		if got, want := string(m.FindBodySection(hdr)), strings.SplitN(raws[m.UID], "\r\n", 2)[0]+"\r\n\r\n"; got != want {
			t.Fatalf("UID %d: BODY[HEADER.FIELDS (Subject)] = %q, want %q", m.UID, got, want)
		}
	}
}
