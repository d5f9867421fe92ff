//go:build unix && !linux

package pgcluster

import "syscall"

// serverProcAttr puts the postmaster in a process group of its own, out of reach of signals
// meant for ours (a terminal's Ctrl-C).
func serverProcAttr(a *account) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if a != nil {
		attr.Credential = a.credential()
	}
	return attr
}

// childPIDs would list the processes whose parent is pid; here it finds none, and the
// server's processes end by themselves once they notice the postmaster is gone.
func childPIDs(pid int) []int { return nil }

// alive reports whether process pid exists.
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }
