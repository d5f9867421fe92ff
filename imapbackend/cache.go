package imapbackend

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/uuid"

	"github.com/twinmail/twinmail/store"
)

// DefaultViewCacheBytes bounds the memory the view cache spends on UID lists (4 bytes a
// message): 64 MiB holds about 16 million UIDs.
const DefaultViewCacheBytes = 64 << 20

// viewCache keeps, for each recently selected mailbox, its sorted UID list as of some
// HIGHESTMODSEQ, so that SELECT does not read the whole list from the database every time.
// It is brought up to date incrementally, with store.ChangesSince, when the hub says the
// mailbox changed; the hub hears of every commit in any process through LISTEN/NOTIFY, and
// SELECT tells it the HIGHESTMODSEQ of the mailbox row it reads anyway (selectView).
//
// How it stays correct:
//   - An entry holds a reference on the mailbox's hub watch for as long as it is cached,
//     taken before its first snapshot is read, so no change committed after that snapshot
//     goes unnoticed: watch.modseq rises above the entry's MODSEQ, or watch.gen moves.
//   - Published UID lists are never modified; a catch-up builds a new one. Sessions copy
//     the list into their view.
//   - A zero notification (the listener reconnected, so notifications may have been lost)
//     empties the whole cache; the next SELECT of each mailbox reads a fresh snapshot.
//   - When memory exceeds the limit, the least recently used entries that no session has
//     selected are dropped.
//
// The zero value is ready to use; the cache attaches to its Backend's hub on first use.
type viewCache struct {
	once  sync.Once
	hub   *hub
	limit int64

	// all is a watch on a mailbox ID that never receives notifications (uuid.Nil): its
	// generation moves only when the hub re-checks every mailbox (hub.touchAll), so it tells
	// the cache when to drop everything.
	all *boxWatch

	mu      sync.Mutex
	allGen  uint64 // all.gen when the cache was last emptied
	boxes   map[cacheKey]*cachedBox
	lru     list.List // of *cachedBox, most recently used first
	bytes   int64     // UID list memory of all entries
	reloads int64     // full snapshots read (for tests)
}

type cacheKey struct {
	acct store.AccountID
	mbox store.MailboxID
}

// cachedBox is one mailbox's entry. snap is replaced, never modified, under mu; users,
// elem, bytes and gone are guarded by viewCache.mu.
type cachedBox struct {
	key   cacheKey
	watch *boxWatch // the cache's own reference

	mu   sync.Mutex // serialises refreshes
	snap *boxSnap

	users int           // get calls in progress
	elem  *list.Element // in viewCache.lru; nil once dropped
	bytes int64
	gone  bool // dropped from the cache while in use; the last user releases the watch
}

// boxSnap is a mailbox's live UIDs from one consistent read (a snapshot, or an earlier
// boxSnap brought forward by ChangesSince). It is immutable once published.
type boxSnap struct {
	uids    []store.UID // ascending
	modseq  store.ModSeq
	uidNext store.UID
	gen     uint64 // the watch's generation before the read: a later touch forces a re-read
}

// viewCache attaches to the backend's hub when first used.
func (c *viewCache) init(h *hub) {
	c.once.Do(func() {
		c.hub = h
		if c.limit == 0 {
			c.limit = DefaultViewCacheBytes
		}
		c.boxes = make(map[cacheKey]*cachedBox)
		c.all = h.acquire(uuid.Nil)
		c.allGen = c.all.gen.Load()
	})
}

// get returns the mailbox's UIDs as of a MODSEQ at least as high as any the hub has heard
// of, reading them from the store only when the cached list is missing or behind. The
// caller must hold its own reference on the mailbox's watch (the session's SELECT does), and
// must not modify the returned list.
func (c *viewCache) get(ctx context.Context, h *hub, st *store.Store, acct store.AccountID, mbox store.MailboxID) (*boxSnap, error) {
	c.init(h)
	e := c.pin(cacheKey{acct, mbox})
	defer c.unpin(e)

	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.snap
	gen := e.watch.gen.Load()
	if old != nil && store.ModSeq(e.watch.modseq.Load()) <= old.modseq && gen == old.gen {
		return old, nil
	}
	var snap *boxSnap
	if old != nil {
		ch, err := st.ChangesSince(ctx, acct, mbox, old.modseq)
		if errors.Is(err, store.ErrNoSuchMailbox) {
			c.drop(e)
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		if ch.HighestModSeq >= old.modseq {
			snap = &boxSnap{uids: applyChanges(old.uids, ch), modseq: ch.HighestModSeq, uidNext: ch.UIDNext, gen: gen}
		}
		// A HIGHESTMODSEQ below the cached one means the mailbox is not the one cached (it
		// was deleted and its ID came back): read it afresh.
	}
	if snap == nil {
		s, err := st.Snapshot(ctx, acct, mbox)
		if errors.Is(err, store.ErrNoSuchMailbox) {
			c.drop(e)
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		snap = &boxSnap{uids: s.UIDs, modseq: s.Mailbox.HighestModSeq, uidNext: s.Mailbox.UIDNext, gen: gen}
		c.mu.Lock()
		c.reloads++
		c.mu.Unlock()
	}
	c.hub.bump(mbox, snap.modseq)
	e.snap = snap
	c.resize(e, int64(cap(snap.uids))*4)
	return snap, nil
}

// applyChanges returns uids with ch applied: tombstoned UIDs removed, new UIDs added. uids is
// not modified; when nothing but flags changed it is returned as it is.
func applyChanges(uids []store.UID, ch store.Changes) []store.UID {
	var gone []int
	for _, u := range ch.Expunged {
		if i, ok := slices.BinarySearch(uids, u); ok {
			gone = append(gone, i)
		}
	}
	var added []store.UID
	for _, m := range ch.Changed {
		if _, ok := slices.BinarySearch(uids, m.UID); !ok {
			added = append(added, m.UID)
		}
	}
	if len(gone) == 0 && len(added) == 0 {
		return uids
	}
	out := make([]store.UID, 0, len(uids)-len(gone)+len(added))
	prev := 0
	for _, i := range gone {
		out = append(out, uids[prev:i]...)
		prev = i + 1
	}
	out = append(out, uids[prev:]...)
	// New UIDs are above every UID of the mailbox (they are allocated above UIDNEXT), so
	// they normally go at the end; insert in order anyway, whatever the store sent.
	for _, u := range added {
		if n := len(out); n == 0 || out[n-1] < u {
			out = append(out, u)
			continue
		}
		if i, ok := slices.BinarySearch(out, u); !ok {
			out = slices.Insert(out, i, u)
		}
	}
	return out
}

// pin finds or creates the entry for key and marks it in use, so that it is not evicted
// (nor its watch released) under a running get.
func (c *viewCache) pin(key cacheKey) *cachedBox {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checkAllLocked()
	e := c.boxes[key]
	if e == nil {
		e = &cachedBox{key: key, watch: c.hub.acquire(key.mbox)}
		e.elem = c.lru.PushFront(e)
		c.boxes[key] = e
	} else {
		c.lru.MoveToFront(e.elem)
	}
	e.users++
	return e
}

func (c *viewCache) unpin(e *cachedBox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.users--
	if e.gone && e.users == 0 {
		c.hub.release(e.watch)
	}
	c.evictLocked()
}

// checkAllLocked empties the cache if the hub has re-checked everything since the last time.
func (c *viewCache) checkAllLocked() {
	if g := c.all.gen.Load(); g != c.allGen {
		c.allGen = g
		for _, e := range c.boxes {
			c.dropLocked(e)
		}
	}
}

func (c *viewCache) drop(e *cachedBox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(e)
}

// dropLocked removes e from the cache. Its watch is released now, or by the last user.
func (c *viewCache) dropLocked(e *cachedBox) {
	if e.elem == nil {
		return
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	delete(c.boxes, e.key)
	c.bytes -= e.bytes
	e.bytes = 0
	e.gone = true
	if e.users == 0 {
		c.hub.release(e.watch)
	}
}

// resize records the memory of e's new list.
func (c *viewCache) resize(e *cachedBox, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.elem == nil {
		return // dropped meanwhile
	}
	c.bytes += n - e.bytes
	e.bytes = n
}

// evictLocked drops least recently used entries that are not in use and not selected by any
// session until the cache fits its limit.
func (c *viewCache) evictLocked() {
	for el := c.lru.Back(); el != nil && c.bytes > c.limit; {
		e := el.Value.(*cachedBox)
		el = el.Prev()
		if e.users == 0 && c.hub.refsOf(e.watch) <= 1 {
			c.dropLocked(e)
		}
	}
}

// stats reports the number of entries, their memory and the full snapshots read so far.
func (c *viewCache) stats() (entries int, bytes, reloads int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.all != nil {
		c.checkAllLocked()
	}
	return len(c.boxes), c.bytes, c.reloads
}

// refsOf returns how many references the watch has (sessions and the view cache).
func (h *hub) refsOf(w *boxWatch) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.refs
}

// selectView returns the view a SELECT starts from and the mailbox's UIDNEXT, from the view
// cache. mbox is the mailbox row the SELECT just read: the view is brought at least up to its
// HIGHESTMODSEQ, so that it is never older than anything the client could have seen before
// this SELECT, whichever process or connection showed it (STATUS, another session, the other
// replica), even when this process has not received the change's notification yet. The
// caller holds its own reference on the mailbox's hub watch.
func (b *Backend) selectView(ctx context.Context, acct store.AccountID, mbox store.Mailbox) (*view, store.UID, error) {
	b.hub.bump(mbox.ID, mbox.HighestModSeq)
	snap, err := b.views.get(ctx, b.hub, b.store, acct, mbox.ID)
	if err != nil {
		return nil, 0, fmt.Errorf("read mailbox view: %w", err)
	}
	v := newView(snap.uids, snap.modseq)
	v.gen = snap.gen
	return v, snap.uidNext, nil
}
