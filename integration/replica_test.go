package integration

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Replication tests: two real databases, a `twinmail serve` on each, real IMAP clients on
// both, and the `twinmail replicate` binary as the worker (DESIGN.md, "Replication rules").
// "Cut" means the worker is not running or paused (SIGUSR1); "heal" starts it, resumes it
// (SIGUSR2) or runs `replicate --once`.

// TestReplicaClash: cut off, X is APPENDed to INBOX on A and Y on B, both at UID n, while a
// client on each side has INBOX selected, has seen UID n and IDLEs. After the heal both
// replicas hold X and Y at UIDs at or above the old UIDNEXT, UID n is gone, and each IDLE
// client was told EXPUNGE n and then EXISTS, without reconnecting.
func TestReplicaClash(t *testing.T) {
	t.Parallel()
	p := newReplicaPair(t)
	appA, appB := p.dial(t, "A"), p.dial(t, "B")
	// Two messages both sides agree on, so the clash is not at UID 1.
	appA.mustAppend(t, "INBOX", "old-1@a")
	appA.mustAppend(t, "INBOX", "old-2@a")
	p.replicateOnce(t)

	watchA, watchB := p.dial(t, "A"), p.dial(t, "B")
	for _, w := range []*rclient{watchA, watchB} {
		if _, err := w.Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("SELECT INBOX: %v", err)
		}
	}

	// Cut: no worker runs.
	x := appA.mustAppend(t, "INBOX", "x@a")
	y := appB.mustAppend(t, "INBOX", "y@b")
	if x != y || x != 3 {
		t.Fatalf("setup: X got UID %d on A and Y UID %d on B, want both 3", x, y)
	}
	const n = 3
	oldNext := uint32(0)
	for side, w := range map[string]*rclient{"A": watchA, "B": watchB} {
		want := map[string]string{"A": "x@a", "B": "y@b"}[side]
		// The watcher sees UID n (NOOP, then UID FETCH).
		waitFor(t, 10*time.Second, func() error {
			if err := w.Noop().Wait(); err != nil {
				return err
			}
			if got := w.Mailbox().NumMessages; got != n {
				return fmt.Errorf("watcher on %s: %d messages, want %d", side, got, n)
			}
			return nil
		})
		snap, err := w.fetchSelected()
		if err != nil {
			t.Fatal(err)
		}
		if snap[n].ID != want {
			t.Fatalf("watcher on %s: UID %d is %q, want %s (%v)", side, n, snap[n].ID, want, snap)
		}
		st := map[string]*rclient{"A": appA, "B": appB}[side].mustStatus(t, "INBOX")
		oldNext = max(oldNext, uint32(st.UIDNext))
		w.Log.take()
	}
	if oldNext != n+1 {
		t.Fatalf("setup: UIDNEXT %d, want %d", oldNext, n+1)
	}
	idleA, err := watchA.Idle()
	if err != nil {
		t.Fatalf("IDLE on A: %v", err)
	}
	idleB, err := watchB.Idle()
	if err != nil {
		t.Fatalf("IDLE on B: %v", err)
	}

	// Heal: start the worker.
	healed := time.Now()
	w := p.startWorker(t, "--sweep", "2s")
	w.waitLog(t, logActive, 1, 30*time.Second)

	// Each IDLE client must be told EXPUNGE n, then EXISTS n+1 (two new messages, one gone).
	for side, c := range map[string]*rclient{"A": watchA, "B": watchB} {
		var evs []string
		deadline := time.Now().Add(20 * time.Second)
		for {
			evs = c.Log.peek()
			if slices.Contains(evs, fmt.Sprintf("EXISTS %d", n+1)) {
				break
			}
			if time.Now().After(deadline) {
				p.logStatus(t)
				t.Fatalf("IDLE client on %s: no EXISTS %d within 20s of the heal; updates so far: %v", side, n+1, evs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("IDLE client on %s got %v, %v after the heal", side, evs, time.Since(healed).Round(time.Millisecond))
		iExp := slices.Index(evs, fmt.Sprintf("EXPUNGE %d", n))
		iExists := slices.Index(evs, fmt.Sprintf("EXISTS %d", n+1))
		switch {
		case iExp < 0:
			t.Errorf("IDLE client on %s: no EXPUNGE %d; updates: %v", side, n, evs)
		case iExp > iExists:
			t.Errorf("IDLE client on %s: EXISTS %d came before EXPUNGE %d; updates: %v", side, n+1, n, evs)
		}
		for _, e := range evs {
			if strings.HasPrefix(e, "EXPUNGE") && e != fmt.Sprintf("EXPUNGE %d", n) {
				t.Errorf("IDLE client on %s: unexpected %s; updates: %v", side, e, evs)
			}
		}
	}
	for side, idle := range map[string]interface {
		Close() error
		Wait() error
	}{"A": idleA, "B": idleB} {
		if err := idle.Close(); err != nil {
			t.Errorf("DONE on %s: %v", side, err)
		}
		if err := idle.Wait(); err != nil {
			t.Errorf("IDLE on %s ended with %v", side, err)
		}
	}

	// The same connections, still selected, see the new state.
	seen := map[string]snapshot{}
	for side, c := range map[string]*rclient{"A": watchA, "B": watchB} {
		if err := c.Noop().Wait(); err != nil {
			t.Fatalf("NOOP on %s after the heal: %v (connection lost?)", side, err)
		}
		if got := c.Mailbox().NumMessages; got != n+1 {
			t.Errorf("client on %s counts %d messages after the updates, want %d", side, got, n+1)
		}
		snap, err := c.fetchSelected()
		if err != nil {
			t.Fatalf("client on %s: %v", side, err)
		}
		seen[side] = snap
	}
	if d := diffSnapshots(seen["A"], seen["B"]); d != "" {
		t.Errorf("the selected clients see different INBOXes: %s", d)
	}

	// Fresh clients, fresh SELECT.
	fresh := map[string]snapshot{}
	for _, side := range []string{"A", "B"} {
		c := p.dial(t, side)
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatalf("SELECT INBOX on %s: %v", side, err)
		}
		snap, err := c.fetchSelected()
		if err != nil {
			t.Fatal(err)
		}
		fresh[side] = snap
		if _, ok := snap[n]; ok {
			t.Errorf("%s: UID %d still present: %v", side, n, snap)
		}
		byID := snap.byID()
		for _, id := range []string{"x@a", "y@b"} {
			uids := byID[id]
			if len(uids) != 1 || uint32(uids[0]) < oldNext {
				t.Errorf("%s: %s at UIDs %v, want exactly one UID >= the old UIDNEXT %d (%v)", side, id, uids, oldNext, snap)
			}
		}
		for _, id := range []string{"old-1@a", "old-2@a"} {
			if uids := byID[id]; len(uids) != 1 {
				t.Errorf("%s: %s at UIDs %v, want once", side, id, uids)
			}
		}
		if len(snap) != 4 {
			t.Errorf("%s: INBOX = %v, want 4 messages", side, snap)
		}
		if uint32(sel.UIDNext) < oldNext+2 {
			t.Errorf("%s: UIDNEXT %d after the reinjection, want >= %d", side, sel.UIDNext, oldNext+2)
		}
	}
	if d := diffSnapshots(fresh["A"], fresh["B"]); d != "" {
		t.Errorf("fresh SELECT + UID FETCH 1:* differ between A and B: %s", d)
	}
	if d := diffSnapshots(fresh["A"], seen["A"]); d != "" {
		t.Errorf("A: the IDLE client's view differs from a fresh SELECT: %s", d)
	}
	p.waitConverged(t, 10*time.Second)
	p.mustVerify(t)
}

// TestReplicaBulkClash: while cut off, 1,000 messages are delivered on each side by several
// IMAP clients in parallel, over INBOX and three folders, three of which get mail on both
// sides (clashes). After the heal `verify` says identical, every message is present exactly
// once per folder on both sides (by Message-ID), messages at UIDs only one side allocated
// kept their UID, and the clashing ones moved above both sides' UIDNEXT.
func TestReplicaBulkClash(t *testing.T) {
	t.Parallel()
	p := newReplicaPair(t)
	cA, cB := p.dial(t, "A"), p.dial(t, "B")
	folders := []string{"INBOX", "Work", "Lists", "News"}
	for _, f := range folders[1:] {
		if err := cA.Create(f, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", f, err)
		}
	}
	for i := range 3 {
		cA.mustAppend(t, "INBOX", fmt.Sprintf("before-%d@a", i))
	}
	p.replicateOnce(t)

	// Cut: A gets INBOX 350, Work 250, Lists 200, News 200; B gets INBOX 350, Work 300,
	// Lists 350. INBOX, Work and Lists clash; News is new on A only.
	perSide := map[string]map[string]int{
		"A": {"INBOX": 350, "Work": 250, "Lists": 200, "News": 200},
		"B": {"INBOX": 350, "Work": 300, "Lists": 350},
	}
	plans := map[string][]delivery{}
	want := map[string][]string{} // folder → Message-IDs
	for i := range 3 {
		want["INBOX"] = append(want["INBOX"], fmt.Sprintf("before-%d@a", i))
	}
	for side, counts := range perSide {
		var ds []delivery
		for _, f := range folders {
			for i := range counts[f] {
				id := fmt.Sprintf("%s-%d@%s", strings.ToLower(f), i, strings.ToLower(side))
				ds = append(ds, delivery{Mailbox: f, ID: id})
				want[f] = append(want[f], id)
			}
		}
		// Interleave folders, as real delivery would.
		rand.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
		plans[side] = ds
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := map[string]error{}
	var mu sync.Mutex
	for _, side := range []string{"A", "B"} {
		clients := p.dialN(t, side, 4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := deliverAll(clients, plans[side])
			mu.Lock()
			errs[side] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	for side, err := range errs {
		if err != nil {
			t.Fatalf("delivery on %s: %v", side, err)
		}
	}
	t.Logf("delivered 2 x 1000 messages over IMAP in %v", time.Since(start).Round(time.Millisecond))

	// What each side allocated while cut off, and its UIDNEXT.
	alloc := map[string]map[string]map[imap.UID]bool{"A": {}, "B": {}} // side → folder → UIDs
	next := map[string]uint32{}                                        // folder → max UIDNEXT
	for _, side := range []string{"A", "B"} {
		for _, d := range plans[side] {
			if alloc[side][d.Mailbox] == nil {
				alloc[side][d.Mailbox] = map[imap.UID]bool{}
			}
			alloc[side][d.Mailbox][d.UID] = true
		}
		c := map[string]*rclient{"A": cA, "B": cB}[side]
		for _, f := range folders {
			next[f] = max(next[f], uint32(c.mustStatus(t, f).UIDNext))
		}
	}
	clashing := 0
	for _, f := range folders {
		for uid := range alloc["A"][f] {
			if alloc["B"][f][uid] {
				clashing++
			}
		}
	}
	t.Logf("%d UIDs clash; UIDNEXT before the heal: %v", clashing, next)
	if clashing < 500 {
		t.Fatalf("setup: only %d clashing UIDs", clashing)
	}

	p.replicateOnce(t)
	p.mustVerify(t)

	snaps := compareSides(t, cA, cB, folders)
	for _, f := range folders {
		if err := checkExactlyOnce(snaps[f], want[f]); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// Messages at UIDs only their side allocated keep them; clashing ones move above
	// max(UIDNEXT A, UIDNEXT B).
	for _, side := range []string{"A", "B"} {
		other := map[string]string{"A": "B", "B": "A"}[side]
		bad := 0
		for _, d := range plans[side] {
			uids := snaps[d.Mailbox].byID()[d.ID]
			if len(uids) != 1 {
				continue // reported above
			}
			got := uids[0]
			if alloc[other][d.Mailbox][d.UID] {
				if uint32(got) < next[d.Mailbox] {
					bad++
					if bad <= 5 {
						t.Errorf("%s: %s clashed at UID %d on %s, now at UID %d, want >= the old UIDNEXT %d", d.Mailbox, d.ID, d.UID, side, got, next[d.Mailbox])
					}
				}
			} else if got != d.UID {
				bad++
				if bad <= 5 {
					t.Errorf("%s: %s was at UID %d on %s only (no clash), now at UID %d; want it kept", d.Mailbox, d.ID, d.UID, side, got)
				}
			}
		}
		if bad > 5 {
			t.Errorf("… %d such messages from %s in all", bad, side)
		}
	}
}

// TestReplicaFlagsAndFolders: while cut off, both sides change flags, expunge, and create,
// rename and delete folders; `replicate --once` heals. Different flags on one message both
// survive, an expunge beats a flag change, folder operations propagate, same-name creates
// merge without loss (one UIDVALIDITY), and a delete on one side while mail arrives on the
// other keeps the folder with the new mail.
func TestReplicaFlagsAndFolders(t *testing.T) {
	t.Parallel()
	p := newReplicaPair(t)
	cA, cB := p.dial(t, "A"), p.dial(t, "B")
	for _, f := range []string{"Reports", "Old", "Travel"} {
		if err := cA.Create(f, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", f, err)
		}
	}
	for i := 1; i <= 4; i++ {
		cA.mustAppend(t, "INBOX", fmt.Sprintf("m%d@a", i))
	}
	cA.mustAppend(t, "INBOX", "m5@a", "$Work")
	cA.mustAppend(t, "Reports", "report-old@a")
	cA.mustAppend(t, "Travel", "trip@a")
	p.replicateOnce(t)

	store := func(c *rclient, uid imap.UID, op imap.StoreFlagsOp, flags ...imap.Flag) {
		t.Helper()
		if _, err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Collect(); err != nil {
			t.Fatalf("UID STORE %d: %v", uid, err)
		}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Cut: no worker runs.
	must("SELECT on A", func() error { _, err := cA.Select("INBOX", nil).Wait(); return err }())
	must("SELECT on B", func() error { _, err := cB.Select("INBOX", nil).Wait(); return err }())
	// m1: \Seen on A, \Flagged on B: both survive.
	store(cA, 1, imap.StoreFlagsAdd, imap.FlagSeen)
	store(cB, 1, imap.StoreFlagsAdd, imap.FlagFlagged)
	// m2: $Label1 on A, $Label2 on B, and \Answered on both.
	store(cA, 2, imap.StoreFlagsAdd, "$Label1", imap.FlagAnswered)
	store(cB, 2, imap.StoreFlagsAdd, "$Label2", imap.FlagAnswered)
	// m3: expunged on A while B flags it: the expunge wins.
	store(cA, 3, imap.StoreFlagsAdd, imap.FlagDeleted)
	if _, err := cA.Expunge().Collect(); err != nil {
		t.Fatalf("EXPUNGE on A: %v", err)
	}
	store(cB, 3, imap.StoreFlagsAdd, imap.FlagFlagged, imap.FlagSeen)
	// m5: $Work removed on A while B adds \Seen: both changes survive.
	store(cA, 5, imap.StoreFlagsDel, "$Work")
	store(cB, 5, imap.StoreFlagsAdd, imap.FlagSeen)
	must("UNSELECT A", cA.Unselect().Wait())
	must("UNSELECT B", cB.Unselect().Wait())

	// Folders: create on each side, a rename on A, a delete on B.
	must("CREATE Projects on A", cA.Create("Projects", nil).Wait())
	cA.mustAppend(t, "Projects", "proj@a")
	must("CREATE Notes on B", cB.Create("Notes", nil).Wait())
	cB.mustAppend(t, "Notes", "note@b")
	must("RENAME Archive on A", cA.Rename("Archive", "Archive-2026", nil).Wait())
	must("DELETE Old on B", cB.Delete("Old").Wait())
	// Same-name creates on both sides, with mail on both: merged, nothing lost.
	must("CREATE Lists on A", cA.Create("Lists", nil).Wait())
	must("CREATE Lists on B", cB.Create("Lists", nil).Wait())
	uvA := cA.mustStatus(t, "Lists").UIDValidity
	uvB := cB.mustStatus(t, "Lists").UIDValidity
	cA.mustAppend(t, "Lists", "list-1@a")
	cA.mustAppend(t, "Lists", "list-2@a")
	cB.mustAppend(t, "Lists", "list-1@b")
	// A delete on A while mail arrives in that folder on B: it survives with the new mail.
	must("DELETE Reports on A", cA.Delete("Reports").Wait())
	cB.mustAppend(t, "Reports", "report-new@b")
	// Travel is renamed on both sides; the later rename wins.
	must("RENAME Travel on A", cA.Rename("Travel", "Travel-A", nil).Wait())
	time.Sleep(50 * time.Millisecond)
	must("RENAME Travel on B", cB.Rename("Travel", "Travel-B", nil).Wait())

	p.replicateOnce(t)
	p.mustVerify(t)

	wantBoxes := []string{"Archive-2026", "Drafts", "INBOX", "Junk", "Lists", "Notes", "Projects", "Reports", "Sent", "Trash", "Travel-B"}
	for side, c := range map[string]*rclient{"A": cA, "B": cB} {
		if got := c.mailboxes(t); !slices.Equal(got, wantBoxes) {
			t.Errorf("LIST on %s = %v, want %v", side, got, wantBoxes)
		}
	}
	snaps := compareSides(t, cA, cB, []string{"INBOX", "Projects", "Notes", "Lists", "Reports", "Archive-2026", "Travel-B"})
	inbox := snaps["INBOX"]
	flagsOf := func(id string) []string {
		uids := inbox.byID()[id]
		if len(uids) != 1 {
			t.Errorf("INBOX: %s at UIDs %v, want once (%v)", id, uids, inbox)
			return nil
		}
		return inbox[uids[0]].Flags
	}
	if got := flagsOf("m1@a"); !slices.Equal(got, []string{`\Flagged`, `\Seen`}) {
		t.Errorf("m1 flags %v, want \\Flagged (B) and \\Seen (A)", got)
	}
	if got := flagsOf("m2@a"); !slices.Equal(got, []string{"$Label1", "$Label2", `\Answered`}) {
		t.Errorf("m2 flags %v, want $Label1 $Label2 \\Answered", got)
	}
	if got := flagsOf("m5@a"); !slices.Equal(got, []string{`\Seen`}) {
		t.Errorf("m5 flags %v, want only \\Seen (A removed $Work, B added \\Seen)", got)
	}
	if got := flagsOf("m4@a"); len(got) != 0 {
		t.Errorf("m4 flags %v, want none", got)
	}
	if uids := inbox.byID()["m3@a"]; len(uids) != 0 {
		t.Errorf("m3 at UIDs %v: the expunge on A must beat the flag change on B", uids)
	}
	for f, ids := range map[string][]string{
		"Projects":     {"proj@a"},
		"Notes":        {"note@b"},
		"Lists":        {"list-1@a", "list-2@a", "list-1@b"},
		"Reports":      {"report-new@b"},
		"Archive-2026": nil,
		"Travel-B":     {"trip@a"},
	} {
		if err := checkExactlyOnce(snaps[f], ids); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if uvA != uvB {
		t.Errorf("Lists created on both sides got UIDVALIDITY %d on A and %d on B before the merge", uvA, uvB)
	}
	for side, c := range map[string]*rclient{"A": cA, "B": cB} {
		if uv := c.mustStatus(t, "Lists").UIDValidity; uv != uvA && uv != uvB {
			t.Errorf("merged Lists on %s has UIDVALIDITY %d, want %d or %d (one both sides had)", side, uv, uvA, uvB)
		}
	}
}

// TestReplicaUIDsNeverGoBackwards: a client on each replica polls STATUS UIDNEXT and a fresh
// EXAMINE + UID FETCH 1:* of each folder while both sides deliver, live and while cut off,
// with clashes, and while the worker catches up. A message new to it must never have a UID
// below a UIDNEXT it saw before, and no UID may ever stand for two messages.
func TestReplicaUIDsNeverGoBackwards(t *testing.T) {
	t.Parallel()
	p := newReplicaPair(t)
	folders := []string{"INBOX", "Work"}
	cA, cB := p.dial(t, "A"), p.dial(t, "B")
	if err := cA.Create("Work", nil).Wait(); err != nil {
		t.Fatalf("CREATE Work: %v", err)
	}
	p.replicateOnce(t)
	w := p.startWorker(t, "--sweep", "1s")
	w.waitLog(t, logActive, 1, 30*time.Second)

	hist := newUIDHistory()
	stop := make(chan struct{})
	var monitors sync.WaitGroup
	monErr := make([]error, 2)
	for i, side := range []string{"A", "B"} {
		c := map[string]*rclient{"A": cA, "B": cB}[side]
		monitors.Add(1)
		go func() {
			defer monitors.Done()
			for {
				for _, f := range folders {
					if _, err := hist.poll(c, side, f); err != nil {
						monErr[i] = fmt.Errorf("monitor on %s: %w", side, err)
						return
					}
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}

	want := map[string][]string{}
	var seq int
	phase := func(name string, perSide int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, side := range []string{"A", "B"} {
			var ds []delivery
			for range perSide {
				seq++
				f := folders[seq%len(folders)]
				id := fmt.Sprintf("%s-%d@%s", name, seq, strings.ToLower(side))
				ds = append(ds, delivery{Mailbox: f, ID: id})
				want[f] = append(want[f], id)
			}
			clients := p.dialN(t, side, 2)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = deliverAll(clients, ds)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	phase("live", 60)
	w.pause(t)
	phase("cut", 120)
	w.resume(t)
	phase("healing", 60)
	p.waitConverged(t, 60*time.Second)
	time.Sleep(300 * time.Millisecond) // one more round of polls on the converged state
	close(stop)
	monitors.Wait()
	for _, err := range monErr {
		if err != nil {
			t.Error(err)
		}
	}
	snaps := compareSides(t, cA, cB, folders)
	for _, f := range folders {
		if err := checkExactlyOnce(snaps[f], want[f]); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	hist.report(t)
	if hist.gone == 0 {
		t.Errorf("the monitors never saw a UID go away: no clash was observed, the test proves nothing")
	}
}

// TestReplicaTwoWorkers: two workers on one pair; only one is active, the other waits. When
// the active one is killed, the other takes over and converges new mail, clashes included.
func TestReplicaTwoWorkers(t *testing.T) {
	t.Parallel()
	p := newReplicaPair(t)
	cA, cB := p.dial(t, "A"), p.dial(t, "B")
	w1 := p.startWorker(t, "--sweep", "1s")
	w1.waitLog(t, logActive, 1, 30*time.Second)
	w2 := p.startWorker(t, "--sweep", "1s")
	w2.waitLog(t, logWaiting, 1, 30*time.Second)
	if w2.count(logActive) != 0 {
		t.Fatalf("second worker says it is active while the first one is; its log:\n%s", w2.output)
	}

	cA.mustAppend(t, "INBOX", "first@a")
	waitFor(t, 15*time.Second, func() error {
		_, snap, err := cB.examine("INBOX")
		if err != nil {
			return err
		}
		if len(snap.byID()["first@a"]) != 1 {
			return fmt.Errorf("first@a not on B yet: %v", snap)
		}
		return nil
	})
	if w2.count(logActive) != 0 {
		t.Errorf("second worker became active while the first one ran; its log:\n%s", w2.output)
	}

	w1.kill()
	killed := time.Now()
	w2.waitLog(t, logActive, 1, 30*time.Second)
	t.Logf("the second worker took over %v after the first was killed", time.Since(killed).Round(time.Millisecond))

	// New mail on both sides, clashing in INBOX.
	x := cA.mustAppend(t, "INBOX", "second@a")
	y := cB.mustAppend(t, "INBOX", "second@b")
	t.Logf("after the takeover: second@a at UID %d on A, second@b at UID %d on B", x, y)
	p.waitConverged(t, 30*time.Second)
	snaps := compareSides(t, cA, cB, []string{"INBOX"})
	if err := checkExactlyOnce(snaps["INBOX"], []string{"first@a", "second@a", "second@b"}); err != nil {
		t.Errorf("INBOX: %v", err)
	}
}

// TestReplicaFreshSelectAfterReplication: a message the worker copied to B is in the view of
// a fresh SELECT on B as soon as STATUS on B counts it. A client that saw UIDNEXT u (through
// STATUS, another connection or the other replica) must not be shown an older mailbox by a
// later SELECT, or the messages below u appear later, under UIDs it already passed
// (DESIGN invariants 2 and 3).
func TestReplicaFreshSelectAfterReplication(t *testing.T) {
	t.Parallel()
	const rounds = 40
	p := newReplicaPair(t)
	cA, cB := p.dial(t, "A"), p.dial(t, "B")
	w := p.startWorker(t, "--sweep", "1s")
	w.waitLog(t, logActive, 1, 30*time.Second)
	stale := 0
	for i := range rounds {
		uid := cA.mustAppend(t, "INBOX", fmt.Sprintf("fresh-%d@a", i))
		// Poll B's STATUS until it counts the copy, then SELECT at once.
		deadline := time.Now().Add(15 * time.Second)
		var st *imap.StatusData
		for {
			st = cB.mustStatus(t, "INBOX")
			if uint32(st.UIDNext) > uint32(uid) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: UID %d not replicated to B within 15s (STATUS UIDNEXT %d)", i, uid, st.UIDNext)
			}
			time.Sleep(5 * time.Millisecond)
		}
		sel, snap := cB.mustExamine(t, "INBOX")
		if _, ok := snap[uid]; !ok || sel.UIDNext < st.UIDNext {
			stale++
			if stale <= 3 {
				t.Errorf("round %d: STATUS on B reported UIDNEXT %d (%d messages), then a fresh EXAMINE on the same connection reported UIDNEXT %d with %d messages, without UID %d",
					i, st.UIDNext, derefU32(st.NumMessages), sel.UIDNext, sel.NumMessages, uid)
			}
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d fresh SELECTs on B showed a mailbox older than STATUS had just shown", stale, rounds)
	}
}
