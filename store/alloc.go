package store

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
)

// Every write to a mailbox's messages first takes the mailbox row's lock (lockMailbox) and
// keeps it until commit. UIDNEXT and HIGHESTMODSEQ change only in allocate, under that lock,
// so UIDs and MODSEQs become visible in the order they were allocated (DESIGN invariant 3):
// a transaction that allocated a higher number cannot commit before one holding a lower one.

const (
	qLockMailbox = `SELECT id, name, uidvalidity, uid_next, highest_modseq, subscribed, special_use
		FROM mailboxes WHERE account_id = $1 AND id = $2 FOR UPDATE`
	qLockMailboxByName = `SELECT id, name, uidvalidity, uid_next, highest_modseq, subscribed, special_use
		FROM mailboxes WHERE account_id = $1 AND name = $2 FOR UPDATE`
	qAllocate = `UPDATE mailboxes SET uid_next = uid_next + $3, highest_modseq = highest_modseq + 1
		WHERE account_id = $1 AND id = $2 RETURNING uid_next - $3, highest_modseq`
	qNotify = `SELECT pg_notify('twinmail', $1)`
)

func scanMailbox(row pgx.Row, acct AccountID) (Mailbox, error) {
	var m Mailbox
	var uidv, uidNext, modseq int64
	err := row.Scan(&m.ID, &m.Name, &uidv, &uidNext, &modseq, &m.Subscribed, &m.SpecialUse)
	m.Account, m.UIDValidity, m.UIDNext, m.HighestModSeq = acct, uint32(uidv), UID(uidNext), ModSeq(modseq)
	return m, err
}

// lockMailbox locks a mailbox row until the transaction ends (ErrNoSuchMailbox).
func lockMailbox(ctx context.Context, tx pgx.Tx, acct AccountID, id MailboxID) (Mailbox, error) {
	m, err := scanMailbox(tx.QueryRow(ctx, qLockMailbox, acct, id), acct)
	if errors.Is(err, pgx.ErrNoRows) {
		return Mailbox{}, ErrNoSuchMailbox
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("lock mailbox: %w", err)
	}
	return m, nil
}

// lockMailboxByName locks the mailbox called name (canonicalised).
func lockMailboxByName(ctx context.Context, tx pgx.Tx, acct AccountID, name string) (Mailbox, error) {
	name = CanonicalMailboxName(name)
	m, err := scanMailbox(tx.QueryRow(ctx, qLockMailboxByName, acct, name), acct)
	if errors.Is(err, pgx.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, ErrNoSuchMailbox)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("lock mailbox %q: %w", name, err)
	}
	return m, nil
}

// allocate takes n UIDs (n may be 0) and one new MODSEQ in a mailbox the transaction has
// locked, and queues a change notification for commit time.
func allocate(ctx context.Context, tx pgx.Tx, acct AccountID, id MailboxID, n int) (first UID, modseq ModSeq, err error) {
	var f, ms int64
	if err := tx.QueryRow(ctx, qAllocate, acct, id, n).Scan(&f, &ms); err != nil {
		return 0, 0, fmt.Errorf("allocate uids: %w", err)
	}
	if f+int64(n) > math.MaxUint32 {
		return 0, 0, fmt.Errorf("allocate uids: mailbox %s has run out of UIDs", id)
	}
	if err := notify(ctx, tx, acct, id, ModSeq(ms)); err != nil {
		return 0, 0, err
	}
	return UID(f), ModSeq(ms), nil
}

// notify queues a notification that is delivered when the transaction commits.
func notify(ctx context.Context, tx pgx.Tx, acct AccountID, id MailboxID, modseq ModSeq) error {
	if _, err := tx.Exec(ctx, qNotify, fmt.Sprintf("%s %s %d", acct, id, modseq)); err != nil {
		return fmt.Errorf("notify change: %w", err)
	}
	return nil
}
