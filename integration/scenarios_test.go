package integration

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runScenarios runs `twinmail scenario ARGS...` with a long deadline.
func runScenarios(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	return runCLIWithin(t, 20*time.Minute, env, "", append([]string{"scenario"}, args...)...)
}

type junitReport struct {
	Suites []struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Cases    []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func readJUnit(t *testing.T, path string) junitReport {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r junitReport
	if err := xml.Unmarshal(data, &r); err != nil {
		t.Fatalf("parse %s: %v\n%s", path, err, data)
	}
	if len(r.Suites) != 1 {
		t.Fatalf("JUnit report has %d suites, want 1", len(r.Suites))
	}
	return r
}

// TestShippedScenarios runs the whole scenario library through the binary, as CI and admins
// do. -short leaves out only the 10,000-message long cut (a soak run).
func TestShippedScenarios(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.scenario")
	if err != nil || len(files) < 12 {
		t.Fatalf("found %d shipped scenarios (%v), want at least 12", len(files), err)
	}
	if testing.Short() {
		var keep []string
		for _, f := range files {
			if !strings.Contains(f, "long-cut") {
				keep = append(keep, f)
			}
		}
		files = keep
	}
	junit := filepath.Join(t.TempDir(), "junit.xml")
	res := runScenarios(t, nil, append([]string{"run", "--junit", junit}, files...)...)
	if res.Code != 0 {
		t.Fatalf("scenario run exited %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	r := readJUnit(t, junit)
	if r.Suites[0].Tests != len(files) || r.Suites[0].Failures != 0 {
		t.Errorf("JUnit: %d tests, %d failures; want %d and 0", r.Suites[0].Tests, r.Suites[0].Failures, len(files))
	}
	if want := fmt.Sprintf("%d scenario(s), %d passed, 0 failed", len(files), len(files)); !strings.Contains(res.Stdout, want) {
		t.Errorf("summary missing %q:\n%s", want, res.Stdout)
	}
}

// TestScenarioChecksCanFail runs the clash scenarios against a deliberately broken worker
// (reinjection disabled through a test-only environment variable): they must fail, with a
// report that says what went wrong and shows both sides' state.
func TestScenarioChecksCanFail(t *testing.T) {
	junit := filepath.Join(t.TempDir(), "junit.xml")
	files := []string{"scenarios/basic-clash.scenario", "scenarios/many-folders.scenario"}
	res := runScenarios(t, []string{"TWINMAIL_TEST_DISABLE_REINJECTION=1"},
		append([]string{"run", "--junit", junit}, files...)...)
	if res.Code == 0 {
		t.Fatalf("scenario run passed with reinjection disabled:\n%s", res.Stdout)
	}
	for _, want := range []string{
		"FAIL", "replicas did not converge", "reinjection disabled",
		"A alice/INBOX: UIDNEXT", "B alice/INBOX: UIDNEXT", // both sides' state
		"2 scenario(s), 0 passed, 2 failed",
	} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, res.Stdout)
		}
	}
	if !strings.Contains(res.Stderr, "2 of 2 scenario(s) failed") {
		t.Errorf("stderr = %q, want the one-line summary", res.Stderr)
	}
	r := readJUnit(t, junit)
	if r.Suites[0].Failures != 2 {
		t.Errorf("JUnit failures = %d, want 2", r.Suites[0].Failures)
	}
}

// TestScenarioBadFile: a mistake in any file is reported with its line, before anything runs.
func TestScenarioBadFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.scenario")
	if err := os.WriteFile(bad, []byte("account alice\n# fine so far\ndeliver C alice INBOX x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runScenarios(t, nil, "run", "scenarios/basic-clash.scenario", bad)
	if res.Code == 0 {
		t.Fatal("a bad scenario file was accepted")
	}
	if !strings.Contains(res.Stderr, "bad.scenario:3:") || !strings.Contains(res.Stderr, "not a side") {
		t.Errorf("stderr = %q, want the file, line 3 and the reason", res.Stderr)
	}
	if strings.Contains(res.Stdout, "=== RUN") {
		t.Errorf("scenarios ran despite the bad file:\n%s", res.Stdout)
	}
}

// TestExploreFixedSeeds runs a bounded exploration: fixed seeds, a few scenarios of 50 steps.
func TestExploreFixedSeeds(t *testing.T) {
	out := t.TempDir()
	res := runScenarios(t, nil, "explore", "--seed", "20261204", "--steps", "50", "--count", "3", "--out", out)
	if res.Code != 0 {
		t.Fatalf("explore found a violation (exit %d):\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "3 scenario(s)") || !strings.Contains(res.Stdout, "no invariant violated") {
		t.Errorf("explore output:\n%s", res.Stdout)
	}
}
