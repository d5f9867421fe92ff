package imapbackend

import (
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/store"
)

// pollRetry is how long IDLE waits before retrying a failed read of changes.
const pollRetry = 5 * time.Second

// Poll tells the client what changed in the selected mailbox since its view. It runs after
// almost every command, so it does no SQL unless the hub says the mailbox changed.
func (s *Session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.pollLocked(w, allowExpunge)
	return err
}

// Idle sends changes as they happen until stop is closed. With no mailbox selected it just
// waits. imapserver may call Poll and Close before Idle has returned; s.mu keeps them apart.
func (s *Session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	for {
		var (
			wake  <-chan struct{} // nil (blocks) when nothing is selected
			retry <-chan time.Time
		)
		s.mu.Lock()
		if s.sel != nil {
			// Take the wake channel before checking, so a change in between is not lost.
			wake = s.b.hub.waitChan(s.sel.watch)
			ok, err := s.pollLocked(w, true)
			if err != nil {
				s.mu.Unlock()
				return err
			}
			if !ok {
				retry = time.After(pollRetry)
			}
		}
		s.mu.Unlock()
		select {
		case <-stop:
			return nil
		case <-s.ctx.Done():
			return nil
		case <-wake:
		case <-retry:
		}
	}
}

// dirtyLocked reports whether the hub knows of changes the view has not read.
func (s *Session) dirtyLocked() bool {
	sel := s.sel
	return store.ModSeq(sel.watch.modseq.Load()) > sel.view.modseq || sel.watch.gen.Load() != sel.view.gen
}

// pollLocked reads the changes the hub announced for the selected mailbox and writes them.
// A failed read is logged and reported as ok=false, to be retried at the next poll: failing
// the poll would end the connection. The returned error is a failed write.
func (s *Session) pollLocked(w *imapserver.UpdateWriter, allowExpunge bool) (ok bool, err error) {
	sel := s.sel
	if sel == nil {
		return true, nil
	}
	v := sel.view
	if !s.dirtyLocked() {
		if !allowExpunge || len(v.ghosts) == 0 {
			return true, nil
		}
		// Ghosts left by an earlier FETCH, STORE or SEARCH can be announced now.
		return true, writeUpdates(w, v.apply(store.Changes{}, true))
	}
	gen := sel.watch.gen.Load()
	ctx, cancel := s.cmdCtx()
	defer cancel()
	ch, err := s.b.store.ChangesSince(ctx, s.account(), sel.mbox.ID, v.modseq)
	if errors.Is(err, store.ErrNoSuchMailbox) && s.conn != nil {
		s.log.Info("selected mailbox vanished", logKeyMailbox, sel.mbox.Name)
		return false, s.conn.Bye("Selected mailbox was deleted")
	}
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("read mailbox changes", logKeyMailbox, sel.mbox.Name, logKeyErr, err)
		}
		return false, nil
	}
	v.gen = gen
	s.b.hub.bump(sel.mbox.ID, ch.HighestModSeq)
	return true, writeUpdates(w, v.apply(ch, allowExpunge))
}

func writeUpdates(w *imapserver.UpdateWriter, ups []update) error {
	for _, u := range ups {
		var err error
		switch u.kind {
		case updExpunge:
			err = w.WriteExpunge(u.num)
		case updExists:
			err = w.WriteNumMessages(u.num)
		case updFlags:
			err = w.WriteMessageFlags(u.num, imap.UID(u.uid), imapFlags(u.flags))
		}
		if err != nil {
			return fmt.Errorf("write mailbox update: %w", err)
		}
	}
	return nil
}
