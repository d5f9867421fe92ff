package imapbackend

import (
	"sync"
	"sync/atomic"

	"github.com/twinmail/twinmail/store"
)

// hub fans change notifications out to the sessions that have a mailbox selected. For each
// such mailbox it keeps the highest MODSEQ known to have been committed and a generation
// counter that forces a re-check when the exact MODSEQ is unknown (a listener reconnect, or
// an own command whose result carries no MODSEQ). Sessions compare both with their view
// without any locking or SQL, so Poll is cheap when nothing changed.
type hub struct {
	mu    sync.Mutex
	boxes map[store.MailboxID]*boxWatch
}

// boxWatch is the hub's state for one mailbox. modseq and gen are read without the hub lock;
// wake is replaced (after being closed) under the hub lock.
type boxWatch struct {
	id     store.MailboxID
	modseq atomic.Uint64
	gen    atomic.Uint64
	refs   int           // sessions holding this watch; guarded by hub.mu
	wake   chan struct{} // closed when modseq or gen changes; guarded by hub.mu
}

func newHub() *hub {
	return &hub{boxes: make(map[store.MailboxID]*boxWatch)}
}

// acquire registers interest in a mailbox. Call it before reading the mailbox's snapshot, so
// that no notification committed after the snapshot can be missed.
func (h *hub) acquire(id store.MailboxID) *boxWatch {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.boxes[id]
	if w == nil {
		w = &boxWatch{id: id, wake: make(chan struct{})}
		h.boxes[id] = w
	}
	w.refs++
	return w
}

// release drops interest taken by acquire.
func (h *hub) release(w *boxWatch) {
	if w == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	w.refs--
	if w.refs <= 0 {
		delete(h.boxes, w.id)
	}
}

// bump records that a commit raised the mailbox's HIGHESTMODSEQ to at least m and wakes its
// idlers. Mailboxes no session watches are ignored.
func (h *hub) bump(id store.MailboxID, m store.ModSeq) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.boxes[id]
	if w == nil {
		return
	}
	for {
		old := w.modseq.Load()
		if uint64(m) <= old {
			return
		}
		if w.modseq.CompareAndSwap(old, uint64(m)) {
			break
		}
	}
	h.wakeLocked(w)
}

// touch forces every session watching the mailbox to re-read its changes.
func (h *hub) touch(id store.MailboxID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w := h.boxes[id]; w != nil {
		w.gen.Add(1)
		h.wakeLocked(w)
	}
}

// touchAll forces a re-check of every watched mailbox (after a listener reconnect, when
// notifications may have been lost).
func (h *hub) touchAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.boxes {
		w.gen.Add(1)
		h.wakeLocked(w)
	}
}

func (h *hub) wakeLocked(w *boxWatch) {
	close(w.wake)
	w.wake = make(chan struct{})
}

// waitChan returns a channel that is closed at the next change of the mailbox.
func (h *hub) waitChan(w *boxWatch) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.wake
}

// notify is the store.Listen callback.
func (h *hub) notify(n store.Notification) {
	if n == (store.Notification{}) {
		h.touchAll()
		return
	}
	h.bump(n.Mailbox, n.ModSeq)
}
