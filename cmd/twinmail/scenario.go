package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/twinmail/twinmail/internal/scenario"
)

// scenarioCmd is "twinmail scenario run|explore".
type scenarioCmd struct {
	sio stdio
	sub command
	lbl string
}

func newScenarioCmd(sio stdio) *scenarioCmd { return &scenarioCmd{sio: sio} }

func (c *scenarioCmd) label() string { return c.lbl }

func (c *scenarioCmd) parseFlags(args []string) error {
	c.lbl = "scenario"
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := c.sio.err
		if len(args) > 0 {
			w = c.sio.out
		}
		fmt.Fprint(w, `Usage:
  twinmail scenario run [--junit FILE] [--a DSN --b DSN] FILE...
  twinmail scenario explore [--seed N] [--steps K] [--count M] [--out DIR]

Run replica-conflict scenarios (docs/scenarios.md), or explore random ones.
`)
		if len(args) == 0 {
			return usageError{errors.New("missing subcommand: run or explore")}
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "run":
		c.sub = newScenarioRunCmd(c.sio)
	case "explore":
		c.sub = newScenarioExploreCmd(c.sio)
	default:
		return usageError{fmt.Errorf("unknown subcommand %q: run or explore", args[0])}
	}
	c.lbl = "scenario " + args[0]
	return c.sub.parseFlags(args[1:])
}

func (c *scenarioCmd) run(ctx context.Context) error { return c.sub.run(ctx) }

// envFlags choose where scenarios run.
type envFlags struct {
	a, b   string
	dir    string
	logs   logFlags
	logger *slog.Logger
}

func (fs *flagSet) envFlags(e *envFlags) {
	fs.StringVar(&e.a, "a", "", "PostgreSQL server `address` for replica A; each scenario creates its own databases there\n(default: two private clusters, started for the run)")
	fs.StringVar(&e.b, "b", "", "PostgreSQL server `address` for replica B (with --a)")
	fs.StringVar(&e.dir, "dir", "", "`directory` for the private clusters (default: a temporary one, removed afterwards)")
	fs.logFlags(&e.logs)
}

func (e *envFlags) env(ctx context.Context) (*scenario.Env, error) {
	return scenario.NewEnv(ctx, scenario.EnvOptions{
		ServerA: e.a, ServerB: e.b, Dir: e.dir, Logger: e.logger,
		DisableReinjection: os.Getenv("TWINMAIL_TEST_DISABLE_REINJECTION") == "1",
	})
}

type scenarioRunCmd struct {
	fs    *flagSet
	env   envFlags
	junit string
	files []string
	scs   []*scenario.Scenario
}

func newScenarioRunCmd(sio stdio) *scenarioRunCmd {
	c := &scenarioRunCmd{}
	c.fs = newFlagSet(sio, "scenario run", "twinmail scenario run [--junit FILE] [--a DSN --b DSN] FILE...", `
Run scenario files (docs/scenarios.md) one after the other, each on a fresh pair of
replicas, and report every step and every failed expectation with both sides' state.
All files are checked before anything runs; a mistake is reported with its line number.
Exit status 0 only when every scenario passed.`)
	c.fs.envFlags(&c.env)
	c.fs.StringVar(&c.junit, "junit", "", "also write the results as JUnit XML to `file`")
	return c
}

func (c *scenarioRunCmd) parseFlags(args []string) error {
	files, err := c.fs.parse(args, 1, -1)
	if err != nil {
		return err
	}
	c.files = files
	for _, f := range files {
		sc, err := scenario.ParseFile(f)
		if err != nil {
			return err
		}
		c.scs = append(c.scs, sc)
	}
	c.env.logger, err = c.env.logs.logger(c.fs.sio.err)
	if err == nil && c.env.logs.level == "info" {
		c.env.logger = slog.New(slog.DiscardHandler) // the step report is the output
	}
	return err
}

func (c *scenarioRunCmd) run(ctx context.Context) error {
	env, err := c.env.env(ctx)
	if err != nil {
		return err
	}
	defer env.Close()
	r := &scenario.Runner{Env: env, Out: c.fs.sio.out}
	var results []*scenario.Result
	failed := 0
	for _, sc := range c.scs {
		if ctx.Err() != nil {
			break
		}
		res := r.Run(ctx, sc)
		results = append(results, res)
		if !res.Passed() {
			failed++
		}
	}
	if c.junit != "" {
		f, err := os.Create(c.junit)
		if err != nil {
			return fmt.Errorf("write JUnit XML: %w", err)
		}
		if err := scenario.WriteJUnit(f, "twinmail-scenarios", results); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write JUnit XML: %w", err)
		}
	}
	fmt.Fprintf(c.fs.sio.out, "\n%d scenario(s), %d passed, %d failed\n", len(results), len(results)-failed, failed)
	for _, res := range results {
		if !res.Passed() {
			fmt.Fprintf(c.fs.sio.out, "FAILED %s:\n", res.Name)
			for _, f := range res.Failures {
				fmt.Fprintf(c.fs.sio.out, "  %s\n", f.String())
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d scenario(s) failed", failed, len(results))
	}
	return nil
}

type scenarioExploreCmd struct {
	fs       *flagSet
	env      envFlags
	seed     string
	steps    int
	count    int
	first    int
	out      string
	postgres bool
}

func newScenarioExploreCmd(sio stdio) *scenarioExploreCmd {
	c := &scenarioExploreCmd{}
	c.fs = newFlagSet(sio, "scenario explore", "twinmail scenario explore [--seed N] [--steps K] [--count M] [--out DIR]", `
Generate random interleavings of scenario steps on both sides (deliveries, flag changes,
expunges, moves, folder operations, cuts and heals, worker crashes, server restarts, IDLEing
sessions), check DESIGN.md's invariants at every convergence point, and on a violation
write a minimal scenario file that reproduces it (the steps are shrunk) to --out.
The same seed does the same thing. Exit status 0 when no invariant was violated.`)
	c.fs.envFlags(&c.env)
	c.fs.StringVar(&c.seed, "seed", "", "random `seed` (default: a fresh one, printed)")
	c.fs.IntVar(&c.steps, "steps", 50, "random steps per scenario")
	c.fs.IntVar(&c.count, "count", 1, "scenarios to generate")
	c.fs.IntVar(&c.first, "first", 0, "index of the first scenario of the seed's sequence (replays scenario K of a run with --first K --count 1)")
	c.fs.StringVar(&c.out, "out", ".", "`directory` for the scenario file of a failure")
	c.fs.BoolVar(&c.postgres, "postgres-restarts", true, "include PostgreSQL restarts (private clusters only)")
	return c
}

func (c *scenarioExploreCmd) parseFlags(args []string) error {
	if _, err := c.fs.parse(args, 0, 0); err != nil {
		return err
	}
	if c.steps <= 0 || c.count <= 0 {
		return usageError{errors.New("--steps and --count must be positive")}
	}
	var err error
	c.env.logger, err = c.env.logs.logger(c.fs.sio.err)
	if err == nil && c.env.logs.level == "info" {
		c.env.logger = slog.New(slog.DiscardHandler)
	}
	return err
}

func (c *scenarioExploreCmd) run(ctx context.Context) error {
	var seed uint64
	if c.seed == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:]) % 1_000_000_000
	} else {
		var err error
		if seed, err = strconv.ParseUint(c.seed, 10, 64); err != nil {
			return usageError{fmt.Errorf("bad --seed %q", c.seed)}
		}
	}
	fmt.Fprintf(c.fs.sio.out, "explore: seed %d, %d scenario(s) of %d steps\n", seed, c.count, c.steps)
	env, err := c.env.env(ctx)
	if err != nil {
		return err
	}
	defer env.Close()
	res, err := scenario.Explore(ctx, env, scenario.ExploreOptions{
		Seed: seed, First: c.first, Steps: c.steps, Count: c.count, OutDir: c.out, Out: c.fs.sio.out,
		Postgres: c.postgres && c.env.a == "",
	})
	if err != nil {
		return err
	}
	if res.Failure != nil {
		fmt.Fprintf(c.fs.sio.out, "explore: invariant violated: %s\n%s\nminimal scenario: %s (run it with: twinmail scenario run %s)\n",
			res.Failure.Msg, res.Failure.Detail, res.Repro, res.Repro)
		return fmt.Errorf("invariant violated (seed %d); reproduce with %s", seed, res.Repro)
	}
	fmt.Fprintf(c.fs.sio.out, "explore: %d scenario(s), %d steps, no invariant violated (seed %d)\n", res.Scenarios, res.Steps, seed)
	return nil
}
