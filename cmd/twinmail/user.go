package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/twinmail/twinmail/store"
)

// userCmd is "twinmail user": it dispatches to add, list, del and passwd.
type userCmd struct {
	sio     stdio
	subName string
	sub     command
}

// userSubcommands are the subcommands of "twinmail user", in usage order.
var userSubcommands = []struct {
	name, summary string
	new           func(stdio) command
}{
	{"add", "create an account with the standard mailboxes", func(s stdio) command { return newUserAddCmd(s) }},
	{"list", "list the accounts", func(s stdio) command { return newUserListCmd(s) }},
	{"del", "delete an account and all its mail", func(s stdio) command { return newUserDelCmd(s) }},
	{"passwd", "set an account's password", func(s stdio) command { return newUserPasswdCmd(s) }},
}

func newUserCmd(sio stdio) *userCmd { return &userCmd{sio: sio} }

func (c *userCmd) printUsage(w io.Writer) {
	fmt.Fprint(w, "Usage:\n  twinmail user <command> [flags] [arguments]\n\nCommands:\n")
	for _, s := range userSubcommands {
		fmt.Fprintf(w, "  %-7s %s\n", s.name, s.summary)
	}
	fmt.Fprint(w, "\nRun \"twinmail user <command> --help\" for a command's flags.\n")
}

func (c *userCmd) parseFlags(args []string) error {
	if len(args) == 0 {
		c.printUsage(c.sio.err)
		return usageError{errors.New("missing command: add, list, del or passwd")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		c.printUsage(c.sio.out)
		return flag.ErrHelp
	}
	for _, s := range userSubcommands {
		if s.name == args[0] {
			c.subName, c.sub = s.name, s.new(c.sio)
			return c.sub.parseFlags(args[1:])
		}
	}
	return usageError{fmt.Errorf("unknown command %q: want add, list, del or passwd (see twinmail user --help)", args[0])}
}

// label names the command in error messages: "user add".
func (c *userCmd) label() string {
	if c.subName == "" {
		return "user"
	}
	return "user " + c.subName
}

func (c *userCmd) run(ctx context.Context) error {
	return c.sub.run(ctx)
}

// openAccounts opens the store for an account command, after checking that its schema is the
// one this binary knows.
func openAccounts(ctx context.Context, dsn string) (*store.Store, error) {
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		return nil, err
	}
	if err := st.CheckSchema(ctx); err != nil {
		st.Close()
		return nil, schemaError(err)
	}
	return st, nil
}

// accountError rewrites the store's account sentinels into a message that names the account.
func accountError(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrAccountExists):
		return wrapMsg(fmt.Sprintf("account %q already exists", name), err)
	case errors.Is(err, store.ErrNoSuchAccount):
		return wrapMsg(fmt.Sprintf("no account %q", name), err)
	}
	return err
}

// msgError is an error whose message replaces that of the error it wraps.
type msgError struct {
	msg string
	err error
}

func (e msgError) Error() string { return e.msg }
func (e msgError) Unwrap() error { return e.err }

func wrapMsg(msg string, err error) error { return msgError{msg, err} }

// passwordFlags are the flags of the commands that take a password.
type passwordFlags struct {
	stdin bool
}

func (fs *flagSet) passwordFlags(pf *passwordFlags) {
	fs.BoolVar(&pf.stdin, "password-stdin", false, "read the password from the first line of standard input (required)")
}

// check refuses a command line without --password-stdin, so that a password never has to
// appear in a command line or in the environment. (There is no interactive prompt.)
func (pf passwordFlags) check() error {
	if !pf.stdin {
		return usageError{errors.New("missing --password-stdin: write the password as the first line of standard input")}
	}
	return nil
}

// accountPasswordCmd is what "user add" and "user passwd" share: --db, --password-stdin
// and one account NAME; run reads the password and opens the store.
type accountPasswordCmd struct {
	fs   *flagSet
	db   string
	pw   passwordFlags
	name string
}

func (c *accountPasswordCmd) init(sio stdio, name, synopsis, about string) {
	c.fs = newFlagSet(sio, name, synopsis, about)
	c.fs.dbFlag(&c.db)
	c.fs.passwordFlags(&c.pw)
}

func (c *accountPasswordCmd) parseFlags(args []string) error {
	pos, err := c.fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	c.name = pos[0]
	if err := requireDB(c.db); err != nil {
		return err
	}
	return c.pw.check()
}

// passwordAndStore reads the password from standard input and opens the store; the caller
// closes it.
func (c *accountPasswordCmd) passwordAndStore(ctx context.Context) (string, *store.Store, error) {
	pw, err := readPassword(c.fs.sio.in)
	if err != nil {
		return "", nil, err
	}
	st, err := openAccounts(ctx, c.db)
	if err != nil {
		return "", nil, err
	}
	return pw, st, nil
}

// userAddCmd is "twinmail user add".
type userAddCmd struct{ accountPasswordCmd }

func newUserAddCmd(sio stdio) *userAddCmd {
	c := &userAddCmd{}
	c.init(sio, "user add", "twinmail user add --db DSN --password-stdin NAME", `
Create the account NAME with INBOX, Sent, Drafts, Trash, Junk and Archive. The password is
the first line of standard input; it is stored as a bcrypt hash.`)
	return c
}

func (c *userAddCmd) run(ctx context.Context) error {
	pw, st, err := c.passwordAndStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	acct, err := st.CreateAccount(ctx, c.name, pw)
	if err != nil {
		return accountError(c.name, err)
	}
	fmt.Fprintf(c.fs.sio.out, "created account %q (%s)\n", acct.Name, acct.ID)
	return nil
}

// userListCmd is "twinmail user list".
type userListCmd struct {
	fs *flagSet
	db string
}

func newUserListCmd(sio stdio) *userListCmd {
	c := &userListCmd{}
	c.fs = newFlagSet(sio, "user list", "twinmail user list --db DSN", `
List the accounts, one a line: name, id and creation time, separated by tabs and padded
into columns.`)
	c.fs.dbFlag(&c.db)
	return c
}

func (c *userListCmd) parseFlags(args []string) error {
	if _, err := c.fs.parse(args, 0, 0); err != nil {
		return err
	}
	return requireDB(c.db)
}

func (c *userListCmd) run(ctx context.Context) error {
	st, err := openAccounts(ctx, c.db)
	if err != nil {
		return err
	}
	defer st.Close()
	accts, err := st.ListAccounts(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.fs.sio.out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tCREATED")
	for _, a := range accts {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, a.ID, a.CreatedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// userDelCmd is "twinmail user del".
type userDelCmd struct {
	fs   *flagSet
	db   string
	name string
}

func newUserDelCmd(sio stdio) *userDelCmd {
	c := &userDelCmd{}
	c.fs = newFlagSet(sio, "user del", "twinmail user del --db DSN NAME", `
Delete the account NAME with all its mailboxes and messages. There is no undo.`)
	c.fs.dbFlag(&c.db)
	return c
}

func (c *userDelCmd) parseFlags(args []string) error {
	pos, err := c.fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	c.name = pos[0]
	return requireDB(c.db)
}

func (c *userDelCmd) run(ctx context.Context) error {
	st, err := openAccounts(ctx, c.db)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.DeleteAccount(ctx, c.name); err != nil {
		return accountError(c.name, err)
	}
	fmt.Fprintf(c.fs.sio.out, "deleted account %q\n", c.name)
	return nil
}

// userPasswdCmd is "twinmail user passwd".
type userPasswdCmd struct{ accountPasswordCmd }

func newUserPasswdCmd(sio stdio) *userPasswdCmd {
	c := &userPasswdCmd{}
	c.init(sio, "user passwd", "twinmail user passwd --db DSN --password-stdin NAME", `
Set the password of the account NAME to the first line of standard input.`)
	return c
}

func (c *userPasswdCmd) run(ctx context.Context) error {
	pw, st, err := c.passwordAndStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.SetPassword(ctx, c.name, pw); err != nil {
		return accountError(c.name, err)
	}
	fmt.Fprintf(c.fs.sio.out, "password of %q changed\n", c.name)
	return nil
}
