package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
)

const (
	msgDomain = "scenario.twinmail"
	password  = "scenario-secret"
)

// messageBytes is the message a scenario delivers under name.
func messageBytes(name, account string) []byte {
	return []byte(fmt.Sprintf("Message-ID: <%s@%s>\r\nFrom: sender@example.org\r\nTo: %s@example.org\r\nSubject: %s\r\nDate: Fri, 04 Dec 2026 12:00:00 +0000\r\n\r\nThis is message %s.\r\n",
		name, msgDomain, account, name, name))
}

// nameOf extracts the scenario name from a Message-ID header section.
func nameOf(header []byte) string {
	i := bytes.IndexByte(header, '<')
	j := bytes.Index(header, []byte("@"+msgDomain+">"))
	if i < 0 || j <= i {
		return ""
	}
	return string(header[i+1 : j])
}

// entry is one message of a folder as a client sees it.
type entry struct {
	Name  string
	UID   imap.UID
	Flags []string
}

// folderState is what a folder holds on one side.
type folderState struct {
	Exists  bool
	UIDNext imap.UID
	Entries []entry // in UID order
}

func (f folderState) byName(name string) []entry {
	var out []entry
	for _, e := range f.Entries {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func (f folderState) String() string {
	if !f.Exists {
		return "(no such folder)"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "UIDNEXT %d;", f.UIDNext)
	for _, e := range f.Entries {
		fmt.Fprintf(&sb, " %s@%d", e.Name, e.UID)
		if len(e.Flags) > 0 {
			fmt.Fprintf(&sb, "(%s)", strings.Join(e.Flags, " "))
		}
	}
	if len(f.Entries) == 0 {
		sb.WriteString(" empty")
	}
	return sb.String()
}

func dial(addr, account string, h *imapclient.UnilateralDataHandler) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		return nil, fmt.Errorf("connect to IMAP %s: %w", addr, err)
	}
	if err := c.Login(account, password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("log in as %s: %w", account, err)
	}
	return c, nil
}

// readFolder reads a folder's state through a fresh EXAMINE.
func readFolder(c *imapclient.Client, folder string) (folderState, error) {
	st, err := c.Status(folder, &imap.StatusOptions{UIDNext: true}).Wait()
	if err != nil {
		var ie *imap.Error
		if asIMAPError(err, &ie) && ie.Code == imap.ResponseCodeNonExistent {
			return folderState{}, nil
		}
		return folderState{}, fmt.Errorf("status %s: %w", folder, err)
	}
	fs := folderState{Exists: true, UIDNext: st.UIDNext}
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return folderState{}, fmt.Errorf("examine %s: %w", folder, err)
	}
	defer func() { _ = c.Unselect().Wait() }()
	sec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		if strings.Contains(err.Error(), "No matching messages") || strings.Contains(err.Error(), "empty") {
			return fs, nil
		}
		return folderState{}, fmt.Errorf("fetch %s: %w", folder, err)
	}
	for _, m := range msgs {
		e := entry{UID: m.UID, Name: nameOf(m.FindBodySection(sec))}
		for _, f := range m.Flags {
			e.Flags = append(e.Flags, string(f))
		}
		slices.Sort(e.Flags)
		fs.Entries = append(fs.Entries, e)
	}
	slices.SortFunc(fs.Entries, func(a, b entry) int { return int(a.UID) - int(b.UID) })
	return fs, nil
}

func asIMAPError(err error, target **imap.Error) bool {
	ie, ok := err.(*imap.Error)
	if ok {
		*target = ie
	}
	return ok
}

// deliverLMTP delivers messages through LMTP, one transaction each. Like an MTA, it
// retries a delivery that got a temporary failure or a dropped connection (a replica
// restarting): the message was not acknowledged, so retrying cannot duplicate it.
func deliverLMTP(addr, account, folder string, names []string) error {
	rcpt := account + "@example.org"
	if !strings.EqualFold(folder, "INBOX") {
		rcpt = account + "+" + folder + "@example.org"
	}
	var c *smtp.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	connect := func() error {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return fmt.Errorf("connect to LMTP %s: %w", addr, err)
		}
		c = smtp.NewClientLMTP(conn)
		if err := c.Hello("scenario.example"); err != nil {
			c.Close()
			c = nil
			return fmt.Errorf("LHLO: %w", err)
		}
		return nil
	}
	for _, n := range names {
		var err error
		for attempt := 0; attempt < 8; attempt++ {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * 150 * time.Millisecond)
			}
			if c == nil {
				if err = connect(); err != nil {
					continue
				}
			}
			if err = c.SendMail("sender@example.org", []string{rcpt}, bytes.NewReader(messageBytes(n, account))); err == nil {
				break
			}
			var se *smtp.SMTPError
			if errors.As(err, &se) && se.Code >= 500 {
				return fmt.Errorf("deliver %s over LMTP: %w", n, err)
			}
			c.Close()
			c = nil
		}
		if err != nil {
			return fmt.Errorf("deliver %s over LMTP: %w", n, err)
		}
	}
	if c != nil {
		_ = c.Quit()
	}
	return nil
}

// deliverAppend delivers messages through IMAP APPEND.
func deliverAppend(addr, account, folder string, names []string) error {
	c, err := dial(addr, account, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, n := range names {
		raw := messageBytes(n, account)
		cmd := c.Append(folder, int64(len(raw)), nil)
		if _, err := cmd.Write(raw); err != nil {
			return fmt.Errorf("append %s: %w", n, err)
		}
		if err := cmd.Close(); err != nil {
			return fmt.Errorf("append %s: %w", n, err)
		}
		if _, err := cmd.Wait(); err != nil {
			return fmt.Errorf("append %s: %w", n, err)
		}
	}
	return nil
}

// deliverParallel splits a bulk delivery over several connections.
func deliverParallel(fn func(addr, account, folder string, names []string) error, addr, account, folder string, names []string) error {
	conns := 1
	if len(names) >= 64 {
		conns = 8
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		var part []string
		for k := i; k < len(names); k += conns {
			part = append(part, names[k])
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs <- fn(addr, account, folder, part) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// session is a long-lived client with a folder selected, whose view of the folder is
// checked against what the server told it: UIDs only ever ascend, nothing it was told about
// vanishes without an EXPUNGE, no UID appears twice.
type session struct {
	name, account, folder string
	side                  int
	addr                  string

	c    *imapclient.Client
	idle *imapclient.IdleCommand

	mu     sync.Mutex
	events []sessionEvent

	known    []imap.UID // the client's view, by sequence number
	maxSeen  imap.UID
	problems []string
	gone     bool // its folder was deleted or renamed away: nothing left to check
}

type sessionEvent struct {
	expunge uint32 // seq, or 0
	exists  *uint32
}

func (s *session) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			s.mu.Lock()
			s.events = append(s.events, sessionEvent{expunge: seq})
			s.mu.Unlock()
		},
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				n := *d.NumMessages
				s.mu.Lock()
				s.events = append(s.events, sessionEvent{exists: &n})
				s.mu.Unlock()
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) { _, _ = m.Collect() },
	}
}

// open connects and selects, and takes the initial view.
func (s *session) open() error {
	c, err := dial(s.addr, s.account, s.handler())
	if err != nil {
		return err
	}
	if _, err := c.Select(s.folder, nil).Wait(); err != nil {
		c.Close()
		return fmt.Errorf("select %s: %w", s.folder, err)
	}
	s.c = c
	s.mu.Lock()
	s.events = nil
	s.mu.Unlock()
	uids, err := s.fetchUIDs()
	if err != nil {
		return err
	}
	// After a reconnect, messages it knew may have gone (no EXPUNGE is owed across
	// sessions), but a message it never saw must not appear below what it saw.
	s.checkNew(uids, len(commonPrefix(s.known, uids)))
	s.known = uids
	return nil
}

func commonPrefix(known, now []imap.UID) []imap.UID {
	set := map[imap.UID]bool{}
	for _, u := range now {
		set[u] = true
	}
	var kept []imap.UID
	for _, u := range known {
		if set[u] {
			kept = append(kept, u)
		}
	}
	return kept
}

func (s *session) fetchUIDs() ([]imap.UID, error) {
	msgs, err := s.c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil && !strings.Contains(err.Error(), "No matching") {
		return nil, fmt.Errorf("fetch uids: %w", err)
	}
	slices.SortFunc(msgs, func(a, b *imapclient.FetchMessageBuffer) int { return int(a.SeqNum) - int(b.SeqNum) })
	uids := make([]imap.UID, 0, len(msgs))
	for i, m := range msgs {
		if m.SeqNum != uint32(i+1) {
			s.problem("FETCH 1:* skipped sequence number %d", i+1)
		}
		uids = append(uids, m.UID)
	}
	return uids, nil
}

func (s *session) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf("session %s (%s %s): ", s.name, sideNames[s.side], s.folder)+fmt.Sprintf(format, args...))
}

// checkNew checks the UIDs beyond the first k (the ones the client did not know).
func (s *session) checkNew(uids []imap.UID, k int) {
	s.checkFresh(uids, uids[min(k, len(uids)):])
}

// checkFresh checks a view for duplicates and that the fresh (newly learnt) UIDs are above
// every UID seen before.
func (s *session) checkFresh(uids, fresh []imap.UID) {
	seen := map[imap.UID]bool{}
	for _, u := range uids {
		if seen[u] {
			s.problem("UID %d appears twice", u)
		}
		seen[u] = true
	}
	for _, u := range fresh {
		if u <= s.maxSeen {
			s.problem("new message at UID %d, not above UID %d it had already seen", u, s.maxSeen)
		}
	}
	for _, u := range uids {
		s.maxSeen = max(s.maxSeen, u)
	}
}

// startIdle enters IDLE.
func (s *session) startIdle() error {
	if s.idle != nil || s.gone {
		return nil
	}
	if s.c == nil {
		if err := s.reopen(); err != nil || s.gone {
			return err
		}
	}
	cmd, err := s.c.Idle()
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	s.idle = cmd
	return nil
}

// poll ends IDLE, sends NOOP, applies the updates it got and checks the view against a
// fresh FETCH 1:* (UID). A dropped connection is reopened (as a client would).
func (s *session) poll() error {
	if s.gone {
		return nil
	}
	if s.c == nil {
		return s.reopen()
	}
	var err error
	if s.idle != nil {
		err = s.idle.Close()
		if err == nil {
			err = s.idle.Wait()
		}
		s.idle = nil
	}
	if err == nil {
		err = s.c.Noop().Wait()
	}
	if err != nil {
		s.c.Close()
		s.c = nil
		return s.reopen()
	}
	s.applyEvents()
	uids, err := s.fetchUIDs()
	if err != nil {
		return err
	}
	if len(uids) < len(s.known) {
		s.problem("FETCH 1:* returned %d messages, the client was told of %d", len(uids), len(s.known))
	}
	// Known UIDs must still be where they were; messages announced by EXISTS (0 in the
	// view) and any beyond are new and must be above every UID seen before.
	var fresh []imap.UID
	for i, u := range uids {
		switch {
		case i < len(s.known) && s.known[i] != 0:
			if s.known[i] != u {
				s.problem("message %d was UID %d, now UID %d without an EXPUNGE", i+1, s.known[i], u)
			}
		default:
			fresh = append(fresh, u)
		}
	}
	s.checkFresh(uids, fresh)
	s.known = uids
	s.applyEvents() // EXISTS that came with the FETCH: placeholders for the next round
	return nil
}

// reopen reconnects after the server dropped the connection (a restart, or its folder was
// deleted). A folder that no longer exists ends the session's checks.
func (s *session) reopen() error {
	err := s.open()
	var ie *imap.Error
	if err != nil && errors.As(err, &ie) && ie.Code == imap.ResponseCodeNonExistent {
		s.gone = true
		return nil
	}
	return err
}

// applyEvents replays EXPUNGE and EXISTS on the client's view.
func (s *session) applyEvents() {
	s.mu.Lock()
	evs := s.events
	s.events = nil
	s.mu.Unlock()
	for _, ev := range evs {
		switch {
		case ev.expunge != 0:
			if int(ev.expunge) > len(s.known) {
				s.problem("EXPUNGE %d beyond its %d messages", ev.expunge, len(s.known))
				continue
			}
			s.known = slices.Delete(s.known, int(ev.expunge)-1, int(ev.expunge))
		case ev.exists != nil:
			if int(*ev.exists) < len(s.known) {
				s.problem("EXISTS %d below the %d messages it knows without EXPUNGE", *ev.exists, len(s.known))
			}
			// The new messages' UIDs are learnt by the next FETCH: 0 until then.
			for len(s.known) < int(*ev.exists) {
				s.known = append(s.known, 0)
			}
		}
	}
}

func (s *session) close() {
	if s.c != nil {
		if s.idle != nil {
			_ = s.idle.Close()
		}
		s.c.Close()
		s.c = nil
	}
}
