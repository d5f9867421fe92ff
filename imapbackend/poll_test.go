package imapbackend_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twinmail/twinmail/imapbackend"
)

// TestIdlePollCostsNoSQL: Poll runs after nearly every command, so with nothing changed it
// must not touch the database. NOOP, CAPABILITY and a selected-state NOOP are sent many times;
// the store's statement count must not move. Then a change from another backend must be
// picked up (the poll is cheap, not blind).
func TestIdlePollCostsNoSQL(t *testing.T) {
	s := newServer(t, imapbackend.Options{})
	c := s.client(t, nil)
	appendMsg(t, c, "INBOX", testMessage("one"))
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// Let the notification of our own APPEND settle.
	time.Sleep(200 * time.Millisecond)
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	before := s.store.Queries()
	for range 50 {
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Capability().Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.store.Queries() - before; n != 0 {
		t.Errorf("100 idle commands with a mailbox selected sent %d SQL statements, want 0", n)
	}
	// Another gateway process delivers: the next NOOP must see it.
	other := startServer(t, s.store, imapbackend.Options{})
	other.acct = s.acct
	c2 := other.client(t, nil)
	appendMsg(t, c2, "INBOX", testMessage("two"))
	waitFor(t, 5*time.Second, func() error {
		if err := c.Noop().Wait(); err != nil {
			return err
		}
		if n := c.Mailbox().NumMessages; n != 2 {
			return fmt.Errorf("EXISTS %d, want 2", n)
		}
		return nil
	})
}
