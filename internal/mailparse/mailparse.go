// Package mailparse parses a message once, at ingest (APPEND and LMTP), into
// everything IMAP needs later without re-reading the message: the ENVELOPE,
// the BODYSTRUCTURE (with its JSON forms for storage), the sent date and
// decoded text for SEARCH.
//
// The body structure is computed with the same go-message primitives that
// imapserver.ExtractBodySection uses to serve BODY[part] sections
// (textproto.ReadHeader, textproto.NewMultipartReader and the Content-Type
// rules of findMessagePart/openMessagePart), so part numbers, sizes and line
// counts agree with the bytes a FETCH of that section returns.
//
// Parse never fails and never panics. Broken MIME degrades: an unparsable
// Content-Type becomes text/plain, a multipart with no parts gets a synthetic
// empty text/plain child, and the result always satisfies the invariants
// imapserver's FETCH writer relies on (Extended is non-nil on every part, no
// multipart is empty).
package mailparse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
)

// Message is the result of parsing a message once at ingest.
type Message struct {
	Envelope          *imap.Envelope     // never nil
	BodyStructure     imap.BodyStructure // always Extended, never an empty multipart
	EnvelopeJSON      []byte             // MarshalEnvelope(Envelope)
	BodyStructureJSON []byte             // MarshalBodyStructure(BodyStructure)
	SentDate          time.Time          // Date header, zero if missing/unparsable
	// SearchHeader is the top-level header block, unfolded and RFC 2047
	// decoded to UTF-8, one "Name: value\n" line per field (canonical field
	// names, message order). Capped at MaxSearchBytes.
	SearchHeader string
	// SearchText is the decoded (transfer encoding and charset) text of the
	// text/* parts, HTML tags included, plus the decoded headers of attached
	// message/rfc822 parts. Capped at MaxSearchBytes.
	SearchText string
}

// All strings in a Message (and in what UnmarshalEnvelope and
// UnmarshalBodyStructure return for Parse output) are valid UTF-8 without NUL
// bytes, so they can go into PostgreSQL text and jsonb columns.

const (
	// MaxSearchBytes caps SearchText and SearchHeader (in bytes; the cut is
	// on a rune boundary).
	MaxSearchBytes = 1 << 20

	// MissingHost is the host given to addresses without '@' (for example
	// "To: root" or "To: undisclosed-recipients"). An empty host cannot be
	// used: in an IMAP ENVELOPE a NIL host marks the start of a group
	// (RFC 3501 7.4.2), and go-imap writes "" as NIL. Dovecot uses the same
	// placeholder.
	MissingHost = "MISSING_DOMAIN"
	// MissingMailbox is the mailbox given to addresses that have a host or a
	// display name but no local part (for example "Foo <@example.org>" or
	// "Foo <>"); a NIL mailbox with a NIL host is an end-of-group marker.
	MissingMailbox = "MISSING_MAILBOX"

	maxDepth        = 100   // nesting of multiparts and message/rfc822
	maxParts        = 10000 // body parts per message
	maxBadHeaderRun = 1000  // malformed top-level header lines skipped
	maxRawTextPart  = 4 * MaxSearchBytes
)

// Parse parses a message. It never fails and never panics: broken or absent
// MIME degrades (e.g. to text/plain), a multipart with no parts gets a
// synthetic empty text/plain child, and a message with no header at all is
// treated as a text/plain body.
//
// raw is not modified or retained.
func Parse(raw []byte) *Message {
	m := &Message{}

	var (
		h      textproto.Header
		bodyAt int
	)
	if !protect(func() { h, bodyAt = readTopHeader(raw) }) {
		h, bodyAt = textproto.Header{}, 0
	}
	body := raw[bodyAt:]

	if !protect(func() { m.Envelope = envelopeFromHeader(h) }) {
		m.Envelope = &imap.Envelope{}
	}
	m.SentDate = m.Envelope.Date

	if !protect(func() { m.SearchHeader = searchHeader(h) }) {
		m.SearchHeader = ""
	}

	if !protect(func() {
		p := newParser()
		defer p.release()
		p.text.Grow(min(len(body), 64<<10))
		m.BodyStructure = p.entity(h, bytes.NewReader(body), body, "", 0)
		m.SearchText = p.text.String()
	}) {
		m.BodyStructure = fallbackStructure(body)
		m.SearchText = ""
	}
	// Belt and braces: the walker already produces these invariants.
	m.BodyStructure = fixStructure(m.BodyStructure)

	var err error
	if m.EnvelopeJSON, err = MarshalEnvelope(m.Envelope); err != nil {
		m.Envelope = &imap.Envelope{}
		m.SentDate = time.Time{}
		m.EnvelopeJSON, _ = MarshalEnvelope(m.Envelope)
	}
	if m.BodyStructureJSON, err = MarshalBodyStructure(m.BodyStructure); err != nil {
		m.BodyStructure = fallbackStructure(body)
		m.BodyStructureJSON, _ = MarshalBodyStructure(m.BodyStructure)
	}
	return m
}

// protect runs f and reports whether it returned without panicking.
func protect(f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			ok = false
		}
	}()
	f()
	return true
}

// fallbackStructure is the structure of last resort: the whole body as one
// text/plain part.
func fallbackStructure(body []byte) imap.BodyStructure {
	return &imap.BodyStructureSinglePart{
		Type:     "text",
		Subtype:  "plain",
		Encoding: "7bit",
		Size:     clampSize(int64(len(body))),
		Text:     &imap.BodyStructureText{NumLines: int64(bytes.Count(body, nl))},
		Extended: &imap.BodyStructureSinglePartExt{},
	}
}

// emptyTextPart is the synthetic child given to multiparts without parts.
func emptyTextPart() *imap.BodyStructureSinglePart {
	return &imap.BodyStructureSinglePart{
		Type:     "text",
		Subtype:  "plain",
		Params:   map[string]string{"charset": "us-ascii"},
		Encoding: "7bit",
		Text:     &imap.BodyStructureText{},
		Extended: &imap.BodyStructureSinglePartExt{},
	}
}

var nl = []byte{'\n'}

func clampSize(n int64) uint32 {
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	if n < 0 {
		return 0
	}
	return uint32(n)
}

// readTopHeader reads the top-level header of raw and returns it with the
// offset of the body.
//
// When the header is well formed this is exactly what imapserver does
// (textproto.ReadHeader), so the body offset agrees with ExtractBodySection.
// When it is not, ExtractBodySection returns nil for every section anyway,
// and we are lenient instead: a first line that is not a header field means
// there is no header (the whole message is body), and a malformed line after
// at least one good field (or after an mbox "From " line) is skipped.
func readTopHeader(raw []byte) (textproto.Header, int) {
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	pos := func() int { return len(raw) - rd.Len() - br.Buffered() }

	h, err := textproto.ReadHeader(br)
	if err == nil {
		return h, pos()
	}
	if h.Len() == 0 && !bytes.HasPrefix(raw, []byte("From ")) {
		return textproto.Header{}, 0
	}

	type kv struct{ k, v string }
	var fields []kv
	collect := func(h textproto.Header) {
		for f := h.Fields(); f.Next(); {
			fields = append(fields, kv{f.Key(), f.Value()})
		}
	}
	collect(h)
	for i := 0; err != nil && i < maxBadHeaderRun; i++ {
		h, err = textproto.ReadHeader(br)
		collect(h)
	}
	// Header.Add inserts at the top, so add in reverse to keep the order.
	var merged textproto.Header
	for i := len(fields) - 1; i >= 0; i-- {
		merged.Add(fields[i].k, fields[i].v)
	}
	return merged, pos()
}

// searchHeader renders h as "Name: value\n" lines, decoded to UTF-8.
func searchHeader(h textproto.Header) string {
	var b limitedBuilder
	b.limit = MaxSearchBytes
	appendHeaderLines(&b, h)
	return b.String()
}

func appendHeaderLines(b *limitedBuilder, h textproto.Header) {
	for f := h.Fields(); f.Next() && !b.full(); {
		v := oneLine(decodeText(f.Value()))
		b.WriteString(clean(f.Key()))
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteString("\n")
	}
}

// oneLine replaces the CR and LF bytes left in an unfolded value.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// limitedBuilder is a strings.Builder that stops at limit bytes, cutting on
// a rune boundary. Input must be valid UTF-8.
type limitedBuilder struct {
	strings.Builder
	limit int
}

func (b *limitedBuilder) full() bool { return b.Len() >= b.limit }

func (b *limitedBuilder) WriteString(s string) {
	room := b.limit - b.Len()
	if room <= 0 {
		return
	}
	if len(s) > room {
		c := room
		for c > 0 && !runeStart(s[c]) {
			c--
		}
		s = s[:c]
	}
	b.Builder.WriteString(s)
}

// WriteBytes is WriteString for a byte slice.
func (b *limitedBuilder) WriteBytes(s []byte) {
	room := b.limit - b.Len()
	if room <= 0 {
		return
	}
	if len(s) > room {
		c := room
		for c > 0 && !runeStart(s[c]) {
			c--
		}
		s = s[:c]
	}
	b.Builder.Write(s)
}

func runeStart(c byte) bool { return c&0xC0 != 0x80 }

// readDrain reads r to the end (or the first error), counting bytes and
// newlines. If capture is non-nil, up to max bytes are appended to it.
func readDrain(r io.Reader, scratch []byte, capture *[]byte, max int) (n, lines int64) {
	zero := 0
	for {
		k, err := r.Read(scratch)
		if k > 0 {
			zero = 0
			n += int64(k)
			lines += int64(bytes.Count(scratch[:k], nl))
			if capture != nil && len(*capture) < max {
				c := min(k, max-len(*capture))
				*capture = append(*capture, scratch[:c]...)
			}
		}
		if err != nil {
			return n, lines
		}
		if k == 0 {
			if zero++; zero > 100 {
				panic(fmt.Errorf("mailparse: reader made no progress"))
			}
		}
	}
}
