package integration

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/twinmail/twinmail"

// importRule forbids packages matching From (module-relative; a rule for "x" also covers
// "x/...") to import paths matching any of Deny. Except lists module-relative packages the
// rule does not apply to. Allow, when set, is the complete list of imports allowed instead.
type importRule struct {
	Name   string
	From   func(rel string) bool
	Deny   []string // full import paths; "p" matches p and p/...
	Allow  []string // if non-nil: only these imports are allowed
	NoTest bool     // apply only to non-test imports
}

func under(dirs ...string) func(string) bool {
	return func(rel string) bool {
		for _, d := range dirs {
			if rel == d || strings.HasPrefix(rel, d+"/") {
				return true
			}
		}
		return false
	}
}

func mod(rel string) string { return modulePath + "/" + rel }

var (
	pgxPaths   = []string{"github.com/jackc/pgx", "github.com/jackc/pgx/v5", "github.com/pressly/goose", "github.com/pressly/goose/v3"}
	goIMAP     = "github.com/emersion/go-imap/v2"
	goIMAPv1   = "github.com/emersion/go-imap"
	goSMTP     = "github.com/emersion/go-smtp"
	storeAbove = []string{mod("store"), mod("imapbackend"), mod("replica"), mod("lmtp"), mod("cmd")}
)

// importRules is STYLE.md's "(c) Layout, responsibilities and allowed imports" table.
var importRules = []importRule{
	{
		Name: "only store/... may import pgx or goose",
		From: func(rel string) bool { return !under("store")(rel) },
		Deny: pgxPaths,
	},
	{
		Name: "imapbackend must not import replica, lmtp or sql",
		From: under("imapbackend"),
		Deny: []string{mod("replica"), mod("lmtp"), mod("sql")},
	},
	{
		Name: "lmtp must not import imapbackend or replica",
		From: under("lmtp"),
		Deny: []string{mod("imapbackend"), mod("replica")},
	},
	{
		Name: "replica must not import go-imap, imapbackend or lmtp",
		From: under("replica"),
		Deny: []string{goIMAP, goIMAPv1, mod("imapbackend"), mod("lmtp")},
	},
	{
		Name: "store must not import imapbackend, replica, lmtp, go-imap or go-smtp",
		From: under("store"),
		Deny: []string{mod("imapbackend"), mod("replica"), mod("lmtp"), goIMAP, goIMAPv1, goSMTP},
	},
	{
		Name:  "sql imports only embed",
		From:  under("sql"),
		Allow: []string{"embed"},
	},
	{
		Name: "internal/pgcluster and internal/mailparse must not import store and above",
		From: under("internal/pgcluster", "internal/mailparse"),
		Deny: storeAbove,
	},
	{
		Name: "integration must not import imapbackend or replica (it drives the binary)",
		From: under("integration"),
		Deny: []string{mod("imapbackend"), mod("replica")},
	},
	{
		Name:   "store/storetest is imported only by tests",
		From:   func(rel string) bool { return !under("store/storetest")(rel) },
		Deny:   []string{mod("store/storetest")},
		NoTest: true,
	},
}

func matchesPath(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// pkgImports is one package's direct imports as go list reports them.
type pkgImports struct {
	Path        string
	Imports     []string
	TestImports []string // TestImports and XTestImports
}

// parseGoList parses lines of "path|imports|test imports".
func parseGoList(out string) []pkgImports {
	var pkgs []pkgImports
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		parts := strings.SplitN(line, "|", 3)
		if len(parts) != 3 {
			continue
		}
		pkgs = append(pkgs, pkgImports{Path: parts[0], Imports: strings.Fields(parts[1]), TestImports: strings.Fields(parts[2])})
	}
	return pkgs
}

// importViolations checks pkgs against rules and describes every forbidden edge.
func importViolations(pkgs []pkgImports, rules []importRule) []string {
	var bad []string
	for _, p := range pkgs {
		if !strings.HasPrefix(p.Path, modulePath+"/") && p.Path != modulePath {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.Path, modulePath), "/")
		// A package's own test files may import the package itself (x_test → x).
		var testImps []string
		for _, imp := range p.TestImports {
			if imp != p.Path {
				testImps = append(testImps, imp)
			}
		}
		for _, r := range rules {
			if !r.From(rel) {
				continue
			}
			check := func(imps []string, kind string) {
				for _, imp := range imps {
					if r.Allow != nil {
						if !slices.Contains(r.Allow, imp) {
							bad = append(bad, p.Path+" "+kind+" "+imp+": "+r.Name)
						}
						continue
					}
					for _, d := range r.Deny {
						if matchesPath(imp, d) {
							bad = append(bad, p.Path+" "+kind+" "+imp+": "+r.Name)
							break
						}
					}
				}
			}
			check(p.Imports, "imports")
			if !r.NoTest && r.Allow == nil {
				check(testImps, "test-imports")
			}
		}
	}
	return bad
}

// TestImportRules checks the checker itself against edges the table forbids and allows.
func TestImportRules(t *testing.T) {
	tests := []struct {
		pkg, imp string
		test     bool
		want     bool // want a violation
	}{
		{"imapbackend", "github.com/jackc/pgx/v5", false, true},
		{"imapbackend", "github.com/jackc/pgx/v5/pgconn", true, true},
		{"imapbackend", mod("store"), false, false},
		{"imapbackend", mod("store/storetest"), true, false},
		{"imapbackend", mod("store/storetest"), false, true},
		{"imapbackend", mod("replica"), false, true},
		{"imapbackend", mod("sql"), false, true},
		{"imapbackend", goIMAP + "/imapserver", false, false},
		{"cmd/twinmail", "github.com/pressly/goose/v3", false, true},
		{"cmd/twinmail", mod("sql"), false, false},
		{"replica", goIMAP, false, true},
		{"replica", mod("imapbackend"), false, true},
		{"replica", mod("store"), false, false},
		{"store", "github.com/jackc/pgx/v5/pgxpool", false, false},
		{"store", goSMTP, false, true},
		{"store", goIMAP + "/imapserver", false, true},
		{"store/storetest", mod("internal/pgcluster"), false, false},
		{"sql", "embed", false, false},
		{"sql", "fmt", false, true},
		{"internal/pgcluster", mod("store"), false, true},
		{"internal/mailparse", goIMAP, false, false},
		{"integration", mod("imapbackend"), true, true},
		{"integration", mod("store"), true, false},
		{"integration", "github.com/jackc/pgx/v5", true, true},
		{"lmtp", mod("replica"), false, true},
		{"lmtp", goSMTP, false, false},
	}
	for _, tt := range tests {
		p := pkgImports{Path: mod(tt.pkg)}
		if tt.test {
			p.TestImports = []string{tt.imp}
		} else {
			p.Imports = []string{tt.imp}
		}
		got := importViolations([]pkgImports{p}, importRules)
		if (len(got) > 0) != tt.want {
			t.Errorf("importViolations(%s → %s, test=%v) = %q, want violation: %v", tt.pkg, tt.imp, tt.test, got, tt.want)
		}
	}
}

// TestImports enforces STYLE.md's import table on the module as it is.
func TestImports(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}}|{{join .Imports " "}}|{{join .TestImports " "}} {{join .XTestImports " "}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list ./... in %s: %v\n%s", root, err, stderr)
	}
	pkgs := parseGoList(string(out))
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[p.Path] = true
	}
	// The check must not pass vacuously: the packages it is about must be there.
	for _, rel := range []string{"store", "sql", "imapbackend", "cmd/twinmail", "integration"} {
		if !seen[mod(rel)] {
			t.Errorf("go list ./... did not list %s; output:\n%s", mod(rel), out)
		}
	}
	for _, v := range importViolations(pkgs, importRules) {
		t.Errorf("forbidden import: %s", v)
	}
}
