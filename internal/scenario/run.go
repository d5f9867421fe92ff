package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmail/twinmail/replica"
	"github.com/twinmail/twinmail/store"
)

// Runner runs scenarios in an Env.
type Runner struct {
	Env *Env
	Out io.Writer // progress, one line per step; nil: none
	// Lenient skips steps that name messages a side does not hold (the explorer's random
	// steps), instead of failing the scenario.
	Lenient bool
	Seed    uint64
}

// Failure is a failed step or expectation.
type Failure struct {
	Step   Step
	Msg    string
	Detail string // both sides' state where it helps
}

func (f Failure) String() string {
	s := fmt.Sprintf("%s:%d: %s: %s", f.Step.File, f.Step.Line, f.Step.Text, f.Msg)
	if f.Detail != "" {
		s += "\n" + f.Detail
	}
	return s
}

// Result is the outcome of one scenario.
type Result struct {
	Name     string
	File     string
	Failures []Failure
	Duration time.Duration
	Steps    int
}

// Passed reports whether every step and expectation held.
func (r *Result) Passed() bool { return len(r.Failures) == 0 }

// errExpect marks a failed expectation: the scenario goes on to report all of them.
type errExpect struct {
	msg, detail string
}

func (e *errExpect) Error() string { return e.msg }

func expectf(detail, format string, args ...any) error {
	return &errExpect{msg: fmt.Sprintf(format, args...), detail: detail}
}

// errSkip is a lenient skip.
var errSkip = errors.New("skipped")

type run struct {
	r        *Runner
	ctx      context.Context
	p        *Pair
	ctl      map[string]*imapclient.Client // by side + account
	sessions map[string]*session
	vars     map[string]uint64
	accounts map[string]bool
}

// Run runs one scenario on a fresh pair.
func (r *Runner) Run(ctx context.Context, sc *Scenario) *Result {
	start := time.Now()
	res := &Result{Name: sc.Name, File: sc.File}
	r.printf("=== RUN   %s (%s)\n", sc.Name, sc.File)
	x, err := r.begin(ctx)
	if err != nil {
		res.Failures = append(res.Failures, Failure{Step: Step{File: sc.File}, Msg: "set up the pair: " + err.Error()})
		res.Duration = time.Since(start)
		return res
	}
	defer x.close()
	for _, st := range sc.Steps {
		res.Steps++
		t0 := time.Now()
		err := x.step(st)
		var ee *errExpect
		switch {
		case err == nil:
			r.printf("    ok   %4d  %s (%s)\n", st.Line, st.Text, time.Since(t0).Round(time.Millisecond))
		case errors.Is(err, errSkip):
			r.printf("    skip %4d  %s\n", st.Line, st.Text)
		case errors.As(err, &ee):
			res.Failures = append(res.Failures, Failure{Step: st, Msg: ee.msg, Detail: ee.detail})
			r.printf("    FAIL %4d  %s\n          %s\n%s", st.Line, st.Text, ee.msg, indent(ee.detail, "          "))
		default:
			res.Failures = append(res.Failures, Failure{Step: st, Msg: err.Error()})
			r.printf("    FAIL %4d  %s\n          %v\n", st.Line, st.Text, err)
			res.Duration = time.Since(start)
			r.printf("--- FAIL  %s (%s): stopped at line %d\n", sc.Name, res.Duration.Round(time.Millisecond), st.Line)
			return res
		}
	}
	res.Duration = time.Since(start)
	if res.Passed() {
		r.printf("--- PASS  %s (%s, %d steps)\n", sc.Name, res.Duration.Round(time.Millisecond), res.Steps)
	} else {
		r.printf("--- FAIL  %s (%s): %d failed expectation(s)\n", sc.Name, res.Duration.Round(time.Millisecond), len(res.Failures))
	}
	return res
}

// begin starts a fresh pair for a scenario.
func (r *Runner) begin(ctx context.Context) (*run, error) {
	p, err := r.Env.NewPair(ctx, r.Seed)
	if err != nil {
		return nil, err
	}
	return &run{r: r, ctx: ctx, p: p, ctl: map[string]*imapclient.Client{}, sessions: map[string]*session{}, vars: map[string]uint64{}, accounts: map[string]bool{}}, nil
}

func (r *Runner) printf(format string, args ...any) {
	if r.Out != nil {
		fmt.Fprintf(r.Out, format, args...)
	}
}

func indent(s, pre string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return pre + strings.Join(lines, "\n"+pre) + "\n"
}

func (x *run) close() {
	for _, s := range x.sessions {
		s.close()
	}
	for _, c := range x.ctl {
		c.Close()
	}
	x.p.Close()
}

func sideIndex(s string) int {
	if strings.EqualFold(s, "b") {
		return 1
	}
	return 0
}

func sidesOf(s string) []int {
	if s == "both" {
		return []int{0, 1}
	}
	return []int{sideIndex(s)}
}

// client returns a logged-in control connection for account on side i.
func (x *run) client(i int, account string) (*imapclient.Client, error) {
	key := sideNames[i] + "/" + account
	if c, ok := x.ctl[key]; ok {
		select {
		case <-c.Closed():
		default:
			if err := c.Noop().Wait(); err == nil {
				return c, nil
			}
		}
		c.Close()
		delete(x.ctl, key)
	}
	c, err := dial(x.p.sides[i].imapAdr, account, nil)
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", sideNames[i], err)
	}
	x.ctl[key] = c
	return c, nil
}

func (x *run) folder(i int, account, folder string) (folderState, error) {
	c, err := x.client(i, account)
	if err != nil {
		return folderState{}, err
	}
	fs, err := readFolder(c, folder)
	if err != nil {
		return folderState{}, fmt.Errorf("replica %s: %w", sideNames[i], err)
	}
	return fs, nil
}

// bothStates describes a folder on both sides, for failure reports.
func (x *run) bothStates(account, folder string) string {
	var sb strings.Builder
	for i := range 2 {
		fs, err := x.folder(i, account, folder)
		if err != nil {
			fmt.Fprintf(&sb, "%s %s/%s: %v\n", sideNames[i], account, folder, err)
			continue
		}
		fmt.Fprintf(&sb, "%s %s/%s: %s\n", sideNames[i], account, folder, fs)
	}
	return sb.String()
}

// uids resolves message names to UIDs in a folder on a side.
func (x *run) uids(i int, account, folder string, names []string) (imap.UIDSet, error) {
	fs, err := x.folder(i, account, folder)
	if err != nil {
		return nil, err
	}
	var set imap.UIDSet
	for _, n := range names {
		es := fs.byName(n)
		if len(es) == 0 {
			if x.r.Lenient {
				continue
			}
			return nil, fmt.Errorf("replica %s has no message %s in %s (%s)", sideNames[i], n, folder, fs)
		}
		for _, e := range es {
			set.AddNum(e.UID)
		}
	}
	if len(set) == 0 {
		return nil, errSkip
	}
	return set, nil
}

func (x *run) num(s string) (uint64, error) {
	if strings.HasPrefix(s, "$") {
		v, ok := x.vars[s[1:]]
		if !ok {
			return 0, fmt.Errorf("variable %s was never noted", s)
		}
		return v, nil
	}
	return strconv.ParseUint(s, 10, 32)
}

func compare(a uint64, op string, b uint64) bool {
	switch op {
	case ">=":
		return a >= b
	case ">":
		return a > b
	case "=":
		return a == b
	case "<":
		return a < b
	}
	return a <= b
}

func (x *run) lenient(err error) error {
	if err != nil && x.r.Lenient {
		return errSkip
	}
	return err
}

// step runs one step.
func (x *run) step(st Step) error {
	a := st.Args
	ctx := x.ctx
	switch st.Op {
	case "account":
		// The worker would copy the account too; keep it out of the way meanwhile.
		running := x.p.wstop != nil
		x.p.stopWorker()
		if running {
			defer x.p.startWorker()
		}
		if _, err := x.p.sides[0].st.CreateAccount(ctx, a[0], password); err != nil {
			return err
		}
		x.accounts[a[0]] = true
		return x.copyAccount(a[0])
	case "folder":
		c, err := x.client(sideIndex(a[0]), a[1])
		if err != nil {
			return err
		}
		return x.lenient(c.Create(a[2], nil).Wait())
	case "delete":
		c, err := x.client(sideIndex(a[0]), a[1])
		if err != nil {
			return err
		}
		return x.lenient(c.Delete(a[2]).Wait())
	case "rename":
		c, err := x.client(sideIndex(a[0]), a[1])
		if err != nil {
			return err
		}
		return x.lenient(c.Rename(a[2], a[3], nil).Wait())
	case "subscribe", "unsubscribe":
		c, err := x.client(sideIndex(a[0]), a[1])
		if err != nil {
			return err
		}
		if st.Op == "subscribe" {
			return x.lenient(c.Subscribe(a[2]).Wait())
		}
		return x.lenient(c.Unsubscribe(a[2]).Wait())
	case "cut":
		x.p.paused = true
		x.p.worker.PauseWait()
		return nil
	case "heal":
		x.p.paused = false
		x.p.worker.Resume()
		return nil
	case "sync":
		timeout := 60 * time.Second
		if len(a) == 1 {
			n, _ := strconv.Atoi(a[0])
			timeout = time.Duration(n) * time.Second
		}
		return x.sync(timeout)
	case "worker":
		switch a[0] {
		case "stop":
			x.p.stopWorker()
		case "start":
			if x.p.wstop == nil {
				x.p.startWorker()
			}
		case "crash":
			x.p.crash.Store(true)
			x.p.worker.Wake()
		}
		return nil
	case "postgres":
		return x.p.postgres(ctx, sideIndex(a[0]), a[1])
	case "server":
		s := x.p.sides[sideIndex(a[0])]
		if a[1] == "kill" {
			x.p.stopServers(s)
			return nil
		}
		if err := x.p.restartServers(s); err != nil {
			return err
		}
		for _, sess := range x.sessions {
			if sess.side == sideIndex(a[0]) {
				sess.addr = s.imapAdr
			}
		}
		return nil
	case "deliver":
		i := sideIndex(a[0])
		rest := a[3:]
		fn := deliverLMTP
		addr := x.p.sides[i].lmtpAdr
		if strings.HasPrefix(rest[0], "via=") {
			if rest[0] == "via=append" {
				fn, addr = deliverAppend, x.p.sides[i].imapAdr
			}
			rest = rest[1:]
		}
		return deliverParallel(fn, addr, a[1], a[2], expandNames(rest))
	case "store":
		return x.onMessages(a[0], a[1], a[2], a[3:4], func(c *imapclient.Client, set imap.UIDSet) error {
			for _, ch := range a[4:] {
				op := imap.StoreFlagsAdd
				if ch[0] == '-' {
					op = imap.StoreFlagsDel
				}
				if err := c.Store(set, &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.Flag(ch[1:])}}, nil).Close(); err != nil {
					return err
				}
			}
			return nil
		})
	case "expunge":
		return x.onMessages(a[0], a[1], a[2], a[3:], func(c *imapclient.Client, set imap.UIDSet) error {
			if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return err
			}
			return c.UIDExpunge(set).Close()
		})
	case "move":
		return x.onMessages(a[0], a[1], a[2], a[4:], func(c *imapclient.Client, set imap.UIDSet) error {
			_, err := c.Move(set, a[3]).Wait()
			return err
		})
	case "session":
		if old, ok := x.sessions[a[0]]; ok {
			old.close()
		}
		i := sideIndex(a[1])
		s := &session{name: a[0], side: i, account: a[2], folder: a[3], addr: x.p.sides[i].imapAdr}
		if err := s.open(); err != nil {
			return x.lenient(err)
		}
		x.sessions[a[0]] = s
		return nil
	case "idle":
		s, err := x.session(a[0])
		if err != nil {
			return err
		}
		return s.startIdle()
	case "poll":
		s, err := x.session(a[0])
		if err != nil {
			return err
		}
		if err := s.poll(); err != nil {
			return err
		}
		return x.problems(s)
	case "close":
		s, err := x.session(a[0])
		if err != nil {
			return err
		}
		s.close()
		delete(x.sessions, a[0])
		return x.problems(s)
	case "note":
		var v uint64
		for _, i := range sidesOf(strings.ToLower(a[1])) {
			fs, err := x.folder(i, a[2], a[3])
			if err != nil {
				return err
			}
			v = max(v, uint64(fs.UIDNext))
		}
		x.vars[a[0]] = v
		return nil
	case "expect":
		return x.expect(st)
	}
	return fmt.Errorf("unknown step %q", st.Op)
}

// onMessages runs fn with the named messages' UIDs on a control connection that has the
// folder selected.
func (x *run) onMessages(sideArg, account, folder string, names []string, fn func(*imapclient.Client, imap.UIDSet) error) error {
	i := sideIndex(sideArg)
	set, err := x.uids(i, account, folder, expandNames(names))
	if err != nil {
		return err
	}
	c, err := x.client(i, account)
	if err != nil {
		return err
	}
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		return x.lenient(err)
	}
	defer func() { _ = c.Unselect().Wait() }()
	return x.lenient(fn(c, set))
}

func (x *run) session(name string) (*session, error) {
	s, ok := x.sessions[name]
	if !ok {
		if x.r.Lenient {
			return nil, errSkip
		}
		return nil, fmt.Errorf("no session %q", name)
	}
	return s, nil
}

func (x *run) problems(s *session) error {
	if len(s.problems) == 0 {
		return nil
	}
	msg := strings.Join(s.problems, "; ")
	s.problems = nil
	return expectf(x.bothStates(s.account, s.folder), "%s", msg)
}

// copyAccount copies a new account and its mailboxes from A to B at once, cut or not, so
// that both sides accept its login (what the worker would do first).
func (x *run) copyAccount(name string) error {
	a, b := x.p.sides[0].st, x.p.sides[1].st
	accts, _, err := a.SyncAccounts(x.ctx)
	if err != nil {
		return err
	}
	for _, acct := range accts {
		if acct.Name != name {
			continue
		}
		if err := b.SyncPutAccount(x.ctx, acct); err != nil {
			return err
		}
		boxes, _, err := a.SyncMailboxes(x.ctx, "scenario-B", acct.ID)
		if err != nil {
			return err
		}
		ops := &store.MailboxOps{}
		for _, m := range boxes {
			ops.Create = append(ops.Create, m.Mailbox)
		}
		return b.ApplyMailboxOps(x.ctx, acct.ID, ops)
	}
	return fmt.Errorf("account %s not found on A", name)
}

// sync waits until the replicas are identical.
func (x *run) sync(timeout time.Duration) error {
	if x.p.paused {
		return errors.New("sync while the link is cut: heal first")
	}
	if x.p.wstop == nil {
		return errors.New("sync while the worker is stopped: worker start first")
	}
	deadline := time.Now().Add(timeout)
	same := 0
	var quiet int64
	start := x.p.worker.Stats()
	for {
		// Converged: identical, and then a whole round of the worker found nothing to do
		// (a round in flight could still be between its writes to A and B).
		diffs, err := replica.Verify(x.ctx, x.p.sides[0].st, x.p.sides[1].st, 10)
		if err == nil && len(diffs) == 0 {
			if same == 0 {
				quiet = x.p.worker.Stats().Quiet
				same = 1
			} else if x.p.worker.Stats().Quiet > quiet+1 {
				return nil
			}
		} else {
			same = 0
		}
		// A worker that fails round after round without a good one will not converge:
		// say so now rather than at the deadline.
		st := x.p.worker.Stats()
		stuck := st.Errors-start.Errors >= 10 && st.Rounds-st.Errors-st.Conflicts == start.Rounds-start.Errors-start.Conflicts
		if time.Now().After(deadline) || stuck {
			var sb strings.Builder
			for _, d := range diffs {
				fmt.Fprintln(&sb, d)
			}
			if err != nil {
				fmt.Fprintln(&sb, err)
			}
			fmt.Fprintf(&sb, "worker: %d rounds, %d errors, last error: %s\n", st.Rounds, st.Errors, st.LastError)
			if stuck {
				return expectf(sb.String(), "replicas did not converge: the worker failed %d rounds in a row", st.Errors-start.Errors)
			}
			return expectf(sb.String(), "replicas did not converge within %s", timeout)
		}
		x.p.worker.Wake()
		time.Sleep(50 * time.Millisecond)
	}
}

func (x *run) expect(st Step) error {
	a := st.Args
	if a[0] == "identical" {
		diffs, err := replica.Verify(x.ctx, x.p.sides[0].st, x.p.sides[1].st, 20)
		if err != nil {
			return err
		}
		if len(diffs) > 0 {
			var sb strings.Builder
			for _, d := range diffs {
				fmt.Fprintln(&sb, d)
			}
			return expectf(sb.String(), "replicas differ in %d place(s)", len(diffs))
		}
		return nil
	}
	if a[0] == "sessions" {
		var msgs []string
		names := make([]string, 0, len(x.sessions))
		for n := range x.sessions {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			s := x.sessions[n]
			if err := s.poll(); err != nil {
				msgs = append(msgs, fmt.Sprintf("session %s: %v", n, err))
			}
			msgs = append(msgs, s.problems...)
			s.problems = nil
		}
		if len(msgs) > 0 {
			return expectf(strings.Join(msgs, "\n"), "%d session problem(s)", len(msgs))
		}
		return nil
	}
	account, folder, what, rest := a[1], a[2], a[3], a[4:]
	if folder == "*" {
		return x.expectAll(a[0], account, what, expandNames(rest))
	}
	for _, i := range sidesOf(strings.ToLower(a[0])) {
		fs, err := x.folder(i, account, folder)
		if err != nil {
			return err
		}
		fail := func(format string, args ...any) error {
			return expectf(x.bothStates(account, folder), "replica %s: %s", sideNames[i], fmt.Sprintf(format, args...))
		}
		if !fs.Exists && what != "missing" {
			return fail("folder %s does not exist", folder)
		}
		switch what {
		case "exists":
		case "missing":
			if fs.Exists {
				return fail("folder %s exists", folder)
			}
		case "has", "once":
			for _, n := range expandNames(rest) {
				switch c := len(fs.byName(n)); {
				case c == 0:
					return fail("message %s is missing from %s", n, folder)
				case c > 1:
					return fail("message %s is in %s %d times", n, folder, c)
				}
			}
		case "lacks":
			for _, n := range expandNames(rest) {
				if len(fs.byName(n)) > 0 {
					return fail("message %s is in %s", n, folder)
				}
			}
		case "unique":
			if d := duplicates(fs); len(d) > 0 {
				return fail("messages more than once in %s: %s", folder, strings.Join(d, " "))
			}
		case "count":
			want, err := x.num(rest[0])
			if err != nil {
				return err
			}
			if uint64(len(fs.Entries)) != want {
				return fail("%s holds %d messages, want %d", folder, len(fs.Entries), want)
			}
		case "flags":
			es := fs.byName(rest[0])
			if len(es) != 1 {
				return fail("message %s is in %s %d times", rest[0], folder, len(es))
			}
			want := slices.Clone(rest[1:])
			slices.Sort(want)
			if !slices.EqualFunc(es[0].Flags, want, strings.EqualFold) {
				return fail("message %s has flags (%s), want (%s)", rest[0], strings.Join(es[0].Flags, " "), strings.Join(want, " "))
			}
		case "uid":
			es := fs.byName(rest[0])
			if len(es) != 1 {
				return fail("message %s is in %s %d times", rest[0], folder, len(es))
			}
			want, err := x.num(rest[2])
			if err != nil {
				return err
			}
			if !compare(uint64(es[0].UID), rest[1], want) {
				return fail("message %s has UID %d, want %s %d", rest[0], es[0].UID, rest[1], want)
			}
		case "uidnext":
			want, err := x.num(rest[1])
			if err != nil {
				return err
			}
			if !compare(uint64(fs.UIDNext), rest[0], want) {
				return fail("UIDNEXT is %d, want %s %d", fs.UIDNext, rest[0], want)
			}
		}
	}
	return nil
}

func duplicates(fs folderState) []string {
	seen := map[string]int{}
	for _, e := range fs.Entries {
		seen[e.Name]++
	}
	var d []string
	for n, c := range seen {
		if c > 1 {
			d = append(d, fmt.Sprintf("%s(x%d)", n, c))
		}
	}
	slices.Sort(d)
	return d
}

// allFolders reads every folder of an account on a side.
func (x *run) allFolders(i int, account string) (map[string]folderState, error) {
	c, err := x.client(i, account)
	if err != nil {
		return nil, err
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, fmt.Errorf("replica %s: list: %w", sideNames[i], err)
	}
	out := map[string]folderState{}
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		fs, err := readFolder(c, l.Mailbox)
		if err != nil {
			return nil, fmt.Errorf("replica %s: %w", sideNames[i], err)
		}
		out[l.Mailbox] = fs
	}
	return out, nil
}

// expectAll checks has / lacks / unique across all folders: "has" means exactly once in
// the whole account.
func (x *run) expectAll(sides, account, what string, names []string) error {
	for _, i := range sidesOf(strings.ToLower(sides)) {
		folders, err := x.allFolders(i, account)
		if err != nil {
			return err
		}
		describe := func() string {
			var sb strings.Builder
			keys := make([]string, 0, len(folders))
			for k := range folders {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				fmt.Fprintf(&sb, "%s %s/%s: %s\n", sideNames[i], account, k, folders[k])
			}
			return sb.String()
		}
		where := map[string][]string{}
		for name, fs := range folders {
			if what == "unique" {
				if d := duplicates(fs); len(d) > 0 {
					return expectf(describe(), "replica %s: messages more than once in %s: %s", sideNames[i], name, strings.Join(d, " "))
				}
			}
			for _, e := range fs.Entries {
				where[e.Name] = append(where[e.Name], name)
			}
		}
		for _, n := range names {
			switch {
			case what == "has" && len(where[n]) == 0:
				return expectf(describe(), "replica %s: message %s is lost (in no folder)", sideNames[i], n)
			case what == "has" && len(where[n]) > 1:
				return expectf(describe(), "replica %s: message %s is in %d places: %s", sideNames[i], n, len(where[n]), strings.Join(where[n], ", "))
			case what == "lacks" && len(where[n]) > 0:
				return expectf(describe(), "replica %s: message %s is in %s", sideNames[i], n, strings.Join(where[n], ", "))
			}
		}
	}
	return nil
}
