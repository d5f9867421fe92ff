package lmtp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/twinmail/twinmail/internal/mailparse"
	"github.com/twinmail/twinmail/store"
)

// Replies that do not depend on the transaction.
var (
	errUnknownUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	errTempFail    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errBrokenData  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message not received completely"}
	errLongLine    = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: fmt.Sprintf("Line longer than %d bytes", maxLineLength)}
	errClosing     = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Server shutting down, try again later"}
	errNotLMTP     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "DATA outside LMTP"}
	// errNoStatus answers any recipient LMTPData did not give a status: none, unless the
	// session's recipients and go-smtp's disagree. It must never be a 250.
	errNoStatus = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Recipient not processed, try again later"}
)

// session is the state of one LMTP connection. go-smtp calls Mail, Rcpt and Reset from the
// connection's goroutine, and LMTPData from a goroutine of its own while the connection
// waits for the replies.
type session struct {
	srv    *Server
	conn   *smtp.Conn
	remote string // for the Received header and the log

	from     string
	sizeHint int64       // MAIL FROM SIZE=, 0 if not given
	rcpts    []recipient // accepted, in RCPT order, duplicates kept (go-smtp keeps them too)
}

// recipient is an accepted RCPT.
type recipient struct {
	addr   string // as given; the key of its status
	acct   store.Account
	folder string // an existing folder's name at RCPT time, or INBOX
}

var _ smtp.LMTPSession = (*session)(nil)

// Reset ends the transaction (RSET, LHLO again, and after DATA).
func (s *session) Reset() {
	s.from, s.sizeHint, s.rcpts = "", 0, nil
}

// Logout is called when the connection closes.
func (s *session) Logout() error { return nil }

// Mail starts a transaction. The recipients of an earlier MAIL are kept, as go-smtp keeps
// them, so that the two lists never disagree.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := checkAddress(from); err != nil && !errors.Is(err, errAddrEmpty) {
		return addressError(err, "sender", smtp.EnhancedCode{5, 1, 7})
	}
	s.from = from
	s.sizeHint = 0
	if opts != nil {
		s.sizeHint = opts.Size
	}
	return nil
}

// Rcpt accepts a recipient that names an account, or refuses it with 550 5.1.1 at once.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := checkAddress(to); err != nil {
		return addressError(err, "recipient", smtp.EnhancedCode{5, 1, 3})
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	acct, folder, err := s.srv.store.LookupAddress(ctx, to)
	if errors.Is(err, store.ErrNoSuchAccount) {
		s.srv.log.Info("unknown recipient", keyRcpt, to, keyRemote, s.remote)
		return errUnknownUser
	}
	if err == nil {
		folder, err = s.srv.resolveFolder(ctx, acct.ID, folder)
	}
	if err != nil {
		s.srv.log.Error("look up recipient", keyRcpt, to, keyErr, err)
		return errTempFail
	}
	s.rcpts = append(s.rcpts, recipient{addr: to, acct: acct, folder: folder})
	return nil
}

// resolveFolder returns the name of the folder an address's +detail names, or INBOX when
// there is none or it does not exist.
func (s *Server) resolveFolder(ctx context.Context, acct store.AccountID, folder string) (string, error) {
	if folder == "" {
		return store.InboxName, nil
	}
	folder = store.CanonicalMailboxName(folder)
	if store.ValidateMailboxName(folder) != nil {
		return store.InboxName, nil
	}
	m, err := s.store.GetMailbox(ctx, acct, folder)
	if errors.Is(err, store.ErrNoSuchMailbox) {
		return store.InboxName, nil
	}
	if err != nil {
		return "", fmt.Errorf("look up folder %q: %w", folder, err)
	}
	return m.Name, nil
}

// Data is never called: the server speaks only LMTP, where go-smtp calls LMTPData.
func (s *session) Data(io.Reader) error { return errNotLMTP }

// LMTPData reads the message, adds the trace headers, parses it once and stores one copy
// per recipient, setting each recipient's status as soon as its copy is committed (or has
// failed). go-smtp writes the statuses in RCPT order.
func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	if !s.srv.beginDelivery() {
		return errClosing
	}
	defer s.srv.inflight.Done()

	id := rand.Text()[:12]
	now := time.Now()
	forRcpt := ""
	if len(s.rcpts) == 1 {
		// With several recipients the copies share one body, stored once per account.
		forRcpt = s.rcpts[0].addr
	}
	// Size the buffer by the client's SIZE= hint (room for CRLF fixes), but only up to
	// 1 MiB on a client's word: beyond that it grows as the data comes.
	capacity := int64(4 << 10)
	if s.sizeHint > 0 && s.sizeHint <= s.srv.maxSize {
		capacity = min(s.sizeHint+s.sizeHint/32, 1<<20)
	}
	raw := make([]byte, 0, 512+capacity)
	raw = traceHeaders(raw, trace{
		from: s.from, helo: s.conn.Hostname(), remote: s.remote, host: s.srv.hostname,
		id: id, forRcpt: forRcpt, date: now,
	})
	raw, err := readData(raw, r, s.srv.maxSize)
	if err != nil {
		return s.srv.dataError(err, id, s.remote)
	}

	p := mailparse.Parse(raw)
	msg := store.NewMessage{
		Raw:           raw,
		InternalDate:  now,
		SentDate:      p.SentDate,
		Envelope:      p.EnvelopeJSON,
		BodyStructure: p.BodyStructureJSON,
		SearchHeader:  p.SearchHeader,
		SearchText:    p.SearchText,
	}
	done := make(map[string]error, len(s.rcpts))
	for _, rc := range s.rcpts {
		st, ok := done[rc.addr]
		if !ok {
			st = s.srv.deliver(id, rc, &msg) // a repeated RCPT gets one copy and the same reply
			done[rc.addr] = st
		}
		status.SetStatus(rc.addr, st)
	}
	return errNoStatus
}

// dataError turns a failure to read the message into the reply for every recipient.
func (s *Server) dataError(err error, id, remote string) error {
	var tooBig *tooBigError
	switch {
	case errors.As(err, &tooBig):
		s.log.Info("message too big", keyID, id, keyRemote, remote, keySize, tooBig.read, "max", s.maxSize)
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Message larger than %d bytes", s.maxSize)}
	case errors.Is(err, smtp.ErrTooLongLine):
		s.log.Info("line too long", keyID, id, keyRemote, remote)
		return errLongLine
	}
	var smtpErr *smtp.SMTPError
	if errors.As(err, &smtpErr) {
		return smtpErr // go-smtp's own limit
	}
	s.log.Info("message not received", keyID, id, keyRemote, remote, keyErr, err)
	return errBrokenData
}

// deliver stores one copy for rc and returns its status: 250 once committed, 451 on any
// failure (the MTA keeps the message and retries).
func (s *Server) deliver(id string, rc recipient, msg *store.NewMessage) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	folder := rc.folder
	res, err := s.store.Append(ctx, rc.acct.ID, folder, *msg)
	if errors.Is(err, store.ErrNoSuchMailbox) && folder != store.InboxName {
		// The folder was deleted or renamed since RCPT.
		folder = store.InboxName
		res, err = s.store.Append(ctx, rc.acct.ID, folder, *msg)
	}
	if err != nil {
		s.log.Error("deliver", keyID, id, keyRcpt, rc.addr, keyAccount, rc.acct.Name, keyFolder, folder, keyErr, err)
		return errTempFail
	}
	s.log.Info("delivered", keyID, id, keyRcpt, rc.addr, keyAccount, rc.acct.Name, keyFolder, folder,
		keySize, len(msg.Raw), keyUID, uint32(res.UID))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Delivered (id " + id + ")"}
}
