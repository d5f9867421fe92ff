package integration

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// devClient is a Python imaplib session as a user of `twinmail dev` would write it. It logs
// in as demo/demo, optionally appends a message with the given subject, then prints the
// BODY[] of every message with that subject, hex-encoded, one per line.
const devClient = `
import imaplib, sys
port, subject, do_append = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "append"
M = imaplib.IMAP4("127.0.0.1", port)
typ, _ = M.login("demo", "demo")
assert typ == "OK", typ
if do_append:
    msg = ("From: demo@example.org\r\nSubject: %s\r\n\r\nkept across runs\r\n" % subject).encode()
    typ, data = M.append("INBOX", None, None, msg)
    assert typ == "OK", (typ, data)
typ, _ = M.select("INBOX")
assert typ == "OK", typ
typ, data = M.uid("SEARCH", None, "SUBJECT", '"%s"' % subject)
assert typ == "OK", (typ, data)
for uid in data[0].split():
    typ, parts = M.uid("FETCH", uid, "(BODY.PEEK[])")
    assert typ == "OK", (typ, parts)
    print(parts[0][1].hex())
M.logout()
`

// devRun is one `twinmail dev` process.
func devRun(t *testing.T, dir string) (*proc, string) {
	t.Helper()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProc(t, "twinmail dev", "dev", "--dir", dir, "--imap", addr, "--lmtp", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if err := waitGreeting(addr, p, 3*time.Minute); err != nil {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		t.Fatalf("twinmail dev: %v; output:\n%s", err, p.output)
	}
	// The banner may be printed just after the listener answers.
	waitFor(t, 10*time.Second, func() error {
		if out := p.output.String(); !strings.Contains(out, strconv.Itoa(port)) || !strings.Contains(out, "demo") {
			return fmt.Errorf("twinmail dev output does not say how to connect (port %d, user demo):\n%s", port, out)
		}
		return nil
	})
	return p, strconv.Itoa(port)
}

func python(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("python3", append([]string{"-c", devClient}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("python3 imaplib client %v: %v\n%s%s", args, err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

// postmasterPIDs lists postmaster.pid files under dir: a running cluster has one.
func postmasterPIDs(dir string) []string {
	var found []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "postmaster.pid" {
			found = append(found, path)
		}
		return nil
	})
	return found
}

// TestDev: `twinmail dev` starts a private cluster, serves demo/demo to Python's imaplib,
// stops on SIGINT with status 0, and a second run finds the first run's mail.
func TestDev(t *testing.T) {
	t.Parallel()
	// The data folder must be reachable by the unprivileged user PostgreSQL runs as when the
	// tests run as root, so it is not under t.TempDir's 0700 folders.
	parent, err := os.MkdirTemp("", "twinmail-dev-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(parent, 0o755)
	t.Cleanup(func() {
		// If a run failed to stop its cluster, stop that postmaster (by the pid it recorded)
		// so the test leaves no server behind.
		for _, f := range postmasterPIDs(parent) {
			b, _ := os.ReadFile(f)
			if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGQUIT)
			}
		}
		os.RemoveAll(parent)
	})
	dir := filepath.Join(parent, "data")
	subject := fmt.Sprintf("persist-%d", time.Now().UnixNano())
	want := fmt.Sprintf("%x", []byte("From: demo@example.org\r\nSubject: "+subject+"\r\n\r\nkept across runs\r\n"))

	p, port := devRun(t, dir)
	if got := python(t, port, subject, "append"); got != want {
		t.Errorf("run 1: imaplib BODY[] of the appended message = %s, want %s", got, want)
	}
	if len(postmasterPIDs(dir)) != 1 {
		t.Errorf("run 1: postmaster.pid files under %s = %q, want the running cluster's", dir, postmasterPIDs(dir))
	}
	p.stop(t, os.Interrupt)
	if t.Failed() {
		t.Logf("run 1 output:\n%s", p.output)
	}
	if pids := postmasterPIDs(dir); len(pids) != 0 {
		t.Errorf("after SIGINT: %q still there; the cluster was not stopped", pids)
	}

	p, port = devRun(t, dir)
	if got := python(t, port, subject, "read"); got != want {
		t.Errorf("run 2: imaplib found %q, want the message appended in run 1 (%s)", got, want)
	}
	p.stop(t, os.Interrupt)
	if t.Failed() {
		t.Logf("run 2 output:\n%s", p.output)
	}
	if pids := postmasterPIDs(dir); len(pids) != 0 {
		t.Errorf("after the second SIGINT: %q still there", pids)
	}
}
