package pgcluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverProcAttr puts the postmaster in a process group of its own, out of reach of signals
// meant for ours (a terminal's Ctrl-C), and asks the kernel to send it SIGINT, a fast
// shutdown, if we die first, so that a crashed `twinmail dev` or test binary leaves no
// server behind.
func serverProcAttr(a *account) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	if a != nil {
		attr.Credential = a.credential()
	}
	return attr
}

// procStat returns the state and parent pid of process pid from /proc/pid/stat.
func procStat(pid string) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(string(f[1]))
	return string(f[0]), ppid, err == nil
}

// childPIDs lists the processes whose parent is pid. The server's processes each lead a
// session of their own (PostgreSQL calls setsid in them), so the process group does not
// find them.
func childPIDs(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(e.Name()); ok && ppid == pid {
			kids = append(kids, n)
		}
	}
	return kids
}

// alive reports whether process pid runs. A zombie holds no memory, so it does not count;
// nobody may reap the orphaned children of a killed server.
func alive(pid int) bool {
	state, _, ok := procStat(strconv.Itoa(pid))
	return ok && state != "Z" && state != "X"
}
