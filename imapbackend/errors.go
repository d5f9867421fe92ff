package imapbackend

import (
	"errors"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/store"
)

// Errors the backend itself answers with.
var (
	errReadOnly = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeCannot,
		Text: "Mailbox is read-only (EXAMINE)",
	}
	errBadFlag = &imap.Error{
		Type: imap.StatusResponseTypeBad,
		Code: imap.ResponseCodeClientBug,
		Text: "Invalid flag",
	}
	errNotSelected = &imap.Error{
		Type: imap.StatusResponseTypeBad,
		Code: imap.ResponseCodeClientBug,
		Text: "No mailbox selected",
	}
	errUnknownStatusItem = &imap.Error{
		Type: imap.StatusResponseTypeBad,
		Text: "Unknown STATUS data item",
	}
)

// imapError maps store sentinels to the IMAP responses a client can act on. target says the
// mailbox named by the command is the destination of APPEND, COPY or MOVE, where a missing
// mailbox is answered with TRYCREATE. Any other error is returned unchanged: imapserver logs it
// and the client sees only "internal server error", never SQL text.
func imapError(err error, target bool) error {
	var imapErr *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &imapErr):
		return imapErr
	case errors.Is(err, store.ErrNoSuchMailbox):
		code := imap.ResponseCodeNonExistent
		if target {
			code = imap.ResponseCodeTryCreate
		}
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: "No such mailbox"}
	case errors.Is(err, store.ErrMailboxExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, store.ErrAuthFailed), errors.Is(err, store.ErrNoSuchAccount):
		return imapserver.ErrAuthFailed
	case errors.Is(err, store.ErrBadMailboxName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, store.ErrCannotDelete):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox cannot be deleted"}
	case errors.Is(err, store.ErrNoSuchMessage):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such message"}
	case errors.Is(err, store.ErrTooBig):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too big"}
	case errors.Is(err, store.ErrBadFlag):
		return errBadFlag
	}
	return err
}
