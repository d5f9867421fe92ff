package scenario

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseErrorsHaveLineNumbers(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"account alice\ndeliver C alice INBOX x\n", "t.scenario:2: \"C\" is not a side"},
		{"# only a comment\n", "no steps"},
		{"account alice\n\nfrobnicate\n", "t.scenario:3: unknown step \"frobnicate\""},
		{"expect A alice INBOX uid x ~ 3\n", "t.scenario:1: usage: expect SIDE ACCOUNT FOLDER uid"},
		{"store A alice INBOX x Seen\n", "bad flag change"},
	} {
		_, err := Parse("t.scenario", "t", strings.NewReader(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.src, err, tc.want)
		}
	}
}

func TestShippedScenariosParse(t *testing.T) {
	files, err := filepath.Glob("../../integration/scenarios/*.scenario")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped scenarios found: %v", err)
	}
	for _, f := range files {
		if _, err := ParseFile(f); err != nil {
			t.Error(err)
		}
	}
}

func TestRunBasicClash(t *testing.T) {
	ctx := context.Background()
	env, err := NewEnv(ctx, EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	sc, err := ParseFile("../../integration/scenarios/basic-clash.scenario")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Env: env, Out: os.Stdout}
	res := r.Run(ctx, sc)
	if !res.Passed() {
		t.Errorf("basic clash failed: %v", res.Failures)
	}
}
