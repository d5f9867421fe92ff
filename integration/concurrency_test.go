package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/store"
)

// uidWatch checks a sequence of observations of a mailbox's UIDs: every observation must be
// gap-free from 1 (nothing is expunged here) and a UID never appears after a higher one was seen.
type uidWatch struct {
	who  string
	seen map[uint32]bool
	max  uint32
	obs  int
}

func newUIDWatch(who string) *uidWatch { return &uidWatch{who: who, seen: map[uint32]bool{}} }

func (w *uidWatch) observe(uids []uint32) error {
	w.obs++
	for i, u := range uids {
		if u != uint32(i+1) {
			return fmt.Errorf("%s observation %d: UIDs %s are not 1..%d without gaps (a UID became visible before a lower one committed)", w.who, w.obs, summarize(uids), len(uids))
		}
	}
	maxBefore := w.max
	for _, u := range uids {
		if !w.seen[u] {
			if u < maxBefore {
				return fmt.Errorf("%s observation %d: UID %d appeared after UID %d had been seen", w.who, w.obs, u, maxBefore)
			}
			w.seen[u] = true
			w.max = max(w.max, u)
		}
	}
	if len(uids) < len(w.seen) {
		return fmt.Errorf("%s observation %d: %d UIDs, fewer than the %d seen before (nothing was expunged)", w.who, w.obs, len(uids), len(w.seen))
	}
	return nil
}

func summarize(uids []uint32) string {
	if len(uids) <= 12 {
		return fmt.Sprint(uids)
	}
	return fmt.Sprintf("%v … %v (%d)", uids[:6], uids[len(uids)-6:], len(uids))
}

// TestConcurrentAppend: 8 clients APPEND 50 messages each into one mailbox at once, while
// an IMAP client and a store reader watch. UIDs and MODSEQs must come out distinct, gap-free
// and in commit order (DESIGN invariant 3).
func TestConcurrentAppend(t *testing.T) {
	t.Parallel()
	const writers, perWriter = 8, 50
	const total = writers * perWriter
	s := newServer(t, "alice")
	st := openStore(t, s.DSN)
	acct := storeAccount(t, st, "alice")
	inbox := storeMailbox(t, st, acct, "INBOX")

	conns := make([]*client, writers)
	for i := range conns {
		conns[i] = dial(t, s.Addr, "alice", pw("alice"))
	}
	reader := dial(t, s.Addr, "alice", pw("alice"))
	selectMbox(t, reader, "INBOX", true)

	type result struct {
		data []*imap.AppendData
		err  error
	}
	results := make([]result, writers)
	stop := make(chan struct{})
	var watchers sync.WaitGroup
	watchErr := make([]error, 2)
	watchObs := make([]int, 2)

	// An IMAP client polls with NOOP + UID FETCH 1:* throughout.
	watchers.Add(1)
	go func() {
		defer watchers.Done()
		w := newUIDWatch("IMAP reader")
		defer func() { watchObs[0] = w.obs }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := reader.Noop().Wait(); err != nil {
				watchErr[0] = fmt.Errorf("NOOP: %w", err)
				return
			}
			msgs, err := reader.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
			if err != nil {
				watchErr[0] = fmt.Errorf("UID FETCH 1:*: %w", err)
				return
			}
			var uids []uint32
			for i, m := range msgs {
				if m.SeqNum != uint32(i+1) {
					watchErr[0] = fmt.Errorf("UID FETCH 1:* message %d has seqnum %d", i+1, m.SeqNum)
					return
				}
				uids = append(uids, uint32(m.UID))
			}
			if err := w.observe(uids); err != nil {
				watchErr[0] = err
				return
			}
		}
	}()

	// A store reader polls Snapshot and ChangesSince(0) throughout.
	watchers.Add(1)
	go func() {
		defer watchers.Done()
		ctx := context.Background()
		snapW, chW := newUIDWatch("store Snapshot"), newUIDWatch("store ChangesSince")
		defer func() { watchObs[1] = snapW.obs + chW.obs }()
		seenMod := map[store.UID]store.ModSeq{}
		var maxMod store.ModSeq
		for {
			select {
			case <-stop:
				return
			default:
			}
			snap, err := st.Snapshot(ctx, acct, inbox.ID)
			if err != nil {
				watchErr[1] = fmt.Errorf("store Snapshot: %w", err)
				return
			}
			var uids []uint32
			for _, u := range snap.UIDs {
				uids = append(uids, uint32(u))
			}
			if err := snapW.observe(uids); err != nil {
				watchErr[1] = err
				return
			}
			ch, err := st.ChangesSince(ctx, acct, inbox.ID, 0)
			if err != nil {
				watchErr[1] = fmt.Errorf("store ChangesSince: %w", err)
				return
			}
			uids = uids[:0]
			prevMax := maxMod
			for _, m := range ch.Changed {
				uids = append(uids, uint32(m.UID))
				if old, ok := seenMod[m.UID]; ok {
					if old != m.ModSeq {
						watchErr[1] = fmt.Errorf("store: MODSEQ of UID %d changed from %d to %d without a flag change", m.UID, old, m.ModSeq)
						return
					}
					continue
				}
				if m.ModSeq <= prevMax {
					watchErr[1] = fmt.Errorf("store: UID %d appeared with MODSEQ %d after MODSEQ %d had been seen", m.UID, m.ModSeq, prevMax)
					return
				}
				seenMod[m.UID] = m.ModSeq
				maxMod = max(maxMod, m.ModSeq)
			}
			if err := chW.observe(uids); err != nil {
				watchErr[1] = err
				return
			}
			time.Sleep(2 * time.Millisecond) // pacing only
		}
	}()

	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := range perWriter {
				raw := simpleMsg(fmt.Sprintf("c%d-m%d", i, j), fmt.Sprintf("writer%d@example.org", i), fmt.Sprintf("writer %d message %d", i, j), time.Now())
				d, err := tryAppend(conns[i], "INBOX", raw, nil)
				if err != nil {
					results[i].err = fmt.Errorf("writer %d APPEND %d: %w", i, j, err)
					return
				}
				results[i].data = append(results[i].data, d)
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d concurrent APPENDs took %v", total, time.Since(began))
	// Let the watchers see the final state at least once more, then stop them.
	time.Sleep(50 * time.Millisecond)
	close(stop)
	watchers.Wait()
	for i, err := range watchErr {
		if err != nil {
			t.Errorf("watcher %d: %v", i, err)
		}
		if watchObs[i] < 3 {
			t.Errorf("watcher %d made only %d observations; the check is too weak", i, watchObs[i])
		}
	}

	// Every APPENDUID distinct, 1..total between them, increasing per writer.
	byUID := map[imap.UID]string{}
	var validity uint32
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("%v", r.err)
		}
		for j, d := range r.data {
			if validity == 0 {
				validity = d.UIDValidity
			}
			if d.UIDValidity != validity || d.UID == 0 {
				t.Errorf("writer %d APPEND %d: APPENDUID %d %d, want UIDVALIDITY %d and a UID", i, j, d.UIDValidity, d.UID, validity)
			}
			if prev, dup := byUID[d.UID]; dup {
				t.Errorf("APPENDUID %d given twice: %s and c%d-m%d", d.UID, prev, i, j)
			}
			byUID[d.UID] = fmt.Sprintf("c%d-m%d", i, j)
			if j > 0 && d.UID <= r.data[j-1].UID {
				t.Errorf("writer %d: APPEND %d got UID %d after APPEND %d got %d; one client's sequential APPENDs must get increasing UIDs", i, j, d.UID, j-1, r.data[j-1].UID)
			}
		}
	}
	for u := imap.UID(1); u <= total; u++ {
		if _, ok := byUID[u]; !ok {
			t.Errorf("no APPEND got UID %d; UIDs are not gap-free 1..%d", u, total)
		}
	}

	// A fresh client sees 1..total in order, each UID holding the message that APPEND reported.
	c := dial(t, s.Addr, "alice", pw("alice"))
	if sel := selectMbox(t, c, "INBOX", true); sel.NumMessages != total || sel.UIDNext != total+1 {
		t.Errorf("EXAMINE INBOX = %d EXISTS UIDNEXT %d, want %d and %d", sel.NumMessages, sel.UIDNext, total, total+1)
	}
	msgs := fetch(t, c, imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true})
	if len(msgs) != total {
		t.Fatalf("UID FETCH 1:* returned %d messages, want %d", len(msgs), total)
	}
	for i, m := range msgs {
		if m.UID != imap.UID(i+1) || m.SeqNum != uint32(i+1) {
			t.Fatalf("UID FETCH 1:* item %d = seq %d UID %d, want seq and UID %d (strictly increasing, gap-free)", i, m.SeqNum, m.UID, i+1)
		}
		if m.Envelope == nil || m.Envelope.Subject != byUID[m.UID] {
			t.Errorf("UID %d holds %v, but APPENDUID %d was reported for %s", m.UID, m.Envelope, m.UID, byUID[m.UID])
		}
	}

	// MODSEQs increase with UID (allocated in the same commit order).
	metas := storeMetas(t, st, acct, inbox.ID)
	if len(metas) != total {
		t.Fatalf("store FetchMeta returned %d messages, want %d", len(metas), total)
	}
	for i := 1; i < len(metas); i++ {
		if metas[i].UID <= metas[i-1].UID || metas[i].ModSeq <= metas[i-1].ModSeq {
			t.Fatalf("store: UID %d MODSEQ %d follows UID %d MODSEQ %d; MODSEQs must increase with UID", metas[i].UID, metas[i].ModSeq, metas[i-1].UID, metas[i-1].ModSeq)
		}
	}
	mb := storeMailbox(t, st, acct, "INBOX")
	if mb.UIDNext != total+1 || mb.HighestModSeq < metas[len(metas)-1].ModSeq {
		t.Errorf("store mailbox UIDNEXT %d HIGHESTMODSEQ %d; want %d and ≥ %d", mb.UIDNext, mb.HighestModSeq, total+1, metas[len(metas)-1].ModSeq)
	}
	ids := map[store.MessageID]bool{}
	for _, m := range metas {
		ids[m.Message] = true
	}
	if len(ids) != total {
		t.Errorf("store: %d distinct message UUIDs for %d messages", len(ids), total)
	}
}

// TestUIDWatch checks the watcher itself: it must flag gaps and late lower UIDs.
func TestUIDWatch(t *testing.T) {
	tests := []struct {
		name string
		obs  [][]uint32
		ok   bool
	}{
		{"growing prefix", [][]uint32{{}, {1}, {1, 2, 3}, {1, 2, 3}, {1, 2, 3, 4}}, true},
		{"gap", [][]uint32{{1, 3}}, false},
		{"starts above 1", [][]uint32{{2}}, false},
		{"shrinks", [][]uint32{{1, 2}, {1}}, false},
	}
	for _, tt := range tests {
		w := newUIDWatch(tt.name)
		var err error
		for _, o := range tt.obs {
			if err = w.observe(o); err != nil {
				break
			}
		}
		if (err == nil) != tt.ok {
			t.Errorf("%s: observe = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	// A lower UID appearing after a higher one (possible only with a gap in between, which
	// the gap check catches first) is flagged by the ordering check too.
	w := newUIDWatch("order")
	w.seen[5], w.max = true, 5
	if err := w.observe([]uint32{1, 2, 3, 4, 5}); err == nil {
		t.Errorf("UIDs 1..4 appearing after 5 was seen: observe = nil, want an error")
	}
}
