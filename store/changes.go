package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Notification says a mailbox changed: some commit raised its HIGHESTMODSEQ to ModSeq (or
// renamed or deleted it). A zero Notification (uuid.Nil mailbox) means "the listener
// reconnected, so changes may have been missed: re-check everything".
type Notification struct {
	Account AccountID
	Mailbox MailboxID
	ModSeq  ModSeq
}

// notifyChannel is the LISTEN/NOTIFY channel; payloads are "account mailbox modseq".
const notifyChannel = "twinmail"

func parseNotification(payload string) (Notification, bool) {
	f := strings.Fields(payload)
	if len(f) != 3 {
		return Notification{}, false
	}
	a, err1 := uuid.Parse(f[0])
	m, err2 := uuid.Parse(f[1])
	ms, err3 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Notification{}, false
	}
	return Notification{Account: a, Mailbox: m, ModSeq: ModSeq(ms)}, true
}

// Listen holds one LISTEN connection and calls fn, from a single goroutine, for every change
// committed by any process on this database. Each time it starts listening (first and after
// a reconnect, with backoff) it calls fn with a zero Notification, so callers re-check what
// they may have missed. It returns only when ctx ends.
func (s *Store) Listen(ctx context.Context, fn func(Notification)) error {
	backoff := 100 * time.Millisecond
	for {
		// Once listening (again), everything committed before may have been missed.
		err := s.listenOnce(ctx, func() {
			backoff = 100 * time.Millisecond
			fn(Notification{})
		}, fn)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("change listener lost its connection; reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, ready func(), fn func(Notification)) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.Tracer = nil // not counted by Queries
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		if note, ok := parseNotification(n.Payload); ok {
			fn(note)
		}
	}
}
