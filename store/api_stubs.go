package store

// API CONTRACT (bodies being written). Signatures here are fixed; implementations move into
// account.go, mailbox.go, message.go, changes.go, search.go.

import (
	"context"
	"io"
)

// ---- accounts (account.go) ----

// CreateAccount creates an account with INBOX, Sent, Drafts, Trash, Junk and Archive.
// ErrAccountExists if the name is taken.
func (s *Store) CreateAccount(ctx context.Context, name, password string) (Account, error) { panic("todo") }

// Authenticate checks a password. ErrAuthFailed for unknown user or wrong password alike.
func (s *Store) Authenticate(ctx context.Context, name, password string) (Account, error) { panic("todo") }

// LookupAccount finds an account by name (ErrNoSuchAccount).
func (s *Store) LookupAccount(ctx context.Context, name string) (Account, error) { panic("todo") }
func (s *Store) ListAccounts(ctx context.Context) ([]Account, error)                { panic("todo") }
func (s *Store) DeleteAccount(ctx context.Context, name string) error               { panic("todo") }
func (s *Store) SetPassword(ctx context.Context, name, password string) error       { panic("todo") }

// ---- mailboxes (mailbox.go) ----  names are canonicalised (INBOX) by store.

func (s *Store) ListMailboxes(ctx context.Context, acct AccountID) ([]Mailbox, error) { panic("todo") }

// GetMailbox: ErrNoSuchMailbox.
func (s *Store) GetMailbox(ctx context.Context, acct AccountID, name string) (Mailbox, error) { panic("todo") }

// CreateMailbox: ErrMailboxExists, ErrBadMailboxName. specialUse "" or `\Sent` etc.
func (s *Store) CreateMailbox(ctx context.Context, acct AccountID, name, specialUse string) (Mailbox, error) {
	panic("todo")
}

// DeleteMailbox: ErrNoSuchMailbox; ErrCannotDelete for INBOX.
func (s *Store) DeleteMailbox(ctx context.Context, acct AccountID, name string) error { panic("todo") }

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves its messages into a
// new mailbox and leaves INBOX empty (RFC 3501). ErrNoSuchMailbox, ErrMailboxExists.
func (s *Store) RenameMailbox(ctx context.Context, acct AccountID, oldName, newName string) error {
	panic("todo")
}
func (s *Store) SetSubscribed(ctx context.Context, acct AccountID, name string, on bool) error {
	panic("todo")
}

// Status counts a mailbox's messages.
func (s *Store) Status(ctx context.Context, acct AccountID, name string) (MailboxStatus, error) {
	panic("todo")
}

// ---- messages (message.go) ----

// Append stores a message in the named mailbox (ErrNoSuchMailbox).
func (s *Store) Append(ctx context.Context, acct AccountID, mailbox string, msg NewMessage) (AppendResult, error) {
	panic("todo")
}

// Snapshot reads the mailbox row and its UIDs in one transaction (for SELECT).
func (s *Store) Snapshot(ctx context.Context, acct AccountID, mbox MailboxID) (Snapshot, error) {
	panic("todo")
}

// ChangesSince returns what changed after since: tombstones and messages whose modseq > since.
func (s *Store) ChangesSince(ctx context.Context, acct AccountID, mbox MailboxID, since ModSeq) (Changes, error) {
	panic("todo")
}

// FetchMeta calls fn for each live message whose UID is in uids (ascending order).
func (s *Store) FetchMeta(ctx context.Context, acct AccountID, mbox MailboxID, uids UIDSet, fields MetaFields, fn func(*MessageMeta) error) error {
	panic("todo")
}

// OpenBody returns the raw message bytes of a body digest.
func (s *Store) OpenBody(ctx context.Context, acct AccountID, digest []byte) (io.ReadCloser, int64, error) {
	panic("todo")
}

// StoreFlags changes flags of the messages at uids; it returns the messages whose flags changed
// (with their new flags and modseq).
func (s *Store) StoreFlags(ctx context.Context, acct AccountID, mbox MailboxID, uids UIDSet, op FlagOp, flags []string) ([]MessageState, error) {
	panic("todo")
}

// Expunge removes the \Deleted messages (restricted to uids when non-nil), leaving tombstones.
// It returns the expunged UIDs in ascending order.
func (s *Store) Expunge(ctx context.Context, acct AccountID, mbox MailboxID, uids UIDSet) ([]UID, error) {
	panic("todo")
}

// Copy copies messages into the named mailbox: new message UUIDs, shared bodies.
func (s *Store) Copy(ctx context.Context, acct AccountID, src MailboxID, uids UIDSet, dest string) (CopyResult, error) {
	panic("todo")
}

// Move moves messages (keeping their UUIDs) and expunges them from src with tombstones.
func (s *Store) Move(ctx context.Context, acct AccountID, src MailboxID, uids UIDSet, dest string) (CopyResult, error) {
	panic("todo")
}

// Search returns the UIDs (ascending) of live messages matching c.
func (s *Store) Search(ctx context.Context, acct AccountID, mbox MailboxID, c *SearchCriteria) ([]UID, error) {
	panic("todo")
}

// ---- change notification (changes.go) ----

// Notification says a mailbox changed: some commit raised its HIGHESTMODSEQ to ModSeq.
// A zero Notification (uuid.Nil mailbox) means "the listener reconnected: re-check all".
type Notification struct {
	Account AccountID
	Mailbox MailboxID
	ModSeq  ModSeq
}

// Listen holds one LISTEN connection and calls fn (from a single goroutine) for every change
// committed by any process on this database. It reconnects on failure (calling fn with a zero
// Notification after each reconnect) and returns only when ctx ends.
func (s *Store) Listen(ctx context.Context, fn func(Notification)) error { panic("todo") }
