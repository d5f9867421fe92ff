package replica

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/twinmail/twinmail/store"
)

// Difference is one way in which two replicas differ.
type Difference struct {
	Account string
	Mailbox string
	What    string
}

func (d Difference) String() string {
	switch {
	case d.Mailbox != "":
		return fmt.Sprintf("%s/%s: %s", d.Account, d.Mailbox, d.What)
	case d.Account != "":
		return fmt.Sprintf("%s: %s", d.Account, d.What)
	}
	return d.What
}

// Verify compares two replicas: accounts, mailboxes (id, name, UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ, subscription), and per mailbox the UID → message map, flags and expunged
// UIDs. It compares per-mailbox digests first and lists details only where they differ
// (at most maxDetail lines per mailbox). No differences means the replicas are identical.
func Verify(ctx context.Context, a, b *store.Store, maxDetail int) ([]Difference, error) {
	var diffs []Difference
	accA, _, err := a.SyncAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("replica A: %w", err)
	}
	accB, _, err := b.SyncAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("replica B: %w", err)
	}
	byName := map[string]store.SyncAccount{}
	for _, x := range accB {
		byName[x.Name] = x
	}
	for _, x := range accA {
		y, ok := byName[x.Name]
		delete(byName, x.Name)
		switch {
		case !ok:
			diffs = append(diffs, Difference{Account: x.Name, What: "account only on A"})
			continue
		case x.ID != y.ID:
			diffs = append(diffs, Difference{Account: x.Name, What: fmt.Sprintf("account id %s on A, %s on B", x.ID, y.ID)})
			continue
		case x.PasswordHash != y.PasswordHash:
			diffs = append(diffs, Difference{Account: x.Name, What: "passwords differ"})
		}
		d, err := verifyAccount(ctx, a, b, x, maxDetail)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, d...)
	}
	for name := range byName {
		diffs = append(diffs, Difference{Account: name, What: "account only on B"})
	}
	return diffs, nil
}

func verifyAccount(ctx context.Context, a, b *store.Store, acct store.SyncAccount, maxDetail int) ([]Difference, error) {
	var diffs []Difference
	boxA, err := a.ListMailboxes(ctx, acct.ID)
	if err != nil {
		return nil, err
	}
	boxB, err := b.ListMailboxes(ctx, acct.ID)
	if err != nil {
		return nil, err
	}
	byID := map[store.MailboxID]store.Mailbox{}
	for _, m := range boxB {
		byID[m.ID] = m
	}
	for _, x := range boxA {
		y, ok := byID[x.ID]
		delete(byID, x.ID)
		d := Difference{Account: acct.Name, Mailbox: x.Name}
		if !ok {
			d.What = "mailbox only on A"
			diffs = append(diffs, d)
			continue
		}
		for _, c := range []struct {
			name string
			a, b any
		}{{"name", x.Name, y.Name}, {"UIDVALIDITY", x.UIDValidity, y.UIDValidity}, {"UIDNEXT", x.UIDNext, y.UIDNext},
			{"HIGHESTMODSEQ", x.HighestModSeq, y.HighestModSeq}, {"subscribed", x.Subscribed, y.Subscribed}, {"special-use", x.SpecialUse, y.SpecialUse}} {
			if c.a != c.b {
				d.What = fmt.Sprintf("%s %v on A, %v on B", c.name, c.a, c.b)
				diffs = append(diffs, d)
			}
		}
		da, err := a.DigestMailbox(ctx, acct.ID, x.ID)
		if err != nil {
			return nil, err
		}
		db, err := b.DigestMailbox(ctx, acct.ID, x.ID)
		if err != nil {
			return nil, err
		}
		if da == db {
			continue
		}
		detail, err := drillDown(ctx, a, b, acct.ID, x.ID, maxDetail)
		if err != nil {
			return nil, err
		}
		for _, w := range detail {
			d.What = w
			diffs = append(diffs, d)
		}
	}
	for _, y := range byID {
		diffs = append(diffs, Difference{Account: acct.Name, Mailbox: y.Name, What: "mailbox only on B"})
	}
	return diffs, nil
}

func drillDown(ctx context.Context, a, b *store.Store, acct store.AccountID, mbox store.MailboxID, maxDetail int) ([]string, error) {
	liveA, tombA, err := a.MailboxContents(ctx, acct, mbox)
	if err != nil {
		return nil, err
	}
	liveB, tombB, err := b.MailboxContents(ctx, acct, mbox)
	if err != nil {
		return nil, err
	}
	var out []string
	add := func(format string, args ...any) {
		if len(out) < maxDetail {
			out = append(out, fmt.Sprintf(format, args...))
		} else if len(out) == maxDetail {
			out = append(out, "... more differences")
		}
	}
	mapB := map[store.UID]store.MessageState{}
	for _, m := range liveB {
		mapB[m.UID] = m
	}
	for _, x := range liveA {
		y, ok := mapB[x.UID]
		delete(mapB, x.UID)
		switch {
		case !ok:
			add("UID %d (%s) only on A", x.UID, x.Message)
		case x.Message != y.Message:
			add("UID %d is %s on A, %s on B", x.UID, x.Message, y.Message)
		case !sameFlags(x.Flags, y.Flags):
			add("UID %d flags (%s) on A, (%s) on B", x.UID, strings.Join(x.Flags, " "), strings.Join(y.Flags, " "))
		}
	}
	rest := make([]store.UID, 0, len(mapB))
	for u := range mapB {
		rest = append(rest, u)
	}
	slices.Sort(rest)
	for _, u := range rest {
		add("UID %d (%s) only on B", u, mapB[u].Message)
	}
	if !slices.Equal(tombA, tombB) {
		add("expunged UIDs differ: %d on A, %d on B", len(tombA), len(tombB))
	}
	return out, nil
}

// PrintDifferences writes differences one per line, or "identical".
func PrintDifferences(w io.Writer, diffs []Difference) {
	if len(diffs) == 0 {
		fmt.Fprintln(w, "identical")
		return
	}
	for _, d := range diffs {
		fmt.Fprintln(w, d)
	}
	fmt.Fprintf(w, "%d difference(s)\n", len(diffs))
}
