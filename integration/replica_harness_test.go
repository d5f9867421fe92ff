package integration

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmail/twinmail/store/storetest"
)

// This file is the harness of the replication tests (replica_test.go, crash_test.go): a pair
// of replicas (two databases, a `twinmail serve` on each), the `twinmail replicate` worker as
// a process that can be paused, resumed and killed, IMAP clients that record the order of
// unilateral updates, and snapshots of mailboxes by Message-ID.

// replicaPair is two replicas: two databases with a `twinmail serve` each. The account User
// is created on A only and copied to B by the worker.
type replicaPair struct {
	DSNA, DSNB string
	A, B       *server
	User, Pass string
}

// newReplicaPair creates the two databases, the account on A, runs `replicate --once` so B
// has the account, and starts a server on each side.
func newReplicaPair(tb testing.TB) *replicaPair {
	tb.Helper()
	p := &replicaPair{DSNA: storetest.DSN(tb), DSNB: storetest.DSN(tb), User: "alice"}
	p.Pass = pw(p.User)
	addUser(tb, p.DSNA, p.User, p.Pass)
	p.replicateOnce(tb)
	p.A = startServer(tb, p.DSNA)
	p.B = startServer(tb, p.DSNB)
	tb.Cleanup(func() {
		if tb.Failed() {
			p.logStatus(tb)
		}
	})
	return p
}

func (p *replicaPair) pairArgs() []string { return []string{"--a", p.DSNA, "--b", p.DSNB} }

// side returns the server of side "A" or "B".
func (p *replicaPair) side(name string) *server {
	if name == "A" {
		return p.A
	}
	return p.B
}

// replicateOnce runs `twinmail replicate --once` and fails the test unless it exits 0.
func (p *replicaPair) replicateOnce(tb testing.TB, extra ...string) cliResult {
	tb.Helper()
	start := time.Now()
	res := runCLI(tb, nil, "", append(append([]string{"replicate", "--once"}, p.pairArgs()...), extra...)...)
	if res.Code != 0 {
		p.logStatus(tb)
		tb.Fatalf("twinmail replicate --once: exit %d\nstdout: %s\nstderr (worker log):\n%s", res.Code, res.Stdout, res.Stderr)
	}
	checkCLILog(tb, "replicate --once", res)
	tb.Logf("replicate --once took %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(res.Stdout))
	return res
}

// verify runs `twinmail verify`.
func (p *replicaPair) verify(tb testing.TB) cliResult {
	tb.Helper()
	res := runCLI(tb, nil, "", append([]string{"verify"}, p.pairArgs()...)...)
	checkCLILog(tb, "verify", res)
	return res
}

// checkCLILog fails the test if a command's output shows a panic or a data race.
func checkCLILog(tb testing.TB, what string, res cliResult) {
	tb.Helper()
	for _, bad := range []string{"panic", "DATA RACE"} {
		if strings.Contains(res.Stderr, bad) || strings.Contains(res.Stdout, bad) {
			tb.Errorf("twinmail %s output contains %q:\n%s%s", what, bad, res.Stdout, res.Stderr)
		}
	}
}

// mustVerify fails the test unless `twinmail verify` exits 0.
func (p *replicaPair) mustVerify(tb testing.TB) {
	tb.Helper()
	if res := p.verify(tb); res.Code != 0 {
		p.logStatus(tb)
		tb.Errorf("twinmail verify: exit %d, want 0 (identical)\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// waitConverged runs `twinmail verify` until it exits 0.
func (p *replicaPair) waitConverged(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res := p.verify(tb)
		if res.Code == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.logStatus(tb)
			tb.Fatalf("replicas did not converge within %v; last verify: exit %d\n%s%s", timeout, res.Code, res.Stdout, res.Stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logStatus logs `twinmail status` of the pair.
func (p *replicaPair) logStatus(tb testing.TB) {
	tb.Helper()
	res := runCLI(tb, nil, "", append([]string{"status"}, p.pairArgs()...)...)
	tb.Logf("twinmail status (exit %d):\n%s%s", res.Code, res.Stdout, res.Stderr)
}

// dial connects an ordered-event client to side "A" or "B" and logs in.
func (p *replicaPair) dial(tb testing.TB, side string) *rclient {
	tb.Helper()
	return dialR(tb, p.side(side).Addr, p.User, p.Pass)
}

// ---- the worker process ----

// worker is a running `twinmail replicate`.
type worker struct {
	*proc
	tb testing.TB
}

// startWorker starts `twinmail replicate` on the pair (not --once). When the test ends it is
// stopped with SIGTERM (exit status 0 asserted) unless it was killed; its log goes to the
// test log if the test failed.
func (p *replicaPair) startWorker(tb testing.TB, extra ...string) *worker {
	tb.Helper()
	args := append(append([]string{"replicate"}, p.pairArgs()...), extra...)
	w := &worker{proc: startProc(tb, "twinmail replicate", args...), tb: tb}
	tb.Cleanup(func() {
		w.stop(tb, syscall.SIGTERM)
		if tb.Failed() {
			tb.Logf("twinmail replicate (pid %d) log:\n%s", w.cmd.Process.Pid, w.output)
		}
	})
	return w
}

// count returns how often s occurs in the worker's log.
func (w *worker) count(s string) int { return strings.Count(w.output.String(), s) }

// waitLog waits until the worker's log holds s at least n times.
func (w *worker) waitLog(tb testing.TB, s string, n int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for w.count(s) < n {
		if w.exited() {
			tb.Fatalf("worker exited (%v) before logging %q; log:\n%s", w.cmd.ProcessState, s, w.output)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("worker did not log %q (%d times) within %v; log:\n%s", s, n, timeout, w.output)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	logActive  = "replication worker active"
	logWaiting = "another worker is active for this pair; waiting"
	logPaused  = "replication paused"
	logResumed = "replication resumed"
)

// pause cuts the link: SIGUSR1, then waits for the worker to say so and lets a round that
// was already running finish.
func (w *worker) pause(tb testing.TB) {
	tb.Helper()
	n := w.count(logPaused)
	if err := w.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		tb.Fatalf("SIGUSR1: %v", err)
	}
	w.waitLog(tb, logPaused, n+1, 20*time.Second)
	time.Sleep(500 * time.Millisecond)
}

// resume heals the link: SIGUSR2.
func (w *worker) resume(tb testing.TB) {
	tb.Helper()
	n := w.count(logResumed)
	if err := w.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		tb.Fatalf("SIGUSR2: %v", err)
	}
	w.waitLog(tb, logResumed, n+1, 20*time.Second)
}

// kill ends the worker with SIGKILL and waits for it.
func (w *worker) kill() {
	w.stopped = true
	w.cmd.Process.Kill()
	<-w.done
}

// ---- clients that record the order of unilateral updates ----

// eventLog records unilateral EXPUNGE, EXISTS and FETCH responses in the order they came.
type eventLog struct {
	mu  sync.Mutex
	evs []string // "EXPUNGE n", "EXISTS n", "FETCH n"
}

func (e *eventLog) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, s)
}

func (e *eventLog) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { e.add(fmt.Sprintf("EXPUNGE %d", seq)) },
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			if data.NumMessages != nil {
				e.add(fmt.Sprintf("EXISTS %d", *data.NumMessages))
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			seq := msg.SeqNum
			msg.Collect()
			e.add(fmt.Sprintf("FETCH %d", seq))
		},
	}
}

// take returns the events so far and clears them.
func (e *eventLog) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.evs
	e.evs = nil
	return out
}

func (e *eventLog) peek() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.evs)
}

// rclient is an imapclient.Client whose unilateral updates are recorded in order.
type rclient struct {
	*imapclient.Client
	Log   *eventLog
	trace *tailBuffer
	addr  string
}

// dialR connects and logs in. The connection is logged out when the test ends; on failure
// the tail of its protocol trace goes to the test log.
func dialR(tb testing.TB, addr, user, pass string) *rclient {
	tb.Helper()
	c, err := dialRErr(addr, user, pass)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Logout().Wait()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		c.Close()
		if tb.Failed() {
			tb.Logf("IMAP trace (tail) of a client of %s:\n%s", addr, c.trace)
		}
	})
	return c
}

func dialRErr(addr, user, pass string) (*rclient, error) {
	ev := new(eventLog)
	trace := &tailBuffer{max: 16 << 10}
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{
		UnilateralDataHandler: ev.handler(),
		DebugWriter:           trace,
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("LOGIN %s at %s: %w", user, addr, err)
	}
	return &rclient{Client: c, Log: ev, trace: trace, addr: addr}, nil
}

// ---- messages identified by Message-ID ----

// idMsg returns a small message whose Message-ID is <id>.
func idMsg(id string) []byte {
	return crlfLines(
		"From: sender@example.org",
		"To: alice@example.net",
		"Subject: message "+id,
		"Date: "+time.Now().Format(time.RFC1123Z),
		"Message-ID: <"+id+">",
		"Content-Type: text/plain; charset=us-ascii",
		"",
		"Body of "+id+".",
	)
}

// appendID APPENDs idMsg(id) and returns its UID.
func (c *rclient) appendID(mailbox, id string, flags ...imap.Flag) (imap.UID, error) {
	raw := idMsg(id)
	cmd := c.Append(mailbox, int64(len(raw)), &imap.AppendOptions{Flags: flags})
	if _, err := cmd.Write(raw); err != nil {
		return 0, fmt.Errorf("APPEND %s to %s: %w", id, mailbox, err)
	}
	if err := cmd.Close(); err != nil {
		return 0, fmt.Errorf("APPEND %s to %s: %w", id, mailbox, err)
	}
	data, err := cmd.Wait()
	if err != nil {
		return 0, fmt.Errorf("APPEND %s to %s: %w", id, mailbox, err)
	}
	if data.UID == 0 {
		return 0, fmt.Errorf("APPEND %s to %s: no APPENDUID", id, mailbox)
	}
	return data.UID, nil
}

func (c *rclient) mustAppend(tb testing.TB, mailbox, id string, flags ...imap.Flag) imap.UID {
	tb.Helper()
	uid, err := c.appendID(mailbox, id, flags...)
	if err != nil {
		tb.Fatal(err)
	}
	return uid
}

var msgIDSection = &imap.FetchItemBodySection{
	Specifier:    imap.PartSpecifierHeader,
	HeaderFields: []string{"Message-ID"},
	Peek:         true,
}

// parseMsgID returns the Message-ID in a header block, without angle brackets.
func parseMsgID(hdr []byte) string {
	hdr = bytes.ReplaceAll(hdr, []byte("\r\n "), []byte(" "))
	hdr = bytes.ReplaceAll(hdr, []byte("\r\n\t"), []byte(" "))
	for _, line := range strings.Split(string(hdr), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "Message-ID") {
			return strings.Trim(strings.TrimSpace(v), "<>")
		}
	}
	return ""
}

// msgInfo is what a snapshot knows about one message.
type msgInfo struct {
	ID    string   // Message-ID
	Flags []string // sorted, lower-cased system flags as sent
}

// snapshot is a mailbox's UID → message map as an IMAP client sees it.
type snapshot map[imap.UID]msgInfo

// fetchSelected runs UID FETCH 1:* (UID FLAGS Message-ID) in the selected mailbox.
func (c *rclient) fetchSelected() (snapshot, error) {
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{msgIDSection},
	}).Collect()
	if err != nil {
		return nil, fmt.Errorf("UID FETCH 1:*: %w", err)
	}
	out := make(snapshot, len(msgs))
	for _, m := range msgs {
		id := parseMsgID(m.FindBodySection(msgIDSection))
		if id == "" {
			return nil, fmt.Errorf("UID FETCH 1:*: UID %d has no Message-ID (%q)", m.UID, m.FindBodySection(msgIDSection))
		}
		var flags []string
		for _, f := range m.Flags {
			flags = append(flags, string(f))
		}
		sort.Strings(flags)
		out[m.UID] = msgInfo{ID: id, Flags: flags}
	}
	return out, nil
}

// examine does a fresh EXAMINE of mailbox and fetches its messages.
func (c *rclient) examine(mailbox string) (*imap.SelectData, snapshot, error) {
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, nil, fmt.Errorf("EXAMINE %s: %w", mailbox, err)
	}
	snap, err := c.fetchSelected()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", mailbox, err)
	}
	return sel, snap, nil
}

func (c *rclient) mustExamine(tb testing.TB, mailbox string) (*imap.SelectData, snapshot) {
	tb.Helper()
	sel, snap, err := c.examine(mailbox)
	if err != nil {
		tb.Fatal(err)
	}
	return sel, snap
}

// uidNext returns STATUS mailbox (UIDNEXT UIDVALIDITY).
func (c *rclient) status(mailbox string) (*imap.StatusData, error) {
	st, err := c.Status(mailbox, &imap.StatusOptions{UIDNext: true, UIDValidity: true, NumMessages: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("STATUS %s: %w", mailbox, err)
	}
	return st, nil
}

func (c *rclient) mustStatus(tb testing.TB, mailbox string) *imap.StatusData {
	tb.Helper()
	st, err := c.status(mailbox)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// mailboxes returns the sorted names LIST "" "*" returns.
func (c *rclient) mailboxes(tb testing.TB) []string {
	tb.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		tb.Fatalf("LIST: %v", err)
	}
	var names []string
	for _, m := range list {
		names = append(names, m.Mailbox)
	}
	sort.Strings(names)
	return names
}

// byID inverts a snapshot: Message-ID → UIDs holding it.
func (s snapshot) byID() map[string][]imap.UID {
	out := map[string][]imap.UID{}
	for uid, m := range s {
		out[m.ID] = append(out[m.ID], uid)
	}
	for _, uids := range out {
		slices.Sort(uids)
	}
	return out
}

// ids returns the snapshot's Message-IDs, sorted (duplicates kept).
func (s snapshot) ids() []string {
	var out []string
	for _, m := range s {
		out = append(out, m.ID)
	}
	sort.Strings(out)
	return out
}

func (s snapshot) String() string {
	uids := slices.Sorted(maps.Keys(s))
	var b strings.Builder
	for i, u := range uids {
		if i == 30 {
			fmt.Fprintf(&b, " … (%d in all)", len(uids))
			break
		}
		fmt.Fprintf(&b, " %d:%s%v", u, s[u].ID, s[u].Flags)
	}
	return "{" + strings.TrimSpace(b.String()) + "}"
}

// diffSnapshots describes how two snapshots of one mailbox differ ("" when identical).
func diffSnapshots(a, b snapshot) string {
	var out []string
	uids := map[imap.UID]bool{}
	for u := range a {
		uids[u] = true
	}
	for u := range b {
		uids[u] = true
	}
	for _, u := range slices.Sorted(maps.Keys(uids)) {
		ma, okA := a[u]
		mb, okB := b[u]
		switch {
		case !okA:
			out = append(out, fmt.Sprintf("UID %d only on B (%s)", u, mb.ID))
		case !okB:
			out = append(out, fmt.Sprintf("UID %d only on A (%s)", u, ma.ID))
		case ma.ID != mb.ID:
			out = append(out, fmt.Sprintf("UID %d is %s on A, %s on B", u, ma.ID, mb.ID))
		case !slices.Equal(ma.Flags, mb.Flags):
			out = append(out, fmt.Sprintf("UID %d (%s) flags %v on A, %v on B", u, ma.ID, ma.Flags, mb.Flags))
		}
		if len(out) == 10 {
			out = append(out, "…")
			break
		}
	}
	return strings.Join(out, "; ")
}

// checkExactlyOnce reports Message-IDs of want missing from snap, present more than once, and
// Message-IDs in snap that are not in want.
func checkExactlyOnce(snap snapshot, want []string) error {
	have := snap.byID()
	var missing, doubled, extra []string
	wantSet := map[string]bool{}
	for _, id := range want {
		wantSet[id] = true
		switch uids := have[id]; len(uids) {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			doubled = append(doubled, fmt.Sprintf("%s at UIDs %v", id, uids))
		}
	}
	for id := range have {
		if !wantSet[id] {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(doubled)+len(extra) == 0 {
		return nil
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return fmt.Errorf("%d message(s) (want %d): missing %d %v; duplicated %d %v; unexpected %d %v",
		len(snap), len(want), len(missing), head(missing), len(doubled), head(doubled), len(extra), head(extra))
}

func head(s []string) []string {
	if len(s) > 8 {
		return append(slices.Clone(s[:8]), "…")
	}
	return s
}

// ---- UID history: a UID never means two messages, and never goes backwards ----

// uidHistory records, per replica and mailbox, every UID → Message-ID a client observed and
// the UIDNEXTs STATUS returned, and checks DESIGN invariant 2 on every new observation.
type uidHistory struct {
	mu    sync.Mutex
	boxes map[string]*boxHistory // "A/INBOX"
	errs  []string
	obs   int
	gone  int // UIDs observed to disappear (expunged or reinjected away)
}

type boxHistory struct {
	ids     map[imap.UID]string // every UID ever seen, with its Message-ID
	live    map[imap.UID]bool   // in the latest observation
	gone    map[imap.UID]bool   // seen, then no longer there
	uidNext uint32              // highest UIDNEXT seen before the latest observation started
	pending uint32              // highest UIDNEXT seen since the latest observation started
}

func newUIDHistory() *uidHistory { return &uidHistory{boxes: map[string]*boxHistory{}} }

func (h *uidHistory) box(key string) *boxHistory {
	b := h.boxes[key]
	if b == nil {
		b = &boxHistory{ids: map[imap.UID]string{}, live: map[imap.UID]bool{}, gone: map[imap.UID]bool{}}
		h.boxes[key] = b
	}
	return b
}

// sawUIDNext records a UIDNEXT that STATUS returned.
func (h *uidHistory) sawUIDNext(key string, uidNext uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.box(key)
	b.pending = max(b.pending, uidNext)
}

// observe records a complete snapshot of the mailbox, taken (by a fresh EXAMINE, which reads
// the database) after every sawUIDNext call so far for key. A message new in it must have a
// UID at or above every UIDNEXT seen before the previous snapshot was started: it was not in
// that one, so it became visible after those UIDNEXTs were read.
func (h *uidHistory) observe(key string, snap snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.obs++
	b := h.box(key)
	for uid, m := range snap {
		if old, ok := b.ids[uid]; ok && old != m.ID {
			h.errs = append(h.errs, fmt.Sprintf("%s: UID %d was %s, now %s (a UID reused for a different message)", key, uid, old, m.ID))
		}
		if b.gone[uid] {
			h.errs = append(h.errs, fmt.Sprintf("%s: UID %d (%s) reappeared after it was gone", key, uid, m.ID))
			delete(b.gone, uid)
		}
		if !b.live[uid] {
			if _, seenBefore := b.ids[uid]; !seenBefore && uint32(uid) < b.uidNext {
				h.errs = append(h.errs, fmt.Sprintf("%s: new message %s at UID %d, below UIDNEXT %d seen before", key, m.ID, uid, b.uidNext))
			}
		}
		b.ids[uid] = m.ID
	}
	for uid := range b.live {
		if _, ok := snap[uid]; !ok {
			b.gone[uid] = true
			h.gone++
		}
	}
	b.live = map[imap.UID]bool{}
	for uid := range snap {
		b.live[uid] = true
	}
	b.uidNext = max(b.uidNext, b.pending)
}

// errors returns the violations found so far.
func (h *uidHistory) errors() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.errs)
}

func (h *uidHistory) report(tb testing.TB) {
	tb.Helper()
	errs := h.errors()
	for i, e := range errs {
		if i == 20 {
			tb.Errorf("… and %d more UID history violations", len(errs)-20)
			break
		}
		tb.Errorf("UID history: %s", e)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	tb.Logf("UID history: %d observations of %d mailboxes, %d UIDs seen to go away", h.obs, len(h.boxes), h.gone)
}

// poll takes one STATUS + fresh EXAMINE snapshot of mailbox on c into the history.
func (h *uidHistory) poll(c *rclient, side, mailbox string) (snapshot, error) {
	key := side + "/" + mailbox
	st, err := c.status(mailbox)
	if err != nil {
		return nil, err
	}
	if st.UIDNext != 0 {
		h.sawUIDNext(key, uint32(st.UIDNext))
	}
	sel, snap, err := c.examine(mailbox)
	if err != nil {
		return nil, err
	}
	if st.UIDNext != 0 && sel.UIDNext < st.UIDNext {
		// Same connection, one command after the other: a fresh EXAMINE must not show an
		// older mailbox than STATUS just did.
		h.mu.Lock()
		h.errs = append(h.errs, fmt.Sprintf("%s: EXAMINE reported UIDNEXT %d (%d messages, highest UID %d) right after STATUS reported UIDNEXT %d (%d messages) on the same connection: the fresh SELECT view is stale",
			key, sel.UIDNext, sel.NumMessages, snap.maxUID(), st.UIDNext, derefU32(st.NumMessages)))
		h.mu.Unlock()
	}
	h.observe(key, snap)
	return snap, nil
}

func derefU32(p *uint32) uint32 {
	if p == nil {
		return 0
	}
	return *p
}

func (s snapshot) maxUID() imap.UID {
	var m imap.UID
	for u := range s {
		m = max(m, u)
	}
	return m
}

// ---- parallel delivery ----

// delivery is one message to APPEND.
type delivery struct {
	Mailbox, ID string
	UID         imap.UID // set by deliverAll
}

// deliverAll APPENDs the deliveries over the given clients in parallel (client i takes every
// len(clients)-th delivery) and records their UIDs. It returns the first error.
func deliverAll(clients []*rclient, ds []delivery) error {
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; j < len(ds); j += len(clients) {
				uid, err := c.appendID(ds[j].Mailbox, ds[j].ID)
				if err != nil {
					errs[i] = err
					return
				}
				ds[j].UID = uid
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// dialN opens n clients to side.
func (p *replicaPair) dialN(tb testing.TB, side string, n int) []*rclient {
	tb.Helper()
	out := make([]*rclient, n)
	for i := range out {
		out[i] = p.dial(tb, side)
	}
	return out
}

// compareSides takes a fresh snapshot of every mailbox on both sides (through cA and cB) and
// fails the test where they differ. It returns the snapshots of A.
func compareSides(tb testing.TB, cA, cB *rclient, mailboxes []string) map[string]snapshot {
	tb.Helper()
	out := map[string]snapshot{}
	for _, mb := range mailboxes {
		selA, snapA := cA.mustExamine(tb, mb)
		selB, snapB := cB.mustExamine(tb, mb)
		if d := diffSnapshots(snapA, snapB); d != "" {
			tb.Errorf("%s differs between A and B over IMAP: %s", mb, d)
		}
		if selA.UIDNext != selB.UIDNext || selA.UIDValidity != selB.UIDValidity {
			tb.Errorf("%s: UIDNEXT/UIDVALIDITY %d/%d on A, %d/%d on B", mb, selA.UIDNext, selA.UIDValidity, selB.UIDNext, selB.UIDValidity)
		}
		out[mb] = snapA
	}
	return out
}
