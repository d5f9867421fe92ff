package imapbackend

import (
	"bytes"
	"fmt"
	"io"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/internal/mailparse"
	"github.com/twinmail/twinmail/store"
)

// fetchBatch is how many messages one FetchMeta call reads.
const fetchBatch = 256

// Fetch answers FETCH and UID FETCH. Messages are read in batches; every response line uses
// the client's sequence numbers, ghosts and messages expunged meanwhile are skipped, and
// nothing but FETCH responses is written while the command runs. A body fetch that is not
// PEEK sets \Seen (unless read-only) and then includes FLAGS.
func (s *Session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel := s.sel
	if sel == nil {
		return errNotSelected
	}
	refs := sel.view.resolve(numSet, sel.saved)
	markSeen := !sel.readOnly && setsSeen(options)
	for len(refs) > 0 {
		n := min(len(refs), fetchBatch)
		if err := s.fetchBatch(w, sel, refs[:n], options, markSeen); err != nil {
			return err
		}
		refs = refs[n:]
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

func (s *Session) fetchBatch(w *imapserver.FetchWriter, sel *selected, refs []msgRef, options *imap.FetchOptions, markSeen bool) error {
	v := sel.view
	metas, err := s.readMetas(sel, refs, options, markSeen)
	if err != nil {
		return err
	}
	for i := range metas {
		m := &metas[i].MessageMeta
		seq := v.seqOf(m.UID)
		if seq == 0 || v.isGhost(m.UID) {
			continue
		}
		if err := s.fetchOne(w, v, seq, m, options, metas[i].seenSet); err != nil {
			return err
		}
	}
	return nil
}

// fetchMeta is a message's metadata and whether this FETCH just set its \Seen flag.
type fetchMeta struct {
	store.MessageMeta
	seenSet bool
}

// readMetas reads one batch's metadata and sets \Seen where the FETCH implies it.
func (s *Session) readMetas(sel *selected, refs []msgRef, options *imap.FetchOptions, markSeen bool) ([]fetchMeta, error) {
	ctx, cancel := s.cmdCtx()
	defer cancel()
	fields := store.MetaFields{Envelope: options.Envelope, BodyStructure: options.BodyStructure != nil}
	metas := make([]fetchMeta, 0, len(refs))
	err := s.b.store.FetchMeta(ctx, s.account(), sel.mbox.ID, uidSet(refs), fields, func(m *store.MessageMeta) error {
		c := *m
		c.Flags = slices.Clone(m.Flags)
		c.Digest = bytes.Clone(m.Digest)
		c.Envelope = bytes.Clone(m.Envelope)
		c.BodyStructure = bytes.Clone(m.BodyStructure)
		metas = append(metas, fetchMeta{MessageMeta: c})
		return nil
	})
	if err != nil {
		return nil, imapError(fmt.Errorf("read messages of mailbox %q: %w", sel.mbox.Name, err), false)
	}
	if !markSeen {
		return metas, nil
	}
	var unseen store.UIDSet
	for _, m := range metas {
		if !slices.Contains(m.Flags, string(imap.FlagSeen)) {
			unseen = append(unseen, store.UIDRange{Start: m.UID, Stop: m.UID})
		}
	}
	if len(unseen) == 0 {
		return metas, nil
	}
	changed, err := s.b.store.StoreFlags(ctx, s.account(), sel.mbox.ID, unseen, store.FlagsAdd, []string{string(imap.FlagSeen)})
	if err != nil {
		return nil, imapError(fmt.Errorf("set \\Seen in mailbox %q: %w", sel.mbox.Name, err), false)
	}
	var top store.ModSeq
	for _, st := range changed {
		top = max(top, st.ModSeq)
		i := slices.IndexFunc(metas, func(m fetchMeta) bool { return m.UID == st.UID })
		if i >= 0 {
			metas[i].Flags = slices.Clone(st.Flags)
			metas[i].ModSeq = st.ModSeq
			metas[i].seenSet = true
		}
	}
	if top > 0 {
		s.b.hub.bump(sel.mbox.ID, top)
	}
	return metas, nil
}

// section is a body or binary section prepared before the response is opened: either bytes,
// or a range of the stored body to stream.
type section struct {
	body   *imap.FetchItemBodySection
	binary *imap.FetchItemBinarySection
	data   []byte
	stream bool  // stream the stored body from offset, size bytes
	offset int64 // for stream
	size   int64
}

// fetchOne writes one message's FETCH response. Everything that can fail is done before the
// response is opened: the response holds the connection's write lock until it is closed.
func (s *Session) fetchOne(w *imapserver.FetchWriter, v *view, seq uint32, m *store.MessageMeta, options *imap.FetchOptions, seenSet bool) error {
	ctx, cancel := s.cmdCtx()
	defer cancel()

	var (
		env *imap.Envelope
		bs  imap.BodyStructure
		raw []byte // the whole message, read only when a section needs parsing
	)
	loadRaw := func() ([]byte, error) {
		if raw != nil {
			return raw, nil
		}
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
	if options.Envelope {
		e, err := mailparse.UnmarshalEnvelope(m.Envelope)
		if err != nil {
			s.log.Warn("stored envelope unreadable, parsing the message", logKeyUID, m.UID, logKeyErr, err)
			b, err := loadRaw()
			if err != nil {
				return err
			}
			e = mailparse.Parse(b).Envelope
		}
		env = e
	}
	if options.BodyStructure != nil {
		b, err := mailparse.UnmarshalBodyStructure(m.BodyStructure)
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
		sec := section{body: item}
		if len(item.Part) == 0 && item.Specifier == imap.PartSpecifierNone {
			sec.stream = true
			sec.offset, sec.size = partialRange(m.Size, item.Partial)
		} else {
			b, err := loadRaw()
			if err != nil {
				return err
			}
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
	// Streams: served from raw when it was read anyway, else opened now.
	var bodies []io.ReadCloser
	defer func() {
		for _, rc := range bodies {
			rc.Close()
		}
	}()
	for i := range sections {
		sec := &sections[i]
		if !sec.stream {
			continue
		}
		if raw != nil {
			sec.stream = false
			sec.offset, sec.size = partialRange(int64(len(raw)), sec.body.Partial)
			sec.data = raw[sec.offset : sec.offset+sec.size]
			continue
		}
		if sec.size == 0 {
			sec.stream = false
			continue
		}
		rc, size, err := s.b.store.OpenBody(ctx, s.account(), m.Digest)
		if err != nil {
			return fmt.Errorf("open body of uid %d: %w", m.UID, err)
		}
		bodies = append(bodies, rc)
		if size != m.Size {
			sec.offset, sec.size = partialRange(size, sec.body.Partial)
		}
	}

	rw := w.CreateMessage(seq)
	if options.UID {
		rw.WriteUID(imap.UID(m.UID))
	}
	if options.Flags || seenSet {
		rw.WriteFlags(imapFlags(m.Flags))
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
	streamed := 0
	for _, sec := range sections {
		var err error
		switch {
		case sec.binary != nil:
			err = writeLiteral(rw.WriteBinarySection(sec.binary, int64(len(sec.data))), bytes.NewReader(sec.data), 0, int64(len(sec.data)))
		case sec.stream:
			err = writeLiteral(rw.WriteBodySection(sec.body, sec.size), bodies[streamed], sec.offset, sec.size)
			streamed++
		default:
			err = writeLiteral(rw.WriteBodySection(sec.body, int64(len(sec.data))), bytes.NewReader(sec.data), 0, int64(len(sec.data)))
		}
		if err != nil {
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
	if options.Flags || seenSet {
		v.noteEcho(m.UID, m.ModSeq)
	}
	return nil
}

// writeLiteral copies size bytes of r, after skipping offset bytes, into a literal.
func writeLiteral(wc io.WriteCloser, r io.Reader, offset, size int64) error {
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, r, offset); err != nil {
			wc.Close()
			return err
		}
	}
	if _, err := io.CopyN(wc, r, size); err != nil {
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
