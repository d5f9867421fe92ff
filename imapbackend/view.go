package imapbackend

import (
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/store"
)

// view is one session's picture of its selected mailbox: the UIDs the client knows, in
// sequence-number order, and the MODSEQ up to which it has been told about changes.
//
// Ghosts are messages the store has expunged while the client could not be told (during
// FETCH, STORE and SEARCH): they keep their sequence numbers, count in EXISTS, are skipped by
// every command and are announced by the next Poll that may send EXPUNGE.
//
// view is plain data with no locking and no I/O; the Session serialises access.
type view struct {
	uids   []store.UID            // ascending; sequence number = index + 1; includes ghosts
	ghosts map[store.UID]struct{} // expunged in the store, not yet announced
	maxUID store.UID              // highest UID ever in the view; only higher UIDs are new
	modseq store.ModSeq           // every change up to this MODSEQ has been applied
	gen    uint64                 // hub generation seen by the last ChangesSince

	// echoed maps a UID to the MODSEQ of the flag state this session already sent (STORE
	// echo, \Seen set by FETCH), so that Poll does not send the same state again.
	echoed map[store.UID]store.ModSeq
}

// msgRef is a message of the view addressed by a command.
type msgRef struct {
	seq uint32
	uid store.UID
}

func newView(uids []store.UID, modseq store.ModSeq) *view {
	v := &view{
		uids:   slices.Clone(uids),
		ghosts: make(map[store.UID]struct{}),
		modseq: modseq,
		echoed: make(map[store.UID]store.ModSeq),
	}
	if n := len(v.uids); n > 0 {
		v.maxUID = v.uids[n-1]
	}
	return v
}

// count is the number of messages the client knows (EXISTS), ghosts included.
func (v *view) count() uint32 { return uint32(len(v.uids)) }

// index returns the position of uid in the view.
func (v *view) index(uid store.UID) (int, bool) {
	i, ok := slices.BinarySearch(v.uids, uid)
	return i, ok
}

// seqOf returns uid's sequence number, or 0 if the client does not know it.
func (v *view) seqOf(uid store.UID) uint32 {
	if i, ok := v.index(uid); ok {
		return uint32(i) + 1
	}
	return 0
}

func (v *view) isGhost(uid store.UID) bool {
	_, ok := v.ghosts[uid]
	return ok
}

// resolve turns a command's message set into the live messages of the view it names,
// ascending. Sequence numbers and "*" refer to the client's view; "$" is saved, the UIDs of
// the last SEARCH RETURN (SAVE). Numbers outside the view are ignored, and so are ghosts.
func (v *view) resolve(set imap.NumSet, saved []store.UID) []msgRef {
	var idx [][2]int // inclusive index intervals
	switch set := set.(type) {
	case imap.SeqSet:
		idx = v.seqIntervals(set)
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			return v.refsOf(saved)
		}
		idx = v.uidIntervals(set)
	}
	return v.refsIn(idx)
}

// refsOf returns the live view messages among uids (any order), ascending.
func (v *view) refsOf(uids []store.UID) []msgRef {
	var refs []msgRef
	for _, u := range uids {
		if i, ok := v.index(u); ok && !v.isGhost(u) {
			refs = append(refs, msgRef{seq: uint32(i) + 1, uid: u})
		}
	}
	slices.SortFunc(refs, func(a, b msgRef) int { return int(a.seq) - int(b.seq) })
	return slices.CompactFunc(refs, func(a, b msgRef) bool { return a.seq == b.seq })
}

// seqIntervals maps sequence ranges to index intervals of the view; 0 ("*") is the client's
// last message.
func (v *view) seqIntervals(set imap.SeqSet) [][2]int {
	n := uint32(len(v.uids))
	if n == 0 {
		return nil
	}
	var out [][2]int
	for _, r := range set {
		start, stop := r.Start, r.Stop
		if start == 0 {
			start = n
		}
		if stop == 0 {
			stop = n
		}
		if start > stop {
			start, stop = stop, start
		}
		if start > n {
			continue
		}
		stop = min(stop, n)
		out = append(out, [2]int{int(start) - 1, int(stop) - 1})
	}
	return mergeIntervals(out)
}

// uidIntervals maps UID ranges to index intervals of the view; 0 ("*") is the UID of the
// client's last message, so "n:*" always includes that message (RFC 9051 §6.4.9).
func (v *view) uidIntervals(set imap.UIDSet) [][2]int {
	n := len(v.uids)
	if n == 0 {
		return nil
	}
	last := v.uids[n-1]
	var out [][2]int
	for _, r := range set {
		start, stop := store.UID(r.Start), store.UID(r.Stop)
		if start == 0 {
			start = last
		}
		if stop == 0 {
			stop = last
		}
		if start > stop {
			start, stop = stop, start
		}
		lo := sort.Search(n, func(i int) bool { return v.uids[i] >= start })
		hi := sort.Search(n, func(i int) bool { return v.uids[i] > stop }) - 1
		if lo <= hi {
			out = append(out, [2]int{lo, hi})
		}
	}
	return mergeIntervals(out)
}

func mergeIntervals(in [][2]int) [][2]int {
	if len(in) < 2 {
		return in
	}
	slices.SortFunc(in, func(a, b [2]int) int { return a[0] - b[0] })
	out := in[:1]
	for _, r := range in[1:] {
		lastR := &out[len(out)-1]
		if r[0] <= lastR[1]+1 {
			lastR[1] = max(lastR[1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

func (v *view) refsIn(idx [][2]int) []msgRef {
	var refs []msgRef
	for _, r := range idx {
		for i := r[0]; i <= r[1]; i++ {
			u := v.uids[i]
			if v.isGhost(u) {
				continue
			}
			refs = append(refs, msgRef{seq: uint32(i) + 1, uid: u})
		}
	}
	return refs
}

// uidSet returns a store.UIDSet that covers refs (ascending by sequence number). Runs of
// consecutive sequence numbers become one range: no live message the view does not know can
// lie between two consecutive view entries, because new UIDs are always above the view.
func uidSet(refs []msgRef) store.UIDSet {
	var set store.UIDSet
	for i, r := range refs {
		if i > 0 && r.seq == refs[i-1].seq+1 {
			set[len(set)-1].Stop = r.uid
			continue
		}
		set = append(set, store.UIDRange{Start: r.uid, Stop: r.uid})
	}
	return set
}

// allRefs returns every live message of the view.
func (v *view) allRefs() []msgRef {
	if len(v.uids) == 0 {
		return nil
	}
	return v.refsIn([][2]int{{0, len(v.uids) - 1}})
}

// remove drops UIDs this session expunged itself (EXPUNGE, MOVE) and returns the sequence
// numbers to announce, in the order to write them: highest first, so that each number is
// still valid when the client reads it. UIDs not in the view are ignored, so nothing is
// announced twice.
func (v *view) remove(uids []store.UID) []uint32 {
	var idx []int
	for _, u := range uids {
		if i, ok := v.index(u); ok {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	seqs := make([]uint32, 0, len(idx))
	for k := len(idx) - 1; k >= 0; k-- {
		i := idx[k]
		seqs = append(seqs, uint32(i)+1)
		u := v.uids[i]
		delete(v.ghosts, u)
		delete(v.echoed, u)
		v.uids = slices.Delete(v.uids, i, i+1)
	}
	return seqs
}

// noteEcho records that the client was sent uid's flags as of MODSEQ m.
func (v *view) noteEcho(uid store.UID, m store.ModSeq) {
	if m > v.modseq && m > v.echoed[uid] {
		v.echoed[uid] = m
	}
}

// updateKind says what an update announces.
type updateKind int

const (
	updExpunge updateKind = iota // * seq EXPUNGE
	updExists                    // * n EXISTS
	updFlags                     // * seq FETCH (UID uid FLAGS (...))
)

// update is one unilateral response computed by apply.
type update struct {
	kind  updateKind
	num   uint32 // seq for updExpunge and updFlags, the count for updExists
	uid   store.UID
	flags []string
}

// apply folds the store's changes since v.modseq into the view and returns what to tell the
// client, in order: EXPUNGEs (highest sequence number first; only when allowExpunge, else the
// messages become ghosts), then EXISTS if messages arrived, then FETCH FLAGS for flag changes
// the client has not seen yet.
func (v *view) apply(ch store.Changes, allowExpunge bool) []update {
	var ups []update
	for _, u := range ch.Expunged {
		if _, ok := v.index(u); ok {
			v.ghosts[u] = struct{}{}
			delete(v.echoed, u)
		}
	}
	if allowExpunge && len(v.ghosts) > 0 {
		for i := len(v.uids) - 1; i >= 0; i-- {
			if v.isGhost(v.uids[i]) {
				ups = append(ups, update{kind: updExpunge, num: uint32(i) + 1})
			}
		}
		v.uids = slices.DeleteFunc(v.uids, v.isGhost)
		clear(v.ghosts)
	}

	var flagUps []update
	added := false
	for _, st := range ch.Changed {
		if st.UID > v.maxUID {
			v.uids = append(v.uids, st.UID)
			v.maxUID = st.UID
			added = true
			continue
		}
		i, ok := v.index(st.UID)
		if !ok || v.isGhost(st.UID) {
			continue
		}
		if m, ok := v.echoed[st.UID]; ok && st.ModSeq <= m {
			continue
		}
		flagUps = append(flagUps, update{kind: updFlags, num: uint32(i) + 1, uid: st.UID, flags: st.Flags})
	}
	if added {
		ups = append(ups, update{kind: updExists, num: v.count()})
	}
	ups = append(ups, flagUps...)

	if ch.HighestModSeq > v.modseq {
		v.modseq = ch.HighestModSeq
	}
	for u, m := range v.echoed {
		if m <= v.modseq {
			delete(v.echoed, u)
		}
	}
	return ups
}
