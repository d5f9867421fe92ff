package imapbackend

import (
	"fmt"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/store"
)

// systemFlags are the flags every mailbox supports.
var systemFlags = []imap.Flag{
	imap.FlagAnswered,
	imap.FlagFlagged,
	imap.FlagDeleted,
	imap.FlagSeen,
	imap.FlagDraft,
}

// Select opens a mailbox (SELECT, or EXAMINE when options.ReadOnly). The client's view is
// read in one snapshot, after registering with the hub, so that no later change is missed.
func (s *Session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	ctx, cancel := s.cmdCtx()
	defer cancel()
	name = mailboxName(name)
	acct := s.account()
	mbox, err := s.b.store.GetMailbox(ctx, acct, name)
	if err != nil {
		return nil, imapError(fmt.Errorf("select mailbox %q: %w", name, err), false)
	}
	watch := s.b.hub.acquire(mbox.ID)
	gen := watch.gen.Load()
	snap, err := s.b.store.Snapshot(ctx, acct, mbox.ID)
	if err != nil {
		s.b.hub.release(watch)
		return nil, imapError(fmt.Errorf("select mailbox %q: %w", name, err), false)
	}
	s.b.hub.bump(mbox.ID, snap.Mailbox.HighestModSeq)
	v := newView(snap.UIDs, snap.Mailbox.HighestModSeq)
	v.gen = gen

	data := &imap.SelectData{
		Flags:       systemFlags,
		NumMessages: v.count(),
		UIDNext:     imap.UID(snap.Mailbox.UIDNext),
		UIDValidity: snap.Mailbox.UIDValidity,
	}
	if !options.ReadOnly {
		data.PermanentFlags = append(append([]imap.Flag(nil), systemFlags...), imap.FlagWildcard)
	}
	if s.conn != nil && s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) {
		data.List = &imap.ListData{Delim: store.Delim, Mailbox: snap.Mailbox.Name}
		if snap.Mailbox.SpecialUse != "" {
			data.List.Attrs = []imap.MailboxAttr{imap.MailboxAttr(snap.Mailbox.SpecialUse)}
		}
	} else if v.count() > 0 {
		// IMAP4rev1 clients expect [UNSEEN n], the first unseen message.
		uids, err := s.b.store.Search(ctx, acct, mbox.ID, &store.SearchCriteria{
			UIDs:    []store.UIDSet{{{Start: v.uids[0], Stop: v.uids[len(v.uids)-1]}}},
			NotFlag: []string{string(imap.FlagSeen)},
		})
		if err != nil {
			s.b.hub.release(watch)
			return nil, fmt.Errorf("find first unseen message in %q: %w", name, err)
		}
		if len(uids) > 0 {
			data.FirstUnseenSeqNum = v.seqOf(uids[0])
		}
	}

	s.mu.Lock()
	s.unselectLocked()
	s.sel = &selected{mbox: snap.Mailbox, readOnly: options.ReadOnly, view: v, watch: watch}
	s.mu.Unlock()
	s.log.Debug("mailbox selected", logKeyMailbox, snap.Mailbox.Name)
	return data, nil
}

// Unselect closes the selected mailbox (UNSELECT, CLOSE, and before another SELECT).
func (s *Session) Unselect() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unselectLocked()
	return nil
}
