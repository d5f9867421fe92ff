package pgcluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNotInstalled is returned when no PostgreSQL server binaries can be found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: apt-get install postgresql)")

// binGlobs are searched, after PATH, for folders holding the server binaries. Distributions
// that install several major versions side by side put them in versioned folders; the
// highest version wins. Tests replace it.
var binGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}

// BinDir returns the folder holding initdb and postgres: the one initdb is found in on PATH
// (after following symlinks) first, then the highest-versioned folder matching /usr/lib/postgresql/*/bin. It returns
// ErrNotInstalled when there is none.
func BinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		// initdb on PATH may be a symlink into the installation's folder, which also holds
		// the client programs (createdb, psql) that are not always linked next to it.
		if real, err := filepath.EvalSymlinks(p); err == nil && hasServer(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if dir := filepath.Dir(p); hasServer(dir) {
			return dir, nil
		}
	}
	var dirs []string
	for _, g := range binGlobs {
		m, _ := filepath.Glob(g) // the patterns are constant; Glob fails only on a bad pattern
		dirs = append(dirs, m...)
	}
	slices.SortStableFunc(dirs, func(a, b string) int { return compareVersions(dirVersion(b), dirVersion(a)) })
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

func hasServer(dir string) bool {
	return isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// dirVersion extracts the version from a folder like /usr/lib/postgresql/15/bin or
// /usr/pgsql-9.6/bin as numbers: [15], [9 6].
func dirVersion(binDir string) []int {
	name := filepath.Base(filepath.Dir(binDir))
	name = strings.TrimLeftFunc(name, func(r rune) bool { return r < '0' || r > '9' })
	var v []int
	for _, part := range strings.Split(name, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			break
		}
		v = append(v, n)
	}
	return v
}

func compareVersions(a, b []int) int {
	return slices.Compare(a, b)
}
