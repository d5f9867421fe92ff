package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

type pair struct {
	a, b *store.Store
	w    *Worker
	acct store.Account
}

func newPair(t testing.TB) *pair {
	t.Helper()
	ctx := context.Background()
	p := &pair{a: storetest.New(t), b: storetest.New(t)}
	if err := p.a.SetReplicaID(ctx, "replica-a"); err != nil {
		t.Fatal(err)
	}
	if err := p.b.SetReplicaID(ctx, "replica-b"); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.w, err = New(ctx, Options{A: p.a, B: p.b, BatchSize: 50}); err != nil {
		t.Fatal(err)
	}
	if p.acct, err = p.a.CreateAccount(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	return p
}

func (p *pair) sync(t testing.TB) {
	t.Helper()
	if err := p.w.SyncOnce(context.Background()); err != nil {
		t.Fatalf("SyncOnce: %v", err)
	}
	p.verify(t)
}

func (p *pair) verify(t testing.TB) {
	t.Helper()
	diffs, err := Verify(context.Background(), p.a, p.b, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("replicas differ: %s", d)
	}
}

func deliver(t *testing.T, s *store.Store, acct store.Account, mailbox, msgID string) store.AppendResult {
	t.Helper()
	raw := fmt.Sprintf("Message-ID: <%s>\r\nSubject: %s\r\n\r\nbody %s\r\n", msgID, msgID, msgID)
	r, err := s.Append(context.Background(), acct.ID, mailbox, store.NewMessage{Raw: []byte(raw), SearchHeader: "Message-ID: <" + msgID + ">\n"})
	if err != nil {
		t.Fatalf("deliver %s: %v", msgID, err)
	}
	return r
}

// contents lists "uid:message-id-header" of a mailbox, via search headers.
func contents(t *testing.T, s *store.Store, acct store.Account, mailbox string) map[store.UID]store.MessageState {
	t.Helper()
	ctx := context.Background()
	m, err := s.GetMailbox(ctx, acct.ID, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	live, _, err := s.MailboxContents(ctx, acct.ID, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[store.UID]store.MessageState{}
	for _, x := range live {
		out[x.UID] = x
	}
	return out
}

func TestAccountAndMailboxesReplicate(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	if _, err := p.b.Authenticate(ctx, "alice", "pw"); err != nil {
		t.Fatalf("account not replicated: %v", err)
	}
	boxes, _ := p.b.ListMailboxes(ctx, p.acct.ID)
	if len(boxes) != len(store.DefaultMailboxes) {
		t.Errorf("B has %d mailboxes, want %d", len(boxes), len(store.DefaultMailboxes))
	}
	if err := p.b.SetPassword(ctx, "alice", "new"); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	if _, err := p.a.Authenticate(ctx, "alice", "new"); err != nil {
		t.Errorf("password change not replicated: %v", err)
	}
}

func TestClash(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	x := deliver(t, p.a, p.acct, "INBOX", "x@a")
	y := deliver(t, p.b, p.acct, "INBOX", "y@b")
	if x.UID != 1 || y.UID != 1 {
		t.Fatalf("setup: UIDs %d and %d, want both 1", x.UID, y.UID)
	}
	p.sync(t)
	for _, s := range []*store.Store{p.a, p.b} {
		got := contents(t, s, p.acct, "INBOX")
		if _, ok := got[1]; ok {
			t.Errorf("UID 1 still present after clash: %+v", got)
		}
		var ids []store.MessageID
		for uid, m := range got {
			if uid < 2 {
				t.Errorf("message at UID %d, want >= 2", uid)
			}
			ids = append(ids, m.Message)
		}
		if len(got) != 2 || !slices.Contains(ids, x.Message) || !slices.Contains(ids, y.Message) {
			t.Errorf("after clash: %+v, want X %s and Y %s", got, x.Message, y.Message)
		}
		mb, _ := s.GetMailbox(ctx, p.acct.ID, "INBOX")
		if mb.UIDNext != 4 {
			t.Errorf("UIDNEXT %d, want 4", mb.UIDNext)
		}
	}
	if st := p.w.Stats(); st.Clashes != 1 || st.Reinjected != 2 {
		t.Errorf("stats = %+v, want 1 clash, 2 reinjected", st)
	}
}

func TestCopyAtSameUIDAndFlagsMerge(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	for i := range 3 {
		deliver(t, p.a, p.acct, "INBOX", fmt.Sprint("m", i))
	}
	p.sync(t)
	got := contents(t, p.b, p.acct, "INBOX")
	if len(got) != 3 || got[1].UID != 1 || got[3].UID != 3 {
		t.Fatalf("B INBOX = %+v, want UIDs 1..3", got)
	}
	ma, _ := p.a.GetMailbox(ctx, p.acct.ID, "INBOX")
	mb, _ := p.b.GetMailbox(ctx, p.acct.ID, "INBOX")
	// Different flags on each side both survive; the same flag set on A and cleared on B:
	// the later change wins.
	p.a.StoreFlags(ctx, p.acct.ID, ma.ID, store.UIDSet{{Start: 1, Stop: 1}}, store.FlagsAdd, []string{`\Seen`})
	p.b.StoreFlags(ctx, p.acct.ID, mb.ID, store.UIDSet{{Start: 1, Stop: 1}}, store.FlagsAdd, []string{`\Flagged`})
	// A flag removed on one side while the other changes a different flag.
	p.a.StoreFlags(ctx, p.acct.ID, ma.ID, store.UIDSet{{Start: 2, Stop: 2}}, store.FlagsAdd, []string{"$Work"})
	p.sync(t)
	p.a.StoreFlags(ctx, p.acct.ID, ma.ID, store.UIDSet{{Start: 2, Stop: 2}}, store.FlagsRemove, []string{"$Work"})
	p.b.StoreFlags(ctx, p.acct.ID, mb.ID, store.UIDSet{{Start: 2, Stop: 2}}, store.FlagsAdd, []string{`\Draft`})
	// Expunge on A beats a flag change on B.
	p.a.StoreFlags(ctx, p.acct.ID, ma.ID, store.UIDSet{{Start: 3, Stop: 3}}, store.FlagsAdd, []string{`\Deleted`})
	p.a.Expunge(ctx, p.acct.ID, ma.ID, nil)
	p.b.StoreFlags(ctx, p.acct.ID, mb.ID, store.UIDSet{{Start: 3, Stop: 3}}, store.FlagsAdd, []string{`\Answered`})
	p.sync(t)
	got = contents(t, p.a, p.acct, "INBOX")
	if f := got[1].Flags; !slices.Equal(f, []string{`\Flagged`, `\Seen`}) {
		t.Errorf("UID 1 flags %v, want both \\Flagged and \\Seen", f)
	}
	if f := got[2].Flags; !slices.Equal(f, []string{`\Draft`}) {
		t.Errorf("UID 2 flags %v, want only \\Draft (A's removal and B's addition both kept)", f)
	}
	if _, ok := got[3]; ok {
		t.Errorf("UID 3 survived: expunge must beat a flag change")
	}
}

func TestMailboxOperations(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	// Same-name creates merge without losing mail.
	if _, err := p.a.CreateMailbox(ctx, p.acct.ID, "Lists", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.CreateMailbox(ctx, p.acct.ID, "Lists", ""); err != nil {
		t.Fatal(err)
	}
	deliver(t, p.a, p.acct, "Lists", "la")
	deliver(t, p.b, p.acct, "Lists", "lb")
	// Rename on A; create on B.
	if err := p.a.RenameMailbox(ctx, p.acct.ID, "Archive", "Archive-2026"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.CreateMailbox(ctx, p.acct.ID, "Projects", ""); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	for _, s := range []*store.Store{p.a, p.b} {
		if got := contents(t, s, p.acct, "Lists"); len(got) != 2 {
			t.Errorf("merged Lists has %d messages, want 2", len(got))
		}
		if _, err := s.GetMailbox(ctx, p.acct.ID, "Archive-2026"); err != nil {
			t.Errorf("rename not replicated: %v", err)
		}
		if _, err := s.GetMailbox(ctx, p.acct.ID, "Projects"); err != nil {
			t.Errorf("create not replicated: %v", err)
		}
	}
	// Delete on A while mail arrives on B: the mailbox survives with the new mail only.
	deliver(t, p.a, p.acct, "Projects", "old")
	p.sync(t)
	if err := p.a.DeleteMailbox(ctx, p.acct.ID, "Projects"); err != nil {
		t.Fatal(err)
	}
	fresh := deliver(t, p.b, p.acct, "Projects", "fresh")
	p.sync(t)
	for _, s := range []*store.Store{p.a, p.b} {
		got := contents(t, s, p.acct, "Projects")
		if len(got) != 1 || got[fresh.UID].Message != fresh.Message {
			t.Errorf("Projects after delete vs delivery = %+v, want only the fresh message", got)
		}
	}
	// A plain delete propagates.
	if err := p.b.DeleteMailbox(ctx, p.acct.ID, "Lists"); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	if _, err := p.a.GetMailbox(ctx, p.acct.ID, "Lists"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("delete not replicated: %v", err)
	}
}

// TestCrashAtEveryPoint aborts rounds at each fault point in turn, as if the worker died
// there (between its writes to A and B among others), and checks that the next rounds
// converge without loss or duplicates.
func TestCrashAtEveryPoint(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	for i := range 5 {
		deliver(t, p.a, p.acct, "INBOX", fmt.Sprint("a", i))
		deliver(t, p.b, p.acct, "INBOX", fmt.Sprint("b", i))
	}
	if _, err := p.a.CreateMailbox(ctx, p.acct.ID, "New", ""); err != nil {
		t.Fatal(err)
	}
	for i, point := range FaultPoints {
		p.w.opts.Fault = func(at string) error {
			if at == point {
				return errors.New("simulated crash")
			}
			return nil
		}
		if err := p.w.SyncOnce(ctx); err == nil || !strings.Contains(err.Error(), "simulated crash") {
			t.Logf("crash at %s: SyncOnce = %v (the point was not reached)", point, err)
		}
		deliver(t, p.b, p.acct, "INBOX", fmt.Sprint("late", i))
		deliver(t, p.a, p.acct, "New", fmt.Sprint("new", i))
	}
	p.w.opts.Fault = nil
	p.sync(t)
	got := contents(t, p.a, p.acct, "INBOX")
	if want := 10 + len(FaultPoints); len(got) != want {
		t.Errorf("INBOX has %d messages after crashes, want %d", len(got), want)
	}
	if got := contents(t, p.b, p.acct, "New"); len(got) != len(FaultPoints) {
		t.Errorf("New has %d messages on B, want %d", len(got), len(FaultPoints))
	}
	seen := map[store.MessageID]bool{}
	for _, m := range got {
		if seen[m.Message] {
			t.Errorf("message %s duplicated", m.Message)
		}
		seen[m.Message] = true
	}
}

func TestCatchUpInBatches(t *testing.T) {
	p := newPair(t)
	for i := range 240 {
		deliver(t, p.a, p.acct, "INBOX", fmt.Sprint("bulk", i))
	}
	p.sync(t)
	if got := contents(t, p.b, p.acct, "INBOX"); len(got) != 240 {
		t.Errorf("B has %d messages, want 240", len(got))
	}
}

// TestDeleteRacesDelivery: the peer deleted a mailbox and the worker decided to delete it
// here too, but mail arrives here between that decision and its application. The mail must
// not be deleted with the mailbox (found by scenario explore).
func TestDeleteRacesDelivery(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	if _, err := p.a.CreateMailbox(ctx, p.acct.ID, "Orders", ""); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	if err := p.b.DeleteMailbox(ctx, p.acct.ID, "Orders"); err != nil {
		t.Fatal(err)
	}
	var late store.AppendResult
	p.w.opts.Fault = func(point string) error {
		if point == "mailboxes-planned" && late.UID == 0 {
			late = deliver(t, p.a, p.acct, "Orders", "late")
		}
		return nil
	}
	p.sync(t)
	p.w.opts.Fault = nil
	if late.UID == 0 {
		t.Fatal("the delivery hook never ran")
	}
	for _, s := range []*store.Store{p.a, p.b} {
		got := contents(t, s, p.acct, "Orders")
		if len(got) != 1 || got[late.UID].Message != late.Message {
			t.Errorf("Orders = %+v, want just the late message", got)
		}
	}
}

// TestRenameCollisions: two different mailboxes end up wanting one name (found by scenario
// explore). Neither is merged into the other or lost; the pair converges with distinct names.
func TestRenameCollisions(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	for _, n := range []string{"F2", "X", "Y"} {
		if _, err := p.a.CreateMailbox(ctx, p.acct.ID, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	deliver(t, p.a, p.acct, "F2", "in-f2")
	deliver(t, p.a, p.acct, "X", "in-x")
	deliver(t, p.a, p.acct, "Y", "in-y")
	p.sync(t)
	// A new mailbox on A takes the name a shared one gets on B.
	if _, err := p.a.CreateMailbox(ctx, p.acct.ID, "G0", ""); err != nil {
		t.Fatal(err)
	}
	deliver(t, p.a, p.acct, "G0", "in-g0")
	if err := p.b.RenameMailbox(ctx, p.acct.ID, "F2", "R3"); err != nil {
		t.Fatal(err)
	}
	if err := p.a.RenameMailbox(ctx, p.acct.ID, "G0", "R3"); err != nil {
		t.Fatal(err)
	}
	// Two shared mailboxes renamed to one name, one on each side.
	if err := p.a.RenameMailbox(ctx, p.acct.ID, "X", "Z"); err != nil {
		t.Fatal(err)
	}
	if err := p.b.RenameMailbox(ctx, p.acct.ID, "Y", "Z"); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	for _, s := range []*store.Store{p.a, p.b} {
		boxes, err := s.ListMailboxes(ctx, p.acct.ID)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, b := range boxes {
			live, _, _ := s.MailboxContents(ctx, p.acct.ID, b.ID)
			total += len(live)
		}
		if len(boxes) != len(store.DefaultMailboxes)+4 || total != 4 {
			t.Errorf("%d mailboxes holding %d messages, want %d and 4", len(boxes), total, len(store.DefaultMailboxes)+4)
		}
	}
}

// TestDeleteVsMoveInto: one side deletes a mailbox while the other moves a message into
// it. The deleting side never saw the message there, so the mailbox survives with it (found
// by scenario explore).
func TestDeleteVsMoveInto(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	if _, err := p.a.CreateMailbox(ctx, p.acct.ID, "G1", ""); err != nil {
		t.Fatal(err)
	}
	m := deliver(t, p.a, p.acct, "INBOX", "m3")
	p.sync(t)
	if err := p.a.DeleteMailbox(ctx, p.acct.ID, "G1"); err != nil {
		t.Fatal(err)
	}
	inboxB, _ := p.b.GetMailbox(ctx, p.acct.ID, "INBOX")
	if _, err := p.b.Move(ctx, p.acct.ID, inboxB.ID, store.UIDSet{{Start: m.UID, Stop: m.UID}}, "G1"); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	for _, s := range []*store.Store{p.a, p.b} {
		got := contents(t, s, p.acct, "G1")
		if len(got) != 1 {
			t.Errorf("G1 = %+v, want the moved message", got)
		}
		for _, x := range got {
			if x.Message != m.Message {
				t.Errorf("G1 holds %s, want %s", x.Message, m.Message)
			}
		}
	}
}

// crashOnceAt makes the next round die at point.
func (p *pair) crashOnceAt(point string) {
	done := false
	p.w.opts.Fault = func(at string) error {
		if at == point && !done {
			done = true
			return errors.New("simulated crash")
		}
		return nil
	}
}

// TestHalfAppliedCopyIsNotAgreed: a round copies x from A to B but dies after writing A
// (found in review). A must not believe B has x: B's later delete of the folder must not
// take x with it.
func TestHalfAppliedCopyIsNotAgreed(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	if _, err := p.a.CreateMailbox(ctx, p.acct.ID, "F", ""); err != nil {
		t.Fatal(err)
	}
	p.sync(t)
	x := deliver(t, p.a, p.acct, "F", "x")
	p.crashOnceAt("applied-a")
	if err := p.w.SyncOnce(ctx); err == nil {
		t.Fatal("the round did not crash")
	}
	if got := contents(t, p.b, p.acct, "F"); len(got) != 0 {
		t.Fatalf("B already has %+v: the crash came too late to test anything", got)
	}
	if err := p.b.DeleteMailbox(ctx, p.acct.ID, "F"); err != nil {
		t.Fatal(err)
	}
	p.w.opts.Fault = nil
	p.sync(t)
	for _, s := range []*store.Store{p.a, p.b} {
		if got := contents(t, s, p.acct, "F"); got[x.UID].Message != x.Message {
			t.Errorf("F = %+v: x was lost", got)
		}
	}
}

// TestHalfAppliedFlagsAreNotAgreed: a flag change from A is applied to A's merge result but
// the round dies before B (found in review); a later unrelated change on B must not undo it.
func TestHalfAppliedFlagsAreNotAgreed(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	m := deliver(t, p.a, p.acct, "INBOX", "m")
	p.sync(t)
	ma, _ := p.a.GetMailbox(ctx, p.acct.ID, "INBOX")
	mb, _ := p.b.GetMailbox(ctx, p.acct.ID, "INBOX")
	set := store.UIDSet{{Start: m.UID, Stop: m.UID}}
	if _, err := p.a.StoreFlags(ctx, p.acct.ID, ma.ID, set, store.FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	p.crashOnceAt("applied-a")
	_ = p.w.SyncOnce(ctx)
	if _, err := p.b.StoreFlags(ctx, p.acct.ID, mb.ID, set, store.FlagsAdd, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	p.w.opts.Fault = nil
	p.sync(t)
	for _, s := range []*store.Store{p.a, p.b} {
		if f := contents(t, s, p.acct, "INBOX")[m.UID].Flags; !slices.Equal(f, []string{`\Flagged`, `\Seen`}) {
			t.Errorf("flags %v, want \\Flagged and \\Seen", f)
		}
	}
}
