package imapbackend

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Expunge removes the \Deleted messages of the view (EXPUNGE), or those among uids (UID
// EXPUNGE), and announces each, highest sequence number first. CLOSE calls it with a writer
// that writes nothing; after EXAMINE, CLOSE expunges nothing and EXPUNGE is refused.
func (s *Session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel := s.sel
	if sel == nil {
		return errNotSelected
	}
	if sel.readOnly {
		if isCloseWriter(w) {
			return nil
		}
		return errReadOnly
	}
	v := sel.view
	var refs []msgRef
	if uids == nil {
		refs = v.allRefs()
	} else {
		refs = v.resolve(*uids, sel.saved)
	}
	if len(refs) == 0 {
		return nil
	}
	ctx, cancel := s.cmdCtx()
	defer cancel()
	gone, err := s.b.store.Expunge(ctx, s.account(), sel.mbox.ID, uidSet(refs))
	if err != nil {
		return imapError(fmt.Errorf("expunge mailbox %q: %w", sel.mbox.Name, err), false)
	}
	if len(gone) == 0 {
		return nil
	}
	s.b.hub.touch(sel.mbox.ID)
	for _, seq := range v.remove(gone) {
		if err := w.WriteExpunge(seq); err != nil {
			return fmt.Errorf("write EXPUNGE: %w", err)
		}
	}
	return nil
}

// isCloseWriter reports whether w is the writer CLOSE passes: it has no connection.
func isCloseWriter(w *imapserver.ExpungeWriter) bool {
	return w == nil || *w == (imapserver.ExpungeWriter{})
}
