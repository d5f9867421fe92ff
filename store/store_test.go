package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

func newAccount(t *testing.T, s *store.Store, name string) store.Account {
	t.Helper()
	a, err := s.CreateAccount(context.Background(), name, "pw-"+name)
	if err != nil {
		t.Fatalf("CreateAccount(%q): %v", name, err)
	}
	return a
}

func msg(subject string) store.NewMessage {
	raw := fmt.Sprintf("Subject: %s\r\nFrom: a@example.org\r\n\r\nbody of %s\r\n", subject, subject)
	return store.NewMessage{Raw: []byte(raw), SearchHeader: "Subject: " + subject + "\nFrom: a@example.org\n", SearchText: "body of " + subject}
}

func TestAccountsAndDefaults(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := newAccount(t, s, "alice")
	if _, err := s.CreateAccount(ctx, "alice", "x"); !errors.Is(err, store.ErrAccountExists) {
		t.Errorf("duplicate CreateAccount = %v, want ErrAccountExists", err)
	}
	boxes, err := s.ListMailboxes(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, b := range boxes {
		got[b.Name] = b.SpecialUse
		if b.UIDValidity == 0 || b.UIDNext != 1 {
			t.Errorf("mailbox %q: UIDVALIDITY %d UIDNEXT %d", b.Name, b.UIDValidity, b.UIDNext)
		}
	}
	want := map[string]string{"INBOX": "", "Sent": `\Sent`, "Drafts": `\Drafts`, "Trash": `\Trash`, "Junk": `\Junk`, "Archive": `\Archive`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("default mailboxes = %v, want %v", got, want)
	}
	if _, err := s.Authenticate(ctx, "alice", "pw-alice"); err != nil {
		t.Errorf("Authenticate good password: %v", err)
	}
	for _, c := range [][2]string{{"alice", "wrong"}, {"nobody", "pw-alice"}} {
		if _, err := s.Authenticate(ctx, c[0], c[1]); !errors.Is(err, store.ErrAuthFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrAuthFailed", c[0], c[1], err)
		}
	}
	if err := s.SetPassword(ctx, "alice", "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "alice", "pw-alice"); !errors.Is(err, store.ErrAuthFailed) {
		t.Errorf("old password still works after SetPassword")
	}
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "alice"); !errors.Is(err, store.ErrNoSuchAccount) {
		t.Errorf("second DeleteAccount = %v, want ErrNoSuchAccount", err)
	}
}

func TestAppendFlagsExpungeTombstone(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := newAccount(t, s, "alice")
	var res []store.AppendResult
	for i := range 3 {
		r, err := s.Append(ctx, a.ID, "inbox", msg(fmt.Sprint("m", i)))
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, r)
	}
	if res[0].UID != 1 || res[2].UID != 3 || !(res[0].ModSeq < res[1].ModSeq && res[1].ModSeq < res[2].ModSeq) {
		t.Fatalf("append results = %+v", res)
	}
	ch, err := s.StoreFlags(ctx, a.ID, res[0].Mailbox, store.UIDSet{{Start: 2, Stop: 3}}, store.FlagsAdd, []string{`\deleted`, "$Label1", "$label1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 2 || !slices.Equal(ch[0].Flags, []string{"$Label1", `\Deleted`}) {
		t.Fatalf("StoreFlags changed = %+v", ch)
	}
	// Adding the same flags again changes nothing and allocates no MODSEQ.
	before, _ := s.GetMailboxByID(ctx, a.ID, res[0].Mailbox)
	if ch, err := s.StoreFlags(ctx, a.ID, res[0].Mailbox, store.UIDSet{{Start: 2, Stop: 3}}, store.FlagsAdd, []string{`\Deleted`}); err != nil || len(ch) != 0 {
		t.Fatalf("no-op StoreFlags = %v, %v", ch, err)
	}
	after, _ := s.GetMailboxByID(ctx, a.ID, res[0].Mailbox)
	if after.HighestModSeq != before.HighestModSeq {
		t.Errorf("no-op StoreFlags moved HIGHESTMODSEQ %d -> %d", before.HighestModSeq, after.HighestModSeq)
	}
	gone, err := s.Expunge(ctx, a.ID, res[0].Mailbox, store.UIDSet{{Start: 3, Stop: 3}})
	if err != nil || !slices.Equal(gone, []store.UID{3}) {
		t.Fatalf("UID EXPUNGE 3 = %v, %v", gone, err)
	}
	changes, err := s.ChangesSince(ctx, a.ID, res[0].Mailbox, res[2].ModSeq)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(changes.Expunged, []store.UID{3}) || len(changes.Changed) != 1 || changes.Changed[0].UID != 2 {
		t.Errorf("ChangesSince = %+v", changes)
	}
	// UIDs are never reused, even for the highest expunged one.
	r, err := s.Append(ctx, a.ID, "INBOX", msg("m3"))
	if err != nil || r.UID != 4 {
		t.Errorf("append after expunge got UID %d (%v), want 4", r.UID, err)
	}
}

func TestCopyMoveIdentity(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := newAccount(t, s, "alice")
	r, err := s.Append(ctx, a.ID, "INBOX", msg("x"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Copy(ctx, a.ID, r.Mailbox, store.UIDSet{{Start: 1, Stop: 0}}, "Archive")
	if err != nil || len(cp.DestUIDs) != 1 {
		t.Fatalf("Copy = %+v, %v", cp, err)
	}
	var src, dst store.MessageMeta
	collect := func(m store.MailboxID, into *store.MessageMeta) {
		err := s.FetchMeta(ctx, a.ID, m, store.UIDSet{{Start: 1, Stop: 0}}, store.MetaFields{}, func(mm *store.MessageMeta) error { *into = *mm; return nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	collect(r.Mailbox, &src)
	collect(cp.Dest, &dst)
	if src.Message == dst.Message || string(src.Digest) != string(dst.Digest) {
		t.Errorf("copy: ids %s/%s (want different), digests equal=%v (want equal)", src.Message, dst.Message, string(src.Digest) == string(dst.Digest))
	}
	mv, err := s.Move(ctx, a.ID, r.Mailbox, store.UIDSet{{Start: 1, Stop: 1}}, "Trash")
	if err != nil || len(mv.DestUIDs) != 1 {
		t.Fatalf("Move = %+v, %v", mv, err)
	}
	var moved store.MessageMeta
	collect(mv.Dest, &moved)
	if moved.Message != src.Message {
		t.Errorf("move changed the message id %s -> %s", src.Message, moved.Message)
	}
	ch, _ := s.ChangesSince(ctx, a.ID, r.Mailbox, r.ModSeq)
	if !slices.Equal(ch.Expunged, []store.UID{1}) {
		t.Errorf("move left tombstones %v in source, want [1]", ch.Expunged)
	}
}

func TestMailboxNamesKeepUIDs(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := newAccount(t, s, "alice")
	m, err := s.CreateMailbox(ctx, a.ID, "Projects/2026", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMailbox(ctx, a.ID, "Projects"); err != nil {
		t.Errorf("parent not created: %v", err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "Projects/2026", ""); !errors.Is(err, store.ErrMailboxExists) {
		t.Errorf("duplicate create = %v", err)
	}
	for range 3 {
		if _, err := s.Append(ctx, a.ID, "Projects/2026", msg("p")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteMailbox(ctx, a.ID, "Projects/2026"); err != nil {
		t.Fatal(err)
	}
	m2, err := s.CreateMailbox(ctx, a.ID, "Projects/2026", "")
	if err != nil {
		t.Fatal(err)
	}
	if m2.UIDValidity != m.UIDValidity || m2.UIDNext != 4 {
		t.Errorf("re-created mailbox: UIDVALIDITY %d (was %d), UIDNEXT %d (want 4)", m2.UIDValidity, m.UIDValidity, m2.UIDNext)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Projects", "Old"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetMailbox(ctx, a.ID, "Old/2026"); err != nil || got.ID != m2.ID {
		t.Errorf("child not renamed: %+v %v", got, err)
	}
	if err := s.DeleteMailbox(ctx, a.ID, "inbox"); !errors.Is(err, store.ErrCannotDelete) {
		t.Errorf("delete INBOX = %v", err)
	}
	// Renaming INBOX moves its messages and leaves it empty.
	if _, err := s.Append(ctx, a.ID, "INBOX", msg("i")); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, a.ID, "INBOX", "Saved"); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Status(ctx, a.ID, "INBOX")
	sv, _ := s.Status(ctx, a.ID, "Saved")
	if st.NumMessages != 0 || sv.NumMessages != 1 {
		t.Errorf("after RENAME INBOX: INBOX %d, Saved %d messages", st.NumMessages, sv.NumMessages)
	}
}

func TestIsolation(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := newAccount(t, s, "alice")
	b := newAccount(t, s, "bob")
	r, err := s.Append(ctx, a.ID, "INBOX", msg("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(ctx, b.ID, r.Mailbox); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("bob Snapshot(alice INBOX) = %v", err)
	}
	n := 0
	_ = s.FetchMeta(ctx, b.ID, r.Mailbox, store.UIDSet{{Start: 1, Stop: 0}}, store.MetaFields{}, func(*store.MessageMeta) error { n++; return nil })
	if n != 0 {
		t.Errorf("bob fetched %d of alice's messages", n)
	}
	if ch, err := s.StoreFlags(ctx, b.ID, r.Mailbox, store.UIDSet{{Start: 1, Stop: 0}}, store.FlagsAdd, []string{`\Deleted`}); err == nil || len(ch) != 0 {
		t.Errorf("bob StoreFlags on alice's mailbox = %v, %v", ch, err)
	}
	if _, err := s.Copy(ctx, b.ID, r.Mailbox, store.UIDSet{{Start: 1, Stop: 0}}, "INBOX"); err == nil {
		t.Errorf("bob copied from alice's mailbox")
	}
}

func TestSearch(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := newAccount(t, s, "alice")
	for _, subj := range []string{"quarterly report", "lunch", "Report 100% done"} {
		if _, err := s.Append(ctx, a.ID, "INBOX", msg(subj)); err != nil {
			t.Fatal(err)
		}
	}
	mb, _ := s.GetMailbox(ctx, a.ID, "INBOX")
	s.StoreFlags(ctx, a.ID, mb.ID, store.UIDSet{{Start: 2, Stop: 2}}, store.FlagsAdd, []string{`\Seen`})
	tests := []struct {
		name string
		c    store.SearchCriteria
		want []store.UID
	}{
		{"all", store.SearchCriteria{}, []store.UID{1, 2, 3}},
		{"subject", store.SearchCriteria{Header: []store.HeaderMatch{{Key: "Subject", Value: "REPORT"}}}, []store.UID{1, 3}},
		{"percent is literal", store.SearchCriteria{Header: []store.HeaderMatch{{Key: "Subject", Value: "100%"}}}, []store.UID{3}},
		{"header field not value elsewhere", store.SearchCriteria{Header: []store.HeaderMatch{{Key: "From", Value: "report"}}}, nil},
		{"body", store.SearchCriteria{Body: []string{"of lunch"}}, []store.UID{2}},
		{"seen", store.SearchCriteria{Flag: []string{`\Seen`}}, []store.UID{2}},
		{"not seen", store.SearchCriteria{NotFlag: []string{`\Seen`}}, []store.UID{1, 3}},
		{"or", store.SearchCriteria{Or: [][2]store.SearchCriteria{{{UIDs: []store.UIDSet{{{Start: 1, Stop: 1}}}}, {Text: []string{"lunch"}}}}}, []store.UID{1, 2}},
		{"not", store.SearchCriteria{Not: []store.SearchCriteria{{UIDs: []store.UIDSet{{{Start: 2, Stop: 0}}}}}}, []store.UID{1}},
		{"since today", store.SearchCriteria{Since: time.Now().UTC()}, []store.UID{1, 2, 3}},
		{"before today", store.SearchCriteria{Before: time.Now().UTC()}, nil},
		{"larger", store.SearchCriteria{Larger: 1 << 20}, nil},
	}
	for _, tc := range tests {
		got, err := s.Search(ctx, a.ID, mb.ID, &tc.c)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Search = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestConcurrentAppendCommitOrder checks DESIGN invariant 3 at the store level: with 8
// writers appending at once, a reader polling the mailbox never sees a UID appear below one
// it already saw, and UIDs and MODSEQs end up gap-free and increasing together.
func TestConcurrentAppendCommitOrder(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a := newAccount(t, s, "alice")
	mb, _ := s.GetMailbox(ctx, a.ID, "INBOX")
	const writers, each = 8, 25
	stop := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		var seen store.UID
		var last store.ModSeq
		for {
			select {
			case <-stop:
				readerErr <- nil
				return
			default:
			}
			ch, err := s.ChangesSince(ctx, a.ID, mb.ID, last)
			if err != nil {
				readerErr <- err
				return
			}
			for _, c := range ch.Changed {
				if c.UID <= seen {
					readerErr <- fmt.Errorf("UID %d (modseq %d) appeared after UID %d was seen", c.UID, c.ModSeq, seen)
					return
				}
				seen = c.UID
			}
			last = ch.HighestModSeq
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := s.Append(ctx, a.ID, "INBOX", msg("c")); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	var prev store.MessageMeta
	n := 0
	err := s.FetchMeta(ctx, a.ID, mb.ID, store.UIDSet{{Start: 1, Stop: 0}}, store.MetaFields{}, func(m *store.MessageMeta) error {
		n++
		if m.UID != store.UID(n) {
			return fmt.Errorf("UID %d at position %d: not gap-free", m.UID, n)
		}
		if n > 1 && m.ModSeq <= prev.ModSeq {
			return fmt.Errorf("UID %d has MODSEQ %d <= %d of UID %d", m.UID, m.ModSeq, prev.ModSeq, prev.UID)
		}
		prev = *m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Errorf("%d messages, want %d", n, writers*each)
	}
}

func TestMigrateConcurrentAndSchemaCheck(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Migrate(ctx) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Errorf("CheckSchema on migrated db: %v", err)
	}
}
