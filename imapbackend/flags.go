package imapbackend

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/store"
)

// Store changes flags (STORE and UID STORE). Unless .SILENT, it answers with the resulting
// flags of every addressed message, and records them so that Poll does not repeat them.
// Ghosts are skipped.
func (s *Session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel := s.sel
	if sel == nil {
		return errNotSelected
	}
	if sel.readOnly {
		return errReadOnly
	}
	fl, err := storeFlags(flags.Flags)
	if err != nil {
		return err
	}
	var op store.FlagOp
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = store.FlagsSet
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsRemove
	default:
		return fmt.Errorf("store flags: unknown operation %v", flags.Op)
	}
	v := sel.view
	refs := v.resolve(numSet, sel.saved)
	if len(refs) == 0 {
		return nil
	}
	ctx, cancel := s.cmdCtx()
	defer cancel()
	set := uidSet(refs)

	if op == store.FlagsSet || len(fl) > 0 {
		changed, err := s.b.store.StoreFlags(ctx, s.account(), sel.mbox.ID, set, op, fl)
		if err != nil {
			return imapError(fmt.Errorf("store flags in mailbox %q: %w", sel.mbox.Name, err), false)
		}
		var top store.ModSeq
		for _, st := range changed {
			top = max(top, st.ModSeq)
			if flags.Silent {
				v.noteEcho(st.UID, st.ModSeq)
			}
		}
		if top > 0 {
			s.b.hub.bump(sel.mbox.ID, top)
		}
	}
	if flags.Silent {
		return nil
	}

	var states []store.MessageState
	err = s.b.store.FetchMeta(ctx, s.account(), sel.mbox.ID, set, store.MetaFields{}, func(m *store.MessageMeta) error {
		st := m.MessageState
		st.Flags = append([]string(nil), st.Flags...)
		states = append(states, st)
		return nil
	})
	if err != nil {
		return imapError(fmt.Errorf("read flags in mailbox %q: %w", sel.mbox.Name, err), false)
	}
	for _, st := range states {
		seq := v.seqOf(st.UID)
		if seq == 0 || v.isGhost(st.UID) {
			continue
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(st.UID))
		rw.WriteFlags(imapFlags(st.Flags))
		if err := rw.Close(); err != nil {
			return fmt.Errorf("write flags: %w", err)
		}
		v.noteEcho(st.UID, st.ModSeq)
	}
	return nil
}
