package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinmail/twinmail/store"
)

// Options configure a Worker. Zero values are documented defaults.
type Options struct {
	A, B   *store.Store
	Logger *slog.Logger // nil: discard
	// Sweep is the period of a full round even without notifications (default 30s).
	Sweep time.Duration
	// BatchSize bounds the changes read per mailbox and round (default 2000).
	BatchSize int
	// MaxBackoff caps the wait before retrying an unreachable side (default 30s).
	MaxBackoff time.Duration
	// DisableReinjection is for tests of the scenario runner only: it makes clashes
	// unresolvable, so that checks can be shown to fail.
	DisableReinjection bool
	// Fault, for fault-injection tests only, is called at named points of a round
	// (FaultPoints); an error it returns aborts the round there, as a crash would.
	Fault func(point string) error
}

// FaultPoints are the points of a round where Options.Fault is called, in order.
var FaultPoints = []string{"mailboxes-planned", "mailboxes-a", "mailboxes-b", "planned", "applied-a", "applied-b", "agreed-a", "syncpoint-a"}

func (w *Worker) fault(point string) error {
	if w.opts.Fault == nil {
		return nil
	}
	if err := w.opts.Fault(point); err != nil {
		return fmt.Errorf("fault at %s: %w", point, err)
	}
	return nil
}

// Stats are a worker's counters since it started.
type Stats struct {
	Rounds, Copied, Reinjected, Clashes, Expunged, Bytes, Conflicts, Errors int64
	// Quiet counts rounds that found nothing to do: both sides agreed.
	Quiet     int64
	LastRound time.Time
	LastError string
}

// Worker converges two replicas.
type Worker struct {
	opts   Options
	log    *slog.Logger
	idA    string
	idB    string
	paused atomic.Bool
	wake   chan struct{}

	mu    sync.Mutex
	stats Stats

	roundMu sync.Mutex // held while a round runs
}

// New returns a worker for the pair. It reads both replica ids, so both sides must be up.
func New(ctx context.Context, opts Options) (*Worker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Sweep == 0 {
		opts.Sweep = 30 * time.Second
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 2000
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	w := &Worker{opts: opts, log: opts.Logger, wake: make(chan struct{}, 1)}
	var err error
	if w.idA, err = opts.A.ReplicaID(ctx); err != nil {
		return nil, fmt.Errorf("replica A: %w", err)
	}
	if w.idB, err = opts.B.ReplicaID(ctx); err != nil {
		return nil, fmt.Errorf("replica B: %w", err)
	}
	if w.idA == w.idB {
		return nil, fmt.Errorf("both replicas have the id %q: pair two different databases (or give them different --replica-id)", w.idA)
	}
	return w, nil
}

// Stats returns a copy of the counters.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Pause stops rounds until Resume (the link is "cut" as far as the pair is concerned).
func (w *Worker) Pause() { w.paused.Store(true) }

// PauseWait pauses and waits for a round in progress to finish, so that nothing crosses
// between the sides after it returns.
func (w *Worker) PauseWait() {
	w.paused.Store(true)
	w.roundMu.Lock()
	defer w.roundMu.Unlock()
}

// Resume lets rounds run again and starts one at once.
func (w *Worker) Resume() {
	w.paused.Store(false)
	w.Wake()
}

// Paused reports whether the worker is paused.
func (w *Worker) Paused() bool { return w.paused.Load() }

// Wake asks for a round soon.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// lock takes the worker lock on both sides; it waits while another worker holds either.
func (w *Worker) lock(ctx context.Context) (release func(), err error) {
	announced := false
	for {
		la, err := w.opts.A.TryWorkerLock(ctx)
		if err == nil && la != nil {
			lb, errB := w.opts.B.TryWorkerLock(ctx)
			if errB == nil && lb != nil {
				return func() { la.Release(context.Background()); lb.Release(context.Background()) }, nil
			}
			la.Release(ctx)
			err = errB
		}
		if err != nil {
			w.log.Warn("cannot take the worker lock", "err", err)
		} else if !announced {
			w.log.Info("another worker is active for this pair; waiting")
			announced = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// Run converges the pair until ctx ends: a round on every change notification from either
// side (within a second), a sweep every Options.Sweep, and retries with backoff while a side
// is unreachable. Only one worker per pair runs rounds; others wait.
func (w *Worker) Run(ctx context.Context) error {
	release, err := w.lock(ctx)
	if err != nil {
		return nil
	}
	defer release()
	w.log.Info("replication worker active", "replica_a", w.idA, "replica_b", w.idB)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, s := range []*store.Store{w.opts.A, w.opts.B} {
		go func() { _ = s.Listen(lctx, func(store.Notification) { w.Wake() }) }()
	}
	backoff := 200 * time.Millisecond
	sweep := time.NewTicker(w.opts.Sweep)
	defer sweep.Stop()
	for {
		if !w.paused.Load() {
			changed, err := w.Round(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, store.ErrSyncConflict):
				// A client changed a side meanwhile: go again soon.
				w.Wake()
			case err != nil:
				w.log.Warn("replication round failed; retrying", "err", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, w.opts.MaxBackoff)
				continue
			default:
				backoff = 200 * time.Millisecond
				if changed {
					w.Wake() // there may be more than one batch
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
			// Let a burst of notifications settle into one round.
			time.Sleep(20 * time.Millisecond)
		case <-sweep.C:
		}
	}
}

// SyncOnce runs rounds until one changes nothing (both sides agree) or ctx ends. It takes
// the worker lock like Run.
func (w *Worker) SyncOnce(ctx context.Context) error {
	release, err := w.lock(ctx)
	if err != nil {
		return err
	}
	defer release()
	conflicts := 0
	for {
		changed, err := w.Round(ctx)
		if errors.Is(err, store.ErrSyncConflict) && conflicts < 100 {
			conflicts++
			continue
		}
		if err != nil {
			return err
		}
		if !changed {
			return nil
		}
	}
}

// Round runs one pass over every account and reports whether it wrote anything.
func (w *Worker) Round(ctx context.Context) (changed bool, err error) {
	w.roundMu.Lock()
	defer w.roundMu.Unlock()
	var st roundStats
	defer func() {
		w.mu.Lock()
		w.stats.Rounds++
		w.stats.Copied += int64(st.copied)
		w.stats.Reinjected += int64(st.reinjected)
		w.stats.Clashes += int64(st.clashes)
		w.stats.Expunged += int64(st.expunged)
		w.stats.Bytes += st.bytes
		w.stats.LastRound = time.Now()
		if err == nil && !changed {
			w.stats.Quiet++
		}
		if errors.Is(err, store.ErrSyncConflict) {
			w.stats.Conflicts++
		} else if err != nil {
			w.stats.Errors++
			w.stats.LastError = err.Error()
		}
		w.mu.Unlock()
		if changed || err != nil {
			w.log.Info("replication round", "changed", changed, "copied", st.copied, "reinjected", st.reinjected,
				"clashes", st.clashes, "expunged", st.expunged, "bytes", st.bytes, "err", err)
		}
		d := store.SyncStats{Rounds: 1, MessagesCopied: int64(st.copied + st.reinjected), BytesCopied: st.bytes, Clashes: int64(st.clashes)}
		if err != nil && !errors.Is(err, store.ErrSyncConflict) {
			d.LastError = err.Error()
		}
		if changed || err != nil {
			// Best effort: a side may be down, which is the error being recorded.
			_ = w.opts.A.AddSyncStats(ctx, w.idB, d)
			_ = w.opts.B.AddSyncStats(ctx, w.idA, d)
		}
	}()
	accounts, err := w.syncAccounts(ctx, &changed)
	if err != nil {
		return changed, err
	}
	for _, acct := range accounts {
		c, err := w.syncAccount(ctx, acct, &st)
		changed = changed || c
		if err != nil {
			return changed, fmt.Errorf("account %q: %w", acct.Name, err)
		}
	}
	return changed, nil
}

type roundStats struct {
	copied, reinjected, clashes, expunged int
	bytes                                 int64
}

// syncAccounts makes both sides have the same accounts and passwords and returns them.
func (w *Worker) syncAccounts(ctx context.Context, changed *bool) ([]store.SyncAccount, error) {
	accA, tombA, err := w.opts.A.SyncAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("replica A: %w", err)
	}
	accB, tombB, err := w.opts.B.SyncAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("replica B: %w", err)
	}
	byID := func(list []store.SyncAccount) map[store.AccountID]store.SyncAccount {
		m := make(map[store.AccountID]store.SyncAccount, len(list))
		for _, a := range list {
			m[a.ID] = a
		}
		return m
	}
	tombByID := func(list []store.AccountTombstone) map[store.AccountID]store.AccountTombstone {
		m := make(map[store.AccountID]store.AccountTombstone, len(list))
		for _, t := range list {
			m[t.ID] = t
		}
		return m
	}
	ma, mb, ta, tb := byID(accA), byID(accB), tombByID(tombA), tombByID(tombB)
	var both []store.SyncAccount
	skip := map[store.AccountID]bool{}
	// An account on side x only was deleted on y (tombstone) or is new on x.
	apply := func(x, y map[store.AccountID]store.SyncAccount, ty map[store.AccountID]store.AccountTombstone, sx, sy *store.Store) error {
		for id, a := range x {
			if _, ok := y[id]; ok {
				continue
			}
			*changed = true
			if t, ok := ty[id]; ok {
				if err := sx.SyncDeleteAccount(ctx, t); err != nil {
					return err
				}
				continue
			}
			if err := sy.SyncPutAccount(ctx, a); errors.Is(err, store.ErrAccountExists) {
				// Created independently on both sides under one name: not merged
				// automatically; the operator must delete one of them.
				w.log.Error("account exists on both replicas with different ids; not replicating it", "account", a.Name)
				skip[id] = true
			} else if err != nil {
				return err
			}
		}
		return nil
	}
	if err := apply(ma, mb, tb, w.opts.A, w.opts.B); err != nil {
		return nil, err
	}
	if err := apply(mb, ma, ta, w.opts.B, w.opts.A); err != nil {
		return nil, err
	}
	for id, a := range ma {
		b, ok := mb[id]
		if !ok {
			if _, gone := tb[id]; !gone {
				both = append(both, a)
			}
			continue
		}
		both = append(both, a)
		if a.PasswordHash != b.PasswordHash {
			*changed = true
			if a.PasswordChangedAt.After(b.PasswordChangedAt) {
				err = w.opts.B.SyncPutAccount(ctx, a)
			} else {
				err = w.opts.A.SyncPutAccount(ctx, b)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	for id, b := range mb {
		if _, ok := ma[id]; !ok {
			if _, gone := ta[id]; !gone {
				both = append(both, b)
			}
		}
	}
	both = slices.DeleteFunc(both, func(a store.SyncAccount) bool { return skip[a.ID] })
	slices.SortFunc(both, func(x, y store.SyncAccount) int { return cmpUUID(x.ID, y.ID) })
	return both, nil
}

// syncAccount converges one account: mailboxes first, then messages.
func (w *Worker) syncAccount(ctx context.Context, acct store.SyncAccount, st *roundStats) (bool, error) {
	changed, err := w.syncMailboxes(ctx, acct.ID)
	if err != nil {
		return changed, err
	}
	c, err := w.syncMessages(ctx, acct.ID, st)
	return changed || c, err
}

func cmpUUID(x, y store.MessageID) int {
	for i := range x {
		if x[i] != y[i] {
			return int(x[i]) - int(y[i])
		}
	}
	return 0
}
