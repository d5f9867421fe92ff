package mailparse

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// wireSession serves FETCH ENVELOPE/BODY/BODYSTRUCTURE from Parse results,
// the way the real backend serves them from the stored JSON.
type wireSession struct {
	*imapmemserver.UserSession
	msgs []*Message
}

func (s *wireSession) Login(string, string) error { return nil }

func (s *wireSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	set := numSet.(imap.SeqSet)
	seqs, _ := set.Nums()
	for _, seq := range seqs {
		if seq < 1 || int(seq) > len(s.msgs) {
			continue
		}
		m := s.msgs[seq-1]
		// Serve what a later FETCH would: the structures decoded from
		// the stored JSON.
		env, err := UnmarshalEnvelope(m.EnvelopeJSON)
		if err != nil {
			return err
		}
		bs, err := UnmarshalBodyStructure(m.BodyStructureJSON)
		if err != nil {
			return err
		}
		rw := w.CreateMessage(seq)
		if options.Envelope {
			rw.WriteEnvelope(env)
		}
		if options.BodyStructure != nil {
			rw.WriteBodyStructure(bs)
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// TestWire writes every test message through imapserver's FETCH encoder
// and reads it back with imapclient: nothing panics, and what a client sees
// is what Parse computed.
func TestWire(t *testing.T) {
	files := testdataFiles(t)
	sort.Strings(files)
	var msgs []*Message
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, Parse(raw))
	}
	msgs = append(msgs, Parse(benchMessage()))

	user := imapmemserver.NewUser("u", "p")
	_ = user.Create("INBOX", nil)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &wireSession{UserSession: imapmemserver.NewUserSession(user), msgs: msgs}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback listener:", err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("u", "p").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	for _, extended := range []bool{false, true} {
		got, err := c.Fetch(imap.SeqSetNum(seqRange(len(msgs))...), &imap.FetchOptions{
			Envelope:      true,
			BodyStructure: &imap.FetchItemBodyStructure{Extended: extended},
		}).Collect()
		if err != nil {
			t.Fatalf("FETCH (extended=%v): %v", extended, err)
		}
		if len(got) != len(msgs) {
			t.Fatalf("got %d messages, want %d", len(got), len(msgs))
		}
		for i, buf := range got {
			name := "bench"
			if i < len(files) {
				name = filepath.Base(files[i])
			}
			want := msgs[buf.SeqNum-1]
			compareEnvelope(t, name, buf.Envelope, want.Envelope)
			if g, w := wireShape(buf.BodyStructure, extended), wireShape(want.BodyStructure, extended); g != w {
				t.Errorf("%s: body structure on the wire\n got %s\nwant %s", name, g, w)
			}
		}
	}
}

func seqRange(n int) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = uint32(i + 1)
	}
	return s
}

func compareEnvelope(t *testing.T, name string, got, want *imap.Envelope) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: no envelope", name)
		return
	}
	if !got.Date.Equal(want.Date) {
		t.Errorf("%s: date %v, want %v", name, got.Date, want.Date)
	}
	if got.Subject != want.Subject {
		t.Errorf("%s: subject %q, want %q", name, got.Subject, want.Subject)
	}
	for _, f := range []struct {
		field     string
		got, want []imap.Address
	}{
		{"from", got.From, want.From}, {"sender", got.Sender, want.Sender},
		{"reply-to", got.ReplyTo, want.ReplyTo}, {"to", got.To, want.To},
		{"cc", got.Cc, want.Cc}, {"bcc", got.Bcc, want.Bcc},
	} {
		if g, w := fmtAddrs(f.got), fmtAddrs(f.want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %s on the wire %q, want %q", name, f.field, g, w)
		}
	}
	if got.MessageID != want.MessageID || strings.Join(got.InReplyTo, " ") != strings.Join(want.InReplyTo, " ") {
		t.Errorf("%s: ids %q %q, want %q %q", name, got.MessageID, got.InReplyTo, want.MessageID, want.InReplyTo)
	}
}

// wireShape renders what survives the wire: types, parameters, sizes,
// lines and (when extended) dispositions.
func wireShape(bs imap.BodyStructure, extended bool) string {
	var b strings.Builder
	var walk func(bs imap.BodyStructure)
	walk = func(bs imap.BodyStructure) {
		switch x := bs.(type) {
		case *imap.BodyStructureMultiPart:
			b.WriteString("(")
			for _, c := range x.Children {
				walk(c)
			}
			b.WriteString(" " + strings.ToLower(x.Subtype))
			if extended && x.Extended != nil {
				b.WriteString(" " + fmtParams(x.Extended.Params) + fmtDisp(x.Extended.Disposition))
			}
			b.WriteString(")")
		case *imap.BodyStructureSinglePart:
			enc := strings.ToLower(x.Encoding)
			if enc == "" {
				enc = "7bit"
			}
			b.WriteString("(" + x.MediaType() + " " + fmtParams(x.Params) + " " + x.ID + " " + enc + " " + itoa(int64(x.Size)))
			if x.Text != nil {
				b.WriteString(" lines=" + itoa(x.Text.NumLines))
			}
			if m := x.MessageRFC822; m != nil {
				b.WriteString(" msg[" + m.Envelope.Subject + "]")
				walk(m.BodyStructure)
				b.WriteString(" lines=" + itoa(m.NumLines))
			}
			if extended && x.Extended != nil {
				b.WriteString(" " + fmtDisp(x.Extended.Disposition) + " " + strings.Join(x.Extended.Language, ","))
			}
			b.WriteString(")")
		}
	}
	walk(bs)
	return b.String()
}

func fmtParams(m map[string]string) string {
	var l []string
	for k, v := range m {
		l = append(l, strings.ToLower(k)+"="+v)
	}
	sort.Strings(l)
	return "{" + strings.Join(l, ";") + "}"
}

func fmtDisp(d *imap.BodyStructureDisposition) string {
	if d == nil {
		return "nodisp"
	}
	return strings.ToLower(d.Value) + fmtParams(d.Params)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
