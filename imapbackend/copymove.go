package imapbackend

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/store"
)

// Copy copies messages (COPY, UID COPY) and answers with COPYUID. A missing destination is
// answered with TRYCREATE. Copying from a read-only mailbox is allowed.
func (s *Session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel := s.sel
	if sel == nil {
		return nil, errNotSelected
	}
	refs := sel.view.resolve(numSet, sel.saved)
	ctx, cancel := s.cmdCtx()
	defer cancel()
	name := mailboxName(dest)
	if len(refs) == 0 {
		// Nothing to copy, but a missing destination must still be reported.
		if _, err := s.b.store.GetMailbox(ctx, s.account(), name); err != nil {
			return nil, imapError(fmt.Errorf("copy to mailbox %q: %w", name, err), true)
		}
		return nil, nil
	}
	res, err := s.b.store.Copy(ctx, s.account(), sel.mbox.ID, uidSet(refs), name)
	if err != nil {
		return nil, imapError(fmt.Errorf("copy to mailbox %q: %w", name, err), true)
	}
	s.b.hub.bump(res.Dest, res.DestModSeq)
	return copyData(res), nil
}

// Move moves messages (MOVE, UID MOVE): one COPYUID, then one EXPUNGE per moved message,
// highest sequence number first. The moved messages leave the view here, so the next Poll
// does not announce them again.
func (s *Session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel := s.sel
	if sel == nil {
		return errNotSelected
	}
	if sel.readOnly {
		return errReadOnly
	}
	refs := sel.view.resolve(numSet, sel.saved)
	ctx, cancel := s.cmdCtx()
	defer cancel()
	name := mailboxName(dest)
	if name == sel.mbox.Name {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Cannot move into the same mailbox"}
	}
	if len(refs) == 0 {
		if _, err := s.b.store.GetMailbox(ctx, s.account(), name); err != nil {
			return imapError(fmt.Errorf("move to mailbox %q: %w", name, err), true)
		}
		return nil
	}
	res, err := s.b.store.Move(ctx, s.account(), sel.mbox.ID, uidSet(refs), name)
	if err != nil {
		return imapError(fmt.Errorf("move to mailbox %q: %w", name, err), true)
	}
	s.b.hub.bump(res.Dest, res.DestModSeq)
	s.b.hub.touch(sel.mbox.ID)
	if len(res.SrcUIDs) == 0 {
		return nil
	}
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return fmt.Errorf("write COPYUID: %w", err)
	}
	for _, seq := range sel.view.remove(res.SrcUIDs) {
		if err := w.WriteExpunge(seq); err != nil {
			return fmt.Errorf("write EXPUNGE: %w", err)
		}
	}
	return nil
}

func copyData(res store.CopyResult) *imap.CopyData {
	if len(res.SrcUIDs) == 0 {
		return nil
	}
	return &imap.CopyData{
		UIDValidity: res.UIDValidity,
		SourceUIDs:  imapUIDSet(res.SrcUIDs),
		DestUIDs:    imapUIDSet(res.DestUIDs),
	}
}

// imapUIDSet turns ascending UIDs into a UID set, runs of consecutive UIDs as ranges. The
// order of the UIDs is kept, as COPYUID needs.
func imapUIDSet(uids []store.UID) imap.UIDSet {
	set := imap.UIDSet{}
	for _, u := range uids {
		if n := len(set); n > 0 && set[n-1].Stop+1 == imap.UID(u) {
			set[n-1].Stop = imap.UID(u)
			continue
		}
		set = append(set, imap.UIDRange{Start: imap.UID(u), Stop: imap.UID(u)})
	}
	return set
}
