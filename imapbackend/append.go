package imapbackend

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/internal/mailparse"
	"github.com/twinmail/twinmail/store"
)

var errTooBig = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message exceeds APPENDLIMIT"}

// Append stores a message. The literal is read completely (within the append limit), bare
// LFs become CRLF, and envelope, body structure and search text are parsed once, here. A
// missing mailbox is answered with TRYCREATE. When the target is the selected mailbox, the
// Poll that imapserver runs next announces the message (EXISTS).
func (s *Session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	limit := int64(s.b.appendLimit)
	if r.Size() > limit {
		return nil, errTooBig
	}
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read appended message: %w", err)
	}
	if int64(len(raw)) > limit {
		return nil, errTooBig
	}
	if len(raw) == 0 {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Empty message"}
	}
	flags, err := storeFlags(options.Flags)
	if err != nil {
		return nil, err
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	raw = crlf(raw)
	p := mailparse.Parse(raw)
	msg := store.NewMessage{
		Raw:           raw,
		Flags:         flags,
		InternalDate:  date,
		SentDate:      p.SentDate,
		Envelope:      p.EnvelopeJSON,
		BodyStructure: p.BodyStructureJSON,
		SearchHeader:  p.SearchHeader,
		SearchText:    p.SearchText,
	}

	ctx, cancel := s.cmdCtx()
	defer cancel()
	name := mailboxName(mailbox)
	res, err := s.b.store.Append(ctx, s.account(), name, msg)
	if err != nil {
		return nil, imapError(fmt.Errorf("append to mailbox %q: %w", name, err), true)
	}
	s.b.hub.bump(res.Mailbox, res.ModSeq)
	return &imap.AppendData{UID: imap.UID(res.UID), UIDValidity: res.UIDValidity}, nil
}

// crlf returns b with every bare LF turned into CRLF (and b itself when there is none), so
// that stored sizes match what FETCH sends.
func crlf(b []byte) []byte {
	bare := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			bare++
		}
	}
	if bare == 0 {
		return b
	}
	out := bytes.NewBuffer(make([]byte, 0, len(b)+bare))
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}
