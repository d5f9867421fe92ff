package mailparse

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func bufioReader(raw []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(raw)) }

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type parseCase struct {
	file string

	shape      string
	date       string // RFC 3339, "" for zero
	subject    string
	from       []string
	sender     []string // nil: must equal from
	replyTo    []string // nil: must equal from
	to, cc     []string
	bcc        []string
	messageID  string
	inReplyTo  []string
	searchText []string // substrings of SearchText
	notText    []string // must not be in SearchText
	searchHdr  []string // substrings of SearchHeader
	// unserved lists the parts imapserver.ExtractBodySection cannot serve
	// (it returns nil); "*" means the whole message (unreadable header).
	unserved []string
	check    func(t *testing.T, m *Message)
}

var parseCases = []parseCase{
	{
		file:      "simple.eml",
		shape:     "text/plain",
		date:      "2025-01-14T10:00:00+01:00",
		subject:   "Lunch on Thursday?",
		from:      []string{"Alice Example <alice@example.org>"},
		to:        []string{"Bob <bob@example.com>", "carol@example.com"},
		cc:        []string{"Dave, the Admin <dave@example.net>"},
		messageID: "20250114090000.12345@example.org",
		inReplyTo: []string{"prev-1@example.com", "prev-2@example.com"},
		searchText: []string{
			"shall we have lunch on Thursday?",
		},
		searchHdr: []string{
			"Subject: Lunch on Thursday?\n",
			"Received: from mx.example.org (mx.example.org [192.0.2.1]) by mail.example.com with ESMTPS id abc123 for <bob@example.com>; Tue, 14 Jan 2025 10:00:01 +0100\n",
			"Message-Id: <20250114090000.12345@example.org>\n",
		},
		check: func(t *testing.T, m *Message) {
			p := m.BodyStructure.(*imap.BodyStructureSinglePart)
			if p.Params["charset"] != "utf-8" || p.Encoding != "7bit" {
				t.Errorf("params %v encoding %q", p.Params, p.Encoding)
			}
			if !strings.HasPrefix(m.SearchHeader, "Return-Path: <alice@example.org>\nReceived: ") {
				t.Errorf("SearchHeader does not keep field order: %q", m.SearchHeader)
			}
		},
	},
	{
		file:       "alternative.eml",
		shape:      "multipart/alternative(text/plain,text/html)",
		date:       "2025-01-15T08:30:00-05:00",
		subject:    "Your weekly deals",
		from:       []string{"Newsletter <news@shop.example>"},
		replyTo:    []string{"support@shop.example"},
		to:         []string{"customer@example.com"},
		messageID:  "deals-42@shop.example",
		searchText: []string{"café machines €99, a very long line that is soft-broken here.", "<b>café machines</b> €99"},
		notText:    []string{"epilogue", "multi-part message in MIME format", "=C3=A9"},
		check: func(t *testing.T, m *Message) {
			mp := m.BodyStructure.(*imap.BodyStructureMultiPart)
			if mp.Extended.Params["boundary"] != "alt-boundary-1" {
				t.Errorf("multipart params %v", mp.Extended.Params)
			}
			if e := mp.Children[0].(*imap.BodyStructureSinglePart).Encoding; e != "quoted-printable" {
				t.Errorf("encoding %q", e)
			}
		},
	},
	{
		file:      "nested_mixed.eml",
		shape:     "multipart/mixed(multipart/related(multipart/alternative(text/plain,text/html),image/png),application/pdf,text/plain)",
		date:      "2025-01-16T12:00:00Z",
		subject:   "Report attached",
		from:      []string{"Erin <erin@example.org>"},
		to:        []string{"Frank <frank@example.com>"},
		messageID: "report-7@example.org",
		searchText: []string{
			"Please find the quarterly report attached.",
			"<i>quarterly report</i>",
			"Attached notes: Zürich meeting",
		},
		check: func(t *testing.T, m *Message) {
			mp := m.BodyStructure.(*imap.BodyStructureMultiPart)
			pdf := mp.Children[1].(*imap.BodyStructureSinglePart)
			if pdf.Encoding != "base64" || pdf.Params["name"] != "report.pdf" || pdf.Description != "Quarterly report" {
				t.Errorf("pdf part: %+v", pdf)
			}
			d := pdf.Extended.Disposition
			if d == nil || d.Value != "attachment" || d.Params["filename"] != "report.pdf" || d.Params["size"] != "768" {
				t.Errorf("pdf disposition: %+v", d)
			}
			if !reflect.DeepEqual(pdf.Extended.Language, []string{"en", "de"}) {
				t.Errorf("language %q", pdf.Extended.Language)
			}
			if pdf.Filename() != "report.pdf" {
				t.Errorf("filename %q", pdf.Filename())
			}
			notes := mp.Children[2].(*imap.BodyStructureSinglePart)
			if notes.Filename() != "nötes.txt" {
				t.Errorf("RFC 2231 filename %q", notes.Filename())
			}
			png := mp.Children[0].(*imap.BodyStructureMultiPart).Children[1].(*imap.BodyStructureSinglePart)
			if png.ID != "<logo@x>" || png.Extended.Disposition.Value != "inline" {
				t.Errorf("png part %+v", png)
			}
			rel := mp.Children[0].(*imap.BodyStructureMultiPart)
			if rel.Extended.Params["type"] != "multipart/alternative" {
				t.Errorf("related params %v", rel.Extended.Params)
			}
		},
	},
	{
		file:      "rfc822_attachment.eml",
		shape:     "multipart/mixed(text/plain,message/rfc822[multipart/alternative(text/plain,text/html)])",
		date:      "2025-01-17T09:15:00+02:00",
		subject:   "Fwd: Original subject",
		from:      []string{"Grace <grace@example.org>"},
		to:        []string{"Heidi <heidi@example.com>"},
		messageID: "fwd-1@example.org",
		searchText: []string{
			"See the forwarded message below.",
			"Subject: Original subject ✓\n",
			"secret word: xylophone.",
		},
		check: func(t *testing.T, m *Message) {
			msg := m.BodyStructure.(*imap.BodyStructureMultiPart).Children[1].(*imap.BodyStructureSinglePart)
			env := msg.MessageRFC822.Envelope
			if env.Subject != "Original subject ✓" || env.MessageID != "orig-99@example.net" ||
				!reflect.DeepEqual(fmtAddrs(env.From), []string{"Ivan <ivan@example.net>"}) ||
				!reflect.DeepEqual(fmtAddrs(env.Sender), []string{"Ivan <ivan@example.net>"}) ||
				env.Date.Format(time.RFC3339) != "2025-01-16T18:00:00-08:00" {
				t.Errorf("nested envelope %+v", env)
			}
			if msg.Extended.Disposition == nil || msg.Extended.Disposition.Params["filename"] != "original.eml" {
				t.Errorf("nested disposition %+v", msg.Extended.Disposition)
			}
		},
	},
	{
		file:       "digest.eml",
		shape:      "multipart/digest(message/rfc822[text/plain],message/rfc822[text/plain])",
		date:       "2025-01-18T00:00:00Z",
		subject:    "Digest V1 #1",
		from:       []string{"digest@lists.example"},
		to:         []string{"member@example.com"},
		searchText: []string{"First post body.", "Second post body.", "Subject: First post\n"},
		check: func(t *testing.T, m *Message) {
			c := m.BodyStructure.(*imap.BodyStructureMultiPart).Children
			if s := c[1].(*imap.BodyStructureSinglePart).MessageRFC822.Envelope.Subject; s != "Second post" {
				t.Errorf("digest part 2 subject %q", s)
			}
		},
	},
	{
		file:       "rfc2047_utf8.eml",
		shape:      "text/plain",
		date:       "2025-01-19T14:00:00+01:00",
		subject:    "Grüße aus München ✈ und mehr",
		from:       []string{"Jörg Müller <joerg@example.de>"},
		to:         []string{"Renée <renee@example.fr>"},
		messageID:  "2047-utf8@example.de",
		searchText: []string{"Grüße aus München"},
		searchHdr:  []string{"Subject: Grüße aus München ✈ und mehr\n", "From: Jörg Müller <joerg@example.de>\n"},
	},
	{
		file:       "rfc2047_latin1.eml",
		shape:      "text/plain",
		date:       "2025-01-20T07:45:00-05:00", // obsolete "EST" zone
		subject:    "Réunion à Noël",
		from:       []string{"François Lefèvre <francois@example.fr>"},
		to:         []string{"team@example.fr"},
		messageID:  "2047-latin1@example.fr",
		searchText: []string{"La réunion de Noël aura lieu à la cafétéria."},
	},
	{
		file:      "groups.eml",
		shape:     "text/plain",
		date:      "2025-01-20T11:00:00Z",
		subject:   "Party",
		from:      []string{"Organiser <org@example.com>"},
		to:        []string{"group:undisclosed-recipients", ";"},
		cc:        []string{"group:Friends", "Judy <judy@example.com>", "Mallory M. <mallory@example.net>", ";", "oscar@example.org"},
		bcc:       []string{"group:Grüppe", "peggy@example.com", ";"},
		messageID: "groups@example.com",
	},
	{
		file:      "no_at.eml",
		shape:     "text/plain",
		date:      "2025-01-21T03:00:00Z",
		subject:   "Cron <root@host> /usr/local/bin/backup",
		from:      []string{"root@" + MissingHost},
		sender:    []string{"MAILER-DAEMON@" + MissingHost},
		replyTo:   []string{"root@" + MissingHost},
		to:        []string{"Local User <localuser@" + MissingHost + ">", "admin@" + MissingHost, "trent@example.com"},
		cc:        []string{"Nobody <" + MissingMailbox + "@" + MissingHost + ">"},
		messageID: "cron.1@host",
	},
	{
		file:       "no_header.eml",
		shape:      "text/plain",
		searchText: []string{"This message has no header at all.", "Searchable word: platypus."},
		unserved:   []string{"*"},
		check: func(t *testing.T, m *Message) {
			raw := readTestdata(t, "no_header.eml")
			if p := m.BodyStructure.(*imap.BodyStructureSinglePart); p.Size != uint32(len(raw)) {
				t.Errorf("size %d, want the whole message %d", p.Size, len(raw))
			}
			if m.SearchHeader != "" {
				t.Errorf("SearchHeader %q", m.SearchHeader)
			}
		},
	},
	{
		file:       "empty_header.eml",
		shape:      "text/plain",
		searchText: []string{"wombat"},
	},
	{
		file:       "empty_multipart.eml",
		shape:      "multipart/mixed(text/plain)",
		date:       "2025-01-22T10:00:00Z",
		subject:    "Multipart with no parts",
		from:       []string{"broken@example.com"},
		to:         []string{"victim@example.com"},
		searchText: []string{"no boundary ever appears: kangaroo."},
		check: func(t *testing.T, m *Message) {
			c := m.BodyStructure.(*imap.BodyStructureMultiPart).Children[0].(*imap.BodyStructureSinglePart)
			if c.Size != 0 || c.Text.NumLines != 0 {
				t.Errorf("synthetic child %+v", c)
			}
		},
	},
	{
		file:       "missing_closing_boundary.eml",
		shape:      "multipart/mixed(text/plain,text/plain)",
		subject:    "Missing closing boundary",
		date:       "2025-01-23T10:00:00Z",
		from:       []string{"truncated@example.com"},
		to:         []string{"victim@example.com"},
		searchText: []string{"First part is complete: echidna.", "Second part never ends: quokka."},
		// go-message reports io.ErrUnexpectedEOF on the last part, and
		// ExtractBodySection turns the io.Copy error into nil.
		unserved: []string{"2"},
	},
	{
		file:     "garbage.bin",
		shape:    "text/plain",
		unserved: []string{"*"},
		check: func(t *testing.T, m *Message) {
			if m.SearchText == "" {
				t.Errorf("no search text for garbage")
			}
		},
	},
	{
		file:       "lf_only.eml",
		shape:      "multipart/mixed(text/plain,text/x-diff)",
		date:       "2025-01-24T16:20:00+01:00",
		subject:    "LF only line endings",
		from:       []string{"Unix User <unix@example.org>"},
		to:         []string{"dev@example.org"},
		searchText: []string{"Body with bare LF: numbat.\nSecond line.", "+new"},
		check: func(t *testing.T, m *Message) {
			c := m.BodyStructure.(*imap.BodyStructureMultiPart).Children
			p1 := c[0].(*imap.BodyStructureSinglePart)
			if want := len("Body with bare LF: numbat.\nSecond line."); p1.Size != uint32(want) || p1.Text.NumLines != 1 {
				t.Errorf("part 1 size %d lines %d, want %d and 1", p1.Size, p1.Text.NumLines, want)
			}
		},
	},
	{
		file:    "latin1_8bit.eml",
		shape:   "multipart/mixed(text/plain,text/plain)",
		date:    "2025-01-25T09:00:00+01:00",
		subject: "Rechnung für Januar",
		from:    []string{"Müller <mueller@example.de>"},
		to:      []string{"kunde@example.de"},
		searchText: []string{
			"die Rechnung für Januar ist überfällig. Grüße",
			"Preis: 50 € “inkl.” MwSt.",
		},
		searchHdr: []string{"Subject: Rechnung für Januar\n"},
	},
	{
		file:       "mbox_from_line.eml",
		shape:      "text/plain",
		date:       "2025-01-14T10:00:00+01:00",
		subject:    "mbox import",
		from:       []string{"alice@example.org"},
		to:         []string{"bob@example.com"},
		searchText: []string{"Imported from an mbox file."},
		unserved:   []string{"*"},
	},
	{
		file:       "top_rfc822.eml",
		shape:      "message/rfc822[text/plain]",
		subject:    "Wrapper",
		from:       []string{"wrapper@example.com"},
		searchText: []string{"Subject: Inner message\n", "Inner body."},
	},
	{
		file:    "broken_content_type.eml",
		shape:   "multipart/mixed(text/html,text/plain,text/plain,multipart/mixed(text/plain))",
		subject: "Broken content types",
		from:    []string{"x@example.com"},
		searchText: []string{
			"<b>unterminated quote in charset</b>",
			"not a real nested multipart",
			"Type without subtype.",
			"Multipart without boundary.",
		},
		check: func(t *testing.T, m *Message) {
			c := m.BodyStructure.(*imap.BodyStructureMultiPart).Children
			if p := c[0].(*imap.BodyStructureSinglePart); p.Params["charset"] != "utf-8" {
				t.Errorf("lenient params %v", p.Params)
			}
		},
	},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.file, func(t *testing.T) {
			raw := readTestdata(t, tc.file)
			orig := bytes.Clone(raw)
			m := Parse(raw)
			if !bytes.Equal(raw, orig) {
				t.Fatal("Parse modified its input")
			}
			checkInvariants(t, m)
			checkRoundTrip(t, m)

			if got := shape(m.BodyStructure); got != tc.shape {
				t.Errorf("shape %s, want %s", got, tc.shape)
			}
			env := m.Envelope
			gotDate := ""
			if !env.Date.IsZero() {
				gotDate = env.Date.Format(time.RFC3339)
			}
			if gotDate != tc.date {
				t.Errorf("date %q, want %q", gotDate, tc.date)
			}
			if env.Subject != tc.subject {
				t.Errorf("subject %q, want %q", env.Subject, tc.subject)
			}
			sender, replyTo := tc.sender, tc.replyTo
			if sender == nil {
				sender = tc.from
			}
			if replyTo == nil {
				replyTo = tc.from
			}
			for _, f := range []struct {
				name      string
				got, want []string
			}{
				{"from", fmtAddrs(env.From), tc.from},
				{"sender", fmtAddrs(env.Sender), sender},
				{"reply-to", fmtAddrs(env.ReplyTo), replyTo},
				{"to", fmtAddrs(env.To), tc.to},
				{"cc", fmtAddrs(env.Cc), tc.cc},
				{"bcc", fmtAddrs(env.Bcc), tc.bcc},
				{"in-reply-to", env.InReplyTo, tc.inReplyTo},
			} {
				if !reflect.DeepEqual(f.got, f.want) {
					t.Errorf("%s %q, want %q", f.name, f.got, f.want)
				}
			}
			if env.MessageID != tc.messageID {
				t.Errorf("message-id %q, want %q", env.MessageID, tc.messageID)
			}
			for _, s := range tc.searchText {
				if !strings.Contains(m.SearchText, s) {
					t.Errorf("SearchText lacks %q:\n%s", s, m.SearchText)
				}
			}
			for _, s := range tc.notText {
				if strings.Contains(m.SearchText, s) {
					t.Errorf("SearchText has %q:\n%s", s, m.SearchText)
				}
			}
			for _, s := range tc.searchHdr {
				if !strings.Contains(m.SearchHeader, s) {
					t.Errorf("SearchHeader lacks %q:\n%s", s, m.SearchHeader)
				}
			}

			wholeUnserved := len(tc.unserved) == 1 && tc.unserved[0] == "*"
			if topHeaderOK(raw) == wholeUnserved {
				t.Errorf("go-imap can read the header: %v, test case says %v", !wholeUnserved, topHeaderOK(raw))
			}
			if !wholeUnserved {
				unserved := checkSections(t, raw, m.BodyStructure)
				if !reflect.DeepEqual(unserved, tc.unserved) {
					t.Errorf("parts ExtractBodySection cannot serve: %q, want %q", unserved, tc.unserved)
				}
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}
