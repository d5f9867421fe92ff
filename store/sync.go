package store

// Domain operations for the replication worker (replica/). The worker reads each side's
// changes since its sync point, decides (replica/plan.go), and applies each side's part with
// ApplySync: one transaction per side that first checks the side has not moved on since it
// was read (ErrSyncConflict), so decisions are never applied to a state they were not made
// for. Sync points advance only after both sides applied, so a crash in between replays a
// round; the decisions are functions of the current state, so replaying them is idempotent.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrSyncConflict means a side changed between the worker's read and its write.
var ErrSyncConflict = errors.New("replica changed while syncing; retry")

// SyncAccount is an account as the replication worker copies it.
type SyncAccount struct {
	ID                AccountID
	Name              string
	PasswordHash      string
	PasswordChangedAt time.Time
}

// AccountTombstone records a deleted account.
type AccountTombstone struct {
	ID        AccountID
	Name      string
	DeletedAt time.Time
}

// SyncAccounts lists all accounts and account tombstones.
func (s *Store) SyncAccounts(ctx context.Context) ([]SyncAccount, []AccountTombstone, error) {
	var accts []SyncAccount
	var tombs []AccountTombstone
	err := s.inSnapshot(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, password_hash, password_changed_at FROM accounts ORDER BY id`)
		if err != nil {
			return err
		}
		accts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (SyncAccount, error) {
			var a SyncAccount
			return a, r.Scan(&a.ID, &a.Name, &a.PasswordHash, &a.PasswordChangedAt)
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT id, name, deleted_at FROM account_tombstones ORDER BY id`)
		if err != nil {
			return err
		}
		tombs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccountTombstone, error) {
			var t AccountTombstone
			return t, r.Scan(&t.ID, &t.Name, &t.DeletedAt)
		})
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read accounts for sync: %w", err)
	}
	return accts, tombs, nil
}

// SyncPutAccount creates the account (with no mailboxes: they replicate on their own) or
// updates its password when a's is newer.
func (s *Store) SyncPutAccount(ctx context.Context, a SyncAccount) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO accounts (id, name, password_hash, password_changed_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET password_hash = EXCLUDED.password_hash, password_changed_at = EXCLUDED.password_changed_at, updated_at = now()
		WHERE accounts.password_changed_at < EXCLUDED.password_changed_at`, a.ID, a.Name, a.PasswordHash, a.PasswordChangedAt)
	if isUniqueViolation(err) {
		return fmt.Errorf("sync account %q: another account of that name exists: %w", a.Name, ErrAccountExists)
	}
	if err != nil {
		return fmt.Errorf("sync account %q: %w", a.Name, err)
	}
	return nil
}

// SyncDeleteAccount deletes an account by id, recording a tombstone; a missing account is not
// an error.
func (s *Store) SyncDeleteAccount(ctx context.Context, t AccountTombstone) error {
	var name string
	err := s.pool.QueryRow(ctx, `SELECT name FROM accounts WHERE id = $1`, t.ID).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		_, err = s.pool.Exec(ctx, `INSERT INTO account_tombstones (id, name, deleted_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, t.ID, t.Name, t.DeletedAt)
		return err
	}
	if err != nil {
		return fmt.Errorf("sync delete account: %w", err)
	}
	return s.DeleteAccount(ctx, name)
}

// SyncMailbox is a mailbox with its replication state towards one peer.
type SyncMailbox struct {
	Mailbox
	SyncName            *string // name last agreed with the peer; nil if never
	SyncSubscribed      *bool
	NameChangedAt       time.Time
	SubscribedChangedAt time.Time
	SyncPoint           ModSeq // local HIGHESTMODSEQ agreed with the peer; 0 if never
	Unsynced            int64  // messages never agreed with the peer
}

// MailboxTombstone records a deleted mailbox.
type MailboxTombstone struct {
	ID        MailboxID
	Name      string
	DeletedAt time.Time
}

// SyncMailboxes lists an account's mailboxes with their sync state towards peer, and its
// mailbox tombstones.
func (s *Store) SyncMailboxes(ctx context.Context, peer string, acct AccountID) ([]SyncMailbox, []MailboxTombstone, error) {
	var boxes []SyncMailbox
	var tombs []MailboxTombstone
	err := s.inSnapshot(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT m.id, m.name, m.uidvalidity, m.uid_next, m.highest_modseq, m.subscribed, m.special_use,
				m.sync_name, m.sync_subscribed, m.name_changed_at, m.subscribed_changed_at, coalesce(sp.modseq, 0),
				(SELECT count(*) FROM mailbox_messages mm WHERE mm.account_id = m.account_id AND mm.mailbox_id = m.id AND NOT mm.sync_placed)
			FROM mailboxes m LEFT JOIN sync_points sp ON sp.peer = $2 AND sp.account_id = m.account_id AND sp.mailbox_id = m.id
			WHERE m.account_id = $1 ORDER BY m.id`, acct, peer)
		if err != nil {
			return err
		}
		boxes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (SyncMailbox, error) {
			var b SyncMailbox
			var uidv, uidNext, modseq, sp int64
			err := r.Scan(&b.ID, &b.Name, &uidv, &uidNext, &modseq, &b.Subscribed, &b.SpecialUse,
				&b.SyncName, &b.SyncSubscribed, &b.NameChangedAt, &b.SubscribedChangedAt, &sp, &b.Unsynced)
			b.Account, b.UIDValidity, b.UIDNext, b.HighestModSeq, b.SyncPoint = acct, uint32(uidv), UID(uidNext), ModSeq(modseq), ModSeq(sp)
			return b, err
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT id, name, deleted_at FROM mailbox_tombstones WHERE account_id = $1 ORDER BY id`, acct)
		if err != nil {
			return err
		}
		tombs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (MailboxTombstone, error) {
			var t MailboxTombstone
			return t, r.Scan(&t.ID, &t.Name, &t.DeletedAt)
		})
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read mailboxes for sync: %w", err)
	}
	return boxes, tombs, nil
}

// MailboxMerge gives a mailbox another id (same-name merge): From becomes To.
type MailboxMerge struct{ From, To MailboxID }

// MailboxRename renames a mailbox.
type MailboxRename struct {
	ID   MailboxID
	Name string
}

// MailboxSubscribe sets a mailbox's subscription.
type MailboxSubscribe struct {
	ID MailboxID
	On bool
}

// MailboxOps are the mailbox-level changes the worker applies to one side.
type MailboxOps struct {
	Merge []MailboxMerge
	// Create creates mailboxes with the given id, name, UIDVALIDITY, subscription and
	// special-use. A pending tombstone of the id is dropped.
	Create    []Mailbox
	Rename    []MailboxRename
	Subscribe []MailboxSubscribe
	// Delete deletes mailboxes (recording tombstones).
	Delete []MailboxID
	// ExpungeSynced expunges, in these mailboxes, every message already agreed with the peer
	// (a delete on the peer that must not destroy what the peer never saw).
	ExpungeSynced []MailboxID
	// Agreed records name and subscription as agreed with the peer.
	Agreed []Mailbox
}

// Empty reports whether there is nothing to apply.
func (o *MailboxOps) Empty() bool {
	return len(o.Merge)+len(o.Create)+len(o.Rename)+len(o.Subscribe)+len(o.Delete)+len(o.ExpungeSynced)+len(o.Agreed) == 0
}

// ApplyMailboxOps applies mailbox-level changes in one transaction.
func (s *Store) ApplyMailboxOps(ctx context.Context, acct AccountID, ops *MailboxOps) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, m := range ops.Merge {
			if _, err := lockMailbox(ctx, tx, acct, m.From); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET id = $3 WHERE account_id = $1 AND id = $2`, acct, m.From, m.To); err != nil {
				return fmt.Errorf("merge mailbox %s into %s: %w", m.From, m.To, err)
			}
			if err := notify(ctx, tx, acct, m.From, 0); err != nil {
				return err
			}
		}
		for _, id := range ops.Delete {
			if _, err := lockMailbox(ctx, tx, acct, id); errors.Is(err, ErrNoSuchMailbox) {
				continue
			} else if err != nil {
				return err
			}
			// The peer deleted it and we decided nothing here was unseen by the peer; mail
			// that arrived since the decision must not go with it.
			var unseen bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 AND NOT sync_placed)`, acct, id).Scan(&unseen); err != nil {
				return err
			}
			if unseen {
				return fmt.Errorf("%w: mail arrived in mailbox %s while deciding to delete it", ErrSyncConflict, id)
			}
			_, modseq, err := allocate(ctx, tx, acct, id, 0)
			if err != nil {
				return err
			}
			m, err := lockMailbox(ctx, tx, acct, id)
			if err != nil {
				return err
			}
			m.HighestModSeq = modseq
			if err := recordName(ctx, tx, m); err != nil {
				return err
			}
			if err := deleteMailboxRows(ctx, tx, acct, id); err != nil {
				return err
			}
		}
		for _, r := range ops.Rename {
			m, err := lockMailbox(ctx, tx, acct, r.ID)
			if err != nil {
				return err
			}
			if err := recordName(ctx, tx, m); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE mailboxes SET name = $3 WHERE account_id = $1 AND id = $2`, acct, r.ID, r.Name)
			if isUniqueViolation(err) {
				return fmt.Errorf("rename mailbox %q to %q: %w", m.Name, r.Name, ErrMailboxExists)
			}
			if err != nil {
				return err
			}
			if err := notify(ctx, tx, acct, r.ID, m.HighestModSeq); err != nil {
				return err
			}
		}
		for _, c := range ops.Create {
			if _, err := tx.Exec(ctx, `DELETE FROM mailbox_tombstones WHERE account_id = $1 AND id = $2`, acct, c.ID); err != nil {
				return err
			}
			c.Account = acct
			uidv := c.UIDValidity
			c.UIDNext, c.HighestModSeq = 0, 0
			m, err := insertMailbox(ctx, tx, c)
			if err != nil {
				return err
			}
			if m.UIDValidity != uidv {
				return fmt.Errorf("create mailbox %q: UIDVALIDITY %d differs from the peer's %d", c.Name, m.UIDValidity, uidv)
			}
		}
		for _, sub := range ops.Subscribe {
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET subscribed = $3 WHERE account_id = $1 AND id = $2`, acct, sub.ID, sub.On); err != nil {
				return err
			}
		}
		for _, id := range ops.ExpungeSynced {
			if _, err := lockMailbox(ctx, tx, acct, id); err != nil {
				return err
			}
			uids, err := queryAll(ctx, tx, scanUID, `SELECT uid FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 AND sync_placed ORDER BY uid`, acct, id)
			if err != nil {
				return err
			}
			if len(uids) == 0 {
				continue
			}
			_, modseq, err := allocate(ctx, tx, acct, id, 0)
			if err != nil {
				return err
			}
			if err := expungeLocked(ctx, tx, acct, id, uids, modseq, true); err != nil {
				return err
			}
		}
		for _, a := range ops.Agreed {
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET sync_name = $3, sync_subscribed = $4 WHERE account_id = $1 AND id = $2`, acct, a.ID, a.Name, a.Subscribed); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply mailbox changes: %w", err)
	}
	return nil
}

// queryAll runs a query and scans every row.
func queryAll[T any](ctx context.Context, tx pgx.Tx, scan pgx.RowToFunc[T], q string, args ...any) ([]T, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

func scanUID(r pgx.CollectableRow) (UID, error) {
	var u int64
	err := r.Scan(&u)
	return UID(u), err
}

// SyncMessage is a live message as the worker sees it.
type SyncMessage struct {
	ID        MessageID
	Mailbox   MailboxID
	UID       UID
	Flags     []string
	SyncFlags []string // nil: never agreed with the peer
	Placed    bool     // this place (mailbox, UID) was agreed with the peer
	ChangedAt time.Time
	ModSeq    ModSeq
}

// SyncTombstone is an expunged UID.
type SyncTombstone struct {
	Mailbox MailboxID
	UID     UID
	Message MessageID
	ModSeq  ModSeq
}

const qSyncMessageCols = `message_id, mailbox_id, uid, flags, sync_flags, sync_placed, changed_at, modseq`

func scanSyncMessage(r pgx.CollectableRow) (SyncMessage, error) {
	var m SyncMessage
	var uid, modseq int64
	err := r.Scan(&m.ID, &m.Mailbox, &uid, &m.Flags, &m.SyncFlags, &m.Placed, &m.ChangedAt, &modseq)
	m.UID, m.ModSeq = UID(uid), ModSeq(modseq)
	return m, err
}

func scanSyncTombstone(r pgx.CollectableRow) (SyncTombstone, error) {
	var t SyncTombstone
	var uid, modseq int64
	err := r.Scan(&t.Mailbox, &uid, &t.Message, &modseq)
	t.UID, t.ModSeq = UID(uid), ModSeq(modseq)
	return t, err
}

// SyncChanges reads a mailbox's live messages and tombstones with MODSEQ above since, at most
// about limit of them (whole MODSEQs are never split). upTo is the MODSEQ up to which the
// result is complete.
func (s *Store) SyncChanges(ctx context.Context, acct AccountID, mbox MailboxID, since ModSeq, limit int) (live []SyncMessage, tombs []SyncTombstone, upTo ModSeq, err error) {
	err = s.inSnapshot(ctx, func(tx pgx.Tx) error {
		var hms int64
		if err := tx.QueryRow(ctx, `SELECT highest_modseq FROM mailboxes WHERE account_id = $1 AND id = $2`, acct, mbox).Scan(&hms); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNoSuchMailbox
			}
			return err
		}
		upTo = ModSeq(hms)
		var cut int64
		err := tx.QueryRow(ctx, `SELECT modseq FROM (
				SELECT modseq FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3
				UNION ALL SELECT modseq FROM expunged WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3) c
			ORDER BY modseq OFFSET $4 LIMIT 1`, acct, mbox, int64(since), limit).Scan(&cut)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			upTo = ModSeq(cut)
		}
		live, err = queryAll(ctx, tx, scanSyncMessage, `SELECT `+qSyncMessageCols+` FROM mailbox_messages
			WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3 AND modseq <= $4 ORDER BY uid`, acct, mbox, int64(since), int64(upTo))
		if err != nil {
			return err
		}
		tombs, err = queryAll(ctx, tx, scanSyncTombstone, `SELECT mailbox_id, uid, message_id, modseq FROM expunged
			WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3 AND modseq <= $4 ORDER BY uid`, acct, mbox, int64(since), int64(upTo))
		return err
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read changes of mailbox %s: %w", mbox, err)
	}
	return live, tombs, upTo, nil
}

// SyncLookup finds where the given messages are live and where they were expunged, across
// all mailboxes of the account.
func (s *Store) SyncLookup(ctx context.Context, acct AccountID, ids []MessageID) (map[MessageID]SyncMessage, map[MessageID][]SyncTombstone, error) {
	live := make(map[MessageID]SyncMessage, len(ids))
	tombs := make(map[MessageID][]SyncTombstone)
	err := s.inSnapshot(ctx, func(tx pgx.Tx) error {
		ls, err := queryAll(ctx, tx, scanSyncMessage, `SELECT `+qSyncMessageCols+` FROM mailbox_messages WHERE account_id = $1 AND message_id = ANY($2)`, acct, ids)
		if err != nil {
			return err
		}
		for _, m := range ls {
			live[m.ID] = m
		}
		ts, err := queryAll(ctx, tx, scanSyncTombstone, `SELECT mailbox_id, uid, message_id, modseq FROM expunged WHERE account_id = $1 AND message_id = ANY($2)`, acct, ids)
		if err != nil {
			return err
		}
		for _, t := range ts {
			tombs[t.Message] = append(tombs[t.Message], t)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("look up messages: %w", err)
	}
	return live, tombs, nil
}

// MessageRecord is everything about a message except its place, flags and body bytes.
type MessageRecord struct {
	ID            MessageID
	Digest        []byte
	Size          int64
	InternalDate  time.Time
	SentDate      *time.Time
	Envelope      json.RawMessage
	BodyStructure json.RawMessage
	SearchHeader  string
	SearchText    string
}

// SyncExport reads message records by id.
func (s *Store) SyncExport(ctx context.Context, acct AccountID, ids []MessageID) (map[MessageID]*MessageRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, digest, size, internal_date, sent_date, envelope, bodystructure, search_header, search_text
		FROM messages WHERE account_id = $1 AND id = ANY($2)`, acct, ids)
	if err != nil {
		return nil, fmt.Errorf("export messages: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*MessageRecord, error) {
		var m MessageRecord
		return &m, r.Scan(&m.ID, &m.Digest, &m.Size, &m.InternalDate, &m.SentDate, &m.Envelope, &m.BodyStructure, &m.SearchHeader, &m.SearchText)
	})
	if err != nil {
		return nil, fmt.Errorf("export messages: %w", err)
	}
	out := make(map[MessageID]*MessageRecord, len(recs))
	for _, r := range recs {
		out[r.ID] = r
	}
	return out, nil
}

// SyncMissingBodies returns which of digests this side does not have.
func (s *Store) SyncMissingBodies(ctx context.Context, acct AccountID, digests [][]byte) ([][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT d FROM unnest($2::bytea[]) AS d
		WHERE NOT EXISTS (SELECT 1 FROM bodies b WHERE b.account_id = $1 AND b.digest = d)`, acct, digests)
	if err != nil {
		return nil, fmt.Errorf("check bodies: %w", err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("check bodies: %w", err)
	}
	return missing, nil
}

// SyncBodies reads bodies by digest, keyed by string(digest).
func (s *Store) SyncBodies(ctx context.Context, acct AccountID, digests [][]byte) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT digest, data FROM bodies WHERE account_id = $1 AND digest = ANY($2)`, acct, digests)
	if err != nil {
		return nil, fmt.Errorf("read bodies: %w", err)
	}
	defer rows.Close()
	out := make(map[string][]byte, len(digests))
	for rows.Next() {
		var d, data []byte
		if err := rows.Scan(&d, &data); err != nil {
			return nil, fmt.Errorf("read bodies: %w", err)
		}
		out[string(d)] = data
	}
	return out, rows.Err()
}

// SyncPlace is a (mailbox, UID) position.
type SyncPlace struct {
	Mailbox MailboxID
	UID     UID
}

// SyncInsert places a message. Record is nil when this side already has the message row
// (it moves or is reinjected); Body is set when this side lacks the body.
type SyncInsert struct {
	SyncPlace
	Message   MessageID
	Flags     []string
	ChangedAt time.Time
	Record    *MessageRecord
	Body      []byte
}

// SyncAgree records that both sides hold the message at this place with these flags.
type SyncAgree struct {
	SyncPlace
	Flags []string
}

// MarkAgreed records agreements after both sides applied a round: the places' flags become
// the base of the next flag merge, and the places count as seen by the peer.
func (s *Store) MarkAgreed(ctx context.Context, acct AccountID, agree []SyncAgree) error {
	if len(agree) == 0 {
		return nil
	}
	mbs := make([]MailboxID, len(agree))
	uids := make([]int64, len(agree))
	flags := make([]string, len(agree))
	for i, a := range agree {
		fj, err := json.Marshal(nonNil(a.Flags))
		if err != nil {
			return fmt.Errorf("encode flags: %w", err)
		}
		mbs[i], uids[i], flags[i] = a.Mailbox, int64(a.UID), string(fj)
	}
	_, err := s.pool.Exec(ctx, `UPDATE mailbox_messages mm SET sync_flags = ARRAY(SELECT jsonb_array_elements_text(a.f::jsonb)), sync_placed = true
		FROM unnest($2::uuid[], $3::bigint[], $4::text[]) AS a(mb, uid, f)
		WHERE mm.account_id = $1 AND mm.mailbox_id = a.mb AND mm.uid = a.uid`, acct, mbs, uids, flags)
	if err != nil {
		return fmt.Errorf("record agreement: %w", err)
	}
	return nil
}

// SyncFlags sets a message's flags.
type SyncFlags struct {
	SyncPlace
	Flags     []string
	ChangedAt time.Time
}

// SyncTarget is what a mailbox must look like after the batch: its HIGHESTMODSEQ was
// Expect when the worker read it; every change gets MODSEQ ModSeq; UIDNEXT becomes at least
// UIDNext.
type SyncTarget struct {
	ID      MailboxID
	Expect  ModSeq
	ModSeq  ModSeq
	UIDNext UID
}

// SyncBatch is one side's part of a round for one account.
type SyncBatch struct {
	Targets []SyncTarget
	Expunge []SyncPlace
	Insert  []SyncInsert
	Flags   []SyncFlags
	// Agree lists the places whose flags and placement this round agrees on. ApplySync does
	// not write them: MarkAgreed does, once both sides have applied their batches, so that
	// no side claims an agreement the other side has not committed.
	Agree []SyncAgree
	// Tombstones records UIDs the peer expunged that this side never held, so that both
	// sides keep the same expunge history.
	Tombstones []SyncTombstone
}

// ApplySync applies a batch in one transaction. It fails with ErrSyncConflict, changing
// nothing, if a target mailbox's HIGHESTMODSEQ is no longer Expect.
func (s *Store) ApplySync(ctx context.Context, acct AccountID, b *SyncBatch) error {
	targets := slices.Clone(b.Targets)
	slices.SortFunc(targets, func(x, y SyncTarget) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	modseqOf := make(map[MailboxID]ModSeq, len(targets))
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, t := range targets {
			m, err := lockMailbox(ctx, tx, acct, t.ID)
			if err != nil {
				return err
			}
			if m.HighestModSeq != t.Expect {
				return fmt.Errorf("%w: mailbox %q at MODSEQ %d, expected %d", ErrSyncConflict, m.Name, m.HighestModSeq, t.Expect)
			}
			if t.ModSeq <= m.HighestModSeq {
				return fmt.Errorf("sync target MODSEQ %d not above %d in mailbox %q", t.ModSeq, m.HighestModSeq, m.Name)
			}
			modseqOf[t.ID] = t.ModSeq
		}
		var expungedIDs []MessageID
		for _, e := range b.Expunge {
			var id MessageID
			err := tx.QueryRow(ctx, `WITH gone AS (DELETE FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 AND uid = $3 RETURNING message_id)
				INSERT INTO expunged (account_id, mailbox_id, uid, message_id, modseq) SELECT $1, $2, $3, message_id, $4 FROM gone
				ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET message_id = EXCLUDED.message_id, modseq = EXCLUDED.modseq
				RETURNING message_id`, acct, e.Mailbox, int64(e.UID), int64(modseqOf[e.Mailbox])).Scan(&id)
			if errors.Is(err, pgx.ErrNoRows) {
				continue // already gone
			}
			if err != nil {
				return fmt.Errorf("expunge uid %d: %w", e.UID, err)
			}
			expungedIDs = append(expungedIDs, id)
		}
		// Inserts and flag updates go in one pipelined batch: a catch-up of thousands of
		// messages must not pay a round trip per row.
		if err := bulkInsert(ctx, tx, acct, b.Insert, modseqOf); err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for _, f := range b.Flags {
			batch.Queue(`UPDATE mailbox_messages SET flags = $4, changed_at = $5, modseq = $6
				WHERE account_id = $1 AND mailbox_id = $2 AND uid = $3`, acct, f.Mailbox, int64(f.UID), nonNil(f.Flags), f.ChangedAt, int64(modseqOf[f.Mailbox]))
		}
		for _, t := range b.Tombstones {
			batch.Queue(`INSERT INTO expunged (account_id, mailbox_id, uid, message_id, modseq)
				SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 AND uid = $3)
				ON CONFLICT (account_id, mailbox_id, uid) DO NOTHING`, acct, t.Mailbox, int64(t.UID), t.Message, int64(modseqOf[t.Mailbox]))
		}
		if batch.Len() > 0 {
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return fmt.Errorf("apply inserts and flags: %w", err)
			}
		}
		if len(expungedIDs) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM messages m WHERE m.account_id = $1 AND m.id = ANY($2)
				AND NOT EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.account_id = $1 AND mm.message_id = m.id)`, acct, expungedIDs); err != nil {
				return fmt.Errorf("drop expunged messages: %w", err)
			}
		}
		for _, t := range targets {
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET uid_next = greatest(uid_next, $3), highest_modseq = $4 WHERE account_id = $1 AND id = $2`,
				acct, t.ID, int64(t.UIDNext), int64(t.ModSeq)); err != nil {
				return fmt.Errorf("advance mailbox counters: %w", err)
			}
			if err := notify(ctx, tx, acct, t.ID, t.ModSeq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply sync batch: %w", err)
	}
	return nil
}

// SetSyncPoint records that this side's mailbox was agreed with peer up to modseq.
func (s *Store) SetSyncPoint(ctx context.Context, peer string, acct AccountID, mbox MailboxID, modseq ModSeq) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO sync_points (peer, account_id, mailbox_id, modseq) VALUES ($1, $2, $3, $4)
		ON CONFLICT (peer, account_id, mailbox_id) DO UPDATE SET modseq = EXCLUDED.modseq`, peer, acct, mbox, int64(modseq))
	if err != nil {
		return fmt.Errorf("set sync point: %w", err)
	}
	return nil
}

// SyncStats are the worker's counters, kept on each side.
type SyncStats struct {
	Peer           string
	LastRoundAt    time.Time
	LastError      string
	LastErrorAt    time.Time
	Rounds         int64
	MessagesCopied int64
	BytesCopied    int64
	Clashes        int64
}

// AddSyncStats adds a round's counts (and its error, if any) to the stored counters.
func (s *Store) AddSyncStats(ctx context.Context, peer string, d SyncStats) error {
	var errAt *time.Time
	if d.LastError != "" {
		now := time.Now()
		errAt = &now
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO sync_status (peer, last_round_at, last_error, last_error_at, rounds, messages_copied, bytes_copied, clashes)
		VALUES ($1, now(), $2, $3, $4, $5, $6, $7)
		ON CONFLICT (peer) DO UPDATE SET last_round_at = now(),
			last_error = CASE WHEN $2 = '' THEN sync_status.last_error ELSE $2 END,
			last_error_at = coalesce($3, sync_status.last_error_at),
			rounds = sync_status.rounds + $4, messages_copied = sync_status.messages_copied + $5,
			bytes_copied = sync_status.bytes_copied + $6, clashes = sync_status.clashes + $7`,
		peer, d.LastError, errAt, d.Rounds, d.MessagesCopied, d.BytesCopied, d.Clashes)
	if err != nil {
		return fmt.Errorf("record sync stats: %w", err)
	}
	return nil
}

// SyncStatus reads the stored worker counters for every peer.
func (s *Store) SyncStatus(ctx context.Context) ([]SyncStats, error) {
	rows, err := s.pool.Query(ctx, `SELECT peer, coalesce(last_round_at, 'epoch'), last_error, coalesce(last_error_at, 'epoch'), rounds, messages_copied, bytes_copied, clashes FROM sync_status ORDER BY peer`)
	if err != nil {
		return nil, fmt.Errorf("read sync status: %w", err)
	}
	st, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SyncStats, error) {
		var x SyncStats
		return x, r.Scan(&x.Peer, &x.LastRoundAt, &x.LastError, &x.LastErrorAt, &x.Rounds, &x.MessagesCopied, &x.BytesCopied, &x.Clashes)
	})
	if err != nil {
		return nil, fmt.Errorf("read sync status: %w", err)
	}
	return st, nil
}

func nonNil(flags []string) []string {
	if flags == nil {
		return []string{}
	}
	return flags
}

// SyncLagInfo is how much of this side waits to be replicated to a peer.
type SyncLagInfo struct {
	Mailboxes int64     // mailboxes with changes above their sync point
	Changes   int64     // messages and tombstones above their sync points
	Oldest    time.Time // creation of the oldest pending mailbox change, approximately
}

// SyncLag measures what waits to be replicated to peer.
func (s *Store) SyncLag(ctx context.Context, peer string) (SyncLagInfo, error) {
	var l SyncLagInfo
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, `WITH pending AS (
			SELECT m.account_id, m.id, coalesce(sp.modseq, 0) AS since FROM mailboxes m
			LEFT JOIN sync_points sp ON sp.peer = $1 AND sp.account_id = m.account_id AND sp.mailbox_id = m.id
			WHERE m.highest_modseq > coalesce(sp.modseq, 0))
		SELECT (SELECT count(*) FROM pending),
			(SELECT count(*) FROM pending p JOIN mailbox_messages mm ON mm.account_id = p.account_id AND mm.mailbox_id = p.id AND mm.modseq > p.since)
			+ (SELECT count(*) FROM pending p JOIN expunged e ON e.account_id = p.account_id AND e.mailbox_id = p.id AND e.modseq > p.since),
			(SELECT min(mm.changed_at) FROM pending p JOIN mailbox_messages mm ON mm.account_id = p.account_id AND mm.mailbox_id = p.id AND mm.modseq > p.since)`,
		peer).Scan(&l.Mailboxes, &l.Changes, &oldest)
	if err != nil {
		return SyncLagInfo{}, fmt.Errorf("measure replication lag: %w", err)
	}
	if oldest != nil {
		l.Oldest = *oldest
	}
	return l, nil
}

// bulkInsert stores the bodies, message rows and placements of inserts with one statement
// each: a catch-up of thousands of messages must not cost a statement per row.
func bulkInsert(ctx context.Context, tx pgx.Tx, acct AccountID, ins []SyncInsert, modseqOf map[MailboxID]ModSeq) error {
	if len(ins) == 0 {
		return nil
	}
	var bDigest, bData [][]byte
	var bSize []int64
	var mID []MessageID
	var mDigest [][]byte
	var mSize []int64
	var mDate []time.Time
	var mSent []*time.Time
	var mEnv, mBS []json.RawMessage
	var mHdr, mText []string
	pMbox := make([]MailboxID, len(ins))
	pUID := make([]int64, len(ins))
	pMsg := make([]MessageID, len(ins))
	pFlags := make([]string, len(ins))
	pChanged := make([]time.Time, len(ins))
	pModSeq := make([]int64, len(ins))
	for i, in := range ins {
		if in.Body != nil {
			bDigest, bData, bSize = append(bDigest, in.Record.Digest), append(bData, in.Body), append(bSize, int64(len(in.Body)))
		}
		if r := in.Record; r != nil {
			mID, mDigest, mSize, mDate, mSent = append(mID, r.ID), append(mDigest, r.Digest), append(mSize, r.Size), append(mDate, r.InternalDate), append(mSent, r.SentDate)
			mEnv, mBS, mHdr, mText = append(mEnv, r.Envelope), append(mBS, r.BodyStructure), append(mHdr, r.SearchHeader), append(mText, r.SearchText)
		}
		fj, err := json.Marshal(nonNil(in.Flags))
		if err != nil {
			return fmt.Errorf("encode flags: %w", err)
		}
		pMbox[i], pUID[i], pMsg[i], pFlags[i], pChanged[i], pModSeq[i] = in.Mailbox, int64(in.UID), in.Message, string(fj), in.ChangedAt, int64(modseqOf[in.Mailbox])
	}
	if len(bDigest) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO bodies (account_id, digest, size, data)
			SELECT $1, d, s, x FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) AS b(d, s, x)
			ON CONFLICT (account_id, digest) DO NOTHING`, acct, bDigest, bSize, bData); err != nil {
			return fmt.Errorf("store bodies: %w", err)
		}
	}
	if len(mID) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO messages (account_id, id, digest, size, internal_date, sent_date, envelope, bodystructure, search_header, search_text)
			SELECT $1, i, d, s, t, st, e, bs, h, x FROM unnest($2::uuid[], $3::bytea[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], $7::jsonb[], $8::jsonb[], $9::text[], $10::text[])
				AS m(i, d, s, t, st, e, bs, h, x)
			ON CONFLICT (account_id, id) DO NOTHING`, acct, mID, mDigest, mSize, mDate, mSent, mEnv, mBS, mHdr, mText); err != nil {
			return fmt.Errorf("store messages: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mailbox_messages (account_id, mailbox_id, uid, message_id, flags, changed_at, modseq)
		SELECT $1, mb, uid, msg, f, c, ms FROM (
			SELECT mb, uid, msg, ARRAY(SELECT jsonb_array_elements_text(fj::jsonb)) AS f, c, ms
			FROM unnest($2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::timestamptz[], $7::bigint[]) AS p(mb, uid, msg, fj, c, ms)) q`,
		acct, pMbox, pUID, pMsg, pFlags, pChanged, pModSeq); err != nil {
		return fmt.Errorf("place messages: %w", err)
	}
	return nil
}

// ResetSyncPoint forgets what this side agreed with peer about a mailbox, so the next round
// reads all of it again (after the mailbox was re-created on the peer).
func (s *Store) ResetSyncPoint(ctx context.Context, peer string, acct AccountID, mbox MailboxID) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sync_points WHERE peer = $1 AND account_id = $2 AND mailbox_id = $3`, peer, acct, mbox); err != nil {
		return fmt.Errorf("reset sync point: %w", err)
	}
	return nil
}
