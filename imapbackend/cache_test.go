package imapbackend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

func TestApplyChanges(t *testing.T) {
	st := func(uids ...store.UID) []store.MessageState {
		var out []store.MessageState
		for _, u := range uids {
			out = append(out, store.MessageState{UID: u})
		}
		return out
	}
	tests := []struct {
		name string
		uids []store.UID
		ch   store.Changes
		want []store.UID
	}{
		{"nothing", []store.UID{1, 2}, store.Changes{}, []store.UID{1, 2}},
		{"flags only", []store.UID{1, 2}, store.Changes{Changed: st(1, 2)}, []store.UID{1, 2}},
		{"append", []store.UID{1, 2}, store.Changes{Changed: st(2, 5, 7)}, []store.UID{1, 2, 5, 7}},
		{"expunge", []store.UID{1, 2, 3, 4}, store.Changes{Expunged: []store.UID{1, 3, 9}}, []store.UID{2, 4}},
		{"both", []store.UID{1, 2, 3}, store.Changes{Expunged: []store.UID{3}, Changed: st(4)}, []store.UID{1, 2, 4}},
		{"appended and expunged meanwhile", []store.UID{1}, store.Changes{Expunged: []store.UID{2}}, []store.UID{1}},
		{"from empty", nil, store.Changes{Changed: st(3, 4)}, []store.UID{3, 4}},
		{"out of order", []store.UID{1, 5}, store.Changes{Changed: st(3)}, []store.UID{1, 3, 5}},
	}
	for _, tt := range tests {
		orig := slices.Clone(tt.uids)
		got := applyChanges(tt.uids, tt.ch)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: applyChanges(%v) = %v, want %v", tt.name, orig, got, tt.want)
		}
		if !slices.Equal(tt.uids, orig) {
			t.Errorf("%s: applyChanges modified its input: %v, was %v", tt.name, tt.uids, orig)
		}
	}
}

// cacheEnv is a backend on a real database, without a listener: the test plays the LISTEN
// side by calling hub.notify itself.
type cacheEnv struct {
	st   *store.Store
	b    *Backend
	acct store.Account
}

func newCacheEnv(t *testing.T) *cacheEnv {
	t.Helper()
	st := storetest.New(t)
	acct, err := st.CreateAccount(context.Background(), "cache", "pw")
	if err != nil {
		t.Fatal(err)
	}
	return &cacheEnv{st: st, b: New(Options{Store: st}), acct: acct}
}

// appendN appends n messages to the named mailbox, as another process would: this backend's
// hub is not told.
func (e *cacheEnv) appendN(t *testing.T, mailbox string, n int) store.AppendResult {
	t.Helper()
	var res store.AppendResult
	for i := range n {
		var err error
		res, err = e.st.Append(context.Background(), e.acct.ID, mailbox, store.NewMessage{Raw: fmt.Appendf(nil, "Subject: %d\r\n\r\nhi\r\n", i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// selectUIDs does what SELECT does with the cache and returns the UIDs the view starts with.
func (e *cacheEnv) selectUIDs(t *testing.T, mailbox string) []store.UID {
	t.Helper()
	ctx := context.Background()
	mb, err := e.st.GetMailbox(ctx, e.acct.ID, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	w := e.b.hub.acquire(mb.ID)
	defer e.b.hub.release(w)
	v, _, err := e.b.selectView(ctx, e.acct.ID, mb)
	if err != nil {
		t.Fatal(err)
	}
	return v.uids
}

func uidRange(from, to store.UID) []store.UID {
	var out []store.UID
	for u := from; u <= to; u++ {
		out = append(out, u)
	}
	return out
}

func TestViewCacheFollowsNotifications(t *testing.T) {
	e := newCacheEnv(t)
	e.appendN(t, "INBOX", 3)
	if got := e.selectUIDs(t, "INBOX"); !slices.Equal(got, uidRange(1, 3)) {
		t.Fatalf("first SELECT: %v", got)
	}
	_, _, reloads := e.b.views.stats()
	if reloads != 1 {
		t.Fatalf("reloads after the first SELECT = %d, want 1", reloads)
	}

	// A commit whose notification has not arrived yet is seen all the same: SELECT reads
	// the mailbox row, and a higher HIGHESTMODSEQ there makes it catch up.
	res := e.appendN(t, "INBOX", 1)
	if got := e.selectUIDs(t, "INBOX"); !slices.Equal(got, uidRange(1, 4)) {
		t.Fatalf("SELECT before the notification: %v", got)
	}
	// The notification, arriving late, changes nothing more.
	e.b.hub.notify(store.Notification{Account: e.acct.ID, Mailbox: res.Mailbox, ModSeq: res.ModSeq})
	if got := e.selectUIDs(t, "INBOX"); !slices.Equal(got, uidRange(1, 4)) {
		t.Fatalf("SELECT after the notification: %v", got)
	}
	// Expunges too.
	ctx := context.Background()
	if _, err := e.st.StoreFlags(ctx, e.acct.ID, res.Mailbox, store.UIDSet{{Start: 2, Stop: 3}}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Expunge(ctx, e.acct.ID, res.Mailbox, nil); err != nil {
		t.Fatal(err)
	}
	if got := e.selectUIDs(t, "INBOX"); !slices.Equal(got, []store.UID{1, 4}) {
		t.Fatalf("SELECT after EXPUNGE: %v", got)
	}
	if _, _, r := e.b.views.stats(); r != 1 {
		t.Errorf("reloads after incremental updates = %d, want 1", r)
	}

	// A zero notification (the listener reconnected) empties the cache: the next SELECT
	// reads a fresh snapshot, which includes what was committed unannounced.
	e.appendN(t, "INBOX", 2)
	e.b.hub.notify(store.Notification{})
	if n, _, _ := e.b.views.stats(); n != 0 {
		t.Errorf("entries after the zero notification, before any SELECT = %d, want 0", n)
	}
	if got := e.selectUIDs(t, "INBOX"); !slices.Equal(got, []store.UID{1, 4, 5, 6}) {
		t.Fatalf("SELECT after the zero notification: %v", got)
	}
	if _, _, r := e.b.views.stats(); r != 2 {
		t.Errorf("reloads after the zero notification = %d, want 2", r)
	}
}

func TestViewCacheDeletedMailbox(t *testing.T) {
	e := newCacheEnv(t)
	ctx := context.Background()
	if _, err := e.st.CreateMailbox(ctx, e.acct.ID, "Old", ""); err != nil {
		t.Fatal(err)
	}
	res := e.appendN(t, "Old", 2)
	if got := e.selectUIDs(t, "Old"); !slices.Equal(got, uidRange(1, 2)) {
		t.Fatalf("SELECT: %v", got)
	}
	if err := e.st.DeleteMailbox(ctx, e.acct.ID, "Old"); err != nil {
		t.Fatal(err)
	}
	e.b.hub.touch(res.Mailbox) // the deletion's notification
	w := e.b.hub.acquire(res.Mailbox)
	defer e.b.hub.release(w)
	if _, _, err := e.b.selectView(ctx, e.acct.ID, store.Mailbox{ID: res.Mailbox}); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Fatalf("selectView of a deleted mailbox: %v, want ErrNoSuchMailbox", err)
	}
	if n, _, _ := e.b.views.stats(); n != 0 {
		t.Errorf("entries after the mailbox went = %d, want 0", n)
	}
}

func TestViewCacheEviction(t *testing.T) {
	e := newCacheEnv(t)
	ctx := context.Background()
	e.b.views.limit = 3 * 100 * 4 // three mailboxes of 100 messages
	var ids []store.MailboxID
	for i := range 5 {
		name := fmt.Sprintf("Box%d", i)
		if _, err := e.st.CreateMailbox(ctx, e.acct.ID, name, ""); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.appendN(t, name, 100).Mailbox)
	}
	// Box0 stays selected by a session the whole time.
	held := e.b.hub.acquire(ids[0])
	defer e.b.hub.release(held)
	for i := range 5 {
		if got := e.selectUIDs(t, fmt.Sprintf("Box%d", i)); len(got) != 100 {
			t.Fatalf("SELECT Box%d: %d messages", i, len(got))
		}
	}
	n, bytes, _ := e.b.views.stats()
	if bytes > e.b.views.limit || n != 3 {
		t.Errorf("cache holds %d entries, %d bytes; want 3 within %d", n, bytes, e.b.views.limit)
	}
	e.b.views.mu.Lock()
	_, kept := e.b.views.boxes[cacheKey{e.acct.ID, ids[0]}]
	e.b.views.mu.Unlock()
	if !kept {
		t.Error("the selected mailbox was evicted")
	}
	// Evicted mailboxes no longer hold a hub watch.
	e.b.hub.mu.Lock()
	_, watched := e.b.hub.boxes[ids[1]]
	e.b.hub.mu.Unlock()
	if watched {
		t.Error("an evicted mailbox is still watched")
	}
}

// serve runs a backend on a loopback port until the test ends, listening for changes like
// a serve process.
func serve(t *testing.T, st *store.Store) string {
	t.Helper()
	b := New(Options{Store: st, InsecureAuth: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(ctx) }()
	srv := b.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		cancel()
		<-runDone
	})
	return ln.Addr().String()
}

// TestSelectDuringConcurrentAppends has clients SELECT again and again on two backends over
// one database (two gateway processes) while others APPEND through both. Every session must
// see every message exactly once, in ascending UID order, and no SELECT may show fewer
// messages than the session already knew of.
func TestSelectDuringConcurrentAppends(t *testing.T) {
	dsn := storetest.DSN(t)
	open := func() *store.Store {
		st, err := store.Open(context.Background(), dsn, store.Options{BcryptCost: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	stA, stB := open(), open()
	if _, err := stA.CreateAccount(context.Background(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	addrs := []string{serve(t, stA), serve(t, stB)}
	dial := func(addr string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
		c, err := imapclient.DialInsecure(addr, &imapclient.Options{UnilateralDataHandler: h})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Login("alice", "pw").Wait(); err != nil {
			t.Fatal(err)
		}
		return c
	}

	const perAppender = 40
	appenders := 4
	total := uint32(perAppender * appenders)
	var (
		appendWG sync.WaitGroup
		mu       sync.Mutex
		appended []imap.UID
	)
	for i := range appenders {
		c := dial(addrs[i%2], nil)
		appendWG.Add(1)
		go func() {
			defer appendWG.Done()
			for j := range perAppender {
				raw := fmt.Sprintf("Subject: %d-%d\r\n\r\nbody\r\n", i, j)
				cmd := c.Append("INBOX", int64(len(raw)), nil)
				io.WriteString(cmd, raw)
				cmd.Close()
				data, err := cmd.Wait()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				appended = append(appended, data.UID)
				mu.Unlock()
			}
		}()
	}

	// Flag changes run meanwhile, so that catch-ups also carry changed messages.
	flagger := dial(addrs[1], nil)
	if _, err := flagger.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	stopFlags := make(chan struct{})
	flagsDone := make(chan struct{})
	go func() {
		defer close(flagsDone)
		for k := 0; ; k++ {
			select {
			case <-stopFlags:
				return
			default:
			}
			op := imap.StoreFlagsAdd
			if k%2 == 1 {
				op = imap.StoreFlagsDel
			}
			if err := flagger.Store(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	var selWG sync.WaitGroup
	for i := range 4 {
		selWG.Add(1)
		go func() {
			defer selWG.Done()
			var emu sync.Mutex
			var exists uint32
			c := dial(addrs[i%2], &imapclient.UnilateralDataHandler{
				Mailbox: func(d *imapclient.UnilateralDataMailbox) {
					if d.NumMessages != nil {
						emu.Lock()
						exists = *d.NumMessages
						emu.Unlock()
					}
				},
			})
			known := uint32(0)
			check := func(when string) bool {
				emu.Lock()
				n := exists
				emu.Unlock()
				msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
				if n == 0 {
					return err == nil || t.Failed()
				}
				if err != nil {
					t.Errorf("session %d %s: FETCH: %v", i, when, err)
					return false
				}
				if uint32(len(msgs)) != n {
					t.Errorf("session %d %s: FETCH 1:* returned %d messages, EXISTS is %d", i, when, len(msgs), n)
					return false
				}
				for k, m := range msgs {
					if m.SeqNum != uint32(k+1) || (k > 0 && m.UID <= msgs[k-1].UID) {
						t.Errorf("session %d %s: message %d is seq %d UID %d after UID %d", i, when, k+1, m.SeqNum, m.UID, msgs[max(k-1, 0)].UID)
						return false
					}
				}
				return true
			}
			for round := 0; ; round++ {
				data, err := c.Select("INBOX", nil).Wait()
				if err != nil {
					t.Errorf("session %d: SELECT: %v", i, err)
					return
				}
				emu.Lock()
				exists = data.NumMessages
				emu.Unlock()
				if data.NumMessages < known {
					t.Errorf("session %d: SELECT shows %d messages after %d were seen", i, data.NumMessages, known)
					return
				}
				known = data.NumMessages
				if err := c.Noop().Wait(); err != nil {
					t.Errorf("session %d: NOOP: %v", i, err)
					return
				}
				if !check(fmt.Sprintf("round %d", round)) {
					return
				}
				emu.Lock()
				known = max(known, exists)
				emu.Unlock()
				if known == total {
					return
				}
				if round > 5000 {
					t.Errorf("session %d: saw only %d of %d messages", i, known, total)
					return
				}
			}
		}()
	}
	appendWG.Wait()
	selWG.Wait()
	close(stopFlags)
	<-flagsDone
	if t.Failed() {
		return
	}
	slices.Sort(appended)
	if uint32(len(slices.Compact(slices.Clone(appended)))) != total {
		t.Fatalf("APPEND returned %d distinct UIDs, want %d", len(slices.Compact(appended)), total)
	}
	// A last session on each backend sees exactly the appended UIDs.
	for _, addr := range addrs {
		c := dial(addr, nil)
		deadline := time.Now().Add(5 * time.Second)
		for {
			data, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if data.NumMessages == total || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var got []imap.UID
		for _, m := range msgs {
			got = append(got, m.UID)
		}
		if !slices.Equal(got, appended) {
			t.Errorf("backend %s: FETCH 1:* UIDs = %v, want %v", addr, got, appended)
		}
	}
}
