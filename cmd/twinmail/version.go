package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time with -ldflags "-X main.version=v1.2.3"; otherwise the module
// version from the build information is used.
var version = ""

// versionCmd is "twinmail version".
type versionCmd struct {
	fs *flagSet
}

func newVersionCmd(sio stdio) *versionCmd {
	return &versionCmd{fs: newFlagSet(sio, "version", "twinmail version", "Print twinmail's version and the Go version it was built with.")}
}

func (c *versionCmd) parseFlags(args []string) error {
	_, err := c.fs.parse(args, 0, 0)
	return err
}

func (c *versionCmd) run(context.Context) error {
	v := version
	if v == "" {
		v = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
	}
	fmt.Fprintf(c.fs.sio.out, "twinmail %s %s\n", v, runtime.Version())
	return nil
}
