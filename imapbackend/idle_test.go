package imapbackend_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmail/twinmail/imapbackend"
	"github.com/twinmail/twinmail/store/storetest"
)

// watcher records the unilateral responses an imapclient receives.
type watcher struct {
	mu       sync.Mutex
	exists   uint32
	expunges []uint32
}

func (w *watcher) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				w.mu.Lock()
				w.exists = *d.NumMessages
				w.mu.Unlock()
			}
		},
		Expunge: func(seq uint32) {
			w.mu.Lock()
			w.expunges = append(w.expunges, seq)
			w.mu.Unlock()
		},
	}
}

func (w *watcher) wantExists(n uint32) func() error {
	return func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.exists != n {
			return fmt.Errorf("EXISTS %d, want %d", w.exists, n)
		}
		return nil
	}
}

func (w *watcher) wantExpunges(want ...uint32) func() error {
	return func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !slices.Equal(w.expunges, want) {
			return fmt.Errorf("EXPUNGEs %v, want %v", w.expunges, want)
		}
		return nil
	}
}

func TestIdleSeesChanges(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	var w watcher
	a := s.client(t, w.handler())
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}
	b := s.client(t, nil)
	appendMsg(t, b, "INBOX", testMessage("one"))
	appendMsg(t, b, "INBOX", testMessage("two"))
	waitFor(t, 5*time.Second, w.wantExists(2))

	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Move(imap.SeqSetNum(1), "Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, w.wantExpunges(1))
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := w.wantExpunges(1)(); err != nil {
		t.Errorf("after NOOP: %v", err)
	}
}

// TestIdleAcrossProcesses has two backends on one database, like two gateway processes: a
// delivery through one reaches an idler on the other through store.Listen.
func TestIdleAcrossProcesses(t *testing.T) {
	st := storetest.New(t)
	s1 := startServer(t, st, imapbackend.Options{})
	s2 := startServer(t, st, imapbackend.Options{})
	if _, err := st.CreateAccount(context.Background(), testUser, testPassword); err != nil {
		t.Fatal(err)
	}
	var w watcher
	a := s2.client(t, w.handler())
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}
	b := s1.client(t, nil)
	start := time.Now()
	appendMsg(t, b, "INBOX", testMessage("from elsewhere"))
	waitFor(t, 5*time.Second, w.wantExists(1))
	t.Logf("EXISTS reached the other process after %v", time.Since(start))
	idle.Close()
	idle.Wait()
}

func TestIdleWithoutMailbox(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	rc := s.raw(t)
	rc.n++
	rc.send(fmt.Sprintf("t%d IDLE", rc.n))
	if l := rc.readLine(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE = %q, want a continuation", l)
	}
	rc.send("DONE")
	if l := rc.readLine(); !strings.HasPrefix(l, fmt.Sprintf("t%d OK", rc.n)) {
		t.Errorf("DONE = %q, want OK", l)
	}
}

// TestIdleConnectionDrop closes a connection during IDLE: imapserver then runs Poll and
// Close while Idle may still be running (run with -race).
func TestIdleConnectionDrop(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	for i := 0; i < 5; i++ {
		rc := s.raw(t)
		rc.ok("SELECT INBOX")
		rc.send("t9 IDLE")
		rc.readLine()
		appendMsg(t, c, "INBOX", testMessage(fmt.Sprint("during idle ", i)))
		rc.c.Close()
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}
