package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// workerLockID is the advisory lock an active replication worker holds on each side.
const workerLockID = 0x74776e2d776b7200

// WorkerLock is a held replication-worker lock on one side. It lives on its own connection:
// if the worker dies, PostgreSQL drops the connection and with it the lock.
type WorkerLock struct{ conn *pgx.Conn }

// TryWorkerLock tries to take this side's worker lock. It returns nil, nil when another
// worker holds it.
func (s *Store) TryWorkerLock(ctx context.Context) (*WorkerLock, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.Tracer = nil // not counted by Queries
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for worker lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(workerLockID)).Scan(&ok); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("take worker lock: %w", err)
	}
	if !ok {
		conn.Close(ctx)
		return nil, nil
	}
	return &WorkerLock{conn: conn}, nil
}

// Alive checks that the lock's connection (and so the lock) is still there.
func (l *WorkerLock) Alive(ctx context.Context) error {
	if err := l.conn.Ping(ctx); err != nil {
		return fmt.Errorf("worker lock connection lost: %w", err)
	}
	return nil
}

// Release gives the lock up.
func (l *WorkerLock) Release(ctx context.Context) {
	_ = l.conn.Close(ctx)
}
