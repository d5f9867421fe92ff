package store

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	sqlfs "github.com/twinmail/twinmail/sql"
)

// migrationLockID is the advisory lock goose holds while migrating ("twinmail" in ASCII).
const migrationLockID = 0x7477696e6d61696c

func (s *Store) provider() (*goose.Provider, func() error, error) {
	sub, err := fs.Sub(sqlfs.Migrations, "migrations")
	if err != nil {
		return nil, nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID))
	if err != nil {
		return nil, nil, fmt.Errorf("create migration lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(s.log),
	)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("create migration provider: %w", err)
	}
	return p, db.Close, nil
}

// Migrate applies every pending migration. Concurrent callers serialise on an advisory lock.
// It refuses a database whose schema is newer than this binary knows.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.checkNotNewer(ctx); err != nil {
		return err
	}
	p, closeDB, err := s.provider()
	if err != nil {
		return err
	}
	defer closeDB()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// CheckSchema returns ErrSchemaTooOld when migrations are pending and ErrSchemaTooNew when
// the database has migrations this binary does not know.
func (s *Store) CheckSchema(ctx context.Context) error {
	if err := s.checkNotNewer(ctx); err != nil {
		return err
	}
	p, closeDB, err := s.provider()
	if err != nil {
		return err
	}
	defer closeDB()
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if pending {
		return fmt.Errorf("%w: run twinmail migrate", ErrSchemaTooOld)
	}
	return nil
}

// SchemaVersion returns the newest applied migration (0 on an empty database) and the newest
// this binary knows.
func (s *Store) SchemaVersion(ctx context.Context) (db, known int64, err error) {
	p, closeDB, err := s.provider()
	if err != nil {
		return 0, 0, err
	}
	defer closeDB()
	srcs := p.ListSources()
	if len(srcs) > 0 {
		known = srcs[len(srcs)-1].Version
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	if exists {
		if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&db); err != nil {
			return 0, 0, fmt.Errorf("read schema version: %w", err)
		}
	}
	return db, known, nil
}

func (s *Store) checkNotNewer(ctx context.Context) error {
	db, known, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if db > known {
		return fmt.Errorf("%w: database is at version %d, this binary knows up to %d", ErrSchemaTooNew, db, known)
	}
	return nil
}
