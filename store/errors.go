package store

import "errors"

// Sentinel errors. Callers test them with errors.Is; store wraps driver errors into them.
var (
	ErrAuthFailed     = errors.New("authentication failed")
	ErrNoSuchAccount  = errors.New("no such account")
	ErrAccountExists  = errors.New("account already exists")
	ErrNoSuchMailbox  = errors.New("no such mailbox")
	ErrMailboxExists  = errors.New("mailbox already exists")
	ErrBadMailboxName = errors.New("invalid mailbox name")
	ErrCannotDelete   = errors.New("mailbox cannot be deleted")
	ErrNoSuchMessage  = errors.New("no such message")
	ErrTooBig         = errors.New("message too big")
	ErrSchemaTooNew   = errors.New("database schema is newer than this binary")
	ErrSchemaTooOld   = errors.New("database schema is not migrated")
	ErrBadFlag        = errors.New("invalid flag")
)
