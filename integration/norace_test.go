//go:build !race

package integration

// raceEnabled reports whether this test binary was built with -race; the twinmail binary
// under test is then built with -race too.
const raceEnabled = false
