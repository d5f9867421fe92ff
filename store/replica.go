package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ErrReplicaIDMismatch means a replica id was given that differs from the stored one.
var ErrReplicaIDMismatch = errors.New("replica id differs from the one this database already has")

// ReplicaID returns this database's replica id, creating a random one on first use.
func (s *Store) ReplicaID(ctx context.Context) (string, error) {
	return s.ensureReplicaID(ctx, "")
}

// SetReplicaID sets the replica id if none is set yet; an existing different id is an error
// (ErrReplicaIDMismatch): a replica's identity never changes.
func (s *Store) SetReplicaID(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("empty replica id")
	}
	_, err := s.ensureReplicaID(ctx, id)
	return err
}

func (s *Store) ensureReplicaID(ctx context.Context, want string) (string, error) {
	var got string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT replica_id FROM replica_info`).Scan(&got)
		if errors.Is(err, pgx.ErrNoRows) {
			got = want
			if got == "" {
				got = uuid.NewString()
			}
			_, err = tx.Exec(ctx, `INSERT INTO replica_info (replica_id) VALUES ($1) ON CONFLICT (singleton) DO NOTHING`, got)
			if err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT replica_id FROM replica_info`).Scan(&got)
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read replica id: %w", err)
	}
	if want != "" && got != want {
		return "", fmt.Errorf("%w: database has %q, asked for %q", ErrReplicaIDMismatch, got, want)
	}
	return got, nil
}
