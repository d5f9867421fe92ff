package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ExploreOptions configure a randomized exploration.
type ExploreOptions struct {
	Seed     uint64
	First    int // index of the first scenario (to replay one of a run: --first K --count 1)
	Steps    int // random steps per scenario (at least 50 recommended)
	Count    int // scenarios to generate
	OutDir   string
	Out      io.Writer
	Postgres bool // include PostgreSQL restarts (private clusters only)
}

// ExploreResult summarises an exploration.
type ExploreResult struct {
	Scenarios int
	Steps     int
	Failure   *Failure // nil when every invariant held
	Repro     string   // the minimal scenario file written for a failure
}

const exploreAccount = "alice"

// checkpoint is the pseudo-step where the explorer heals the link, waits for convergence
// and checks every invariant against its model of what must exist.
const checkpoint = "checkpoint"

// Explore generates opts.Count random scenarios of opts.Steps steps from opts.Seed (the same
// seed does the same thing), runs them, and checks DESIGN.md's invariants at each
// convergence point: the replicas converge and are identical, every client session stayed
// consistent, no message is twice in a folder, and every acknowledged message that no step
// expunged or deleted is present exactly once in the account on both sides. On a violation
// it shrinks the steps to a minimal scenario that still fails the same way and writes it
// to OutDir.
func Explore(ctx context.Context, env *Env, opts ExploreOptions) (*ExploreResult, error) {
	if opts.Steps <= 0 {
		opts.Steps = 50
	}
	if opts.Count <= 0 {
		opts.Count = 1
	}
	res := &ExploreResult{}
	for k := opts.First; k < opts.First+opts.Count; k++ {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		seed := opts.Seed*1_000_003 + uint64(k)
		steps := generate(rand.New(rand.NewPCG(seed, 0x7477696e)), opts.Steps, opts.Postgres)
		t0 := time.Now()
		f, executed, err := exploreOnce(ctx, env, seed, steps)
		if err != nil {
			return res, err
		}
		res.Scenarios++
		res.Steps += len(steps)
		if opts.Out != nil && (f != nil || res.Scenarios%10 == 0 || res.Scenarios == opts.Count) {
			fmt.Fprintf(opts.Out, "explore: %d/%d scenarios (seed %d), last took %s\n", res.Scenarios, opts.Count, opts.Seed, time.Since(t0).Round(time.Millisecond))
		}
		if f == nil {
			continue
		}
		if opts.Out != nil {
			fmt.Fprintf(opts.Out, "explore: scenario %d (seed %d) violated an invariant: %s\nshrinking...\n", k, seed, f.Msg)
		}
		minimal, mf := shrink(ctx, env, seed, executed, classOf(f))
		if mf == nil {
			minimal, mf = executed, f
		}
		res.Failure = mf
		text := render(minimal, seed, mf)
		dir := opts.OutDir
		if dir == "" {
			dir = "."
		}
		path := filepath.Join(dir, fmt.Sprintf("explore-seed-%d.scenario", seed))
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return res, fmt.Errorf("write the failing scenario: %w", err)
		}
		res.Repro = path
		return res, nil
	}
	return res, nil
}

// model is what the explorer knows must hold.
type model struct {
	must    map[string]bool            // delivered, acknowledged, never expunged or deleted
	history map[string]map[string]bool // folders a message has been in
	// linked joins folder names that may denote one mailbox (renames), union-find style:
	// a rename may reach the other side after mail arrived there under the old name.
	linked  map[string]string
	folders []string
	next    int
}

// generate writes random steps (without expectations) over a small vocabulary.
func generate(rng *rand.Rand, n int, withPostgres bool) []string {
	steps := []string{"account " + exploreAccount, "folder A alice F1", "folder B alice F2", checkpoint}
	folders := []string{"INBOX", "F1", "F2"}
	var names []string
	loc := map[string]string{} // where the generator believes a message is
	sessions := 0
	cut := false
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	side := func() string { return pick([]string{"A", "B"}) }
	flags := []string{`\Seen`, `\Flagged`, `\Answered`, `\Draft`, "$Work", "$Later"}
	for i := 0; i < n; i++ {
		if i > 0 && i%12 == 0 {
			steps = append(steps, checkpoint)
			cut = false
		}
		r := rng.IntN(100)
		switch {
		case r < 30:
			name := fmt.Sprintf("m%d", len(names)+1)
			names = append(names, name)
			via := pick([]string{"", "via=append "})
			f := pick(folders)
			loc[name] = f
			steps = append(steps, fmt.Sprintf("deliver %s alice %s %s%s", side(), f, via, name))
		case r < 40 && len(names) > 0:
			op := pick([]string{"+", "-"})
			n := pick(names)
			steps = append(steps, fmt.Sprintf("store %s alice %s %s %s%s", side(), likely(rng, loc[n], folders), n, op, pick(flags)))
		case r < 46 && len(names) > 0:
			n := pick(names)
			steps = append(steps, fmt.Sprintf("expunge %s alice %s %s", side(), likely(rng, loc[n], folders), n))
		case r < 51 && len(names) > 0:
			n := pick(names)
			to := pick(folders)
			steps = append(steps, fmt.Sprintf("move %s alice %s %s %s", side(), likely(rng, loc[n], folders), to, n))
			loc[n] = to
		case r < 61:
			if cut {
				steps = append(steps, "heal")
			} else {
				steps = append(steps, "cut")
			}
			cut = !cut
		case r < 64:
			steps = append(steps, "worker crash")
		case r < 66:
			steps = append(steps, fmt.Sprintf("server %s restart", side()))
		case r < 69:
			f := fmt.Sprintf("G%d", rng.IntN(4))
			folders = append(folders, f)
			steps = append(steps, fmt.Sprintf("folder %s alice %s", side(), f))
		case r < 71 && len(folders) > 1:
			from := pick(folders[1:])
			to := fmt.Sprintf("R%d", rng.IntN(4))
			folders = append(folders, to)
			steps = append(steps, fmt.Sprintf("rename %s alice %s %s", side(), from, to))
		case r < 73 && len(folders) > 1:
			steps = append(steps, fmt.Sprintf("delete %s alice %s", side(), pick(folders[1:])))
		case r < 77:
			sessions++
			steps = append(steps, fmt.Sprintf("session s%d %s alice %s", rng.IntN(3), side(), pick(folders)))
		case r < 82:
			steps = append(steps, fmt.Sprintf("idle s%d", rng.IntN(3)))
		case r < 90:
			steps = append(steps, fmt.Sprintf("poll s%d", rng.IntN(3)))
		case r < 91 && withPostgres:
			steps = append(steps, fmt.Sprintf("postgres %s restart", side()))
		default:
			name := fmt.Sprintf("m%d", len(names)+1)
			names = append(names, name)
			steps = append(steps, fmt.Sprintf("deliver %s alice INBOX %s", side(), name))
		}
	}
	return append(steps, checkpoint)
}

// likely returns where a message probably is, most of the time, or a random folder.
func likely(rng *rand.Rand, where string, folders []string) string {
	if where != "" && rng.IntN(5) > 0 {
		return where
	}
	return folders[rng.IntN(len(folders))]
}

// executedStep is a step that ran (not skipped), or a checkpoint with the expectations it
// checked.
type executedStep struct {
	text   string
	checks []string
}

// exploreOnce runs generated steps; it returns the first invariant violation and the steps
// that ran up to it.
func exploreOnce(ctx context.Context, env *Env, seed uint64, steps []string) (*Failure, []executedStep, error) {
	r := &Runner{Env: env, Lenient: true, Seed: seed}
	x, err := r.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer x.close()
	m := &model{must: map[string]bool{}, history: map[string]map[string]bool{}}
	var done []executedStep
	for i, text := range steps {
		if text == checkpoint {
			checks := m.checks()
			done = append(done, executedStep{text: checkpoint, checks: checks})
			for _, c := range checks {
				st := Step{File: "explore", Line: i + 1, Text: c}
				f := strings.Fields(c)
				st.Op, st.Args = f[0], f[1:]
				if err := x.step(st); err != nil {
					if errors.Is(err, errSkip) {
						continue
					}
					return failureOf(st, err), done, nil
				}
			}
			continue
		}
		sc, err := Parse("explore", "explore", strings.NewReader(text))
		if err != nil {
			return nil, nil, fmt.Errorf("generated step %q: %w", text, err)
		}
		st := sc.Steps[0]
		st.Line = i + 1
		err = x.step(st)
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			var ee *errExpect
			if errors.As(err, &ee) {
				return failureOf(st, err), append(done, executedStep{text: text}), nil
			}
			if st.Op == "deliver" || st.Op == "session" || st.Op == "idle" || st.Op == "poll" {
				// Not acknowledged (or a client that could not connect): no model change.
				continue
			}
			if st.Op == "postgres" || st.Op == "server" || st.Op == "worker" {
				return failureOf(st, err), append(done, executedStep{text: text}), nil
			}
			continue
		}
		done = append(done, executedStep{text: text})
		m.apply(st)
	}
	return nil, done, nil
}

func failureOf(st Step, err error) *Failure {
	var ee *errExpect
	if errors.As(err, &ee) {
		return &Failure{Step: st, Msg: ee.msg, Detail: ee.detail}
	}
	return &Failure{Step: st, Msg: err.Error()}
}

// apply updates the model after a step that ran.
func (m *model) apply(st Step) {
	a := st.Args
	addHist := func(name, folder string) {
		if m.history[name] == nil {
			m.history[name] = map[string]bool{}
		}
		m.history[name][folder] = true
	}
	switch st.Op {
	case "deliver":
		rest := a[3:]
		if strings.HasPrefix(rest[0], "via=") {
			rest = rest[1:]
		}
		for _, n := range expandNames(rest) {
			m.must[n] = true
			addHist(n, a[2])
			addHist(n, "INBOX") // LMTP to a folder a side lacks lands in INBOX
		}
	case "expunge":
		for _, n := range expandNames(a[3:]) {
			m.must[n] = false
		}
	case "move":
		for _, n := range expandNames(a[4:]) {
			addHist(n, a[3])
		}
	case "rename":
		m.link(a[2], a[3])
	case "delete":
		root := m.find(a[2])
		for n, h := range m.history {
			for f := range h {
				if m.find(f) == root {
					m.must[n] = false
				}
			}
		}
	}
}

func (m *model) find(f string) string {
	for {
		p, ok := m.linked[f]
		if !ok || p == f {
			return f
		}
		f = p
	}
}

func (m *model) link(a, b string) {
	if m.linked == nil {
		m.linked = map[string]string{}
	}
	ra, rb := m.find(a), m.find(b)
	if ra != rb {
		m.linked[ra] = rb
	}
}

// checks are the expectations of a checkpoint.
func (m *model) checks() []string {
	var must []string
	for n, ok := range m.must {
		if ok {
			must = append(must, n)
		}
	}
	slices.SortFunc(must, func(x, y string) int { return cmpName(x, y) })
	out := []string{"heal", "worker start", "sync 90", "expect identical", "expect sessions", "expect both alice * unique"}
	for i := 0; i < len(must); i += 20 {
		out = append(out, "expect both alice * has "+strings.Join(must[i:min(i+20, len(must))], " "))
	}
	return out
}

func cmpName(x, y string) int {
	if len(x) != len(y) {
		return len(x) - len(y)
	}
	return strings.Compare(x, y)
}

// classOf names the kind of a failure, so shrinking keeps the same problem.
func classOf(f *Failure) string {
	msg := f.Msg
	for _, c := range []string{"did not converge", "replicas differ", "session", "more than once", "is lost", "places", "crashed"} {
		if strings.Contains(msg, c) {
			return c
		}
	}
	return f.Step.Op
}

// shrink removes steps while the scenario still fails in the same class (ddmin-style, with
// a bounded number of runs).
func shrink(ctx context.Context, env *Env, seed uint64, executed []executedStep, class string) ([]executedStep, *Failure) {
	var body []string
	for _, e := range executed[min(4, len(executed)):] {
		if e.text != checkpoint {
			body = append(body, e.text)
		}
	}
	prefix := []string{"account " + exploreAccount, "folder A alice F1", "folder B alice F2", checkpoint}
	try := func(candidate []string) ([]executedStep, *Failure) {
		steps := append(append(slices.Clone(prefix), candidate...), checkpoint)
		f, done, err := exploreOnce(ctx, env, seed, steps)
		if err != nil || f == nil || classOf(f) != class {
			return nil, nil
		}
		return done, f
	}
	best, bestF := try(body)
	if bestF == nil {
		return nil, nil
	}
	runs := 1
	chunk := max(len(body)/2, 1)
	for chunk >= 1 && runs < 80 {
		removed := false
		for start := 0; start < len(body) && runs < 80; {
			cand := append(slices.Clone(body[:start]), body[min(start+chunk, len(body)):]...)
			runs++
			if done, f := try(cand); f != nil {
				body, best, bestF = cand, done, f
				removed = true
				continue
			}
			start += chunk
		}
		if !removed {
			chunk /= 2
		}
	}
	return best, bestF
}

// render writes the steps that ran as a scenario file, checkpoints expanded into the
// expectations they checked.
func render(steps []executedStep, seed uint64, f *Failure) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Found by twinmail scenario explore (seed %d) and shrunk.\n# It failed with: %s\n", seed, strings.ReplaceAll(f.Msg, "\n", " "))
	for _, e := range steps {
		if e.text != checkpoint {
			sb.WriteString(e.text + "\n")
			continue
		}
		sb.WriteString("# convergence point\n")
		for _, c := range e.checks {
			sb.WriteString(c + "\n")
		}
	}
	return sb.String()
}
