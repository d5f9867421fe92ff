package mailparse

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// shape renders a body structure as e.g.
// "multipart/mixed(text/plain,message/rfc822[multipart/alternative(text/plain,text/html)])".
func shape(bs imap.BodyStructure) string {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		var parts []string
		for _, c := range b.Children {
			parts = append(parts, shape(c))
		}
		return b.MediaType() + "(" + strings.Join(parts, ",") + ")"
	case *imap.BodyStructureSinglePart:
		s := b.MediaType()
		if b.MessageRFC822 != nil {
			s += "[" + shape(b.MessageRFC822.BodyStructure) + "]"
		}
		return s
	default:
		return fmt.Sprintf("?%T", bs)
	}
}

func fmtAddrs(l []imap.Address) []string {
	var out []string
	for _, a := range l {
		switch {
		case a.IsGroupEnd():
			out = append(out, ";")
		case a.IsGroupStart():
			out = append(out, "group:"+a.Mailbox)
		case a.Name != "":
			out = append(out, a.Name+" <"+a.Mailbox+"@"+a.Host+">")
		default:
			out = append(out, a.Mailbox+"@"+a.Host)
		}
	}
	return out
}

// walkLeaves calls f for every single part of the structure (including
// message/rfc822 parts and, recursively, the parts inside them) with the
// IMAP section path that FETCH BODY[path] uses for it.
func walkLeaves(bs imap.BodyStructure, f func(path []int, p *imap.BodyStructureSinglePart)) {
	walkRoot(bs, nil, f)
}

func walkRoot(bs imap.BodyStructure, prefix []int, f func([]int, *imap.BodyStructureSinglePart)) {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for i, c := range b.Children {
			walkChild(c, appendPath(prefix, i+1), f)
		}
	case *imap.BodyStructureSinglePart:
		walkChild(b, appendPath(prefix, 1), f)
	}
}

func walkChild(bs imap.BodyStructure, path []int, f func([]int, *imap.BodyStructureSinglePart)) {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for i, c := range b.Children {
			walkChild(c, appendPath(path, i+1), f)
		}
	case *imap.BodyStructureSinglePart:
		f(path, b)
		if b.MessageRFC822 != nil {
			walkRoot(b.MessageRFC822.BodyStructure, path, f)
		}
	}
}

func appendPath(p []int, n int) []int {
	out := make([]int, len(p), len(p)+1)
	copy(out, p)
	return append(out, n)
}

func pathString(p []int) string {
	var s []string
	for _, n := range p {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ".")
}

// checkInvariants verifies what imapserver's FETCH writer and PostgreSQL
// need: Extended everywhere, no empty multipart, no nil part, clean
// strings.
func checkInvariants(t testing.TB, m *Message) {
	t.Helper()
	if m == nil || m.Envelope == nil || m.BodyStructure == nil {
		t.Fatalf("nil fields in %+v", m)
	}
	var walk func(bs imap.BodyStructure, where string)
	walk = func(bs imap.BodyStructure, where string) {
		switch b := bs.(type) {
		case *imap.BodyStructureMultiPart:
			if b == nil {
				t.Fatalf("%s: nil multipart", where)
			}
			if b.Extended == nil {
				t.Errorf("%s: multipart without Extended", where)
			}
			if len(b.Children) == 0 {
				t.Errorf("%s: empty multipart", where)
			}
			if b.Subtype == "" {
				t.Errorf("%s: multipart without subtype", where)
			}
			for i, c := range b.Children {
				walk(c, fmt.Sprintf("%s.%d", where, i+1))
			}
		case *imap.BodyStructureSinglePart:
			if b == nil {
				t.Fatalf("%s: nil single part", where)
			}
			if b.Extended == nil {
				t.Errorf("%s: single part without Extended", where)
			}
			if b.Type == "" || b.Subtype == "" {
				t.Errorf("%s: empty type %q/%q", where, b.Type, b.Subtype)
			}
			if (b.Type == "text") != (b.Text != nil) {
				t.Errorf("%s: %s with Text=%v", where, b.MediaType(), b.Text)
			}
			if b.MessageRFC822 != nil {
				if b.Type != "message" {
					t.Errorf("%s: MessageRFC822 on %s", where, b.MediaType())
				}
				if b.MessageRFC822.Envelope == nil {
					t.Errorf("%s: nested message without envelope", where)
				}
				walk(b.MessageRFC822.BodyStructure, where+"[msg]")
			} else if mt := b.MediaType(); mt == "message/rfc822" || mt == "message/global" || b.Type == "multipart" {
				t.Errorf("%s: %s without nested structure", where, mt)
			}
		default:
			t.Fatalf("%s: unexpected part %T", where, bs)
		}
	}
	walk(m.BodyStructure, "root")
	checkStrings(t, reflect.ValueOf(m), "Message")
	if !m.SentDate.Equal(m.Envelope.Date) {
		t.Errorf("SentDate %v != Envelope.Date %v", m.SentDate, m.Envelope.Date)
	}
	if len(m.SearchText) > MaxSearchBytes || len(m.SearchHeader) > MaxSearchBytes {
		t.Errorf("search text too long: %d, %d", len(m.SearchText), len(m.SearchHeader))
	}
}

func checkStrings(t testing.TB, v reflect.Value, where string) {
	t.Helper()
	checkString := func(s, where string) {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			t.Errorf("%s: not clean UTF-8: %q", where, s)
		}
	}
	switch v.Kind() {
	case reflect.String:
		checkString(v.String(), where)
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			checkStrings(t, v.Elem(), where)
		}
	case reflect.Struct:
		if v.Type().PkgPath() == "time" {
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				checkStrings(t, v.Field(i), where+"."+v.Type().Field(i).Name)
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // JSON bytes
		}
		for i := 0; i < v.Len(); i++ {
			checkStrings(t, v.Index(i), fmt.Sprintf("%s[%d]", where, i))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			checkString(it.Key().String(), where+" key")
			checkStrings(t, it.Value(), where+"["+it.Key().String()+"]")
		}
	}
}

// checkRoundTrip verifies that the JSON forms decode to deep-equal values
// and re-encode to the same bytes.
func checkRoundTrip(t testing.TB, m *Message) {
	t.Helper()
	env, err := UnmarshalEnvelope(m.EnvelopeJSON)
	if err != nil {
		t.Fatalf("UnmarshalEnvelope(%s): %v", m.EnvelopeJSON, err)
	}
	if !reflect.DeepEqual(env, m.Envelope) {
		t.Errorf("envelope round trip:\n got %#v\nwant %#v\njson %s", env, m.Envelope, m.EnvelopeJSON)
	}
	bs, err := UnmarshalBodyStructure(m.BodyStructureJSON)
	if err != nil {
		t.Fatalf("UnmarshalBodyStructure(%s): %v", m.BodyStructureJSON, err)
	}
	if !reflect.DeepEqual(bs, m.BodyStructure) {
		t.Errorf("body structure round trip:\n got %s\nwant %s\njson %s", dump(bs), dump(m.BodyStructure), m.BodyStructureJSON)
	}
	b1, err1 := MarshalEnvelope(env)
	b2, err2 := MarshalBodyStructure(bs)
	if err1 != nil || err2 != nil || !bytes.Equal(b1, m.EnvelopeJSON) || !bytes.Equal(b2, m.BodyStructureJSON) {
		t.Errorf("re-marshal differs: %v %v\n%s\n%s\n%s\n%s", err1, err2, b1, m.EnvelopeJSON, b2, m.BodyStructureJSON)
	}
}

func dump(bs imap.BodyStructure) string {
	var b strings.Builder
	var walk func(bs imap.BodyStructure, indent string)
	walk = func(bs imap.BodyStructure, indent string) {
		switch x := bs.(type) {
		case *imap.BodyStructureMultiPart:
			fmt.Fprintf(&b, "%smultipart %+v ext=%+v\n", indent, x.Subtype, x.Extended)
			for _, c := range x.Children {
				walk(c, indent+"  ")
			}
		case *imap.BodyStructureSinglePart:
			fmt.Fprintf(&b, "%s%+v text=%+v ext=%+v", indent, *x, x.Text, x.Extended)
			if x.Extended != nil {
				fmt.Fprintf(&b, " disp=%+v", x.Extended.Disposition)
			}
			b.WriteString("\n")
			if x.MessageRFC822 != nil {
				fmt.Fprintf(&b, "%s  env=%+v lines=%d\n", indent, x.MessageRFC822.Envelope, x.MessageRFC822.NumLines)
				walk(x.MessageRFC822.BodyStructure, indent+"  ")
			}
		default:
			fmt.Fprintf(&b, "%s%T\n", indent, bs)
		}
	}
	walk(bs, "")
	return b.String()
}

// topHeaderOK reports whether go-imap can read the top-level header; if not,
// ExtractBodySection returns nil for every section and there is nothing to
// compare against.
func topHeaderOK(raw []byte) bool {
	_, err := textproto.ReadHeader(bufioReader(raw))
	return err == nil
}

// sectionResult is one leaf compared with imapserver.ExtractBodySection.
type sectionResult struct {
	path    string
	size    uint32
	section []byte
}

// checkSections compares the size and line count of every single part with
// what imapserver.ExtractBodySection serves for BODY[path]. It returns the
// parts for which ExtractBodySection returned nil although our size is not
// zero (go-imap cannot serve them).
func checkSections(t testing.TB, raw []byte, bs imap.BodyStructure) (unserved []string) {
	t.Helper()
	walkLeaves(bs, func(path []int, p *imap.BodyStructureSinglePart) {
		sec := imapserver.ExtractBodySection(bytes.NewReader(raw), &imap.FetchItemBodySection{Part: path})
		if sec == nil && p.Size != 0 {
			unserved = append(unserved, pathString(path))
			return
		}
		if uint32(len(sec)) != p.Size {
			t.Errorf("BODY[%s] %s: size %d, ExtractBodySection gives %d bytes", pathString(path), p.MediaType(), p.Size, len(sec))
		}
		lines := int64(bytes.Count(sec, nl))
		if p.Text != nil && p.Text.NumLines != lines {
			t.Errorf("BODY[%s]: text lines %d, section has %d", pathString(path), p.Text.NumLines, lines)
		}
		if p.MessageRFC822 != nil && p.MessageRFC822.NumLines != lines {
			t.Errorf("BODY[%s]: message lines %d, section has %d", pathString(path), p.MessageRFC822.NumLines, lines)
		}
	})
	return unserved
}

// testdataFiles lists the message files in testdata (not dotfiles).
func testdataFiles(t testing.TB) []string {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join("testdata", e.Name()))
		}
	}
	return files
}
