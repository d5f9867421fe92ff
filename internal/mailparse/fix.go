package mailparse

import "github.com/emersion/go-imap/v2"

// fixStructure enforces, in place, what imapserver's WriteBodyStructure
// needs to not panic: every part has Extended data, every multipart has at
// least one child, and there are no nil parts (a nil part becomes an empty
// text/plain one).
func fixStructure(bs imap.BodyStructure) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if b == nil {
			return emptyTextPart()
		}
		if b.Extended == nil {
			b.Extended = &imap.BodyStructureSinglePartExt{}
		}
		if m := b.MessageRFC822; m != nil {
			m.BodyStructure = fixStructure(m.BodyStructure)
		}
		return b
	case *imap.BodyStructureMultiPart:
		if b == nil {
			return emptyTextPart()
		}
		if b.Extended == nil {
			b.Extended = &imap.BodyStructureMultiPartExt{}
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
