package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const (
	qMailboxColumns = `id, name, uidvalidity, uid_next, highest_modseq, subscribed, special_use`
	qListMailboxes  = `SELECT ` + qMailboxColumns + ` FROM mailboxes WHERE account_id = $1 ORDER BY name`
	qMailboxByName  = `SELECT ` + qMailboxColumns + ` FROM mailboxes WHERE account_id = $1 AND name = $2`
	qMailboxByID    = `SELECT ` + qMailboxColumns + ` FROM mailboxes WHERE account_id = $1 AND id = $2`
	qNameHistory    = `SELECT uidvalidity, uid_next, modseq FROM mailbox_names WHERE account_id = $1 AND name = $2 FOR UPDATE`
	qInsertMailbox  = `INSERT INTO mailboxes (account_id, id, name, uidvalidity, uid_next, highest_modseq, subscribed, special_use) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	qRecordName     = `INSERT INTO mailbox_names (account_id, name, uidvalidity, uid_next, modseq) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (account_id, name) DO UPDATE SET uid_next = greatest(mailbox_names.uid_next, EXCLUDED.uid_next), modseq = greatest(mailbox_names.modseq, EXCLUDED.modseq)`
	qSetSubscribed = `UPDATE mailboxes SET subscribed = $3, subscribed_changed_at = CASE WHEN subscribed = $3 THEN subscribed_changed_at ELSE now() END WHERE account_id = $1 AND name = $2`
	qStatus        = `SELECT count(*), count(*) FILTER (WHERE NOT '\Seen' = ANY(flags)), count(*) FILTER (WHERE '\Deleted' = ANY(flags)), coalesce(sum(m.size), 0)
		FROM mailbox_messages mm JOIN messages m ON m.account_id = mm.account_id AND m.id = mm.message_id
		WHERE mm.account_id = $1 AND mm.mailbox_id = $2`
)

// UIDValidityFor derives a mailbox's UIDVALIDITY from its account and name, so two replicas
// that create the same name independently agree on it without talking (DESIGN: no conflict
// resolution ever changes UIDVALIDITY).
func UIDValidityFor(acct AccountID, name string) uint32 {
	h := fnv.New32a()
	h.Write(acct[:])
	h.Write([]byte(CanonicalMailboxName(name)))
	v := h.Sum32() &^ (1 << 31) // keep it positive for clients that use int32
	if v == 0 {
		v = 1
	}
	return v
}

var validSpecialUse = map[string]bool{"": true, `\All`: true, `\Archive`: true, `\Drafts`: true, `\Flagged`: true, `\Junk`: true, `\Sent`: true, `\Trash`: true}

// createMailbox creates a mailbox, continuing above every UID its name ever used.
func createMailbox(ctx context.Context, tx pgx.Tx, acct AccountID, name, specialUse string, subscribed bool) (Mailbox, error) {
	name = CanonicalMailboxName(name)
	if err := ValidateMailboxName(name); err != nil {
		return Mailbox{}, err
	}
	if !validSpecialUse[specialUse] {
		return Mailbox{}, fmt.Errorf("%w: unknown special-use attribute %q", ErrBadMailboxName, specialUse)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Mailbox{}, fmt.Errorf("generate mailbox id: %w", err)
	}
	return insertMailbox(ctx, tx, Mailbox{ID: id, Account: acct, Name: name, Subscribed: subscribed, SpecialUse: specialUse})
}

// insertMailbox inserts m with the UIDVALIDITY and UIDNEXT its name's history dictates.
func insertMailbox(ctx context.Context, tx pgx.Tx, m Mailbox) (Mailbox, error) {
	var uidv, uidNext, modseq int64
	err := tx.QueryRow(ctx, qNameHistory, m.Account, m.Name).Scan(&uidv, &uidNext, &modseq)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		uidv, uidNext, modseq = int64(UIDValidityFor(m.Account, m.Name)), 1, 1
	case err != nil:
		return Mailbox{}, fmt.Errorf("read name history: %w", err)
	}
	if m.UIDValidity == 0 {
		m.UIDValidity = uint32(uidv)
	}
	m.UIDNext = max(m.UIDNext, UID(uidNext))
	m.HighestModSeq = max(m.HighestModSeq, ModSeq(modseq))
	_, err = tx.Exec(ctx, qInsertMailbox, m.Account, m.ID, m.Name, int64(m.UIDValidity), int64(m.UIDNext), int64(m.HighestModSeq), m.Subscribed, m.SpecialUse)
	if isUniqueViolation(err) {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", m.Name, ErrMailboxExists)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("insert mailbox %q: %w", m.Name, err)
	}
	if err := recordName(ctx, tx, m); err != nil {
		return Mailbox{}, err
	}
	return m, nil
}

// recordName remembers the highest UIDNEXT and MODSEQ used under m's name.
func recordName(ctx context.Context, tx pgx.Tx, m Mailbox) error {
	if _, err := tx.Exec(ctx, qRecordName, m.Account, m.Name, int64(m.UIDValidity), int64(m.UIDNext), int64(m.HighestModSeq)); err != nil {
		return fmt.Errorf("record mailbox name %q: %w", m.Name, err)
	}
	return nil
}

// ListMailboxes lists an account's mailboxes by name.
func (s *Store) ListMailboxes(ctx context.Context, acct AccountID) ([]Mailbox, error) {
	rows, err := s.pool.Query(ctx, qListMailboxes, acct)
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	boxes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Mailbox, error) { return scanMailbox(r, acct) })
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	return boxes, nil
}

// GetMailbox finds a mailbox by name (ErrNoSuchMailbox).
func (s *Store) GetMailbox(ctx context.Context, acct AccountID, name string) (Mailbox, error) {
	name = CanonicalMailboxName(name)
	m, err := scanMailbox(s.pool.QueryRow(ctx, qMailboxByName, acct, name), acct)
	if errors.Is(err, pgx.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, ErrNoSuchMailbox)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("get mailbox %q: %w", name, err)
	}
	return m, nil
}

// GetMailboxByID finds a mailbox by id (ErrNoSuchMailbox).
func (s *Store) GetMailboxByID(ctx context.Context, acct AccountID, id MailboxID) (Mailbox, error) {
	m, err := scanMailbox(s.pool.QueryRow(ctx, qMailboxByID, acct, id), acct)
	if errors.Is(err, pgx.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("mailbox %s: %w", id, ErrNoSuchMailbox)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("get mailbox %s: %w", id, err)
	}
	return m, nil
}

// CreateMailbox creates a mailbox and any missing parents (ErrMailboxExists,
// ErrBadMailboxName). specialUse is "" or one of RFC 6154's attributes.
func (s *Store) CreateMailbox(ctx context.Context, acct AccountID, name, specialUse string) (Mailbox, error) {
	name = CanonicalMailboxName(name)
	var m Mailbox
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := createParents(ctx, tx, acct, name); err != nil {
			return err
		}
		var err error
		m, err = createMailbox(ctx, tx, acct, name, specialUse, false)
		return err
	})
	if err != nil {
		return Mailbox{}, fmt.Errorf("create mailbox %q: %w", name, err)
	}
	return m, nil
}

// DeleteMailbox deletes a mailbox and its messages (ErrNoSuchMailbox; ErrCannotDelete for
// INBOX). Its children stay. The name keeps its UID history.
func (s *Store) DeleteMailbox(ctx context.Context, acct AccountID, name string) error {
	name = CanonicalMailboxName(name)
	if name == InboxName {
		return fmt.Errorf("delete mailbox %q: %w", name, ErrCannotDelete)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		m, err := lockMailboxByName(ctx, tx, acct, name)
		if err != nil {
			return err
		}
		if _, modseq, err := allocate(ctx, tx, acct, m.ID, 0); err != nil {
			return err
		} else {
			m.HighestModSeq = modseq
		}
		if err := recordName(ctx, tx, m); err != nil {
			return err
		}
		return deleteMailboxRows(ctx, tx, acct, m.ID)
	})
	if err != nil {
		return fmt.Errorf("delete mailbox %q: %w", name, err)
	}
	return nil
}

func deleteMailboxRows(ctx context.Context, tx pgx.Tx, acct AccountID, id MailboxID) error {
	for _, q := range []string{
		`WITH gone AS (DELETE FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2 RETURNING message_id)
			DELETE FROM messages WHERE account_id = $1 AND id IN (SELECT message_id FROM gone)`,
		`DELETE FROM expunged WHERE account_id = $1 AND mailbox_id = $2`,
		`DELETE FROM sync_points WHERE account_id = $1 AND mailbox_id = $2`,
		`INSERT INTO mailbox_tombstones (account_id, id, name) SELECT account_id, id, name FROM mailboxes WHERE account_id = $1 AND id = $2
			ON CONFLICT (account_id, id) DO UPDATE SET deleted_at = now()`,
		`DELETE FROM mailboxes WHERE account_id = $1 AND id = $2`,
	} {
		if _, err := tx.Exec(ctx, q, acct, id); err != nil {
			return fmt.Errorf("delete mailbox rows: %w", err)
		}
	}
	return nil
}

// RenameMailbox renames a mailbox and its children, keeping their ids and UIDVALIDITY.
// Renaming INBOX moves its messages into a new mailbox and leaves INBOX empty (RFC 3501).
func (s *Store) RenameMailbox(ctx context.Context, acct AccountID, oldName, newName string) error {
	oldName, newName = CanonicalMailboxName(oldName), CanonicalMailboxName(newName)
	if err := ValidateMailboxName(newName); err != nil {
		return fmt.Errorf("rename mailbox %q: %w", oldName, err)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		m, err := lockMailboxByName(ctx, tx, acct, oldName)
		if err != nil {
			return err
		}
		if oldName == newName || strings.HasPrefix(newName, oldName+string(Delim)) {
			return fmt.Errorf("%w: cannot rename %q into itself", ErrMailboxExists, oldName)
		}
		if oldName == InboxName {
			return renameInbox(ctx, tx, m, newName)
		}
		rows, err := tx.Query(ctx, `SELECT `+qMailboxColumns+` FROM mailboxes WHERE account_id = $1 AND (name = $2 OR starts_with(name, $2 || '/')) ORDER BY name FOR UPDATE`, acct, oldName)
		if err != nil {
			return err
		}
		boxes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Mailbox, error) { return scanMailbox(r, acct) })
		if err != nil {
			return err
		}
		for _, b := range boxes {
			to := newName + strings.TrimPrefix(b.Name, oldName)
			// The old name remembers its UIDs, so re-creating it continues above them.
			if err := recordName(ctx, tx, b); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE mailboxes SET name = $3, name_changed_at = now() WHERE account_id = $1 AND id = $2`, acct, b.ID, to)
			if isUniqueViolation(err) {
				return fmt.Errorf("mailbox %q: %w", to, ErrMailboxExists)
			}
			if err != nil {
				return err
			}
			if err := notify(ctx, tx, acct, b.ID, b.HighestModSeq); err != nil {
				return err
			}
		}
		return createParents(ctx, tx, acct, newName)
	})
	if err != nil {
		return fmt.Errorf("rename mailbox %q to %q: %w", oldName, newName, err)
	}
	return nil
}

func createParents(ctx context.Context, tx pgx.Tx, acct AccountID, name string) error {
	parts := strings.Split(name, string(Delim))
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], string(Delim))
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2)`, acct, parent).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := createMailbox(ctx, tx, acct, parent, "", false); err != nil {
				return err
			}
		}
	}
	return nil
}

// renameInbox creates newName and moves every INBOX message there.
func renameInbox(ctx context.Context, tx pgx.Tx, inbox Mailbox, newName string) error {
	if err := createParents(ctx, tx, inbox.Account, newName); err != nil {
		return err
	}
	dest, err := createMailbox(ctx, tx, inbox.Account, newName, "", false)
	if err != nil {
		return err
	}
	uids, err := allUIDs(ctx, tx, inbox.Account, inbox.ID)
	if err != nil {
		return err
	}
	if len(uids) == 0 {
		return nil
	}
	_, err = moveLocked(ctx, tx, inbox, dest, uids)
	return err
}

// SetSubscribed subscribes or unsubscribes a mailbox (ErrNoSuchMailbox).
func (s *Store) SetSubscribed(ctx context.Context, acct AccountID, name string, on bool) error {
	name = CanonicalMailboxName(name)
	tag, err := s.pool.Exec(ctx, qSetSubscribed, acct, name, on)
	if err != nil {
		return fmt.Errorf("subscribe %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("subscribe %q: %w", name, ErrNoSuchMailbox)
	}
	return nil
}

// Status counts a mailbox's messages (ErrNoSuchMailbox).
func (s *Store) Status(ctx context.Context, acct AccountID, name string) (MailboxStatus, error) {
	var st MailboxStatus
	err := s.inSnapshot(ctx, func(tx pgx.Tx) error {
		m, err := scanMailbox(tx.QueryRow(ctx, qMailboxByName, acct, CanonicalMailboxName(name)), acct)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoSuchMailbox
		}
		if err != nil {
			return err
		}
		st.Mailbox = m
		return tx.QueryRow(ctx, qStatus, acct, m.ID).Scan(&st.NumMessages, &st.NumUnseen, &st.NumDeleted, &st.Size)
	})
	if err != nil {
		return MailboxStatus{}, fmt.Errorf("status of %q: %w", name, err)
	}
	return st, nil
}
