package store

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// SearchCriteria is a protocol-neutral SEARCH program: all non-zero fields must hold (AND).
// Sequence numbers are translated to UIDs by the caller.
type SearchCriteria struct {
	UIDs []UIDSet // the UID must be in each set

	Since, Before         time.Time // internal date, date-only: Since <= date < Before
	SentSince, SentBefore time.Time // Date header, date-only

	Header []HeaderMatch // substring match, case-insensitive; empty Value means "present"
	Body   []string      // substrings of the body text
	Text   []string      // substrings of header or body text

	Flag    []string
	NotFlag []string

	Larger  int64 // size > Larger when non-zero
	Smaller int64 // size < Smaller when non-zero

	Not []SearchCriteria
	Or  [][2]SearchCriteria
}

// HeaderMatch is one HEADER search key.
type HeaderMatch struct{ Key, Value string }

// UIDSet is a union of inclusive UID ranges; Stop 0 means "no upper bound".
type UIDSet []UIDRange

// searchBuilder turns SearchCriteria into a SQL condition over mailbox_messages mm and
// messages m, with $n placeholders only.
type searchBuilder struct{ args []any }

func (b *searchBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

// likePattern escapes s for ILIKE and wraps it in %...%.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(cleanText(s)) + "%"
}

func (b *searchBuilder) cond(c *SearchCriteria) string {
	var parts []string
	for _, set := range c.UIDs {
		var cond string
		cond, b.args = uidCond("mm.uid", set, b.args)
		parts = append(parts, cond)
	}
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }
	if !c.Since.IsZero() {
		parts = append(parts, "m.internal_date >= "+b.arg(day(c.Since)))
	}
	if !c.Before.IsZero() {
		parts = append(parts, "m.internal_date < "+b.arg(day(c.Before)))
	}
	if !c.SentSince.IsZero() {
		parts = append(parts, "m.sent_date >= "+b.arg(day(c.SentSince)))
	}
	if !c.SentBefore.IsZero() {
		parts = append(parts, "m.sent_date < "+b.arg(day(c.SentBefore)))
	}
	for _, h := range c.Header {
		key := strings.ToLower(cleanText(h.Key))
		if h.Value == "" {
			// Present: a line starting with the field name.
			parts = append(parts, "(starts_with(lower(m.search_header), "+b.arg(key+":")+") OR strpos(lower(m.search_header), "+b.arg("\n"+key+":")+") > 0)")
			continue
		}
		// A fast substring pre-filter (trigram index) and the exact per-field check.
		parts = append(parts, "m.search_header ILIKE "+b.arg(likePattern(h.Value)),
			"m.search_header ~* "+b.arg(`(?n)^`+regexp.QuoteMeta(key)+`:.*`+regexp.QuoteMeta(cleanText(h.Value))))
	}
	for _, s := range c.Body {
		parts = append(parts, "m.search_text ILIKE "+b.arg(likePattern(s)))
	}
	for _, s := range c.Text {
		p := b.arg(likePattern(s))
		parts = append(parts, "(m.search_header ILIKE "+p+" OR m.search_text ILIKE "+p+")")
	}
	for _, f := range c.Flag {
		if strings.EqualFold(f, `\Recent`) {
			parts = append(parts, "false") // twinmail keeps no \Recent
			continue
		}
		parts = append(parts, "EXISTS (SELECT 1 FROM unnest(mm.flags) AS f WHERE lower(f) = "+b.arg(strings.ToLower(f))+")")
	}
	for _, f := range c.NotFlag {
		if strings.EqualFold(f, `\Recent`) {
			continue
		}
		parts = append(parts, "NOT EXISTS (SELECT 1 FROM unnest(mm.flags) AS f WHERE lower(f) = "+b.arg(strings.ToLower(f))+")")
	}
	if c.Larger > 0 {
		parts = append(parts, "m.size > "+b.arg(c.Larger))
	}
	if c.Smaller > 0 {
		parts = append(parts, "m.size < "+b.arg(c.Smaller))
	}
	for i := range c.Not {
		parts = append(parts, "NOT ("+b.cond(&c.Not[i])+")")
	}
	for i := range c.Or {
		parts = append(parts, "(("+b.cond(&c.Or[i][0])+") OR ("+b.cond(&c.Or[i][1])+"))")
	}
	if len(parts) == 0 {
		return "true"
	}
	return strings.Join(parts, " AND ")
}

// Search returns the UIDs (ascending) of the live messages of a mailbox that match c.
func (s *Store) Search(ctx context.Context, acct AccountID, mbox MailboxID, c *SearchCriteria) ([]UID, error) {
	b := &searchBuilder{args: []any{acct, mbox}}
	cond := b.cond(c)
	q := `SELECT mm.uid FROM mailbox_messages mm JOIN messages m ON m.account_id = mm.account_id AND m.id = mm.message_id
		WHERE mm.account_id = $1 AND mm.mailbox_id = $2 AND (` + cond + `) ORDER BY mm.uid`
	rows, err := s.pool.Query(ctx, q, b.args...)
	if err != nil {
		return nil, fmt.Errorf("search mailbox %s: %w", mbox, err)
	}
	uids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UID, error) {
		var u int64
		err := r.Scan(&u)
		return UID(u), err
	})
	if err != nil {
		return nil, fmt.Errorf("search mailbox %s: %w", mbox, err)
	}
	return uids, nil
}
