package pgcluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// PostgreSQL refuses to run as root. When we are root, initdb and postgres run as
// serverUser instead, and everything they touch is made theirs.

// serverUser is the system account the server runs as when we are root.
var serverUser = "postgres"

// relocateRoot, when set, replaces the server user's home folder as the place for data
// folders the server user cannot reach. Tests set it.
var relocateRoot = ""

// account is the unprivileged user the server binaries run as.
type account struct {
	name   string
	uid    uint32
	gid    uint32
	groups []uint32 // supplementary groups, for the child's credentials
	home   string
}

// serverAccount returns nil when we are not root (the binaries run as ourselves), else the
// account to run them as.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	hint := fmt.Sprintf("PostgreSQL refuses to run as root, and twinmail runs it as the %q system user when started as root", serverUser)
	u, err := user.Lookup(serverUser)
	if err != nil {
		return nil, fmt.Errorf("%s, but: %w; install the postgresql package (it creates that user), or create it (useradd --system --create-home %s), or run twinmail as an unprivileged user", hint, err, serverUser)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("%s, but its ids are not numeric: %w", hint, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("%s, but that user has uid 0", hint)
	}
	a := &account{name: u.Username, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}
	gids, _ := u.GroupIds() // without them the child gets only its primary group, which is enough
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			a.groups = append(a.groups, uint32(n))
		}
	}
	return a, nil
}

func (a *account) credential() *syscall.Credential {
	return &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: a.groups}
}

// canTraverse reports whether a may search (enter) the directory described by fi, by the
// owner/group/other permission bits.
func (a *account) canTraverse(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; let the server report it
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == a.uid:
		return perm&0o100 != 0
	case st.Gid == a.gid || slices.Contains(a.groups, st.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// unreachableError says which path component keeps the server user out.
type unreachableError struct {
	acct *account
	dir  string // the folder the server must reach
	path string // the component it cannot enter
	fi   fs.FileInfo
}

func (e *unreachableError) Error() string {
	owner := "?"
	if st, ok := e.fi.Sys().(*syscall.Stat_t); ok {
		owner = strconv.FormatUint(uint64(st.Uid), 10)
	}
	return fmt.Sprintf("the %s user (uid %d) cannot reach %s: %s has mode %04o and owner uid %s; choose a data folder under /tmp or /var/lib, or allow it through (chmod o+x %s)",
		e.acct.name, e.acct.uid, e.dir, e.path, e.fi.Mode().Perm(), owner, e.path)
}

// reach makes dir and every folder above it traversable by a. A folder a cannot enter gets
// the search bits (g+x,o+x, so 0700 becomes 0711) when it is ours and mayChmod allows it;
// otherwise reach changes nothing and returns an *unreachableError.
func reach(dir string, a *account, mayChmod func(path string, fi fs.FileInfo) bool) error {
	var fix []string
	var fixInfo []fs.FileInfo
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !a.canTraverse(fi) {
			if !ownedByUs(fi) || !mayChmod(p, fi) {
				return &unreachableError{acct: a, dir: dir, path: p, fi: fi}
			}
			fix = append(fix, p)
			fixInfo = append(fixInfo, fi)
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	for i, p := range fix {
		if err := os.Chmod(p, fixInfo[i].Mode()|0o011); err != nil {
			return fmt.Errorf("let the %s user through %s: %w", a.name, p, err)
		}
	}
	return nil
}

func ownedByUs(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// isUnder reports whether path lies strictly inside dir.
func isUnder(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// relocatedHome returns a folder the server user can reach that stands in for dir, whose
// path it cannot traverse: <server user's home>/twinmail/<hash of dir>. The name depends
// only on dir, so a second run finds the same data.
func relocatedHome(dir string, a *account) (string, error) {
	root := relocateRoot
	if root == "" {
		if a.home == "" || a.home == "/" {
			return "", fmt.Errorf("the %s user has no home folder", a.name)
		}
		root = filepath.Join(a.home, "twinmail")
	}
	sum := sha256.Sum256([]byte(dir))
	home := filepath.Join(root, hex.EncodeToString(sum[:8]))
	for _, d := range []string{root, home} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		if err := os.Lchown(d, int(a.uid), int(a.gid)); err != nil {
			return "", err
		}
	}
	if err := reach(home, a, func(string, fs.FileInfo) bool { return false }); err != nil {
		return "", err
	}
	// A note for whoever finds this folder.
	note := fmt.Sprintf("PostgreSQL data for the twinmail data folder %s, which the %s user cannot reach.\n", dir, a.name)
	if err := os.WriteFile(filepath.Join(home, "ORIGIN"), []byte(note), 0o644); err != nil {
		return "", err
	}
	return home, nil
}

// chownTree gives everything under root (not following symlinks) to a.
func chownTree(root string, a *account) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == a.uid && st.Gid == a.gid {
			return nil
		}
		return os.Lchown(p, int(a.uid), int(a.gid))
	})
}

// chown gives one path to a; a nil a (not root) changes nothing.
func chown(path string, a *account) error {
	if a == nil {
		return nil
	}
	return os.Lchown(path, int(a.uid), int(a.gid))
}
