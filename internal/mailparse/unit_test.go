package mailparse

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

func TestParseAddressList(t *testing.T) {
	M := "@" + MissingHost
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{``, nil},
		{`   `, nil},
		{`"Smith, John" <john@x.com>`, []string{"Smith, John <john@x.com>"}},
		{`john@x.com (John Smith)`, []string{"John Smith <john@x.com>"}},
		{`<john@x.com>`, []string{"john@x.com"}},
		{`John Smith <john@x.com>, jane@y.org`, []string{"John Smith <john@x.com>", "jane@y.org"}},
		{`=?utf-8?q?J=C3=B6rg?= <j@x>`, []string{"Jörg <j@x>"}},
		{`=?utf-8?q?Smith,_J=C3=B6rg?= <j@x>, k@y`, []string{"Smith, Jörg <j@x>", "k@y"}},
		{`"=?utf-8?q?J=C3=B6rg?=" <j@x>`, []string{"Jörg <j@x>"}},
		{`=?utf-8?q?a?= =?utf-8?q?b?= <ab@x>`, []string{"ab <ab@x>"}},
		{`=?x-unknown?q?abc?= <u@x>`, []string{"=?x-unknown?q?abc?= <u@x>"}},
		{`undisclosed-recipients:;`, []string{"group:undisclosed-recipients", ";"}},
		{`A Group: a@b, "C" <c@d>;, e@f`, []string{"group:A Group", "a@b", "C <c@d>", ";", "e@f"}},
		{`A Group: a@b`, []string{"group:A Group", "a@b", ";"}}, // missing ';'
		{`: a@b;`, []string{"a@b"}},                             // nameless group: flattened
		{`root`, []string{"root" + M}},
		{`Foo <bar>`, []string{"Foo <bar" + M + ">"}},
		{`Local User <localuser>, admin`, []string{"Local User <localuser" + M + ">", "admin" + M}},
		{`<>`, nil},
		{`Nobody <>`, []string{"Nobody <" + MissingMailbox + M + ">"}},
		{`Foo <@example.org>`, []string{"Foo <" + MissingMailbox + "@example.org>"}},
		{`<@route1,@route2:user@host>`, []string{"user@host"}},
		{`"john doe"@example.com`, []string{"john doe@example.com"}},
		{`"a@b"@example.com`, []string{"a@b@example.com"}},
		{`john@[192.0.2.1]`, []string{"john@[192.0.2.1]"}},
		{`a@b c@d`, []string{"a@b", "c@d"}},
		{`Foo <a@b>, , ,Bar <c@d>`, []string{"Foo <a@b>", "Bar <c@d>"}},
		{`<a@b> <c@d>`, []string{"a@b", "c@d"}},
		{`Foo <a@b`, []string{"Foo <a@b>"}},
		{`Foo <a@b, c@d`, []string{"Foo <a@b>", "c@d"}},
		{"M\xfcller <m@x>", []string{"Müller <m@x>"}},
		{`J. R. R. Tolkien <jrr@x>`, []string{"J. R. R. Tolkien <jrr@x>"}},
		{`a@b (c (d) e)`, []string{"c (d) e <a@b>"}},
		{`<a@b> (Trailing)`, []string{"Trailing <a@b>"}},
		{`John.Q.Public@example.com`, []string{"John.Q.Public@example.com"}},
		{`Pete(A nice \) chap) <pete(his account)@silly.test(his host)>`, []string{"Pete <pete@silly.test>"}},
		{"a@b\x00c <d@e>", []string{"a@bc", "d@e"}},
	} {
		got := fmtAddrs(parseAddressList(tc.in))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseAddressList(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}

	// Malformed input never panics and never yields an address that a
	// client would read as a group marker.
	for _, in := range []string{
		`"unterminated <a@b>`, `(unterminated <a@b>`, `[unterminated`, `Nested: Inner: a@b; c@d;`,
		`;;;,,,:::<<<>>>@@@`, `=?utf-8?q?`, `=?utf-8?q?x?=@=?utf-8?q?y?=`, `a:b:c;d;;,<@x,@y:z@w>`, `)(`,
	} {
		depth := 0
		for _, a := range parseAddressList(in) {
			switch {
			case a.IsGroupStart():
				depth++
			case a.IsGroupEnd():
				depth--
			}
			if depth < 0 || depth > 1 {
				t.Errorf("parseAddressList(%q): unbalanced groups", in)
			}
		}
		if depth != 0 {
			t.Errorf("parseAddressList(%q): unbalanced groups", in)
		}
	}
}

func TestParseDate(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Tue, 14 Jan 2025 10:00:00 +0100", "2025-01-14T10:00:00+01:00"},
		{"14 Jan 2025 10:00:00 GMT", "2025-01-14T10:00:00Z"},
		{"Tue, 14 Jan 2025 10:00:00 PST", "2025-01-14T10:00:00-08:00"},
		{"Tue, 14 Jan 2025 10:00:00 edt", "2025-01-14T10:00:00-04:00"},
		{"Tue, 14 Jan 2025 10:00:00 +0100 (CET)", "2025-01-14T10:00:00+01:00"},
		{"Tue,  14  Jan  2025  10:00:00  +0100", "2025-01-14T10:00:00+01:00"},
		{"Tue, 14 Jan 25 10:00 EST", "2025-01-14T10:00:00-05:00"},
		{"Tue, 14 Jan 2025 10:00:00 -0000", "2025-01-14T10:00:00Z"},
		{"Tue, 14 Jan 2025 10:00:00 Z", "2025-01-14T10:00:00Z"},
		{"Tue Jan 14 10:00:00 2025", "2025-01-14T10:00:00Z"},
		{"2025-01-14T10:00:00+01:00", "2025-01-14T10:00:00+01:00"},
		{"Tue, 14 Jan 2025 10:00:00", "2025-01-14T10:00:00Z"},
		{"garbage", ""},
		{"", ""},
		{"Tue, 14 Jan 2025 25:00:00 +0100", ""},
	} {
		got := parseDate(tc.in)
		s := ""
		if !got.IsZero() {
			s = got.Format(time.RFC3339)
		}
		if s != tc.want {
			t.Errorf("parseDate(%q) = %q, want %q", tc.in, s, tc.want)
		}
	}
}

func TestParseMsgIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"<a@b>", []string{"a@b"}},
		{"  <a@b> <c@d>\t<e@f>", []string{"a@b", "c@d", "e@f"}},
		{"<a@b> (comment) Your message of Tue", []string{"a@b"}},
		{"bare@id", []string{"bare@id"}},
		{"two words", nil},
		{"<a@b", []string{"a@b"}},
		{"<a @ b>", []string{"a@b"}},
		{"<>", nil},
		{"", nil},
	} {
		if got := parseMsgIDs(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseMsgIDs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDecodeHelpers(t *testing.T) {
	if got := string(decodeBase64([]byte("aGVs\r\nbG8g\n d29y bGQ=\r\n"))); got != "hello world" {
		t.Errorf("base64: %q", got)
	}
	if got := string(decodeBase64([]byte("aGk=aGk=!!"))); got != "hihi" {
		t.Errorf("concatenated base64: %q", got)
	}
	if got := string(decodeQP([]byte("a=3Db=\r\nc= \r\nd=ZZ=4"))); got != "a=bcd=ZZ=4" {
		t.Errorf("qp: %q", got)
	}
	if got := decodeCharset("x-no-such-charset", []byte("ok\xe9")); got != "oké" {
		t.Errorf("unknown charset: %q", got)
	}
	if got := decodeCharset("utf-16le", []byte("h\x00i\x00")); got != "hi" {
		t.Errorf("utf-16: %q", got)
	}
	if got := decodeCharset("koi8-r", []byte{0xf0, 0xd2, 0xc9, 0xd7, 0xc5, 0xd4}); got != "Привет" {
		t.Errorf("koi8-r: %q", got)
	}
	if got := clean("a\x00b\xffc\u20ac"); got != "abÿc€" {
		t.Errorf("clean: %q", got)
	}
}

func TestJSONRoundTripHandBuilt(t *testing.T) {
	date := normDate(time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("X", -(3*3600+1800))))
	nested := &imap.Envelope{
		Date:      date,
		Subject:   "nested <&> \"quoted\" ✓",
		From:      []imap.Address{{Name: "A", Mailbox: "a", Host: "b"}},
		To:        []imap.Address{{Mailbox: "grp"}, {Mailbox: "m", Host: "h"}, {}},
		InReplyTo: []string{"x@y", "z@w"},
		MessageID: "id@host",
	}
	bs := &imap.BodyStructureMultiPart{
		Subtype: "mixed",
		Children: []imap.BodyStructure{
			&imap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain", Params: map[string]string{"charset": "utf-8"},
				ID: "<id>", Description: "desc", Encoding: "quoted-printable", Size: 42,
				Text: &imap.BodyStructureText{NumLines: 3},
				Extended: &imap.BodyStructureSinglePartExt{
					Disposition: &imap.BodyStructureDisposition{Value: "inline"},
					Language:    []string{"en", "fr"},
					Location:    "http://example.org/x",
				},
			},
			&imap.BodyStructureSinglePart{
				Type: "message", Subtype: "rfc822", Size: 1000,
				MessageRFC822: &imap.BodyStructureMessageRFC822{
					Envelope: nested,
					BodyStructure: &imap.BodyStructureSinglePart{
						Type: "text", Subtype: "plain", Size: 0,
						Text:     &imap.BodyStructureText{NumLines: 0},
						Extended: &imap.BodyStructureSinglePartExt{},
					},
					NumLines: 20,
				},
				Extended: &imap.BodyStructureSinglePartExt{
					Disposition: &imap.BodyStructureDisposition{Value: "attachment", Params: map[string]string{"filename": "a.eml"}},
				},
			},
			&imap.BodyStructureSinglePart{
				Type: "application", Subtype: "octet-stream", Size: 0,
				Extended: &imap.BodyStructureSinglePartExt{},
			},
		},
		Extended: &imap.BodyStructureMultiPartExt{
			Params:   map[string]string{"boundary": "b"},
			Language: []string{"de"},
			Location: "loc",
		},
	}
	b, err := MarshalBodyStructure(bs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalBodyStructure(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, imap.BodyStructure(bs)) {
		t.Errorf("round trip:\n got %s\nwant %s\njson %s", dump(got), dump(bs), b)
	}
	if !bytes.Contains(b, []byte(`"subject":"nested <&> \"quoted\" ✓"`)) {
		t.Errorf("HTML escaping or UTF-8 escaping in %s", b)
	}

	eb, err := MarshalEnvelope(nested)
	if err != nil {
		t.Fatal(err)
	}
	env, err := UnmarshalEnvelope(eb)
	if err != nil || !reflect.DeepEqual(env, nested) {
		t.Errorf("envelope round trip: %v\n got %#v\nwant %#v", err, env, nested)
	}

	// nil values
	if b, err := MarshalEnvelope(nil); err != nil || string(b) != "null" {
		t.Errorf("MarshalEnvelope(nil) = %s, %v", b, err)
	}
	if env, err := UnmarshalEnvelope([]byte("null")); err != nil || env != nil {
		t.Errorf("UnmarshalEnvelope(null) = %v, %v", env, err)
	}
	if b, err := MarshalBodyStructure(nil); err != nil || string(b) != "null" {
		t.Errorf("MarshalBodyStructure(nil) = %s, %v", b, err)
	}
	if bs, err := UnmarshalBodyStructure([]byte("null")); err != nil || bs != nil {
		t.Errorf("UnmarshalBodyStructure(null) = %v, %v", bs, err)
	}

	// errors
	for _, in := range []string{"", "{", `{"date":"yesterday"}`, `[]`} {
		if _, err := UnmarshalEnvelope([]byte(in)); err == nil {
			t.Errorf("UnmarshalEnvelope(%q): no error", in)
		}
	}
	deep := strings.Repeat(`{"multipart":true,"children":[`, jsonMaxDepth+5) + strings.Repeat(`]}`, jsonMaxDepth+5)
	for _, in := range []string{"", "{", `{"size":-1}`, `{"children":{}}`, deep} {
		if _, err := UnmarshalBodyStructure([]byte(in)); err == nil {
			t.Errorf("UnmarshalBodyStructure(%.40q): no error", in)
		}
	}
}

// Stored values that break imapserver's invariants (older rows, hand
// edits) are repaired on the way out.
func TestUnmarshalBodyStructureRepairs(t *testing.T) {
	for _, in := range []string{
		`{"multipart":true,"subtype":"mixed"}`,
		`{"multipart":true,"subtype":"mixed","children":[null,{"type":"text","subtype":"plain"}]}`,
		`{"type":"message","subtype":"rfc822","message":{"envelope":null,"body":{"multipart":true},"lines":1}}`,
		`{"type":"text","subtype":"plain"}`,
	} {
		bs, err := UnmarshalBodyStructure([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		checkInvariants(t, &Message{Envelope: &imap.Envelope{}, BodyStructure: bs})
	}
}

func TestSearchTextCap(t *testing.T) {
	// 3 MiB of two-byte runes, shifted by one byte so that the cap falls
	// inside a rune.
	body := "x" + strings.Repeat("é", 3<<19)
	raw := []byte("Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body)
	m := Parse(raw)
	checkInvariants(t, m)
	if n := len(m.SearchText); n > MaxSearchBytes || n < MaxSearchBytes-4 {
		t.Errorf("SearchText is %d bytes", n)
	}
	if !utf8.ValidString(m.SearchText) {
		t.Error("SearchText cut inside a rune")
	}
	if p := m.BodyStructure.(*imap.BodyStructureSinglePart); p.Size != uint32(len(body)) {
		t.Errorf("size %d, want %d", p.Size, len(body))
	}

	var hdr strings.Builder
	for hdr.Len() < 2*MaxSearchBytes {
		fmt.Fprintf(&hdr, "X-Filler-%d: %s\r\n", hdr.Len(), strings.Repeat("ü", 40))
	}
	m = Parse([]byte(hdr.String() + "\r\nbody\r\n"))
	checkInvariants(t, m)
	if n := len(m.SearchHeader); n > MaxSearchBytes || n < MaxSearchBytes-200 {
		t.Errorf("SearchHeader is %d bytes", n)
	}
}

// Pathological nesting: the structure is cut at maxDepth (the deepest
// container becomes an application/octet-stream leaf), and its size still
// matches the section go-imap serves for that path.
func TestDeepNesting(t *testing.T) {
	for _, kind := range []string{"multipart", "message"} {
		t.Run(kind, func(t *testing.T) {
			n := maxDepth + 20
			var b bytes.Buffer
			for i := 0; i < n; i++ {
				if kind == "multipart" {
					fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
				} else {
					fmt.Fprintf(&b, "Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n", i)
				}
			}
			b.WriteString("Content-Type: text/plain\r\n\r\ndeep text\r\n")
			if kind == "multipart" {
				for i := n - 1; i >= 0; i-- {
					fmt.Fprintf(&b, "--b%d--\r\n", i)
				}
			}
			raw := b.Bytes()
			m := Parse(raw)
			checkInvariants(t, m)
			checkRoundTrip(t, m)
			checkSections(t, raw, m.BodyStructure)
			if !strings.Contains(shape(m.BodyStructure), "application/octet-stream") {
				t.Errorf("depth not limited: %.200s", shape(m.BodyStructure))
			}
		})
	}
}

func TestManyParts(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < maxParts+50; i++ {
		b.WriteString("--b\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	m := Parse(b.Bytes())
	checkInvariants(t, m)
	checkRoundTrip(t, m)
	if n := len(m.BodyStructure.(*imap.BodyStructureMultiPart).Children); n != maxParts {
		t.Errorf("%d parts, want the cap %d", n, maxParts)
	}
}

func TestParseDoesNotRetainInput(t *testing.T) {
	raw := readTestdata(t, "nested_mixed.eml")
	m := Parse(raw)
	env, bs, text, hdr := string(m.EnvelopeJSON), string(m.BodyStructureJSON), m.SearchText, m.SearchHeader
	want := Parse(bytes.Clone(raw))
	for i := range raw {
		raw[i] = 'X'
	}
	if string(m.EnvelopeJSON) != env || string(m.BodyStructureJSON) != bs || m.SearchText != text || m.SearchHeader != hdr {
		t.Fatal("Message changed with its input")
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatal("Parse is not deterministic")
	}
}

func TestParseConcurrent(t *testing.T) {
	var raws [][]byte
	for _, f := range testdataFiles(t) {
		raws = append(raws, readTestdata(t, strings.TrimPrefix(f, "testdata/")))
	}
	want := make([]*Message, len(raws))
	for i, raw := range raws {
		want[i] = Parse(raw)
	}
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for round := 0; round < 20; round++ {
				for i, raw := range raws {
					if m := Parse(raw); !reflect.DeepEqual(m, want[i]) {
						done <- fmt.Errorf("message %d differs when parsed concurrently", i)
						return
					}
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
