package replica

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/twinmail/twinmail/store"
)

// syncMailboxes makes both sides have the same mailboxes (ids, names, subscriptions),
// following the mailbox rules of DESIGN.md: creates propagate, same-name creates merge into
// one mailbox, a delete does not destroy what the deleting side never saw, renames and
// subscriptions are decided per mailbox by what changed since the last agreement.
func (w *Worker) syncMailboxes(ctx context.Context, acct store.AccountID) (bool, error) {
	boxA, tombA, err := w.opts.A.SyncMailboxes(ctx, w.idB, acct)
	if err != nil {
		return false, fmt.Errorf("replica A: %w", err)
	}
	boxB, tombB, err := w.opts.B.SyncMailboxes(ctx, w.idA, acct)
	if err != nil {
		return false, fmt.Errorf("replica B: %w", err)
	}
	opsA, opsB := PlanMailboxes(boxA, tombA, boxB, tombB, w.idA, w.idB)
	if opsA.Empty() && opsB.Empty() {
		return false, nil
	}
	if err := w.fault("mailboxes-planned"); err != nil {
		return false, err
	}
	for _, side := range []struct {
		name string
		ops  *store.MailboxOps
	}{{"A", opsA}, {"B", opsB}} {
		o := side.ops
		// Agreement bookkeeping alone is not news.
		if len(o.Create)+len(o.Rename)+len(o.Delete)+len(o.Merge)+len(o.ExpungeSynced)+len(o.Subscribe) > 0 {
			w.log.Info("mailbox changes", "side", side.name, "account", acct, "create", len(o.Create), "rename", len(o.Rename),
				"delete", len(o.Delete), "merge", len(o.Merge), "expunge_synced", len(o.ExpungeSynced), "subscribe", len(o.Subscribe))
			for _, c := range o.Create {
				w.log.Debug("create mailbox", "side", side.name, "name", c.Name, "id", c.ID)
			}
			for _, d := range o.Delete {
				w.log.Debug("delete mailbox", "side", side.name, "id", d)
			}
			for _, r := range o.Rename {
				w.log.Debug("rename mailbox", "side", side.name, "id", r.ID, "to", r.Name)
			}
			for _, m := range o.Merge {
				w.log.Debug("merge mailbox", "side", side.name, "from", m.From, "to", m.To)
			}
		}
	}
	// A mailbox (re-)created on one side must be read in full on both sides next: the side
	// that kept it has history (tombstones, messages) older than its sync point.
	var reread []store.MailboxID
	for _, c := range append(slices.Clone(opsA.Create), opsB.Create...) {
		reread = append(reread, c.ID)
	}
	for _, m := range append(slices.Clone(opsA.Merge), opsB.Merge...) {
		reread = append(reread, m.To)
	}
	for _, id := range reread {
		if err := w.opts.A.ResetSyncPoint(ctx, w.idB, acct, id); err != nil {
			return false, fmt.Errorf("replica A: %w", err)
		}
		if err := w.opts.B.ResetSyncPoint(ctx, w.idA, acct, id); err != nil {
			return false, fmt.Errorf("replica B: %w", err)
		}
	}
	if !opsA.Empty() {
		if err := w.opts.A.ApplyMailboxOps(ctx, acct, opsA); err != nil {
			return true, fmt.Errorf("replica A: %w", err)
		}
	}
	if err := w.fault("mailboxes-a"); err != nil {
		return true, err
	}
	if !opsB.Empty() {
		if err := w.opts.B.ApplyMailboxOps(ctx, acct, opsB); err != nil {
			return true, fmt.Errorf("replica B: %w", err)
		}
	}
	if err := w.fault("mailboxes-b"); err != nil {
		return true, err
	}
	return true, nil
}

// PlanMailboxes decides the mailbox-level writes of each side.
func PlanMailboxes(boxA []store.SyncMailbox, tombA []store.MailboxTombstone, boxB []store.SyncMailbox, tombB []store.MailboxTombstone, idA, idB string) (opsA, opsB *store.MailboxOps) {
	opsA, opsB = &store.MailboxOps{}, &store.MailboxOps{}
	ma, mb := indexBoxes(boxA), indexBoxes(boxB)
	ta, tb := indexTombs(tombA), indexTombs(tombB)
	nameA, nameB := map[string]store.MailboxID{}, map[string]store.MailboxID{}
	for _, b := range boxA {
		nameA[b.Name] = b.ID
	}
	for _, b := range boxB {
		nameB[b.Name] = b.ID
	}
	indexOf := func(ops *store.MailboxOps) map[store.MailboxID]store.SyncMailbox {
		if ops == opsA {
			return ma
		}
		return mb
	}
	// ownName gives x, which only side x has, a name of its own on both sides.
	ownName := func(x store.SyncMailbox, opsX, opsY *store.MailboxOps) {
		m := x.Mailbox
		m.Name = disambiguate(x.Name, x.ID)
		opsX.Rename = append(opsX.Rename, store.MailboxRename{ID: x.ID, Name: m.Name})
		opsY.Create = append(opsY.Create, m)
	}
	// one handles a mailbox that only side x has.
	one := func(x store.SyncMailbox, tx, ty map[store.MailboxID]bool, nameY map[string]store.MailboxID, opsX, opsY *store.MailboxOps) {
		if ty[x.ID] {
			if x.Unsynced > 0 {
				// y deleted it, but x has mail y never saw: the mailbox survives with that
				// mail on both sides; what y saw stays deleted.
				opsX.ExpungeSynced = append(opsX.ExpungeSynced, x.ID)
				if other, ok := nameY[x.Name]; ok && other != x.ID {
					if _, shared := indexOf(opsX)[other]; !shared {
						if indexOf(opsY)[other].UIDValidity == x.UIDValidity {
							// y made a new mailbox of that name since: they become one,
							// under the surviving id.
							opsY.Merge = append(opsY.Merge, store.MailboxMerge{From: other, To: x.ID})
							return
						}
					}
					// The name is taken on y by a mailbox that cannot become this one
					// (merging would change a UIDVALIDITY): the survivor gets its own name.
					ownName(x, opsX, opsY)
					return
				}
				opsY.Create = append(opsY.Create, x.Mailbox)
			} else {
				opsX.Delete = append(opsX.Delete, x.ID)
			}
			return
		}
		if other, ok := nameY[x.Name]; ok {
			if tx[other] {
				return // other survives a delete here; its side's pass merges x into it
			}
			if _, shared := indexOf(opsX)[other]; !shared && indexOf(opsY)[other].UIDValidity == x.UIDValidity {
				// Created independently under one name: one mailbox, the smaller id. (Their
				// UIDVALIDITY is the name's; one renamed into the name keeps its own and is
				// not merged, so no UIDVALIDITY ever changes.)
				if bytes.Compare(x.ID[:], other[:]) < 0 {
					opsY.Merge = append(opsY.Merge, store.MailboxMerge{From: other, To: x.ID})
				} else {
					opsX.Merge = append(opsX.Merge, store.MailboxMerge{From: x.ID, To: other})
				}
				return
			}
			// The name belongs on y to a mailbox both sides have (renamed there), or to one
			// with another UIDVALIDITY: this one gets a name of its own on both sides.
			ownName(x, opsX, opsY)
			return
		}
		opsY.Create = append(opsY.Create, x.Mailbox)
	}
	for _, x := range boxA {
		if _, ok := mb[x.ID]; !ok {
			one(x, ta, tb, nameB, opsA, opsB)
		}
	}
	for _, x := range boxB {
		if _, ok := ma[x.ID]; !ok {
			if other, ok := nameA[x.Name]; ok && !ta[x.ID] {
				if _, shared := mb[other]; !shared {
					continue // a same-name pair, merged by the loop above
				}
			}
			one(x, tb, ta, nameA, opsB, opsA)
		}
	}
	for _, a := range boxA {
		b, ok := mb[a.ID]
		if !ok {
			continue
		}
		aWins := winsA(a.NameChangedAt, b.NameChangedAt, idA, idB)
		name := a.Name
		if a.Name != b.Name {
			chA := a.SyncName == nil || *a.SyncName != a.Name
			chB := b.SyncName == nil || *b.SyncName != b.Name
			if chB && !chA || chA == chB && !aWins {
				name = b.Name
			}
			// The name may be taken on a side by another mailbox (renames to one name on
			// both sides): then this one gets a name of its own.
			// (A holder that only one side has gets a name of its own in one, above.)
			sharedHolder := func(names map[string]store.MailboxID) bool {
				id, ok := names[name]
				if !ok || id == a.ID {
					return false
				}
				_, onA := ma[id]
				_, onB := mb[id]
				return onA && onB
			}
			if sharedHolder(nameA) || sharedHolder(nameB) {
				name = disambiguate(name, a.ID)
			}
			if name != a.Name {
				opsA.Rename = append(opsA.Rename, store.MailboxRename{ID: a.ID, Name: name})
			}
			if name != b.Name {
				opsB.Rename = append(opsB.Rename, store.MailboxRename{ID: b.ID, Name: name})
			}
		}
		sub := a.Subscribed
		if a.Subscribed != b.Subscribed {
			chA := a.SyncSubscribed == nil || *a.SyncSubscribed != a.Subscribed
			chB := b.SyncSubscribed == nil || *b.SyncSubscribed != b.Subscribed
			if chB && !chA || chA == chB && !winsA(a.SubscribedChangedAt, b.SubscribedChangedAt, idA, idB) {
				sub = b.Subscribed
			}
			if sub != a.Subscribed {
				opsA.Subscribe = append(opsA.Subscribe, store.MailboxSubscribe{ID: a.ID, On: sub})
			} else {
				opsB.Subscribe = append(opsB.Subscribe, store.MailboxSubscribe{ID: b.ID, On: sub})
			}
		}
		agreed := store.Mailbox{ID: a.ID, Name: name, Subscribed: sub}
		if a.SyncName == nil || *a.SyncName != name || a.SyncSubscribed == nil || *a.SyncSubscribed != sub {
			opsA.Agreed = append(opsA.Agreed, agreed)
		}
		if b.SyncName == nil || *b.SyncName != name || b.SyncSubscribed == nil || *b.SyncSubscribed != sub {
			opsB.Agreed = append(opsB.Agreed, agreed)
		}
	}
	return opsA, opsB
}

func indexBoxes(list []store.SyncMailbox) map[store.MailboxID]store.SyncMailbox {
	m := make(map[store.MailboxID]store.SyncMailbox, len(list))
	for _, b := range list {
		m[b.ID] = b
	}
	return m
}

func indexTombs(list []store.MailboxTombstone) map[store.MailboxID]bool {
	m := make(map[store.MailboxID]bool, len(list))
	for _, t := range list {
		m[t.ID] = true
	}
	return m
}

// syncMessages runs the message part of a round for one account: read what changed on both
// sides since their sync points, plan, fetch what a side lacks, apply on A then B, and only
// then advance the sync points.
func (w *Worker) syncMessages(ctx context.Context, acct store.AccountID, st *roundStats) (bool, error) {
	boxA, _, err := w.opts.A.SyncMailboxes(ctx, w.idB, acct)
	if err != nil {
		return false, fmt.Errorf("replica A: %w", err)
	}
	boxB, _, err := w.opts.B.SyncMailboxes(ctx, w.idA, acct)
	if err != nil {
		return false, fmt.Errorf("replica B: %w", err)
	}
	a := &Side{ReplicaID: w.idA, Mailboxes: indexBoxes(boxA)}
	b := &Side{ReplicaID: w.idB, Mailboxes: indexBoxes(boxB)}
	var dirty []store.MailboxID
	for _, ba := range boxA {
		bb, ok := b.Mailboxes[ba.ID]
		if !ok {
			continue // the mailbox phase has not settled it yet
		}
		if ba.HighestModSeq != ba.SyncPoint || bb.HighestModSeq != bb.SyncPoint || ba.UIDNext != bb.UIDNext || ba.HighestModSeq != bb.HighestModSeq {
			dirty = append(dirty, ba.ID)
		}
	}
	if len(dirty) == 0 {
		return false, nil
	}
	type progress struct{ upToA, upToB store.ModSeq }
	done := map[store.MailboxID]progress{}
	var touched []store.MessageID
	for _, id := range dirty {
		liveA, tombsA, upToA, err := w.opts.A.SyncChanges(ctx, acct, id, a.Mailboxes[id].SyncPoint, w.opts.BatchSize)
		if err != nil {
			return false, fmt.Errorf("replica A: %w", err)
		}
		liveB, tombsB, upToB, err := w.opts.B.SyncChanges(ctx, acct, id, b.Mailboxes[id].SyncPoint, w.opts.BatchSize)
		if err != nil {
			return false, fmt.Errorf("replica B: %w", err)
		}
		done[id] = progress{upToA, upToB}
		for _, m := range liveA {
			touched = append(touched, m.ID)
		}
		for _, m := range liveB {
			touched = append(touched, m.ID)
		}
		for _, t := range tombsA {
			touched = append(touched, t.Message)
		}
		for _, t := range tombsB {
			touched = append(touched, t.Message)
		}
	}
	if a.Live, a.Tombs, err = w.opts.A.SyncLookup(ctx, acct, touched); err != nil {
		return false, fmt.Errorf("replica A: %w", err)
	}
	if b.Live, b.Tombs, err = w.opts.B.SyncLookup(ctx, acct, touched); err != nil {
		return false, fmt.Errorf("replica B: %w", err)
	}
	partial := map[store.MailboxID]bool{}
	for id, pr := range done {
		partial[id] = pr.upToA < a.Mailboxes[id].HighestModSeq || pr.upToB < b.Mailboxes[id].HighestModSeq
	}
	plan := PlanMessages(a, b, touched, dirty, partial)
	if w.opts.DisableReinjection && plan.Reinjected > 0 {
		return false, fmt.Errorf("reinjection disabled (test build): %d messages need new UIDs", plan.Reinjected)
	}
	if err := w.fault("planned"); err != nil {
		return false, err
	}
	if err := w.fill(ctx, acct, &plan.A, plan.NeedA, w.opts.B, w.opts.A, st); err != nil {
		return false, err
	}
	if err := w.fill(ctx, acct, &plan.B, plan.NeedB, w.opts.A, w.opts.B, st); err != nil {
		return false, err
	}
	if err := w.opts.A.ApplySync(ctx, acct, &plan.A); err != nil {
		return false, fmt.Errorf("replica A: %w", err)
	}
	if err := w.fault("applied-a"); err != nil {
		return true, err
	}
	if err := w.opts.B.ApplySync(ctx, acct, &plan.B); err != nil {
		return true, fmt.Errorf("replica B: %w", err)
	}
	if err := w.fault("applied-b"); err != nil {
		return true, err
	}
	// Only now that both sides hold the result may either record it as agreed.
	if err := w.opts.A.MarkAgreed(ctx, acct, plan.A.Agree); err != nil {
		return true, fmt.Errorf("replica A: %w", err)
	}
	if err := w.fault("agreed-a"); err != nil {
		return true, err
	}
	if err := w.opts.B.MarkAgreed(ctx, acct, plan.B.Agree); err != nil {
		return true, fmt.Errorf("replica B: %w", err)
	}
	st.copied += plan.Copied
	st.reinjected += plan.Reinjected
	st.clashes += plan.Clashes
	st.expunged += plan.Expunged
	// Both sides applied: advance the sync points. A mailbox read only in part keeps its
	// point at what was read, so the rest comes next round.
	for _, t := range plan.A.Targets {
		pr, ok := done[t.ID]
		spA, spB := t.ModSeq, t.ModSeq
		if ok && pr.upToA < a.Mailboxes[t.ID].HighestModSeq {
			spA = pr.upToA
		}
		if ok && pr.upToB < b.Mailboxes[t.ID].HighestModSeq {
			spB = pr.upToB
		}
		if err := w.opts.A.SetSyncPoint(ctx, w.idB, acct, t.ID, spA); err != nil {
			return true, fmt.Errorf("replica A: %w", err)
		}
		if err := w.fault("syncpoint-a"); err != nil {
			return true, err
		}
		if err := w.opts.B.SetSyncPoint(ctx, w.idA, acct, t.ID, spB); err != nil {
			return true, fmt.Errorf("replica B: %w", err)
		}
	}
	return true, nil
}

// fill gives the inserts of batch (for side dst) the records and bodies dst lacks, read
// from src. Each body is sent once per side, however many mailboxes hold it.
func (w *Worker) fill(ctx context.Context, acct store.AccountID, batch *store.SyncBatch, need map[store.MessageID]bool, src, dst *store.Store, st *roundStats) error {
	if len(need) == 0 {
		return nil
	}
	ids := make([]store.MessageID, 0, len(need))
	for id := range need {
		ids = append(ids, id)
	}
	recs, err := src.SyncExport(ctx, acct, ids)
	if err != nil {
		return err
	}
	var digests [][]byte
	for _, r := range recs {
		digests = append(digests, r.Digest)
	}
	missing, err := dst.SyncMissingBodies(ctx, acct, digests)
	if err != nil {
		return err
	}
	bodies, err := src.SyncBodies(ctx, acct, missing)
	if err != nil {
		return err
	}
	sent := map[string]bool{}
	for i := range batch.Insert {
		in := &batch.Insert[i]
		if !need[in.Message] {
			continue
		}
		r, ok := recs[in.Message]
		if !ok {
			return fmt.Errorf("message %s vanished from the source side: %w", in.Message, store.ErrSyncConflict)
		}
		in.Record = r
		if body, ok := bodies[string(r.Digest)]; ok && !sent[string(r.Digest)] {
			in.Body = body
			sent[string(r.Digest)] = true
			st.bytes += int64(len(body))
		}
	}
	// Bodies must precede the messages that reference them within the batch.
	slices.SortStableFunc(batch.Insert, func(x, y store.SyncInsert) int {
		return boolInt(y.Body != nil) - boolInt(x.Body != nil)
	})
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// disambiguate gives a mailbox whose name is taken by another one a name of its own,
// the same on both sides: "Name-" and 8 hex digits of its id's random part (the first
// bytes of a UUIDv7 are a timestamp, shared by mailboxes made in the same millisecond).
func disambiguate(name string, id store.MailboxID) string {
	return fmt.Sprintf("%s-%x", name, id[12:])
}
