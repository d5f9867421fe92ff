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

// Select opens a mailbox (SELECT, or EXAMINE when options.ReadOnly). The view comes from the
// backend's view cache (cache.go), brought up to date with the store when the mailbox row
// just read or the hub knows of newer changes; the session registers with the hub first, so
// that no later change is missed.
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
	v, uidNext, err := s.b.selectView(ctx, acct, mbox)
	if err != nil {
		s.b.hub.release(watch)
		return nil, imapError(fmt.Errorf("select mailbox %q: %w", name, err), false)
	}
	mbox.UIDNext, mbox.HighestModSeq = uidNext, v.modseq

	data := &imap.SelectData{
		Flags:       systemFlags,
		NumMessages: v.count(),
		UIDNext:     imap.UID(uidNext),
		UIDValidity: mbox.UIDValidity,
	}
	if !options.ReadOnly {
		data.PermanentFlags = append(append([]imap.Flag(nil), systemFlags...), imap.FlagWildcard)
	}
	if s.conn != nil && s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) {
		data.List = &imap.ListData{Delim: store.Delim, Mailbox: mbox.Name}
		if mbox.SpecialUse != "" {
			data.List.Attrs = []imap.MailboxAttr{imap.MailboxAttr(mbox.SpecialUse)}
		}
	} else if v.count() > 0 {
		// IMAP4rev1 clients expect [UNSEEN n], the first unseen message.
		uid, err := s.b.store.FirstUnseen(ctx, acct, mbox.ID, v.uids[len(v.uids)-1])
		if err != nil {
			s.b.hub.release(watch)
			return nil, fmt.Errorf("find first unseen message in %q: %w", name, err)
		}
		if uid != 0 {
			data.FirstUnseenSeqNum = v.seqOf(uid)
		}
	}

	s.mu.Lock()
	s.unselectLocked()
	s.sel = &selected{mbox: mbox, readOnly: options.ReadOnly, view: v, watch: watch}
	s.mu.Unlock()
	s.log.Debug("mailbox selected", logKeyMailbox, mbox.Name)
	return data, nil
}

// Unselect closes the selected mailbox (UNSELECT, CLOSE, and before another SELECT).
func (s *Session) Unselect() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unselectLocked()
	return nil
}
