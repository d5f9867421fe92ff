package mailparse

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// fixStructure enforces, in place, what imapserver's WriteBodyStructure
// needs to neither panic nor write something a client cannot parse:
//   - every part has Extended data (WriteBodyStructure panics otherwise
//     when BODYSTRUCTURE is requested);
//   - every multipart has at least one child (it panics otherwise) and a
//     subtype, and no child is nil;
//   - a single part has a type and subtype, Text exactly when it is
//     text/*, and MessageRFC822 (with an envelope and a body) exactly when
//     it is message/rfc822 or message/global, as the IMAP grammar requires.
//
// Parse output already satisfies all of this, so for it fixStructure is the
// identity.
func fixStructure(bs imap.BodyStructure) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if b == nil {
			return emptyTextPart()
		}
		if b.Extended == nil {
			b.Extended = &imap.BodyStructureSinglePartExt{}
		}
		if b.Type == "" || b.Subtype == "" {
			b.Type, b.Subtype = "application", "octet-stream"
		}
		typ, sub := strings.ToLower(b.Type), strings.ToLower(b.Subtype)
		isMessage := typ == "message" && (sub == "rfc822" || sub == "global")
		if isMessage && b.MessageRFC822 == nil || typ == "multipart" {
			b.Type, b.Subtype = "application", "octet-stream"
			typ, isMessage = "application", false
		}
		if !isMessage {
			b.MessageRFC822 = nil
		} else {
			m := b.MessageRFC822
			if m.Envelope == nil {
				m.Envelope = &imap.Envelope{}
			}
			m.BodyStructure = fixStructure(m.BodyStructure)
		}
		if typ == "text" && b.Text == nil {
			b.Text = &imap.BodyStructureText{}
		} else if typ != "text" {
			b.Text = nil
		}
		return b
	case *imap.BodyStructureMultiPart:
		if b == nil {
			return emptyTextPart()
		}
		if b.Extended == nil {
			b.Extended = &imap.BodyStructureMultiPartExt{}
		}
		if b.Subtype == "" {
			b.Subtype = "mixed"
		}
		for i, c := range b.Children {
			b.Children[i] = fixStructure(c)
		}
		if len(b.Children) == 0 {
			b.Children = []imap.BodyStructure{emptyTextPart()}
		}
		return b
	default:
		return emptyTextPart()
	}
}
