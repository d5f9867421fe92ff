package integration

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashWorkerKilled kills the replication worker with SIGKILL at random points of its
// rounds, many times, with a few hundred clashing messages pending on each side and more
// mail delivered between the kills; small batches make every round many writes to both
// sides. A final `replicate --once` must converge: `verify` exits 0, every message is
// present exactly once per folder on both sides (by Message-ID), and no UID was ever seen
// standing for two different messages on a replica.
func TestCrashWorkerKilled(t *testing.T) {
	t.Parallel()
	const (
		iterations = 16
		initial    = 120 // per side and folder
		between    = 12  // per side, between kills
	)
	p := newReplicaPair(t)
	folders := []string{"INBOX", "Work"}
	cA, cB := p.dial(t, "A"), p.dial(t, "B")
	if err := cA.Create("Work", nil).Wait(); err != nil {
		t.Fatalf("CREATE Work: %v", err)
	}
	p.replicateOnce(t)
	clients := map[string][]*rclient{"A": p.dialN(t, "A", 3), "B": p.dialN(t, "B", 3)}
	monitor := map[string]*rclient{"A": cA, "B": cB}

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7)) // used under mu
	t.Logf("random seed %d", seed)
	want := map[string][]string{}
	var mu sync.Mutex
	seq := 0
	// deliverSome APPENDs perSide messages on each side, spread over the folders.
	var deliverErr error
	deliverSome := func(tag string, perSide int) error {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, side := range []string{"A", "B"} {
			var ds []delivery
			mu.Lock()
			for k := range perSide {
				f := folders[k%len(folders)]
				if tag != "init" {
					f = folders[rng.IntN(len(folders))]
				}
				seq++
				id := fmt.Sprintf("%s-%d@%s", tag, seq, strings.ToLower(side))
				ds = append(ds, delivery{Mailbox: f, ID: id})
				want[f] = append(want[f], id)
			}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = deliverAll(clients[side], ds)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("deliver %s: %w", tag, err)
			}
		}
		return nil
	}
	hist := newUIDHistory()
	observe := func() {
		t.Helper()
		for _, side := range []string{"A", "B"} {
			for _, f := range folders {
				if _, err := hist.poll(monitor[side], side, f); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	start := time.Now()
	if err := deliverSome("init", 2*initial); err != nil {
		t.Fatal(err)
	}
	t.Logf("delivered %d messages per side in %v", 2*initial, time.Since(start).Round(time.Millisecond))
	observe()

	active := 0
	for it := range iterations {
		w := p.startWorker(t, "--sweep", "500ms", "--batch-size", "40")
		// Every fourth worker dies while it starts and takes its locks; the others at a
		// random point after they became active, i.e. in the middle of their rounds.
		fromStart := it%4 == 0
		if !fromStart {
			w.waitLog(t, logActive, 1, 30*time.Second)
		}
		// Every third run, clients deliver while the worker runs, so that its writes race
		// theirs.
		var concurrent sync.WaitGroup
		if it%3 == 1 {
			concurrent.Add(1)
			go func() {
				defer concurrent.Done()
				deliverErr = deliverSome(fmt.Sprintf("during%d", it), between)
			}()
		}
		mu.Lock()
		delay := time.Duration(rng.IntN(300)) * time.Millisecond
		mu.Unlock()
		time.Sleep(delay)
		w.kill()
		concurrent.Wait()
		if deliverErr != nil {
			t.Fatal(deliverErr)
		}
		out := w.output.String()
		if strings.Contains(out, logActive) {
			active++
		}
		t.Logf("iteration %d: killed %v after %s; %d round(s) logged", it, delay,
			map[bool]string{true: "its start", false: "it became active"}[fromStart], strings.Count(out, "replication round"))
		if strings.Contains(out, "DATA RACE") || strings.Contains(out, "panic") {
			t.Errorf("iteration %d: worker log has a panic or data race:\n%s", it, out)
		}
		if err := deliverSome(fmt.Sprintf("it%d", it), between); err != nil {
			t.Fatal(err)
		}
		observe()
	}
	t.Logf("%d of %d workers were killed after they became active", active, iterations)
	if active < iterations/2 {
		t.Errorf("only %d of %d workers got to work before they were killed", active, iterations)
	}

	res := p.replicateOnce(t)
	t.Logf("final replicate --once log:\n%s", lastLines(res.Stderr, 15))
	p.mustVerify(t)
	observe()
	snaps := compareSides(t, cA, cB, folders)
	total := 0
	for _, f := range folders {
		total += len(want[f])
		if err := checkExactlyOnce(snaps[f], want[f]); err != nil {
			t.Errorf("%s after %d kills: %v", f, iterations, err)
		}
	}
	t.Logf("%d messages in all", total)
	hist.report(t)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
