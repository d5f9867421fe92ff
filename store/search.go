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

	Header []HeaderMatch // substring of the field's value, case-insensitive; empty Value means "present"
	Body   []string      // substrings of the body text, case-insensitive
	Text   []string      // substrings of header or body text, case-insensitive

	Flag    []string
	NotFlag []string

	Larger  int64 // size > Larger when non-zero
	Smaller int64 // size < Smaller when non-zero

	ModSeq ModSeq // MODSEQ >= ModSeq when non-zero (RFC 7162)

	Not []SearchCriteria
	Or  [][2]SearchCriteria
}

// HeaderMatch is one HEADER search key.
type HeaderMatch struct{ Key, Value string }

// UIDSet is a union of inclusive UID ranges; Stop 0 means "no upper bound".
type UIDSet []UIDRange

// searchBuilder turns SearchCriteria into a SQL condition over mailbox_messages mm and
// messages m, with $n placeholders only. Every condition it writes is two-valued (never
// NULL), so that NOT inverts it exactly.
type searchBuilder struct {
	args     []any
	messages bool // the condition reads messages m, so the query must join it
}

func (b *searchBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

// likePattern escapes s for ILIKE and wraps it in %...%.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(cleanText(s)) + "%"
}

// headerRegexp matches a line of search_header (one "Name: value" line per field) for field
// key whose value contains value; with ~* both compare case-insensitively. pg_trgm indexes
// serve it from the literal parts.
func headerRegexp(key, value string) string {
	return `(?n)^` + regexp.QuoteMeta(key) + `:.*` + regexp.QuoteMeta(value)
}

// systemFlag returns the canonical spelling of f if it is a system flag.
func systemFlag(f string) (string, bool) {
	c, ok := systemFlags[strings.ToLower(f)]
	return c, ok
}

// flagCond is true when the message has flag f. System flags are stored canonically, so an
// array containment does; keywords compare case-insensitively.
func (b *searchBuilder) flagCond(f string) string {
	if c, ok := systemFlag(f); ok {
		return "mm.flags @> ARRAY[" + b.arg(c) + "::text]"
	}
	return "EXISTS (SELECT 1 FROM unnest(mm.flags) AS f WHERE lower(f) = " + b.arg(strings.ToLower(f)) + ")"
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
		b.messages = true
		parts = append(parts, "m.internal_date >= "+b.arg(day(c.Since)))
	}
	if !c.Before.IsZero() {
		b.messages = true
		parts = append(parts, "m.internal_date < "+b.arg(day(c.Before)))
	}
	// A message without a usable Date header is dated by its internal date, as Dovecot does.
	if !c.SentSince.IsZero() {
		b.messages = true
		parts = append(parts, "coalesce(m.sent_date, m.internal_date) >= "+b.arg(day(c.SentSince)))
	}
	if !c.SentBefore.IsZero() {
		b.messages = true
		parts = append(parts, "coalesce(m.sent_date, m.internal_date) < "+b.arg(day(c.SentBefore)))
	}
	for _, h := range c.Header {
		b.messages = true
		key := cleanText(h.Key)
		if h.Value == "" {
			// Present: a line starting with the field name.
			parts = append(parts, "m.search_header ~* "+b.arg(`(?n)^`+regexp.QuoteMeta(key)+`:`))
			continue
		}
		parts = append(parts, "m.search_header ~* "+b.arg(headerRegexp(key, cleanText(h.Value))))
	}
	for _, s := range c.Body {
		b.messages = true
		parts = append(parts, "m.search_text ILIKE "+b.arg(likePattern(s)))
	}
	for _, s := range c.Text {
		b.messages = true
		p := b.arg(likePattern(s))
		parts = append(parts, "(m.search_header ILIKE "+p+" OR m.search_text ILIKE "+p+")")
	}
	for _, f := range c.Flag {
		if strings.EqualFold(f, `\Recent`) {
			parts = append(parts, "false") // twinmail keeps no \Recent
			continue
		}
		parts = append(parts, b.flagCond(f))
	}
	for _, f := range c.NotFlag {
		if strings.EqualFold(f, `\Recent`) {
			continue
		}
		parts = append(parts, "NOT "+b.flagCond(f))
	}
	if c.Larger > 0 {
		b.messages = true
		parts = append(parts, "m.size > "+b.arg(c.Larger))
	}
	if c.Smaller > 0 {
		b.messages = true
		parts = append(parts, "m.size < "+b.arg(c.Smaller))
	}
	if c.ModSeq > 0 {
		parts = append(parts, "mm.modseq >= "+b.arg(int64(c.ModSeq)))
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

// searchQuery returns the SQL and arguments of a search. messages m is joined only when the
// criteria read it: flag and UID searches stay on mailbox_messages.
func searchQuery(acct AccountID, mbox MailboxID, c *SearchCriteria) (string, []any) {
	b := &searchBuilder{args: []any{acct, mbox}}
	cond := b.cond(c)
	from := `mailbox_messages mm`
	if b.messages {
		from += ` JOIN messages m ON m.account_id = mm.account_id AND m.id = mm.message_id`
	}
	return `SELECT mm.uid FROM ` + from + ` WHERE mm.account_id = $1 AND mm.mailbox_id = $2 AND (` + cond + `) ORDER BY mm.uid`, b.args
}

// Search returns the UIDs (ascending) of the live messages of a mailbox that match c.
//
// The query is planned for its actual arguments every time (no cached generic plan): a
// substring that is rare wants the trigram indexes, a common one a scan of the mailbox.
func (s *Store) Search(ctx context.Context, acct AccountID, mbox MailboxID, c *SearchCriteria) ([]UID, error) {
	q, args := searchQuery(acct, mbox, c)
	rows, err := s.pool.Query(ctx, q, append([]any{pgx.QueryExecModeExec}, args...)...)
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

// ExplainSearch returns PostgreSQL's EXPLAIN (ANALYZE, BUFFERS) of the query Search runs for
// c, for checking that it uses the indexes.
func (s *Store) ExplainSearch(ctx context.Context, acct AccountID, mbox MailboxID, c *SearchCriteria) (string, error) {
	q, args := searchQuery(acct, mbox, c)
	rows, err := s.pool.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+q, append([]any{pgx.QueryExecModeExec}, args...)...)
	if err != nil {
		return "", fmt.Errorf("explain search: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("explain search: %w", err)
	}
	return strings.Join(lines, "\n"), nil
}
