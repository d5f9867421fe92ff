// Package scenario runs replica-conflict scenarios: small plain-text programs that set up a
// pair of replicas, make both sides take writes (through IMAP and LMTP, over real sockets),
// cut and heal the link, crash parts, and check what every side and every client session
// ends up with. The language is documented in docs/scenarios.md. Explore generates random
// scenarios, checks the invariants of DESIGN.md at each convergence point, and shrinks a
// failing one to a minimal file.
//
// The runner is a tool, not product code: it drives store, imapbackend, lmtp and replica
// in-process, each replica on its own PostgreSQL cluster.
package scenario

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Step is one line of a scenario.
type Step struct {
	File string
	Line int
	Op   string
	Args []string
	Text string // the line as written, without comment
}

func (s Step) String() string { return s.Text }

// Scenario is a parsed scenario file.
type Scenario struct {
	Name  string
	File  string
	Steps []Step
}

// ParseError is a mistake in a scenario file, with its position.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ParseFile reads and checks a scenario file.
func ParseFile(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open scenario: %w", err)
	}
	defer f.Close()
	name := path
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.TrimSuffix(name, ".scenario")
	return Parse(path, name, f)
}

// Parse reads and checks a scenario.
func Parse(file, name string, r io.Reader) (*Scenario, error) {
	sc := &Scenario{Name: name, File: file}
	br := bufio.NewScanner(r)
	br.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for br.Scan() {
		line++
		text := br.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t') {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		f := strings.Fields(text)
		st := Step{File: file, Line: line, Op: strings.ToLower(f[0]), Args: f[1:], Text: text}
		if err := check(st); err != nil {
			return nil, &ParseError{File: file, Line: line, Msg: err.Error()}
		}
		sc.Steps = append(sc.Steps, st)
	}
	if err := br.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(sc.Steps) == 0 {
		return nil, &ParseError{File: file, Line: line, Msg: "no steps"}
	}
	return sc, nil
}

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*(\*[0-9]+)?$`)
	flagRe  = regexp.MustCompile(`^[+-](\\[A-Za-z]+|[A-Za-z0-9$_.-]+)$`)
	cmpOps  = map[string]bool{">=": true, ">": true, "=": true, "<": true, "<=": true}
	sideArg = map[string]bool{"a": true, "b": true}
)

func isSide(s string) bool { return sideArg[strings.ToLower(s)] }

func isNumOrVar(s string) bool {
	if strings.HasPrefix(s, "$") && len(s) > 1 {
		return true
	}
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

func need(st Step, min, max int, usage string) error {
	if len(st.Args) < min || (max >= 0 && len(st.Args) > max) {
		return fmt.Errorf("usage: %s", usage)
	}
	return nil
}

func msgNames(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no message names")
	}
	for _, a := range args {
		if !nameRe.MatchString(a) {
			return fmt.Errorf("bad message name %q (letters, digits, . _ + -; name*N for N messages)", a)
		}
	}
	return nil
}

// check validates one step's syntax.
func check(st Step) error {
	a := st.Args
	sideAt := func(i int) error {
		if !isSide(a[i]) {
			return fmt.Errorf("%q is not a side: use A or B", a[i])
		}
		return nil
	}
	switch st.Op {
	case "account":
		return need(st, 1, 1, "account NAME")
	case "folder", "delete":
		if err := need(st, 3, 3, st.Op+" SIDE ACCOUNT FOLDER"); err != nil {
			return err
		}
		return sideAt(0)
	case "rename":
		if err := need(st, 4, 4, "rename SIDE ACCOUNT OLD NEW"); err != nil {
			return err
		}
		return sideAt(0)
	case "subscribe", "unsubscribe":
		if err := need(st, 3, 3, st.Op+" SIDE ACCOUNT FOLDER"); err != nil {
			return err
		}
		return sideAt(0)
	case "cut", "heal":
		return need(st, 0, 0, st.Op)
	case "sync":
		if err := need(st, 0, 1, "sync [SECONDS]"); err != nil {
			return err
		}
		if len(a) == 1 {
			if n, err := strconv.Atoi(a[0]); err != nil || n <= 0 {
				return fmt.Errorf("bad timeout %q", a[0])
			}
		}
		return nil
	case "worker":
		if err := need(st, 1, 1, "worker stop|start|crash"); err != nil {
			return err
		}
		switch a[0] {
		case "stop", "start", "crash":
			return nil
		}
		return fmt.Errorf("unknown worker action %q: stop, start or crash", a[0])
	case "postgres", "server":
		if err := need(st, 2, 2, st.Op+" SIDE kill|restart"); err != nil {
			return err
		}
		if err := sideAt(0); err != nil {
			return err
		}
		if a[1] != "kill" && a[1] != "restart" {
			return fmt.Errorf("unknown %s action %q: kill or restart", st.Op, a[1])
		}
		return nil
	case "deliver":
		if err := need(st, 4, -1, "deliver SIDE ACCOUNT FOLDER [via=lmtp|via=append] MSG..."); err != nil {
			return err
		}
		if err := sideAt(0); err != nil {
			return err
		}
		rest := a[3:]
		if strings.HasPrefix(rest[0], "via=") {
			if rest[0] != "via=lmtp" && rest[0] != "via=append" {
				return fmt.Errorf("unknown %q: via=lmtp or via=append", rest[0])
			}
			rest = rest[1:]
		}
		return msgNames(rest)
	case "store":
		if err := need(st, 5, -1, "store SIDE ACCOUNT FOLDER MSG +FLAG|-FLAG..."); err != nil {
			return err
		}
		if err := sideAt(0); err != nil {
			return err
		}
		if err := msgNames(a[3:4]); err != nil {
			return err
		}
		for _, f := range a[4:] {
			if !flagRe.MatchString(f) {
				return fmt.Errorf("bad flag change %q: +FLAG or -FLAG", f)
			}
		}
		return nil
	case "expunge":
		if err := need(st, 4, -1, "expunge SIDE ACCOUNT FOLDER MSG..."); err != nil {
			return err
		}
		if err := sideAt(0); err != nil {
			return err
		}
		return msgNames(a[3:])
	case "move":
		if err := need(st, 5, -1, "move SIDE ACCOUNT FOLDER DEST MSG..."); err != nil {
			return err
		}
		if err := sideAt(0); err != nil {
			return err
		}
		return msgNames(a[4:])
	case "session":
		if err := need(st, 4, 4, "session NAME SIDE ACCOUNT FOLDER"); err != nil {
			return err
		}
		if !isSide(a[1]) {
			return fmt.Errorf("%q is not a side: use A or B", a[1])
		}
		return nil
	case "idle", "poll", "close":
		return need(st, 1, 1, st.Op+" SESSION")
	case "note":
		if err := need(st, 5, 5, "note VAR SIDE|both ACCOUNT FOLDER uidnext"); err != nil {
			return err
		}
		if !isSide(a[1]) && a[1] != "both" {
			return fmt.Errorf("%q is not a side: use A, B or both", a[1])
		}
		if a[4] != "uidnext" {
			return fmt.Errorf("note can remember only uidnext")
		}
		return nil
	case "expect":
		return checkExpect(st)
	}
	return fmt.Errorf("unknown step %q", st.Op)
}

func checkExpect(st Step) error {
	a := st.Args
	if len(a) == 1 && (a[0] == "identical" || a[0] == "sessions") {
		return nil
	}
	if len(a) < 4 {
		return fmt.Errorf("usage: expect identical | expect sessions | expect SIDE|both ACCOUNT FOLDER has|lacks|count|flags|uid|uidnext|exists|missing ...")
	}
	if !isSide(a[0]) && a[0] != "both" {
		return fmt.Errorf("%q is not a side: use A, B or both", a[0])
	}
	rest := a[4:]
	switch a[3] {
	case "has", "lacks", "once":
		return msgNames(rest)
	case "unique":
		if len(rest) != 0 {
			return fmt.Errorf("usage: expect SIDE ACCOUNT FOLDER|* unique")
		}
		return nil
	}
	if a[2] == "*" {
		return fmt.Errorf("folder * (all folders) works only with has, lacks and unique")
	}
	switch a[3] {
	case "count":
		if len(rest) != 1 || !isNumOrVar(rest[0]) {
			return fmt.Errorf("usage: expect SIDE ACCOUNT FOLDER count N")
		}
	case "flags":
		if len(rest) < 1 {
			return fmt.Errorf("usage: expect SIDE ACCOUNT FOLDER flags MSG [FLAG...]")
		}
		return msgNames(rest[:1])
	case "uid":
		if len(rest) != 3 || !cmpOps[rest[1]] || !isNumOrVar(rest[2]) {
			return fmt.Errorf("usage: expect SIDE ACCOUNT FOLDER uid MSG >=|>|=|<|<= N|$VAR")
		}
		return msgNames(rest[:1])
	case "uidnext":
		if len(rest) != 2 || !cmpOps[rest[0]] || !isNumOrVar(rest[1]) {
			return fmt.Errorf("usage: expect SIDE ACCOUNT FOLDER uidnext >=|>|=|<|<= N|$VAR")
		}
	case "exists", "missing":
		if len(rest) != 0 {
			return fmt.Errorf("usage: expect SIDE ACCOUNT FOLDER %s", a[3])
		}
	default:
		return fmt.Errorf("unknown expectation %q", a[3])
	}
	return nil
}

// expandNames turns name*N into name1..nameN.
func expandNames(args []string) []string {
	var out []string
	for _, a := range args {
		if i := strings.IndexByte(a, '*'); i > 0 {
			n, _ := strconv.Atoi(a[i+1:])
			for k := 1; k <= n; k++ {
				out = append(out, fmt.Sprintf("%s%d", a[:i], k))
			}
			continue
		}
		out = append(out, a)
	}
	return out
}
