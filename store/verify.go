package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// MailboxDigest summarises a mailbox's contents for comparing replicas cheaply.
type MailboxDigest struct {
	Messages   int64
	Messages5  string // md5 over (uid, message id, sorted lower-case flags) in UID order
	Tombstones int64
	Tombs5     string // md5 over expunged UIDs in order
}

// DigestMailbox computes a mailbox's digest in the database.
func (s *Store) DigestMailbox(ctx context.Context, acct AccountID, mbox MailboxID) (MailboxDigest, error) {
	var d MailboxDigest
	err := s.inSnapshot(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT count(*), coalesce(md5(string_agg(uid || ':' || message_id || ':' ||
				(SELECT coalesce(string_agg(lower(f), ' ' ORDER BY lower(f)), '') FROM unnest(flags) f), ',' ORDER BY uid)), '')
			FROM mailbox_messages WHERE account_id = $1 AND mailbox_id = $2`, acct, mbox).Scan(&d.Messages, &d.Messages5)
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*), coalesce(md5(string_agg(uid::text, ',' ORDER BY uid)), '')
			FROM expunged WHERE account_id = $1 AND mailbox_id = $2`, acct, mbox).Scan(&d.Tombstones, &d.Tombs5)
	})
	if err != nil {
		return MailboxDigest{}, fmt.Errorf("digest mailbox %s: %w", mbox, err)
	}
	return d, nil
}

// MailboxContents lists a mailbox's live messages and expunged UIDs, in UID order.
func (s *Store) MailboxContents(ctx context.Context, acct AccountID, mbox MailboxID) ([]MessageState, []UID, error) {
	var live []MessageState
	var tombs []UID
	err := s.inSnapshot(ctx, func(tx pgx.Tx) error {
		var err error
		live, err = queryAll(ctx, tx, scanState, `SELECT uid, message_id, flags, modseq FROM mailbox_messages
			WHERE account_id = $1 AND mailbox_id = $2 ORDER BY uid`, acct, mbox)
		if err != nil {
			return err
		}
		tombs, err = queryAll(ctx, tx, scanUID, `SELECT uid FROM expunged WHERE account_id = $1 AND mailbox_id = $2 ORDER BY uid`, acct, mbox)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read mailbox %s: %w", mbox, err)
	}
	return live, tombs, nil
}
