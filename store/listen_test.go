package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

// TestListenReconnects kills the LISTEN connection: Listen must reconnect, announce it with a
// zero Notification (so sessions re-check what they may have missed), and deliver later
// changes again.
func TestListenReconnects(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dsn := storetest.DSN(t)
	s, err := store.Open(ctx, dsn, store.Options{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acct := newAccount(t, s, "alice")
	notes := make(chan store.Notification, 100)
	go func() { _ = s.Listen(ctx, func(n store.Notification) { notes <- n }) }()
	next := func(what string, want func(store.Notification) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case n := <-notes:
				if want(n) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s within 10s", what)
			}
		}
	}
	isZero := func(n store.Notification) bool { return n == store.Notification{} }
	next("first listening announcement", isZero)
	r, err := s.Append(ctx, acct.ID, "INBOX", msg("before"))
	if err != nil {
		t.Fatal(err)
	}
	next("notification of the first append", func(n store.Notification) bool { return n.Mailbox == r.Mailbox && n.ModSeq == r.ModSeq })

	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d LISTEN connections, want 1", killed)
	}
	next("reconnect announcement", isZero)
	r2, err := s.Append(ctx, acct.ID, "INBOX", msg("after"))
	if err != nil {
		t.Fatal(err)
	}
	next("notification after the reconnect", func(n store.Notification) bool { return n.Mailbox == r2.Mailbox && n.ModSeq == r2.ModSeq })
}

// TestDroppedConnectionsAreReplaced: PostgreSQL drops every connection (as on a restart);
// the next store call after a pause must succeed on a fresh connection, not fail once.
func TestDroppedConnectionsAreReplaced(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.DSN(t)
	s, err := store.Open(ctx, dsn, store.Options{BcryptCost: 4, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	newAccount(t, s, "alice")
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no pooled connection to drop")
	}
	time.Sleep(400 * time.Millisecond)
	for i := range 4 {
		if _, err := s.ListAccounts(ctx); err != nil {
			t.Fatalf("call %d after the connections were dropped: %v", i+1, err)
		}
	}
}
