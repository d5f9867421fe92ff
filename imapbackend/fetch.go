package imapbackend

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/internal/mailparse"
	"github.com/twinmail/twinmail/store"
)

// fetchChunk is how many messages one metadata query reads. A chunk is read completely
// before any of it is written, so a pool connection never waits on a slow client; the next
// chunk is read while the current one is written.
const fetchChunk = 1000

// fetchBodyBytes bounds the message bodies read in one query when a FETCH needs bodies; a
// larger message is read alone.
const fetchBodyBytes = 4 << 20

// fetchBodyCount bounds the number of bodies read in one query.
const fetchBodyCount = 256

// Fetch answers FETCH and UID FETCH. A reader goroutine reads the messages' metadata in
// chunks (and their bodies in bounded batches, when sections are asked for) while this one
// writes the responses, so memory does not grow with the number of messages. Every response
// line uses the client's sequence numbers; ghosts and messages expunged meanwhile are
// skipped, and nothing but FETCH responses is written while the command runs. A body fetch
// that is not PEEK sets \Seen (unless read-only) and then includes FLAGS.
func (s *Session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel := s.sel
	if sel == nil {
		return errNotSelected
	}
	refs := sel.view.resolve(numSet, sel.saved)
	if len(refs) == 0 {
		return nil
	}
	r := &fetchReader{
		b:        s.b,
		acct:     s.account(),
		mbox:     sel.mbox,
		fields:   store.MetaFields{Envelope: options.Envelope, BodyStructure: options.BodyStructure != nil},
		markSeen: !sel.readOnly && setsSeen(options),
		bodies:   needsBody(options),
	}
	ctx, cancel := context.WithCancel(s.ctx)
	batches := make(chan fetchBatch, 1)
	go r.run(ctx, refs, batches)
	defer func() {
		cancel()
		for range batches { // wait for the reader to stop
		}
	}()
	var enc fetchEncoder
	for b := range batches {
		if b.err != nil {
			return b.err
		}
		for i := range b.metas {
			m := &b.metas[i]
			seq := sel.view.seqOf(m.UID)
			if seq == 0 || sel.view.isGhost(m.UID) {
				continue
			}
			var raw []byte
			if b.bodies != nil {
				raw = b.bodies[i]
			}
			if err := s.fetchOne(w, &enc, sel.view, seq, m, b.text, raw, options); err != nil {
				return err
			}
		}
	}
	return nil
}

// setsSeen reports whether the FETCH reads a body section without PEEK.
func setsSeen(options *imap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// needsBody reports whether the FETCH needs the messages' bodies.
func needsBody(options *imap.FetchOptions) bool {
	return len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
}

// fetchMeta is a message's metadata and whether this FETCH just set its \Seen flag. Its
// envelope and body structure are ranges of its batch's text.
type fetchMeta struct {
	store.MessageMeta
	seenSet  bool
	env, bs  [2]int // [start, end) in fetchBatch.text; start < 0 for SQL NULL
	digestAt [2]int // while reading: the digest's range in the chunk's digest bytes
}

// fetchBatch is what the reader hands to the writer: messages in UID order, the text their
// envelopes and body structures point into, and their bodies when the FETCH needs them.
type fetchBatch struct {
	metas  []fetchMeta
	text   string
	bodies [][]byte // nil, or one per meta
	err    error
}

// fetchReader reads a FETCH's messages from the store. It runs on its own goroutine and
// touches no session state except through the hub.
type fetchReader struct {
	b        *Backend
	acct     store.AccountID
	mbox     store.Mailbox
	fields   store.MetaFields
	markSeen bool
	bodies   bool
}

func (r *fetchReader) run(ctx context.Context, refs []msgRef, out chan<- fetchBatch) {
	defer close(out)
	send := func(b fetchBatch) bool {
		select {
		case out <- b:
			return b.err == nil
		case <-ctx.Done():
			return false
		}
	}
	for len(refs) > 0 {
		n := min(len(refs), fetchChunk)
		b, err := r.readChunk(ctx, refs[:n])
		refs = refs[n:]
		if err != nil {
			send(fetchBatch{err: err})
			return
		}
		if !r.bodies {
			if !send(b) {
				return
			}
			continue
		}
		// Split the chunk into batches of bounded size and read each one's bodies.
		for len(b.metas) > 0 {
			k, size := 0, int64(0)
			for k < len(b.metas) && k < fetchBodyCount && (k == 0 || size+b.metas[k].Size <= fetchBodyBytes) {
				size += b.metas[k].Size
				k++
			}
			part := fetchBatch{metas: b.metas[:k], text: b.text}
			b.metas = b.metas[k:]
			bodies, err := r.readBodies(ctx, part.metas)
			if err != nil {
				send(fetchBatch{err: err})
				return
			}
			part.bodies = bodies
			if !send(part) {
				return
			}
		}
	}
}

// readChunk reads one chunk's metadata and sets \Seen where the FETCH implies it.
func (r *fetchReader) readChunk(ctx context.Context, refs []msgRef) (fetchBatch, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	st := r.b.store
	metas := make([]fetchMeta, 0, len(refs))
	// The chunk's envelopes and body structures go into one string, which the envelope
	// decoder slices without copying; digests into one byte slice.
	var text strings.Builder
	if r.fields.Envelope || r.fields.BodyStructure {
		text.Grow(len(refs) * 512)
	}
	digests := make([]byte, 0, len(refs)*32)
	span := func(b []byte) [2]int {
		if b == nil {
			return [2]int{-1, -1}
		}
		start := text.Len()
		text.Write(b)
		return [2]int{start, text.Len()}
	}
	err := st.FetchMeta(ctx, r.acct, r.mbox.ID, uidSet(refs), r.fields, func(m *store.MessageMeta) error {
		fm := fetchMeta{MessageMeta: *m}
		fm.Digest, fm.Envelope, fm.BodyStructure = nil, nil, nil
		fm.env, fm.bs = span(m.Envelope), span(m.BodyStructure)
		fm.digestAt = [2]int{len(digests), len(digests) + len(m.Digest)}
		digests = append(digests, m.Digest...)
		metas = append(metas, fm)
		return nil
	})
	if err != nil {
		return fetchBatch{}, imapError(fmt.Errorf("read messages of mailbox %q: %w", r.mbox.Name, err), false)
	}
	b := fetchBatch{metas: metas, text: text.String()}
	for i := range metas {
		d := metas[i].digestAt
		metas[i].Digest = digests[d[0]:d[1]:d[1]]
	}
	if !r.markSeen {
		return b, nil
	}
	var unseen store.UIDSet
	for _, m := range metas {
		if !slices.Contains(m.Flags, string(imap.FlagSeen)) {
			unseen = append(unseen, store.UIDRange{Start: m.UID, Stop: m.UID})
		}
	}
	if len(unseen) == 0 {
		return b, nil
	}
	changed, err := st.StoreFlags(ctx, r.acct, r.mbox.ID, unseen, store.FlagsAdd, []string{string(imap.FlagSeen)})
	if err != nil {
		return fetchBatch{}, imapError(fmt.Errorf("set \\Seen in mailbox %q: %w", r.mbox.Name, err), false)
	}
	var top store.ModSeq
	for _, st := range changed {
		top = max(top, st.ModSeq)
		i, ok := slices.BinarySearchFunc(metas, st.UID, func(m fetchMeta, u store.UID) int { return cmp.Compare(m.UID, u) })
		if ok {
			metas[i].Flags = slices.Clone(st.Flags)
			metas[i].ModSeq = st.ModSeq
			metas[i].seenSet = true
		}
	}
	if top > 0 {
		r.b.hub.bump(r.mbox.ID, top)
	}
	return b, nil
}

// readBodies reads the bodies of a batch in one query.
func (r *fetchReader) readBodies(ctx context.Context, metas []fetchMeta) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	digests := make([][]byte, len(metas))
	for i := range metas {
		digests[i] = metas[i].Digest
	}
	bodies, err := r.b.store.ReadBodies(ctx, r.acct, digests)
	if err != nil {
		return nil, fmt.Errorf("read bodies in mailbox %q: %w", r.mbox.Name, err)
	}
	return bodies, nil
}

// section is a body or binary section prepared before the response is opened.
type section struct {
	body   *imap.FetchItemBodySection
	binary *imap.FetchItemBinarySection
	data   []byte
}

// fetchEncoder holds what fetchOne reuses from one message to the next.
type fetchEncoder struct {
	env   envDecoder
	flags []imap.Flag
}

// fetchOne writes one message's FETCH response. Everything that can fail is done before the
// response is opened: the response holds the connection's write lock until it is closed.
// text is the batch text m's envelope and body structure point into; raw is the message's
// body when the batch read it.
func (s *Session) fetchOne(w *imapserver.FetchWriter, enc *fetchEncoder, v *view, seq uint32, m *fetchMeta, text string, raw []byte, options *imap.FetchOptions) error {
	loadRaw := func() ([]byte, error) {
		if raw != nil {
			return raw, nil
		}
		ctx, cancel := s.cmdCtx()
		defer cancel()
		rc, _, err := s.b.store.OpenBody(ctx, s.account(), m.Digest)
		if err != nil {
			return nil, fmt.Errorf("open body of uid %d: %w", m.UID, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return nil, fmt.Errorf("read body of uid %d: %w", m.UID, err)
		}
		raw = b
		return raw, nil
	}
	var (
		env *imap.Envelope
		bs  imap.BodyStructure
	)
	if options.Envelope {
		js := spanOf(text, m.env)
		e, ok := enc.env.decode(js)
		if !ok {
			var err error
			if e, err = mailparse.UnmarshalEnvelope([]byte(js)); err != nil {
				s.log.Warn("stored envelope unreadable, parsing the message", logKeyUID, m.UID, logKeyErr, err)
				b, err := loadRaw()
				if err != nil {
					return err
				}
				e = mailparse.Parse(b).Envelope
			}
		}
		env = e
	}
	if options.BodyStructure != nil {
		b, err := mailparse.UnmarshalBodyStructure([]byte(spanOf(text, m.bs)))
		if err != nil {
			s.log.Warn("stored body structure unreadable, parsing the message", logKeyUID, m.UID, logKeyErr, err)
			r, err := loadRaw()
			if err != nil {
				return err
			}
			b = mailparse.Parse(r).BodyStructure
		}
		bs = safeBodyStructure(b)
	}

	var sections []section
	for _, item := range options.BodySection {
		b, err := loadRaw()
		if err != nil {
			return err
		}
		sec := section{body: item}
		if len(item.Part) == 0 && item.Specifier == imap.PartSpecifierNone {
			off, n := partialRange(int64(len(b)), item.Partial)
			sec.data = b[off : off+n]
		} else {
			sec.data = imapserver.ExtractBodySection(bytes.NewReader(b), item)
		}
		sections = append(sections, sec)
	}
	for _, item := range options.BinarySection {
		b, err := loadRaw()
		if err != nil {
			return err
		}
		sections = append(sections, section{binary: item, data: imapserver.ExtractBinarySection(bytes.NewReader(b), item)})
	}
	var binarySizes []uint32
	for _, item := range options.BinarySectionSize {
		b, err := loadRaw()
		if err != nil {
			return err
		}
		binarySizes = append(binarySizes, imapserver.ExtractBinarySectionSize(bytes.NewReader(b), item))
	}

	rw := w.CreateMessage(seq)
	if options.UID {
		rw.WriteUID(imap.UID(m.UID))
	}
	if options.Flags || m.seenSet {
		enc.flags = enc.flags[:0]
		for _, f := range m.Flags {
			enc.flags = append(enc.flags, imap.Flag(f))
		}
		rw.WriteFlags(enc.flags)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if options.Envelope {
		rw.WriteEnvelope(env)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(bs)
	}
	for _, sec := range sections {
		var wc io.WriteCloser
		if sec.binary != nil {
			wc = rw.WriteBinarySection(sec.binary, int64(len(sec.data)))
		} else {
			wc = rw.WriteBodySection(sec.body, int64(len(sec.data)))
		}
		if err := writeLiteral(wc, sec.data); err != nil {
			// The literal is short: the response can no longer be completed, so the
			// connection must go. Close the response anyway to release the write lock.
			s.abortConn()
			rw.Close()
			return fmt.Errorf("write body of uid %d: %w", m.UID, err)
		}
	}
	for i, item := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(item, binarySizes[i])
	}
	if err := rw.Close(); err != nil {
		return fmt.Errorf("write fetch response: %w", err)
	}
	if options.Flags || m.seenSet {
		v.noteEcho(m.UID, m.ModSeq)
	}
	return nil
}

// spanOf returns the part of text that span names, "" for SQL NULL.
func spanOf(text string, span [2]int) string {
	if span[0] < 0 {
		return ""
	}
	return text[span[0]:span[1]]
}

// writeLiteral writes data into a literal and closes it.
func writeLiteral(wc io.WriteCloser, data []byte) error {
	if _, err := wc.Write(data); err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

// abortConn closes the network connection after a response was cut short.
func (s *Session) abortConn() {
	if s.conn != nil {
		if nc := s.conn.NetConn(); nc != nil {
			nc.Close()
		}
	}
}

// partialRange returns the bytes of a size-byte body that a <offset.count> partial names.
func partialRange(size int64, p *imap.SectionPartial) (offset, n int64) {
	if p == nil {
		return 0, size
	}
	if p.Offset >= size {
		return size, 0
	}
	return p.Offset, min(p.Size, size-p.Offset)
}

// safeBodyStructure makes a stored body structure writable by imapserver, which panics on a
// multipart without children and on a missing extension when BODYSTRUCTURE is asked for: an
// empty multipart gets an empty text/plain child, and every part gets extension data.
func safeBodyStructure(bs imap.BodyStructure) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if b.Type == "" || b.Subtype == "" {
			b.Type, b.Subtype = "text", "plain"
		}
		if b.Extended == nil {
			b.Extended = &imap.BodyStructureSinglePartExt{}
		}
		if msg := b.MessageRFC822; msg != nil {
			msg.BodyStructure = safeBodyStructure(msg.BodyStructure)
		}
		return b
	case *imap.BodyStructureMultiPart:
		if b.Subtype == "" {
			b.Subtype = "mixed"
		}
		if len(b.Children) == 0 {
			b.Children = []imap.BodyStructure{emptyTextPart()}
		}
		for i, c := range b.Children {
			b.Children[i] = safeBodyStructure(c)
		}
		if b.Extended == nil {
			b.Extended = &imap.BodyStructureMultiPartExt{}
		}
		return b
	}
	return emptyTextPart()
}

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

// envDecoder decodes stored envelopes (the JSON of mailparse.MarshalEnvelope, as PostgreSQL
// prints jsonb) into one reused imap.Envelope, for FETCH ENVELOPE over many messages. Strings
// without escapes become substrings of the input, without copying. It accepts exactly the
// documented schema (internal/mailparse/json.go); on anything else it fails, and the caller
// falls back to mailparse.UnmarshalEnvelope, the reference decoder.
type envDecoder struct {
	env   imap.Envelope
	addrs [6][]imap.Address // From, Sender, ReplyTo, To, Cc, Bcc
	ids   []string
	s     string
	i     int
	sb    strings.Builder
}

// decode returns the envelope s encodes (nil for "null"), valid until the next call, and
// whether s was understood.
func (d *envDecoder) decode(s string) (*imap.Envelope, bool) {
	d.s, d.i = s, 0
	d.ws()
	if strings.HasPrefix(d.s[d.i:], "null") {
		d.i += 4
		d.ws()
		return nil, d.i == len(d.s)
	}
	d.env = imap.Envelope{}
	var lists [6]bool
	ok := d.object(func(key string) bool {
		switch key {
		case "date":
			v, ok := d.str()
			if !ok {
				return false
			}
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return false
			}
			if y := t.Year(); y >= 1 && y <= 9999 {
				d.env.Date = t
			}
			return true
		case "subject":
			v, ok := d.str()
			d.env.Subject = v
			return ok
		case "message_id":
			v, ok := d.str()
			d.env.MessageID = v
			return ok
		case "in_reply_to":
			d.ids = d.ids[:0]
			if !d.array(func() bool {
				v, ok := d.str()
				d.ids = append(d.ids, v)
				return ok
			}) {
				return false
			}
			if len(d.ids) > 0 {
				d.env.InReplyTo = d.ids
			}
			return true
		}
		k := slices.Index(envAddrKeys[:], key)
		if k < 0 || lists[k] {
			return false
		}
		lists[k] = true
		d.addrs[k] = d.addrs[k][:0]
		return d.array(func() bool {
			var a imap.Address
			ok := d.object(func(key string) bool {
				v, ok := d.str()
				switch key {
				case "name":
					a.Name = v
				case "mailbox":
					a.Mailbox = v
				case "host":
					a.Host = v
				default:
					return false
				}
				return ok
			})
			d.addrs[k] = append(d.addrs[k], a)
			return ok
		})
	})
	d.ws()
	if !ok || d.i != len(d.s) {
		return nil, false
	}
	// As mailparse does, an empty list is nil: imapserver writes the From list in place of a
	// nil Sender or Reply-To.
	for k, l := range []*[]imap.Address{&d.env.From, &d.env.Sender, &d.env.ReplyTo, &d.env.To, &d.env.Cc, &d.env.Bcc} {
		if lists[k] && len(d.addrs[k]) > 0 {
			*l = d.addrs[k]
		}
	}
	return &d.env, true
}

// envAddrKeys are the JSON keys of the envelope's address lists, in envDecoder.addrs order.
var envAddrKeys = [6]string{"from", "sender", "reply_to", "to", "cc", "bcc"}

func (d *envDecoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *envDecoder) eat(c byte) bool {
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object parses {"key": value, ...}, calling member to parse each value.
func (d *envDecoder) object(member func(key string) bool) bool {
	if !d.eat('{') {
		return false
	}
	if d.eat('}') {
		return true
	}
	for {
		d.ws()
		key, ok := d.str()
		if !ok || !d.eat(':') {
			return false
		}
		d.ws()
		if !member(key) {
			return false
		}
		if d.eat('}') {
			return true
		}
		if !d.eat(',') {
			return false
		}
	}
}

// array parses [value, ...], calling elem to parse each value.
func (d *envDecoder) array(elem func() bool) bool {
	if !d.eat('[') {
		return false
	}
	if d.eat(']') {
		return true
	}
	for {
		d.ws()
		if !elem() {
			return false
		}
		if d.eat(']') {
			return true
		}
		if !d.eat(',') {
			return false
		}
	}
}

// str parses a JSON string.
func (d *envDecoder) str() (string, bool) {
	if d.i >= len(d.s) || d.s[d.i] != '"' {
		return "", false
	}
	d.i++
	start := d.i
	for d.i < len(d.s) {
		switch c := d.s[d.i]; {
		case c == '"':
			v := d.s[start:d.i]
			d.i++
			return v, true
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", false
		}
		d.i++
	}
	return "", false
}

// escaped finishes a string that contains escapes; d.i is at the first backslash.
func (d *envDecoder) escaped(start int) (string, bool) {
	d.sb.Reset()
	d.sb.WriteString(d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return d.sb.String(), true
		case c < 0x20:
			return "", false
		case c != '\\':
			d.sb.WriteByte(c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.s) {
			return "", false
		}
		e := d.s[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			d.sb.WriteByte(e)
		case 'b':
			d.sb.WriteByte('\b')
		case 'f':
			d.sb.WriteByte('\f')
		case 'n':
			d.sb.WriteByte('\n')
		case 'r':
			d.sb.WriteByte('\r')
		case 't':
			d.sb.WriteByte('\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				// Only a proper pair; anything odder goes to the reference decoder.
				if !strings.HasPrefix(d.s[d.i:], `\u`) {
					return "", false
				}
				d.i += 2
				r2, ok := d.hex4()
				if r = utf16.DecodeRune(r, r2); !ok || r == unicode.ReplacementChar {
					return "", false
				}
			}
			d.sb.WriteRune(r)
		default:
			return "", false
		}
	}
	return "", false
}

func (d *envDecoder) hex4() (rune, bool) {
	if d.i+4 > len(d.s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(d.s[d.i : d.i+4]) {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	d.i += 4
	return r, true
}
