// Command twinmail is the twinmail binary: an IMAP server whose mailbox state lives in
// PostgreSQL, with subcommands to serve, migrate the schema, manage accounts and run a
// self-contained development setup.
//
// This package is the only one that reads flags and environment variables. It parses them into
// the Options of store, imapbackend and internal/pgcluster, wires those together and owns the
// slog handler. The command-line interface is a contract (docs/cli.md): other tools and tests
// drive it, so names, flags and exit codes change only with care.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a clean shutdown; a second one kills the process as usual.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// stdio is where a command reads and writes. Tests swap it for buffers.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// command is one subcommand: parseFlags reads its arguments, run does the work.
type command interface {
	parseFlags(args []string) error
	run(ctx context.Context) error
}

// labeler is a command with subcommands that names itself in error messages ("user add").
type labeler interface {
	label() string
}

// commandInfo describes a subcommand for dispatch and the top-level usage.
type commandInfo struct {
	name    string
	summary string
	new     func(stdio) command
}

// commands lists the subcommands in the order the usage shows them.
var commands = []commandInfo{
	{"serve", "serve IMAP from a migrated database", func(s stdio) command { return newServeCmd(s) }},
	{"migrate", "apply pending schema migrations", func(s stdio) command { return newMigrateCmd(s) }},
	{"user", "add, list, delete accounts and set passwords", func(s stdio) command { return newUserCmd(s) }},
	{"replicate", "run the replication worker of a pair of replicas", func(s stdio) command { return newReplicateCmd(s) }},
	{"verify", "compare two replicas; exit 0 when identical", func(s stdio) command { return newVerifyCmd(s) }},
	{"status", "show how far a pair of replicas is from agreement", func(s stdio) command { return newStatusCmd(s) }},
	{"scenario", "run replica-conflict scenarios, or explore random ones", func(s stdio) command { return newScenarioCmd(s) }},
	{"dev", "run a private PostgreSQL cluster and serve IMAP on loopback, for trying twinmail out", func(s stdio) command { return newDevCmd(s) }},
	{"version", "print the version", func(s stdio) command { return newVersionCmd(s) }},
}

// run executes the subcommand named by args[0]. Errors come back prefixed with the subcommand
// name; exitCode turns them into a status.
func run(ctx context.Context, args []string, sio stdio) error {
	if len(args) == 0 {
		printMainUsage(sio.err)
		return usageError{errors.New("no command given")}
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, sio)
		}
		printMainUsage(sio.out)
		return nil
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		cmd := c.new(sio)
		err := cmd.parseFlags(args[1:])
		if l, ok := cmd.(labeler); ok {
			name = l.label()
		}
		if err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return prefix(name, err)
		}
		return prefix(name, cmd.run(ctx))
	}
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return usageError{fmt.Errorf("unknown command %q: want one of %s (see twinmail --help)", name, strings.Join(names, ", "))}
}

func printMainUsage(w io.Writer) {
	fmt.Fprint(w, `twinmail is an IMAP server whose mailboxes live in PostgreSQL.

Usage:
  twinmail <command> [flags] [arguments]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "twinmail <command> --help" for a command's flags.
Every --db flag defaults to $TWINMAIL_DB; see docs/cli.md.
`)
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// prefix puts the subcommand's name before err's message, keeping a usageError one.
func prefix(name string, err error) error {
	if err == nil {
		return nil
	}
	var ue usageError
	if errors.As(err, &ue) {
		return usageError{fmt.Errorf("%s: %w", name, ue.err)}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// oneLine joins the lines of a multi-line message (pgx lists every connection attempt on a
// line of its own) into one: "; " between lines, or a space after a line ending in ":".
func oneLine(msg string) string {
	var b strings.Builder
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(l)
	}
	return b.String()
}

// exitCode prints err as one line on w and returns the process exit status: 0 on success,
// 2 for a usage error, 1 for anything else.
func exitCode(err error, w io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(w, "twinmail: %s\n", oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
