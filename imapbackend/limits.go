package imapbackend

// Limits against abuse: caps on connections per client address and per account, a growing
// delay after failed logins, autologout of silent connections, and a shutdown that says BYE.
//
// go-imap (beta.8) has none of these (notes/go-imap-v2.md §5 item 11): the caps are checked in
// NewSession (a BYE error) and Login (NO [LIMIT]); its read timeouts are fixed constants
// (conn.go: 30 s before login, 35 min after), so autologout is a per-session timer fed by a
// net.Conn wrapper that Backend.Listener installs under the TLS layer.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/store"
)

// Defaults for the zero values of the limit fields of Options.
const (
	DefaultMaxConnsPerIP      = 50
	DefaultMaxConnsPerAccount = 50
	DefaultIdleTimeout        = 30 * time.Minute // RFC 3501 §5.4: at least 30 minutes
	DefaultLoginDelay         = time.Second
)

// Failed-login throttling. A client address (IPv6: its /64) and an account name each count
// their failed logins; a count is forgotten once loginFailWindow passes without a new
// failure, and a successful login forgets the account's count (not the address's: one good
// account must not let an address go on guessing others). From the threshold on, every
// attempt first waits LoginDelay, doubling with each further failure up to 8 × LoginDelay.
// The threshold per address is higher because many users may share one (NAT, proxies).
const (
	loginFailWindow      = 10 * time.Minute
	accountFailThreshold = 3
	addressFailThreshold = 10
	maxLoginDelayShift   = 3       // 1 s, 2 s, 4 s, 8 s
	maxFailRecords       = 1 << 16 // per table; bounds memory against name spraying
	maxFailKeyLen        = 256     // longer account names are cut for counting
	autologoutText       = "Autologout; idle for too long"
	shutdownText         = "Server shutting down"
)

var (
	errTooManyFromAddress = &imap.Error{
		Type: imap.StatusResponseTypeBye,
		Code: imap.ResponseCodeLimit,
		Text: "Too many connections from your address",
	}
	errTooManyForAccount = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeLimit,
		Text: "Too many connections for this account",
	}
	errShuttingDown = &imap.Error{
		Type: imap.StatusResponseTypeBye,
		Code: imap.ResponseCodeUnavailable,
		Text: shutdownText,
	}
)

// limitOr turns an Options limit into the one in force: 0 means def, a negative value none (0).
func limitOr[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// limiter holds the per-process counts behind the limits, and the set of live sessions.
type limiter struct {
	maxPerIP, maxPerAccount int           // 0: no cap
	loginDelay              time.Duration // 0: no delay

	mu        sync.Mutex
	perIP     map[netip.Addr]int
	perAcct   map[store.AccountID]int
	ipFails   failTable[netip.Addr]
	acctFails failTable[string]
	sessions  map[*Session]struct{}
	closing   bool
	drained   chan struct{} // made by shutdown; closed when the last session has gone
}

func newLimiter(opts Options) *limiter {
	return &limiter{
		maxPerIP:      limitOr(opts.MaxConnsPerIP, DefaultMaxConnsPerIP),
		maxPerAccount: limitOr(opts.MaxConnsPerAccount, DefaultMaxConnsPerAccount),
		loginDelay:    limitOr(opts.LoginDelay, DefaultLoginDelay),
		perIP:         make(map[netip.Addr]int),
		perAcct:       make(map[store.AccountID]int),
		ipFails:       failTable[netip.Addr]{m: make(map[netip.Addr]failRecord)},
		acctFails:     failTable[string]{m: make(map[string]failRecord)},
		sessions:      make(map[*Session]struct{}),
	}
}

// connect registers a new session from ip (invalid: not a TCP client, not capped). It returns
// the BYE to answer with when the server is shutting down or ip is over its cap.
func (l *limiter) connect(s *Session, ip netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return errShuttingDown
	}
	if ip.IsValid() {
		if l.maxPerIP > 0 && l.perIP[ip] >= l.maxPerIP {
			return errTooManyFromAddress
		}
		l.perIP[ip]++
	}
	l.sessions[s] = struct{}{}
	return nil
}

// disconnect undoes connect and, unless acct is the zero ID, login.
func (l *limiter) disconnect(s *Session, ip netip.Addr, acct store.AccountID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.sessions[s]; !ok {
		return
	}
	delete(l.sessions, s)
	if ip.IsValid() {
		decr(l.perIP, ip)
	}
	if acct != (store.AccountID{}) {
		decr(l.perAcct, acct)
	}
	if l.closing && len(l.sessions) == 0 {
		close(l.drained)
	}
}

func decr[K comparable](m map[K]int, k K) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// login counts a logged-in connection of acct, or reports false when acct is at its cap.
func (l *limiter) login(acct store.AccountID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxPerAccount > 0 && l.perAcct[acct] >= l.maxPerAccount {
		return false
	}
	l.perAcct[acct]++
	return true
}

// failKey is the name under which an account's failed logins are counted: known or not,
// so that an unknown name and a wrong password are delayed alike.
func failKey(username string) string {
	if len(username) > maxFailKeyLen {
		username = username[:maxFailKeyLen]
	}
	return strings.ToLower(username)
}

// delay returns how long a login attempt from ip as username must wait first.
func (l *limiter) delay(ip netip.Addr, username string) time.Duration {
	if l.loginDelay <= 0 {
		return 0
	}
	now := time.Now()
	l.mu.Lock()
	nAcct := l.acctFails.count(failKey(username), now)
	nIP := 0
	if ip.IsValid() {
		nIP = l.ipFails.count(ip, now)
	}
	l.mu.Unlock()
	return max(backoff(l.loginDelay, nAcct, accountFailThreshold), backoff(l.loginDelay, nIP, addressFailThreshold))
}

// backoff is the delay after n failures: none below threshold, then base, doubling per
// further failure up to base << maxLoginDelayShift.
func backoff(base time.Duration, n, threshold int) time.Duration {
	if n < threshold {
		return 0
	}
	return base << min(n-threshold, maxLoginDelayShift)
}

// failed counts a failed login.
func (l *limiter) failed(ip netip.Addr, username string) {
	if l.loginDelay <= 0 {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acctFails.add(failKey(username), now)
	if ip.IsValid() {
		l.ipFails.add(ip, now)
	}
}

// succeeded forgets the failed logins of username.
func (l *limiter) succeeded(username string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.acctFails.m, failKey(username))
}

// shutdown refuses new sessions and returns the live ones and a channel closed once they have
// all ended.
func (l *limiter) shutdown() ([]*Session, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closing {
		l.closing = true
		l.drained = make(chan struct{})
		if len(l.sessions) == 0 {
			close(l.drained)
		}
	}
	live := make([]*Session, 0, len(l.sessions))
	for s := range l.sessions {
		live = append(live, s)
	}
	return live, l.drained
}

// failRecord counts failures none of which came more than loginFailWindow after the one
// before.
type failRecord struct {
	n    int
	last time.Time
}

// failTable counts failed logins per key, in bounded memory.
type failTable[K comparable] struct {
	m         map[K]failRecord
	lastPrune time.Time
}

func (t *failTable[K]) count(k K, now time.Time) int {
	r, ok := t.m[k]
	if !ok || now.Sub(r.last) > loginFailWindow {
		return 0
	}
	return r.n
}

func (t *failTable[K]) add(k K, now time.Time) {
	t.prune(now)
	r := t.m[k]
	if now.Sub(r.last) > loginFailWindow {
		r.n = 0
	}
	r.n++
	r.last = now
	t.m[k] = r
}

// prune drops expired records once per loginFailWindow, and whenever the table is full; if
// it is still full then, it drops arbitrary records until it is three quarters full, so a
// flood of new names costs amortised O(1) per failure.
func (t *failTable[K]) prune(now time.Time) {
	if len(t.m) < maxFailRecords && now.Sub(t.lastPrune) < loginFailWindow {
		return
	}
	t.lastPrune = now
	for k, r := range t.m {
		if now.Sub(r.last) > loginFailWindow {
			delete(t.m, k)
		}
	}
	for k := range t.m {
		if len(t.m) < maxFailRecords*3/4 {
			break
		}
		delete(t.m, k)
	}
}

// clientIP is the address that limits count a client under: its IP, or for IPv6 its /64
// (one subscriber usually holds a whole /64). It is invalid for a non-TCP client.
func clientIP(addr net.Addr) netip.Addr {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			ip = p.Addr()
		}
	}
	return ip
}

// Listener wraps ln so that each connection records when it last read or wrote, which
// autologout needs. Serve the imapserver on b.Listener(ln); for implicit TLS, wrap it under
// the TLS layer: tls.NewListener(b.Listener(ln), config). Connections accepted otherwise are
// never logged out for being idle.
func (b *Backend) Listener(ln net.Listener) net.Listener {
	return activityListener{ln}
}

type activityListener struct{ net.Listener }

func (l activityListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ac := &activityConn{Conn: c}
	ac.touch()
	return ac, nil
}

// activityConn is a net.Conn that records when data last went either way. A connection
// streaming a long FETCH or receiving IDLE updates is thus not idle; one on which nothing
// happens is.
type activityConn struct {
	net.Conn
	last atomic.Int64 // monoNow at the last read or write
}

func (c *activityConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *activityConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *activityConn) touch() { c.last.Store(monoNow()) }

// idleFor returns how long the connection has been silent.
func (c *activityConn) idleFor() time.Duration { return time.Duration(monoNow() - c.last.Load()) }

var monoStart = time.Now()

// monoNow is a monotonic clock reading in nanoseconds.
func monoNow() int64 { return int64(time.Since(monoStart)) }

// findActivity returns the activityConn under nc (through a TLS layer), or nil.
func findActivity(nc net.Conn) *activityConn {
	for {
		switch c := nc.(type) {
		case *activityConn:
			return c
		case *tls.Conn:
			nc = c.NetConn()
		default:
			return nil
		}
	}
}

// autologout closes a logged-in connection that has been silent for longer than the idle
// timeout.
type autologout struct {
	mu      sync.Mutex
	timer   *time.Timer // nil until started
	stopped bool
}

// startAutologout arms the idle timer; Login calls it once the session is logged in.
func (s *Session) startAutologout() {
	d := s.b.idleTimeout
	if d <= 0 || s.activity == nil {
		return
	}
	s.idle.mu.Lock()
	defer s.idle.mu.Unlock()
	if s.idle.stopped {
		return
	}
	s.idle.timer = time.AfterFunc(d, s.checkIdle)
}

// checkIdle runs when the idle timer fires: it says BYE if the connection has been silent for
// the whole timeout, and otherwise waits for the rest of it.
func (s *Session) checkIdle() {
	d := s.b.idleTimeout
	s.idle.mu.Lock()
	if s.idle.stopped {
		s.idle.mu.Unlock()
		return
	}
	if idle := s.activity.idleFor(); idle < d {
		s.idle.timer.Reset(d - idle)
		s.idle.mu.Unlock()
		return
	}
	s.idle.stopped = true
	s.idle.mu.Unlock()
	s.log.Info("autologout", "idle_timeout", d)
	s.kick(autologoutText)
}

// stopAutologout disarms the idle timer for good.
func (s *Session) stopAutologout() {
	s.idle.mu.Lock()
	defer s.idle.mu.Unlock()
	s.idle.stopped = true
	if s.idle.timer != nil {
		s.idle.timer.Stop()
	}
}

// kick ends the connection from outside the command loop: a logged-in one with BYE text, one
// that has not logged in by closing it. (imapserver.Conn.Bye reads the connection without the
// lock that STARTTLS replaces it under, and STARTTLS happens only before login.)
func (s *Session) kick(text string) {
	if s.loggedIn.Load() {
		s.conn.Bye(text)
		return
	}
	if nc := s.conn.NetConn(); nc != nil {
		nc.Close()
	}
}

// Shutdown says BYE to every logged-in connection, closes the others and answers new ones
// with BYE, then waits until their sessions have ended or ctx ends, and cancels the store
// work of any left. Call it before the imapserver's Close, which cuts connections without a
// word.
func (b *Backend) Shutdown(ctx context.Context) {
	defer b.cancel()
	live, drained := b.lim.shutdown()
	for _, s := range live {
		go s.kick(shutdownText) // Bye may wait for a slow client; do them side by side
	}
	select {
	case <-drained:
	case <-ctx.Done():
		b.log.Warn("shutdown: sessions still open", "err", ctx.Err())
	}
}

// serverLogger is imapserver's logger. Errors that follow from the backend ending a
// connection on purpose (net.ErrClosed after autologout, shutdown or LOGOUT; context.Canceled
// for cancelled store work) are logged at debug level, and client timeouts at info level, so
// that the error level is left to what an operator must look at.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Printf(format string, args ...any) {
	level := slog.LevelError
	for _, a := range args {
		err, ok := a.(error)
		switch {
		case !ok:
		case errors.Is(err, net.ErrClosed), errors.Is(err, context.Canceled):
			level = slog.LevelDebug
		case errors.Is(err, os.ErrDeadlineExceeded):
			level = slog.LevelInfo
		}
	}
	l.log.Log(context.Background(), level, strings.TrimSuffix(fmt.Sprintf(format, args...), "\n"))
}
