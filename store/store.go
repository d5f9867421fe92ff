// Package store is the only package that talks to PostgreSQL. It owns accounts, mailboxes,
// messages, bodies, flags, tombstones, UID/MODSEQ allocation and change notification, and
// returns protocol-neutral types (types.go). It must not import imapbackend, replica, lmtp,
// go-imap or go-smtp.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	Logger   *slog.Logger // default: discard
	MaxConns int32        // default: pgxpool's default (max(4, NumCPU))
	// BcryptCost is the password hashing cost; 0 means bcrypt.DefaultCost. Tests lower it.
	BcryptCost int
}

// Store is a handle on one replica's database. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	dsn     string
	log     *slog.Logger
	opts    Options
	queries atomic.Int64
}

// queryCounter counts the statements a Store sends (pgx QueryTracer).
type queryCounter struct{ n *atomic.Int64 }

func (q queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Queries returns how many statements this Store has sent to PostgreSQL (through its pool;
// LISTEN connections excluded). Tests use it to prove that a path costs no SQL.
func (s *Store) Queries() int64 { return s.queries.Load() }

// Open connects to the database at dsn (a libpq URL or key=value string; PG* variables fill
// in what it leaves out). It does not migrate; see Migrate and CheckSchema.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database address: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// A pooled connection that sat idle is pinged before use, so one that PostgreSQL dropped
	// meanwhile (a restart, a failover, an idle timeout) is replaced instead of failing the
	// next client command. Connections in steady use are not pinged.
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
		return p.IdleDuration >= 250*time.Millisecond
	}
	st := &Store{dsn: dsn, log: opts.Logger, opts: opts}
	cfg.ConnConfig.Tracer = queryCounter{&st.queries}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s: %w", cfg.ConnConfig.Database, err)
	}
	st.pool = pool
	return st, nil
}

// Close releases the connections.
func (s *Store) Close() { s.pool.Close() }

// inTx runs fn in one READ COMMITTED transaction and commits it.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// inSnapshot runs fn in one read-only REPEATABLE READ transaction.
func (s *Store) inSnapshot(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func isSerializationFailure(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}
