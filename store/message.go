package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

const (
	qInsertBody = `INSERT INTO bodies (account_id, digest, size, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (account_id, digest) DO NOTHING`
	qInsertMessage = `INSERT INTO messages (account_id, id, digest, size, internal_date, sent_date, envelope, bodystructure, search_header, search_text)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	qInsertPlacement = `INSERT INTO mailbox_messages (account_id, mailbox_id, uid, message_id, flags, modseq) VALUES ($1, $2, $3, $4, $5, $6)`
	qAllUIDs         = `SELECT uid FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 ORDER BY uid`
	qBody            = `SELECT data FROM bodies WHERE account_id = $1 AND digest = $2`
	qBodies          = `SELECT b.data FROM unnest($2::bytea[]) WITH ORDINALITY AS d(digest, i)
		LEFT JOIN bodies b ON b.account_id = $1 AND b.digest = d.digest ORDER BY d.i`

	// qSnapshot reads a mailbox row and its UIDs in one statement, hence from one snapshot.
	qSnapshot = `SELECT ` + qMailboxColumns + `,
		ARRAY(SELECT uid FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 ORDER BY uid)
		FROM mailboxes WHERE account_id = $1 AND id = $2`

	// qChangesSince reads, in one statement (one snapshot), the mailbox's counters (kind 0),
	// the tombstones (kind 1) and the new or changed messages (kind 2) above MODSEQ $3. When
	// HIGHESTMODSEQ is not above $3, only the counters row comes back.
	qChangesSince = `WITH mb AS (SELECT highest_modseq, uid_next FROM mailboxes WHERE account_id = $1 AND id = $2)
		SELECT 0 AS kind, highest_modseq AS num, uid_next AS modseq, NULL::uuid AS message_id, NULL::text[] AS flags FROM mb
		UNION ALL
		SELECT 1, uid, modseq, NULL, NULL FROM expunged
			WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3 AND (SELECT highest_modseq FROM mb) > $3
		UNION ALL
		SELECT 2, uid, modseq, message_id, flags FROM mailbox_messages
			WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3 AND (SELECT highest_modseq FROM mb) > $3
		ORDER BY kind, num`

	// qFirstUnseen uses the partial index mailbox_messages_unseen (00003_search.sql), whose
	// predicate it repeats word for word.
	qFirstUnseen = `SELECT uid FROM mailbox_messages
		WHERE account_id = $1 AND mailbox_id = $2 AND uid <= $3 AND NOT (flags @> ARRAY['\Seen'])
		ORDER BY uid LIMIT 1`

	qVacuum = `VACUUM (ANALYZE) mailboxes, mailbox_messages, messages, bodies, expunged`
)

// Append stores a message in the named mailbox (ErrNoSuchMailbox). The body is stored once
// per account whatever the number of copies.
func (s *Store) Append(ctx context.Context, acct AccountID, mailbox string, msg NewMessage) (AppendResult, error) {
	flags, err := CanonicalFlags(msg.Flags)
	if err != nil {
		return AppendResult{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return AppendResult{}, fmt.Errorf("generate message id: %w", err)
	}
	var res AppendResult
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := insertMessage(ctx, tx, acct, id, &msg); err != nil {
			return err
		}
		// Lock the mailbox last and briefly: the lock orders UIDs by commit.
		m, err := lockMailboxByName(ctx, tx, acct, mailbox)
		if err != nil {
			return err
		}
		uid, modseq, err := allocate(ctx, tx, acct, m.ID, 1)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, qInsertPlacement, acct, m.ID, int64(uid), id, flags, int64(modseq)); err != nil {
			return fmt.Errorf("place message: %w", err)
		}
		res = AppendResult{Mailbox: m.ID, UIDValidity: m.UIDValidity, UID: uid, ModSeq: modseq, Message: id}
		return nil
	})
	if err != nil {
		return AppendResult{}, fmt.Errorf("append to %q: %w", mailbox, err)
	}
	return res, nil
}

// insertMessage stores the body (if new) and the message row, in one round trip.
func insertMessage(ctx context.Context, tx pgx.Tx, acct AccountID, id MessageID, msg *NewMessage) error {
	digest := sha256.Sum256(msg.Raw)
	date := msg.InternalDate
	if date.IsZero() {
		date = time.Now()
	}
	var sent *time.Time
	if !msg.SentDate.IsZero() {
		sent = &msg.SentDate
	}
	env, bs := msg.Envelope, msg.BodyStructure
	if len(env) == 0 {
		env = json.RawMessage(`{}`)
	}
	if len(bs) == 0 {
		bs = json.RawMessage(`{}`)
	}
	batch := &pgx.Batch{}
	batch.Queue(qInsertBody, acct, digest[:], len(msg.Raw), msg.Raw)
	batch.Queue(qInsertMessage, acct, id, digest[:], len(msg.Raw), date, sent, env, bs,
		cleanText(msg.SearchHeader), cleanText(msg.SearchText))
	res := tx.SendBatch(ctx, batch)
	if _, err := res.Exec(); err != nil {
		res.Close()
		return fmt.Errorf("store body: %w", err)
	}
	if _, err := res.Exec(); err != nil {
		res.Close()
		return fmt.Errorf("store message: %w", err)
	}
	if err := res.Close(); err != nil {
		return fmt.Errorf("store message: %w", err)
	}
	return nil
}

// cleanText removes NUL bytes and invalid UTF-8, which PostgreSQL text cannot hold.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "")
}

func allUIDs(ctx context.Context, q pgx.Tx, acct AccountID, mbox MailboxID) ([]UID, error) {
	rows, err := q.Query(ctx, qAllUIDs, acct, mbox)
	if err != nil {
		return nil, fmt.Errorf("list uids: %w", err)
	}
	uids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UID, error) {
		var u int64
		err := r.Scan(&u)
		return UID(u), err
	})
	if err != nil {
		return nil, fmt.Errorf("list uids: %w", err)
	}
	return uids, nil
}

// Snapshot reads the mailbox row and its UIDs from one snapshot of the database (for
// SELECT), in one statement.
func (s *Store) Snapshot(ctx context.Context, acct AccountID, mbox MailboxID) (Snapshot, error) {
	var m Mailbox
	var uidv, uidNext, modseq int64
	var uids []int64
	err := s.pool.QueryRow(ctx, qSnapshot, acct, mbox).Scan(&m.ID, &m.Name, &uidv, &uidNext, &modseq, &m.Subscribed, &m.SpecialUse, &uids)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNoSuchMailbox
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot mailbox %s: %w", mbox, err)
	}
	m.Account, m.UIDValidity, m.UIDNext, m.HighestModSeq = acct, uint32(uidv), UID(uidNext), ModSeq(modseq)
	snap := Snapshot{Mailbox: m, UIDs: make([]UID, len(uids))}
	for i, u := range uids {
		snap.UIDs[i] = UID(u)
	}
	return snap, nil
}

// ChangesSince returns, from one snapshot, the tombstones and the new or changed messages
// whose MODSEQ is above since. It is one statement, so one round trip.
func (s *Store) ChangesSince(ctx context.Context, acct AccountID, mbox MailboxID, since ModSeq) (Changes, error) {
	var ch Changes
	rows, err := s.pool.Query(ctx, qChangesSince, acct, mbox, int64(since))
	if err != nil {
		return Changes{}, fmt.Errorf("read changes of mailbox %s: %w", mbox, err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var (
			kind        int32
			num, modseq int64
			id          *MessageID
			flags       []string
		)
		if err := rows.Scan(&kind, &num, &modseq, &id, &flags); err != nil {
			return Changes{}, fmt.Errorf("read changes of mailbox %s: %w", mbox, err)
		}
		switch kind {
		case 0:
			found = true
			ch.HighestModSeq, ch.UIDNext = ModSeq(num), UID(modseq)
		case 1:
			ch.Expunged = append(ch.Expunged, UID(num))
		case 2:
			st := MessageState{UID: UID(num), Flags: flags, ModSeq: ModSeq(modseq)}
			if id != nil {
				st.Message = *id
			}
			ch.Changed = append(ch.Changed, st)
		}
	}
	if err := rows.Err(); err != nil {
		return Changes{}, fmt.Errorf("read changes of mailbox %s: %w", mbox, err)
	}
	if !found {
		return Changes{}, fmt.Errorf("read changes of mailbox %s: %w", mbox, ErrNoSuchMailbox)
	}
	return ch, nil
}

// FirstUnseen returns the lowest UID of a message without \Seen among UIDs up to max, or 0
// when there is none (for SELECT's [UNSEEN n]).
func (s *Store) FirstUnseen(ctx context.Context, acct AccountID, mbox MailboxID, max UID) (UID, error) {
	var u int64
	err := s.pool.QueryRow(ctx, qFirstUnseen, acct, mbox, int64(max)).Scan(&u)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find first unseen message in mailbox %s: %w", mbox, err)
	}
	return UID(u), nil
}

// Vacuum vacuums and analyzes the message tables: it refreshes the planner's statistics and
// merges the pending entries of the trigram indexes, which every search otherwise scans.
// Autovacuum does this eventually; call it after a bulk load.
func (s *Store) Vacuum(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, qVacuum); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	return nil
}

func scanState(r pgx.CollectableRow) (MessageState, error) {
	var st MessageState
	var uid, modseq int64
	err := r.Scan(&uid, &st.Message, &st.Flags, &modseq)
	st.UID, st.ModSeq = UID(uid), ModSeq(modseq)
	return st, err
}

// uidCond returns a SQL condition on column col matching set, appending its arguments.
func uidCond(col string, set UIDSet, args []any) (string, []any) {
	if len(set) == 0 {
		return "false", args
	}
	if len(set) > 32 {
		starts := make([]int64, len(set))
		stops := make([]int64, len(set))
		for i, r := range set {
			starts[i], stops[i] = int64(r.Start), stopOf(r)
		}
		args = append(args, starts, stops)
		n := len(args)
		return fmt.Sprintf("EXISTS (SELECT 1 FROM unnest($%d::bigint[], $%d::bigint[]) AS r(a, b) WHERE %s BETWEEN r.a AND r.b)", n-1, n, col), args
	}
	parts := make([]string, 0, len(set))
	for _, r := range set {
		if r.Start == r.Stop {
			args = append(args, int64(r.Start))
			parts = append(parts, col+" = $"+strconv.Itoa(len(args)))
			continue
		}
		args = append(args, int64(r.Start), stopOf(r))
		parts = append(parts, fmt.Sprintf("%s BETWEEN $%d AND $%d", col, len(args)-1, len(args)))
	}
	return "(" + strings.Join(parts, " OR ") + ")", args
}

func stopOf(r UIDRange) int64 {
	if r.Stop == 0 {
		return 1<<32 - 1
	}
	return int64(r.Stop)
}

// FetchMeta calls fn for each live message whose UID is in uids, in ascending UID order.
// fn must not call back into the store, and must copy what it keeps: *MessageMeta and the
// byte slices it holds (Digest, Envelope, BodyStructure) are reused for the next message;
// Flags is a new slice for each message. Envelope and BodyStructure are the stored JSON as it
// is, not validated again.
func (s *Store) FetchMeta(ctx context.Context, acct AccountID, mbox MailboxID, uids UIDSet, fields MetaFields, fn func(*MessageMeta) error) error {
	cols := "mm.uid, mm.message_id, mm.flags, mm.modseq, m.size, m.internal_date, m.digest"
	if fields.Envelope {
		cols += ", m.envelope::text"
	} else {
		cols += ", NULL::text"
	}
	if fields.BodyStructure {
		cols += ", m.bodystructure::text"
	} else {
		cols += ", NULL::text"
	}
	cond, args := uidCond("mm.uid", uids, []any{acct, mbox})
	q := `SELECT ` + cols + ` FROM mailbox_messages mm JOIN messages m ON m.account_id = mm.account_id AND m.id = mm.message_id
		WHERE mm.account_id = $1 AND mm.mailbox_id = $2 AND ` + cond + ` ORDER BY mm.uid`
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("fetch messages: %w", err)
	}
	defer rows.Close()
	var (
		meta             MessageMeta
		uid, modseq      int64
		digest, env, bsj pgtype.DriverBytes
	)
	for rows.Next() {
		if err := rows.Scan(&uid, &meta.Message, &meta.Flags, &modseq, &meta.Size, &meta.InternalDate, &digest, &env, &bsj); err != nil {
			return fmt.Errorf("fetch messages: %w", err)
		}
		meta.UID, meta.ModSeq = UID(uid), ModSeq(modseq)
		meta.Digest = append(meta.Digest[:0], digest...)
		meta.Envelope = appendOrNil(meta.Envelope, env)
		meta.BodyStructure = appendOrNil(meta.BodyStructure, bsj)
		if err := fn(&meta); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("fetch messages: %w", err)
	}
	return nil
}

// appendOrNil copies src into buf's storage, keeping nil (SQL NULL) as nil.
func appendOrNil(buf, src []byte) []byte {
	if src == nil {
		return nil
	}
	return append(buf[:0], src...)
}

// OpenBody returns the raw bytes of a message body and their size (ErrNoSuchMessage).
func (s *Store) OpenBody(ctx context.Context, acct AccountID, digest []byte) (io.ReadCloser, int64, error) {
	var data []byte
	err := s.pool.QueryRow(ctx, qBody, acct, digest).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, fmt.Errorf("read body: %w", ErrNoSuchMessage)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read body: %w", err)
	}
	return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
}

// ReadBodies returns the bodies with the given digests, in the same order, in one query; a
// body that does not exist is nil. The caller bounds the total size.
func (s *Store) ReadBodies(ctx context.Context, acct AccountID, digests [][]byte) ([][]byte, error) {
	rows, err := s.pool.Query(ctx, qBodies, acct, digests)
	if err != nil {
		return nil, fmt.Errorf("read bodies: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("read bodies: %w", err)
	}
	if len(out) != len(digests) {
		return nil, fmt.Errorf("read bodies: got %d for %d digests", len(out), len(digests))
	}
	return out, nil
}

// StoreFlags changes the flags of the messages at uids and returns those whose flags changed,
// with their new flags and MODSEQ (all changed messages share one new MODSEQ).
func (s *Store) StoreFlags(ctx context.Context, acct AccountID, mbox MailboxID, uids UIDSet, op FlagOp, flags []string) ([]MessageState, error) {
	flags, err := CanonicalFlags(flags)
	if err != nil {
		return nil, err
	}
	var changed []MessageState
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		changed = changed[:0]
		if _, err := lockMailbox(ctx, tx, acct, mbox); err != nil {
			return err
		}
		cond, args := uidCond("uid", uids, []any{acct, mbox})
		rows, err := tx.Query(ctx, `SELECT uid, message_id, flags, modseq FROM mailbox_messages
			WHERE account_id = $1 AND mailbox_id = $2 AND `+cond+` ORDER BY uid`, args...)
		if err != nil {
			return err
		}
		cur, err := pgx.CollectRows(rows, scanState)
		if err != nil {
			return err
		}
		for _, st := range cur {
			nf := applyFlags(st.Flags, op, flags)
			if !slices.Equal(nf, st.Flags) {
				st.Flags = nf
				changed = append(changed, st)
			}
		}
		if len(changed) == 0 {
			return nil
		}
		_, modseq, err := allocate(ctx, tx, acct, mbox, 0)
		if err != nil {
			return err
		}
		uidList := make([]int64, len(changed))
		flagList := make([]string, len(changed))
		for i := range changed {
			changed[i].ModSeq = modseq
			uidList[i] = int64(changed[i].UID)
			fj, _ := json.Marshal(changed[i].Flags)
			flagList[i] = string(fj)
		}
		_, err = tx.Exec(ctx, `UPDATE mailbox_messages mm SET flags = ARRAY(SELECT jsonb_array_elements_text(u.f::jsonb)), modseq = $3, changed_at = now()
			FROM unnest($4::bigint[], $5::text[]) AS u(uid, f)
			WHERE mm.account_id = $1 AND mm.mailbox_id = $2 AND mm.uid = u.uid`, acct, mbox, int64(modseq), uidList, flagList)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store flags in mailbox %s: %w", mbox, err)
	}
	return changed, nil
}

// Expunge removes the \Deleted messages of a mailbox (only those in uids when uids is not
// nil), leaving tombstones. It returns the expunged UIDs in ascending order.
func (s *Store) Expunge(ctx context.Context, acct AccountID, mbox MailboxID, uids UIDSet) ([]UID, error) {
	var gone []UID
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := lockMailbox(ctx, tx, acct, mbox); err != nil {
			return err
		}
		cond, args := "true", []any{acct, mbox}
		if uids != nil {
			cond, args = uidCond("uid", uids, args)
		}
		rows, err := tx.Query(ctx, `SELECT uid FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2
			AND '\Deleted' = ANY(flags) AND `+cond+` ORDER BY uid`, args...)
		if err != nil {
			return err
		}
		gone, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (UID, error) {
			var u int64
			err := r.Scan(&u)
			return UID(u), err
		})
		if err != nil || len(gone) == 0 {
			return err
		}
		_, modseq, err := allocate(ctx, tx, acct, mbox, 0)
		if err != nil {
			return err
		}
		return expungeLocked(ctx, tx, acct, mbox, gone, modseq, true)
	})
	if err != nil {
		return nil, fmt.Errorf("expunge mailbox %s: %w", mbox, err)
	}
	return gone, nil
}

// expungeLocked removes the given UIDs of a locked mailbox, leaving tombstones at modseq.
// With dropMessages, the message rows go too (they are in no other mailbox).
func expungeLocked(ctx context.Context, tx pgx.Tx, acct AccountID, mbox MailboxID, uids []UID, modseq ModSeq, dropMessages bool) error {
	list := make([]int64, len(uids))
	for i, u := range uids {
		list[i] = int64(u)
	}
	q := `WITH gone AS (DELETE FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 AND uid = ANY($3) RETURNING uid, message_id),
		tomb AS (INSERT INTO expunged (account_id, mailbox_id, uid, message_id, modseq) SELECT $1, $2, uid, message_id, $4 FROM gone
			ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET message_id = EXCLUDED.message_id, modseq = EXCLUDED.modseq)
		SELECT message_id FROM gone`
	rows, err := tx.Query(ctx, q, acct, mbox, list, int64(modseq))
	if err != nil {
		return fmt.Errorf("expunge: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return fmt.Errorf("expunge: %w", err)
	}
	if dropMessages && len(ids) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE account_id = $1 AND id = ANY($2)`, acct, ids); err != nil {
			return fmt.Errorf("drop expunged messages: %w", err)
		}
	}
	return nil
}

// lockTwo locks two mailboxes in id order (so concurrent COPY/MOVE cannot deadlock).
func lockTwo(ctx context.Context, tx pgx.Tx, acct AccountID, src MailboxID, dest string) (Mailbox, Mailbox, error) {
	d, err := scanMailbox(tx.QueryRow(ctx, qMailboxByName, acct, CanonicalMailboxName(dest)), acct)
	if errors.Is(err, pgx.ErrNoRows) {
		return Mailbox{}, Mailbox{}, fmt.Errorf("mailbox %q: %w", dest, ErrNoSuchMailbox)
	}
	if err != nil {
		return Mailbox{}, Mailbox{}, err
	}
	first, second := src, d.ID
	if bytes.Compare(second[:], first[:]) < 0 {
		first, second = second, first
	}
	a, err := lockMailbox(ctx, tx, acct, first)
	if err != nil {
		return Mailbox{}, Mailbox{}, err
	}
	b := a
	if second != first {
		if b, err = lockMailbox(ctx, tx, acct, second); err != nil {
			return Mailbox{}, Mailbox{}, err
		}
	}
	if a.ID == src {
		return a, b, nil
	}
	return b, a, nil
}

// selectUIDs lists the live UIDs of a mailbox in set.
func selectUIDs(ctx context.Context, tx pgx.Tx, acct AccountID, mbox MailboxID, set UIDSet) ([]UID, error) {
	cond, args := uidCond("uid", set, []any{acct, mbox})
	rows, err := tx.Query(ctx, `SELECT uid FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 AND `+cond+` ORDER BY uid`, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (UID, error) {
		var u int64
		err := r.Scan(&u)
		return UID(u), err
	})
}

// Copy copies messages into the named mailbox: new message UUIDs, shared bodies, the same
// flags. The result lists source and destination UIDs in the same order.
func (s *Store) Copy(ctx context.Context, acct AccountID, src MailboxID, uids UIDSet, dest string) (CopyResult, error) {
	var res CopyResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, d, err := lockTwo(ctx, tx, acct, src, dest)
		if err != nil {
			return err
		}
		srcUIDs, err := selectUIDs(ctx, tx, acct, src, uids)
		if err != nil {
			return err
		}
		res = CopyResult{Dest: d.ID, UIDValidity: d.UIDValidity, SrcUIDs: srcUIDs}
		if len(srcUIDs) == 0 {
			return nil
		}
		first, modseq, err := allocate(ctx, tx, acct, d.ID, len(srcUIDs))
		if err != nil {
			return err
		}
		res.DestModSeq = modseq
		srcList := make([]int64, len(srcUIDs))
		dstList := make([]int64, len(srcUIDs))
		ids := make([]uuid.UUID, len(srcUIDs))
		for i, u := range srcUIDs {
			srcList[i], dstList[i] = int64(u), int64(first)+int64(i)
			if ids[i], err = uuid.NewV7(); err != nil {
				return err
			}
			res.DestUIDs = append(res.DestUIDs, first+UID(i))
		}
		_, err = tx.Exec(ctx, `WITH src AS (
				SELECT c.new_uid, c.new_id, mm.flags, m.*
				FROM unnest($3::bigint[], $4::bigint[], $5::uuid[]) AS c(src_uid, new_uid, new_id)
				JOIN mailbox_messages mm ON mm.account_id = $1 AND mm.mailbox_id = $2 AND mm.uid = c.src_uid
				JOIN messages m ON m.account_id = mm.account_id AND m.id = mm.message_id),
			ins AS (INSERT INTO messages (account_id, id, digest, size, internal_date, sent_date, envelope, bodystructure, search_header, search_text)
				SELECT account_id, new_id, digest, size, internal_date, sent_date, envelope, bodystructure, search_header, search_text FROM src)
			INSERT INTO mailbox_messages (account_id, mailbox_id, uid, message_id, flags, modseq)
				SELECT $1, $6, new_uid, new_id, flags, $7 FROM src`,
			acct, src, srcList, dstList, ids, d.ID, int64(modseq))
		return err
	})
	if err != nil {
		return CopyResult{}, fmt.Errorf("copy to %q: %w", dest, err)
	}
	return res, nil
}

// Move moves messages into the named mailbox, keeping their UUIDs and flags, and expunges
// them from src with tombstones.
func (s *Store) Move(ctx context.Context, acct AccountID, src MailboxID, uids UIDSet, dest string) (CopyResult, error) {
	var res CopyResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		sm, d, err := lockTwo(ctx, tx, acct, src, dest)
		if err != nil {
			return err
		}
		srcUIDs, err := selectUIDs(ctx, tx, acct, src, uids)
		if err != nil {
			return err
		}
		if sm.ID == d.ID {
			return fmt.Errorf("%w: cannot move into the same mailbox", ErrMailboxExists)
		}
		if len(srcUIDs) == 0 {
			res = CopyResult{Dest: d.ID, UIDValidity: d.UIDValidity}
			return nil
		}
		res, err = moveLocked(ctx, tx, sm, d, srcUIDs)
		return err
	})
	if err != nil {
		return CopyResult{}, fmt.Errorf("move to %q: %w", dest, err)
	}
	return res, nil
}

// moveLocked moves srcUIDs (live, ascending) from src to dest; both are locked.
func moveLocked(ctx context.Context, tx pgx.Tx, src, dest Mailbox, srcUIDs []UID) (CopyResult, error) {
	acct := src.Account
	first, dModseq, err := allocate(ctx, tx, acct, dest.ID, len(srcUIDs))
	if err != nil {
		return CopyResult{}, err
	}
	_, sModseq, err := allocate(ctx, tx, acct, src.ID, 0)
	if err != nil {
		return CopyResult{}, err
	}
	res := CopyResult{Dest: dest.ID, UIDValidity: dest.UIDValidity, SrcUIDs: srcUIDs, DestModSeq: dModseq}
	srcList := make([]int64, len(srcUIDs))
	dstList := make([]int64, len(srcUIDs))
	for i, u := range srcUIDs {
		srcList[i], dstList[i] = int64(u), int64(first)+int64(i)
		res.DestUIDs = append(res.DestUIDs, first+UID(i))
	}
	_, err = tx.Exec(ctx, `WITH moved AS (
			UPDATE mailbox_messages mm SET mailbox_id = $5, uid = c.new_uid, modseq = $6, changed_at = now(), sync_placed = false
			FROM unnest($3::bigint[], $4::bigint[]) AS c(src_uid, new_uid)
			WHERE mm.account_id = $1 AND mm.mailbox_id = $2 AND mm.uid = c.src_uid
			RETURNING c.src_uid, mm.message_id)
		INSERT INTO expunged (account_id, mailbox_id, uid, message_id, modseq)
			SELECT $1, $2, src_uid, message_id, $7 FROM moved
		ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET message_id = EXCLUDED.message_id, modseq = EXCLUDED.modseq`,
		acct, src.ID, srcList, dstList, dest.ID, int64(dModseq), int64(sModseq))
	if err != nil {
		return CopyResult{}, fmt.Errorf("move messages: %w", err)
	}
	return res, nil
}
