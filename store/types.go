package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// AccountID identifies an account; it is the same on both replicas.
type AccountID = uuid.UUID

// MailboxID identifies a mailbox; it survives renames and is the same on both replicas.
type MailboxID = uuid.UUID

// MessageID is a message's UUIDv7. It never changes (DESIGN invariant 4).
type MessageID = uuid.UUID

// UID is an IMAP UID within one mailbox.
type UID uint32

// ModSeq is a per-mailbox modification sequence number.
type ModSeq uint64

// Account is a mail account.
type Account struct {
	ID        AccountID
	Name      string
	CreatedAt time.Time
}

// Mailbox is a folder of an account.
type Mailbox struct {
	ID            MailboxID
	Account       AccountID
	Name          string
	UIDValidity   uint32
	UIDNext       UID
	HighestModSeq ModSeq
	Subscribed    bool
	SpecialUse    string // "", `\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`, `\All`, `\Flagged`
}

// Delim is the hierarchy delimiter of mailbox names.
const Delim = '/'

// InboxName is the canonical spelling of the inbox; any case of "INBOX" refers to it.
const InboxName = "INBOX"

// CanonicalMailboxName returns name with any case of INBOX (alone or as the first level)
// spelled INBOX.
func CanonicalMailboxName(name string) string {
	if strings.EqualFold(name, InboxName) {
		return InboxName
	}
	if len(name) > len(InboxName) && name[len(InboxName)] == Delim && strings.EqualFold(name[:len(InboxName)], InboxName) {
		return InboxName + name[len(InboxName):]
	}
	return name
}

// ValidateMailboxName reports whether name can be a mailbox name.
func ValidateMailboxName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrBadMailboxName)
	case len(name) > 512:
		return fmt.Errorf("%w: longer than 512 bytes", ErrBadMailboxName)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not UTF-8", ErrBadMailboxName)
	case strings.HasPrefix(name, string(Delim)) || strings.HasSuffix(name, string(Delim)) || strings.Contains(name, string(Delim)+string(Delim)):
		return fmt.Errorf("%w: empty hierarchy level", ErrBadMailboxName)
	case strings.ContainsAny(name, "*%\r\n\x00"):
		return fmt.Errorf("%w: contains a wildcard or control character", ErrBadMailboxName)
	}
	return nil
}

// NewMessage is what Append and Deliver store. The caller parses the message
// (internal/mailparse) and hands over the results; store keeps them opaque.
type NewMessage struct {
	Raw           []byte // the exact bytes, CRLF line endings
	Flags         []string
	InternalDate  time.Time // zero means now
	SentDate      time.Time // Date header; zero if missing or unparsable
	Envelope      json.RawMessage
	BodyStructure json.RawMessage
	SearchHeader  string // unfolded, decoded header block for HEADER/SUBJECT/FROM... searches
	SearchText    string // decoded text of the body parts for BODY/TEXT searches
}

// AppendResult tells where an appended message went.
type AppendResult struct {
	Mailbox     MailboxID
	UIDValidity uint32
	UID         UID
	ModSeq      ModSeq
	Message     MessageID
}

// MessageState is one message's place and flags in a mailbox.
type MessageState struct {
	UID     UID
	Message MessageID
	Flags   []string
	ModSeq  ModSeq
}

// MessageMeta is what FETCH needs of a message, apart from its body.
type MessageMeta struct {
	MessageState
	Size          int64
	InternalDate  time.Time
	Digest        []byte
	Envelope      json.RawMessage
	BodyStructure json.RawMessage
}

// MetaFields selects which optional columns FetchMeta reads (state is always read).
type MetaFields struct {
	Envelope      bool
	BodyStructure bool
}

// Snapshot is a selected mailbox at one instant: its row and its sorted UIDs.
type Snapshot struct {
	Mailbox Mailbox
	UIDs    []UID // ascending
}

// Changes is what changed in a mailbox after a MODSEQ.
type Changes struct {
	HighestModSeq ModSeq
	UIDNext       UID
	Expunged      []UID          // ascending
	Changed       []MessageState // new or with changed flags, ascending by UID
}

// FlagOp is how StoreFlags combines the given flags with a message's flags.
type FlagOp int

const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// MailboxStatus holds the counters STATUS reports.
type MailboxStatus struct {
	Mailbox     Mailbox
	NumMessages uint32
	NumUnseen   uint32
	NumDeleted  uint32
	Size        int64
}

// CopyResult maps source UIDs to destination UIDs, in the same order.
type CopyResult struct {
	Dest        MailboxID
	UIDValidity uint32
	SrcUIDs     []UID
	DestUIDs    []UID
	DestModSeq  ModSeq
}

// UIDRange is an inclusive range of UIDs.
type UIDRange struct{ Start, Stop UID }
