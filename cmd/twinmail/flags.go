package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Environment variables that give flags their defaults.
const (
	envDB        = "TWINMAIL_DB"
	envIMAP      = "TWINMAIL_IMAP"
	envLMTP      = "TWINMAIL_LMTP"
	envLogLevel  = "TWINMAIL_LOG_LEVEL"
	envLogFormat = "TWINMAIL_LOG_FORMAT"
)

// envOr returns the environment variable name, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// flagSet is a stdlib FlagSet plus what twinmail's usage text needs.
type flagSet struct {
	*flag.FlagSet
	sio      stdio
	synopsis string // e.g. "twinmail user add [flags] NAME"
	about    string // a paragraph printed under the synopsis
}

func newFlagSet(sio stdio, name, synopsis, about string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), sio: sio, synopsis: synopsis, about: about}
	// The flag package's own messages are replaced by parse's: help goes to stdout, and errors
	// come back as one line.
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args, allowing flags after positional arguments ("user add bob
// --password-stdin"); "--" ends the flags. It returns the positional arguments, checks that
// there are between min and max of them (max < 0: no limit), and prints the usage to stdout
// and returns flag.ErrHelp for -h/--help.
func (fs *flagSet) parse(args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printUsage(fs.sio.out)
				return nil, err
			}
			return nil, usageError{fmt.Errorf("%w (see --help)", err)}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < min:
		return nil, usageError{fmt.Errorf("missing argument: usage: %s", fs.synopsis)}
	case max >= 0 && len(pos) > max:
		return nil, usageError{fmt.Errorf("unexpected argument %q: usage: %s", pos[max], fs.synopsis)}
	}
	return pos, nil
}

// printUsage writes the synopsis, the description and the flags, spelled with "--".
func (fs *flagSet) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage:\n  %s\n", fs.synopsis)
	if fs.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(fs.about))
	}
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprint(w, "\nFlags:\n")
			first = false
		}
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintf(w, "\n        %s", strings.ReplaceAll(usage, "\n", "\n        "))
		// --db's default comes from $TWINMAIL_DB and may hold a password: never print it.
		if f.Name != "db" && f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// dbFlag registers --db, defaulting to $TWINMAIL_DB. Check it with requireDB after parsing.
func (fs *flagSet) dbFlag(p *string) {
	fs.StringVar(p, "db", os.Getenv(envDB), "PostgreSQL `address`: a postgres:// URL or \"key=value ...\" string;\n"+
		"PG* environment variables fill in what it leaves out (default $"+envDB+")")
}

// requireDB fails with a usage error when no database address was given.
func requireDB(dsn string) error {
	if dsn == "" {
		return usageError{errors.New("missing --db: give the PostgreSQL address with --db or " + envDB)}
	}
	return nil
}

// logFlags are --log-level and --log-format, shared by the long-running commands.
type logFlags struct {
	level  string
	format string
}

func (fs *flagSet) logFlags(lf *logFlags) {
	fs.StringVar(&lf.level, "log-level", envOr(envLogLevel, "info"), "log `level`: debug, info, warn or error (env $"+envLogLevel+")")
	fs.StringVar(&lf.format, "log-format", envOr(envLogFormat, "text"), "log `format`: text or json (env $"+envLogFormat+")")
}

// logger builds the slog logger that writes to w. It reports a bad level or format as a
// usage error, so parseFlags can call it.
func (lf logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lf.level)); err != nil {
		return nil, usageError{fmt.Errorf("bad --log-level %q: want debug, info, warn or error", lf.level)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch lf.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usageError{fmt.Errorf("bad --log-format %q: want text or json", lf.format)}
	}
}

// maxPasswordLen bounds what readPassword accepts; bcrypt uses only the first 72 bytes anyway.
const maxPasswordLen = 1024

// readPassword reads a password from the first line of r, without its line ending. An empty
// password is refused.
func readPassword(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxPasswordLen+2), maxPasswordLen+2)
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", errors.New("empty password: write the password as the first line of standard input")
	}
	if len(line) > maxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", maxPasswordLen)
	}
	return line, nil
}
