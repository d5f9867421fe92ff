package replica

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/twinmail/twinmail/store"
)

// This file decides; it does no I/O. Given what each side holds for the messages a round
// touches, PlanMessages returns each side's writes (DESIGN.md, "Replication rules"):
//
//   - a message on one side only is copied to the other at the same UID when the other never
//     allocated that UID (UID >= its UIDNEXT); otherwise it is reinjected;
//   - a message the other side expunged is expunged (expunge beats a flag change);
//   - one message at two different places is put at one place on both sides: the higher UID
//     in the same mailbox (a replayed reinjection), the latest move between mailboxes;
//   - reinjection expunges the old UID on both sides and appends the messages at new UIDs
//     from max(UIDNEXT_A, UIDNEXT_B) up, ordered by (mailbox, old UID, message id), the same
//     on both sides;
//   - flags merge per flag against what was last agreed; the same flag changed both ways is
//     decided by the latest change, ties by the smaller replica id;
//   - every mailbox the round touches ends with the same UIDNEXT on both sides and the same
//     HIGHESTMODSEQ, above both sides' previous ones.

// Side is what one replica holds, as far as a round is concerned.
type Side struct {
	ReplicaID string
	Mailboxes map[store.MailboxID]store.SyncMailbox
	Live      map[store.MessageID]store.SyncMessage
	Tombs     map[store.MessageID][]store.SyncTombstone
}

// Plan is the outcome of a round for one account: each side's batch, and which side must
// supply the record and body of the messages the other side lacks.
type Plan struct {
	A, B store.SyncBatch
	// NeedA lists messages A must receive from B (their record and maybe body); NeedB the
	// reverse. The worker fills SyncInsert.Record/Body for them.
	NeedA, NeedB map[store.MessageID]bool
	Copied       int // messages copied to the other side at the same UID
	Reinjected   int // messages given new UIDs
	Clashes      int // UIDs that held different messages on the two sides
	Expunged     int
}

// Empty reports whether the plan writes nothing but counters.
func (p *Plan) Empty() bool {
	return len(p.A.Expunge)+len(p.A.Insert)+len(p.A.Flags)+len(p.A.Agree)+len(p.A.Tombstones)+
		len(p.B.Expunge)+len(p.B.Insert)+len(p.B.Flags)+len(p.B.Agree)+len(p.B.Tombstones) == 0
}

type planner struct {
	a, b    *Side
	plan    *Plan
	next    map[store.MailboxID]store.UID // next free UID on both sides
	taken   map[store.SyncPlace]bool      // places the plan fills
	reinj   []reinjection
	touched map[store.MailboxID]bool
	partial map[store.MailboxID]bool
	// expunges the plan makes, by message, per side
	expA, expB map[store.MessageID][]store.SyncPlace
}

type reinjection struct {
	id      store.MessageID
	mailbox store.MailboxID
	oldUID  store.UID // smallest UID it had on either side, for ordering
	flags   []string
	changed time.Time
	onA     *store.SyncMessage // where it is live now, if anywhere
	onB     *store.SyncMessage
}

// PlanMessages decides the writes for the given touched messages. dirty lists the mailboxes
// whose changes were read; they get targets even if nothing is written to them. partial
// marks mailboxes whose changes were read only in part on either side: their UIDNEXTs are
// not equalised yet, so that unread messages can still be copied at their own UIDs.
func PlanMessages(a, b *Side, touched []store.MessageID, dirty []store.MailboxID, partial map[store.MailboxID]bool) *Plan {
	p := &planner{
		partial: partial,
		a:       a, b: b,
		plan:    &Plan{NeedA: map[store.MessageID]bool{}, NeedB: map[store.MessageID]bool{}},
		next:    map[store.MailboxID]store.UID{},
		taken:   map[store.SyncPlace]bool{},
		touched: map[store.MailboxID]bool{},
		expA:    map[store.MessageID][]store.SyncPlace{},
		expB:    map[store.MessageID][]store.SyncPlace{},
	}
	for _, id := range dirty {
		p.touch(id)
	}
	ids := slices.Clone(touched)
	slices.SortFunc(ids, func(x, y store.MessageID) int { return bytes.Compare(x[:], y[:]) })
	ids = slices.Compact(ids)
	for _, id := range ids {
		p.decide(id)
	}
	p.reinject()
	for _, id := range ids {
		p.shareTombstones(id)
	}
	p.targets()
	return p.plan
}

func (p *planner) touch(mb store.MailboxID) {
	if p.touched[mb] {
		return
	}
	p.touched[mb] = true
	p.next[mb] = max(p.a.Mailboxes[mb].UIDNext, p.b.Mailboxes[mb].UIDNext, 1)
}

// exists reports whether both sides have the mailbox; messages in a mailbox one side lacks
// wait for the mailbox phase.
func (p *planner) exists(mb store.MailboxID) bool {
	_, okA := p.a.Mailboxes[mb]
	_, okB := p.b.Mailboxes[mb]
	return okA && okB
}

func (p *planner) decide(id store.MessageID) {
	la, okA := p.a.Live[id]
	lb, okB := p.b.Live[id]
	switch {
	case okA && okB:
		if !p.exists(la.Mailbox) || !p.exists(lb.Mailbox) {
			return
		}
		p.touch(la.Mailbox)
		p.touch(lb.Mailbox)
		p.both(la, lb)
	case okA:
		if !p.exists(la.Mailbox) {
			return
		}
		p.touch(la.Mailbox)
		p.oneSide(la, p.a, p.b, &p.plan.A, &p.plan.B, p.plan.NeedB, true)
	case okB:
		if !p.exists(lb.Mailbox) {
			return
		}
		p.touch(lb.Mailbox)
		p.oneSide(lb, p.b, p.a, &p.plan.B, &p.plan.A, p.plan.NeedA, false)
	}
}

// oneSide handles a message live on side x only.
func (p *planner) oneSide(m store.SyncMessage, x, y *Side, bx, by *store.SyncBatch, needY map[store.MessageID]bool, xIsA bool) {
	place := store.SyncPlace{Mailbox: m.Mailbox, UID: m.UID}
	if len(y.Tombs[m.ID]) > 0 {
		// y had it and expunged it: expunge wins.
		p.expunge(bx, m.ID, place)
		p.plan.Expunged++
		return
	}
	if m.UID >= y.Mailboxes[m.Mailbox].UIDNext && !p.taken[place] {
		p.taken[place] = true
		by.Insert = append(by.Insert, store.SyncInsert{SyncPlace: place, Message: m.ID, Flags: m.Flags, ChangedAt: m.ChangedAt})
		needY[m.ID] = true
		bx.Agree = append(bx.Agree, store.SyncAgree{SyncPlace: place, Flags: m.Flags})
		by.Agree = append(by.Agree, store.SyncAgree{SyncPlace: place, Flags: m.Flags})
		p.plan.Copied++
		return
	}
	// y used this UID for something else (a clash) or allocated it and lost it: x's message
	// gets a new UID on both sides.
	r := reinjection{id: m.ID, mailbox: m.Mailbox, oldUID: m.UID, flags: m.Flags, changed: m.ChangedAt}
	if xIsA {
		r.onA = &m
	} else {
		r.onB = &m
	}
	p.reinj = append(p.reinj, r)
}

// both handles a message live on both sides.
func (p *planner) both(la, lb store.SyncMessage) {
	flags := mergeFlags(la, lb, p.a.ReplicaID, p.b.ReplicaID)
	changed := later(la.ChangedAt, lb.ChangedAt)
	if la.Mailbox == lb.Mailbox && la.UID == lb.UID {
		p.taken[store.SyncPlace{Mailbox: la.Mailbox, UID: la.UID}] = true
		p.setFlags(&p.plan.A, la, flags, changed)
		p.setFlags(&p.plan.B, lb, flags, changed)
		return
	}
	// One message at two places: pick the place both sides will use.
	var want store.SyncPlace
	if la.Mailbox == lb.Mailbox {
		want = store.SyncPlace{Mailbox: la.Mailbox, UID: max(la.UID, lb.UID)}
	} else if winsA(la.ChangedAt, lb.ChangedAt, p.a.ReplicaID, p.b.ReplicaID) {
		want = store.SyncPlace{Mailbox: la.Mailbox, UID: la.UID}
	} else {
		want = store.SyncPlace{Mailbox: lb.Mailbox, UID: lb.UID}
	}
	okA := (la.Mailbox == want.Mailbox && la.UID == want.UID) || want.UID >= p.a.Mailboxes[want.Mailbox].UIDNext
	okB := (lb.Mailbox == want.Mailbox && lb.UID == want.UID) || want.UID >= p.b.Mailboxes[want.Mailbox].UIDNext
	if okA && okB && !p.taken[want] {
		p.taken[want] = true
		p.place(&p.plan.A, la, want, flags, changed)
		p.place(&p.plan.B, lb, want, flags, changed)
		return
	}
	p.reinj = append(p.reinj, reinjection{id: la.ID, mailbox: want.Mailbox, oldUID: min(la.UID, lb.UID),
		flags: flags, changed: changed, onA: &la, onB: &lb})
}

// place puts a message that side's batch b holds at m at want, with flags.
func (p *planner) place(b *store.SyncBatch, m store.SyncMessage, want store.SyncPlace, flags []string, changed time.Time) {
	if m.Mailbox == want.Mailbox && m.UID == want.UID {
		p.setFlags(b, m, flags, changed)
		return
	}
	p.expunge(b, m.ID, store.SyncPlace{Mailbox: m.Mailbox, UID: m.UID})
	b.Insert = append(b.Insert, store.SyncInsert{SyncPlace: want, Message: m.ID, Flags: flags, ChangedAt: changed})
	b.Agree = append(b.Agree, store.SyncAgree{SyncPlace: want, Flags: flags})
}

// expunge adds an expunge of place (holding message id) to side batch b.
func (p *planner) expunge(b *store.SyncBatch, id store.MessageID, place store.SyncPlace) {
	b.Expunge = append(b.Expunge, place)
	if b == &p.plan.A {
		p.expA[id] = append(p.expA[id], place)
	} else {
		p.expB[id] = append(p.expB[id], place)
	}
}

// shareTombstones gives each side the tombstones of message id that only the other side
// has (or gets in this round), in mailboxes both sides have.
func (p *planner) shareTombstones(id store.MessageID) {
	places := func(tombs []store.SyncTombstone, planned []store.SyncPlace) map[store.SyncPlace]bool {
		m := map[store.SyncPlace]bool{}
		for _, t := range tombs {
			m[store.SyncPlace{Mailbox: t.Mailbox, UID: t.UID}] = true
		}
		for _, pl := range planned {
			m[pl] = true
		}
		return m
	}
	onA, onB := places(p.a.Tombs[id], p.expA[id]), places(p.b.Tombs[id], p.expB[id])
	give := func(from, to map[store.SyncPlace]bool, b *store.SyncBatch) {
		for pl := range from {
			if !to[pl] && p.exists(pl.Mailbox) {
				p.touch(pl.Mailbox)
				b.Tombstones = append(b.Tombstones, store.SyncTombstone{Mailbox: pl.Mailbox, UID: pl.UID, Message: id})
			}
		}
	}
	give(onA, onB, &p.plan.B)
	give(onB, onA, &p.plan.A)
}

func (p *planner) setFlags(b *store.SyncBatch, m store.SyncMessage, flags []string, changed time.Time) {
	place := store.SyncPlace{Mailbox: m.Mailbox, UID: m.UID}
	if !sameFlags(m.Flags, flags) {
		b.Flags = append(b.Flags, store.SyncFlags{SyncPlace: place, Flags: flags, ChangedAt: changed})
	}
	if !sameFlags(m.Flags, flags) || m.SyncFlags == nil || !sameFlags(m.SyncFlags, flags) || !m.Placed {
		b.Agree = append(b.Agree, store.SyncAgree{SyncPlace: place, Flags: flags})
	}
}

// reinject gives every message to reinject a new UID, the same on both sides.
func (p *planner) reinject() {
	slices.SortFunc(p.reinj, func(x, y reinjection) int {
		return cmp.Or(bytes.Compare(x.mailbox[:], y.mailbox[:]), cmp.Compare(x.oldUID, y.oldUID), bytes.Compare(x.id[:], y.id[:]))
	})
	clashes := map[store.SyncPlace]bool{}
	for _, r := range p.reinj {
		uid := p.next[r.mailbox]
		p.next[r.mailbox] = uid + 1
		want := store.SyncPlace{Mailbox: r.mailbox, UID: uid}
		p.taken[want] = true
		for _, s := range []struct {
			m    *store.SyncMessage
			b    *store.SyncBatch
			need map[store.MessageID]bool
		}{{r.onA, &p.plan.A, p.plan.NeedA}, {r.onB, &p.plan.B, p.plan.NeedB}} {
			if s.m != nil {
				old := store.SyncPlace{Mailbox: s.m.Mailbox, UID: s.m.UID}
				p.expunge(s.b, r.id, old)
				if s.m.Mailbox == r.mailbox {
					clashes[old] = true
				}
			} else {
				s.need[r.id] = true
			}
			s.b.Insert = append(s.b.Insert, store.SyncInsert{SyncPlace: want, Message: r.id, Flags: r.flags, ChangedAt: r.changed})
			s.b.Agree = append(s.b.Agree, store.SyncAgree{SyncPlace: want, Flags: r.flags})
		}
		p.plan.Reinjected++
	}
	// A clash is an old UID that was live on both sides with different messages.
	for place := range clashes {
		var a, b bool
		for _, r := range p.reinj {
			if r.onA != nil && r.onA.Mailbox == place.Mailbox && r.onA.UID == place.UID && r.onB == nil {
				a = true
			}
			if r.onB != nil && r.onB.Mailbox == place.Mailbox && r.onB.UID == place.UID && r.onA == nil {
				b = true
			}
		}
		if a && b {
			p.plan.Clashes++
		}
	}
}

// targets sets, for every touched mailbox, the counters both sides end with.
func (p *planner) targets() {
	ids := make([]store.MailboxID, 0, len(p.touched))
	for id := range p.touched {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(x, y store.MailboxID) int { return bytes.Compare(x[:], y[:]) })
	placed := func(b *store.SyncBatch) map[store.MailboxID]store.UID {
		m := map[store.MailboxID]store.UID{}
		for _, in := range b.Insert {
			m[in.Mailbox] = max(m[in.Mailbox], in.UID+1)
		}
		for _, t := range b.Tombstones {
			m[t.Mailbox] = max(m[t.Mailbox], t.UID+1)
		}
		return m
	}
	placedA, placedB := placed(&p.plan.A), placed(&p.plan.B)
	for _, id := range ids {
		ma, mb := p.a.Mailboxes[id], p.b.Mailboxes[id]
		t := max(ma.HighestModSeq, mb.HighestModSeq) + 1
		nextA, nextB := max(ma.UIDNext, placedA[id]), max(mb.UIDNext, placedB[id])
		if !p.partial[id] {
			// Everything either side holds was considered: UIDNEXT ends equal, above every
			// UID either side ever allocated.
			nextA = max(nextA, nextB, p.next[id])
			nextB = nextA
		}
		p.plan.A.Targets = append(p.plan.A.Targets, store.SyncTarget{ID: id, Expect: ma.HighestModSeq, ModSeq: t, UIDNext: nextA})
		p.plan.B.Targets = append(p.plan.B.Targets, store.SyncTarget{ID: id, Expect: mb.HighestModSeq, ModSeq: t, UIDNext: nextB})
	}
}

// mergeFlags merges a message's flags per flag: a flag one side changed since the last
// agreement takes that side's value; one both sides changed (or neither agreed yet) takes the
// value of the latest change, ties going to the smaller replica id.
func mergeFlags(a, b store.SyncMessage, idA, idB string) []string {
	all := map[string]string{} // lower-case -> spelling
	for _, list := range [][]string{a.Flags, b.Flags, a.SyncFlags, b.SyncFlags} {
		for _, f := range list {
			if _, ok := all[strings.ToLower(f)]; !ok {
				all[strings.ToLower(f)] = f
			}
		}
	}
	aWins := winsA(a.ChangedAt, b.ChangedAt, idA, idB)
	var out []string
	for lf, f := range all {
		inA, inB := hasFlag(a.Flags, lf), hasFlag(b.Flags, lf)
		keep := inA
		if inA != inB {
			chA := a.SyncFlags == nil || inA != hasFlag(a.SyncFlags, lf)
			chB := b.SyncFlags == nil || inB != hasFlag(b.SyncFlags, lf)
			switch {
			case chA && !chB:
				keep = inA
			case chB && !chA:
				keep = inB
			case aWins:
				keep = inA
			default:
				keep = inB
			}
		}
		if keep {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func hasFlag(list []string, lower string) bool {
	return slices.ContainsFunc(list, func(f string) bool { return strings.ToLower(f) == lower })
}

func sameFlags(x, y []string) bool {
	if len(x) != len(y) {
		return false
	}
	for _, f := range x {
		if !hasFlag(y, strings.ToLower(f)) {
			return false
		}
	}
	return true
}

// winsA decides a tie between two changes: the later one wins; at the same instant, the
// smaller replica id.
func winsA(ta, tb time.Time, idA, idB string) bool {
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return idA < idB
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
