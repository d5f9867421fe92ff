package imapbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/store"
)

// Session is one IMAP connection. imapserver calls its methods one at a time, except that
// Idle runs on its own goroutine and may still be running when Poll or Close is called; mu
// serialises them.
type Session struct {
	b    *Backend
	conn *imapserver.Conn

	// ctx lives from NewSession to Close; every command derives a bounded context from it.
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	log  *slog.Logger
	acct store.Account // zero until Login succeeds
	sel  *selected     // nil unless a mailbox is selected

	// Limits (limits.go).
	ip       netip.Addr    // what per-address limits count the client as; invalid if not TCP
	activity *activityConn // nil unless the listener came through Backend.Listener
	loggedIn atomic.Bool   // set once Login succeeded (and counted the account)
	idle     autologout
}

// selected is the state of the selected mailbox.
type selected struct {
	mbox     store.Mailbox // as of SELECT; the ID survives renames
	readOnly bool
	view     *view
	watch    *boxWatch
	saved    []store.UID // SEARCH RETURN (SAVE) result, for "$"
}

var (
	_ imapserver.Session            = (*Session)(nil)
	_ imapserver.SessionIMAP4rev2   = (*Session)(nil)
	_ imapserver.SessionAppendLimit = (*Session)(nil)
)

// cmdCtx returns the context for one command's store work.
func (s *Session) cmdCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, cmdTimeout)
}

// Login checks the password; AUTHENTICATE PLAIN comes here too. After repeated failures
// from the client's address or for the name, the attempt waits first (limits.go), the same
// for an unknown name as for a wrong password; and an account at its connection cap gets NO
// [LIMIT].
func (s *Session) Login(username, password string) error {
	if d := s.b.lim.delay(s.ip, username); d > 0 {
		s.log.Info("login delayed after failures", logKeyAccount, username, "delay", d)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return imapserver.ErrAuthFailed
		}
	}
	ctx, cancel := s.cmdCtx()
	defer cancel()
	acct, err := s.b.store.Authenticate(ctx, username, password)
	if errors.Is(err, store.ErrAuthFailed) || errors.Is(err, store.ErrNoSuchAccount) {
		s.log.Info("login failed", logKeyAccount, username)
		s.b.lim.failed(s.ip, username)
	}
	if err != nil {
		return imapError(fmt.Errorf("authenticate %q: %w", username, err), false)
	}
	s.b.lim.succeeded(username)
	if !s.b.lim.login(acct.ID) {
		s.log.Info("login refused: too many connections", logKeyAccount, acct.Name)
		return errTooManyForAccount
	}
	s.mu.Lock()
	s.acct = acct
	s.log = s.log.With(logKeyAccount, acct.Name)
	s.mu.Unlock()
	s.loggedIn.Store(true)
	s.startAutologout()
	s.log.Debug("logged in")
	return nil
}

// Close ends the session: it cancels the session's store work, lets go of the selected
// mailbox and releases the connection's place under the limits.
func (s *Session) Close() error {
	s.cancel()
	s.stopAutologout()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unselectLocked()
	var acct store.AccountID
	if s.loggedIn.Load() {
		acct = s.acct.ID
	}
	s.b.lim.disconnect(s, s.ip, acct)
	return nil
}

// AppendLimit is advertised as APPENDLIMIT=n.
func (s *Session) AppendLimit() uint32 { return s.b.appendLimit }

func (s *Session) unselectLocked() {
	if s.sel != nil {
		s.b.hub.release(s.sel.watch)
		s.sel = nil
	}
}

// account returns the logged-in account. Login sets it before any command that needs it, on
// the connection's goroutine, so reading it needs no lock.
func (s *Session) account() store.AccountID { return s.acct.ID }
