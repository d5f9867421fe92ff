package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

// benchWords is a fixed vocabulary of pseudo-words for generated text.
var benchWords = func() []string {
	r := rand.New(rand.NewPCG(3, 4))
	syll := []string{"ba", "ke", "lo", "mi", "nu", "ra", "si", "to", "ve", "do", "fa", "gu", "pe", "ri", "sa", "te", "vo", "za", "chi", "mon", "tar", "len", "dis", "pro", "con"}
	words := make([]string, 3000)
	for i := range words {
		var sb strings.Builder
		for range 2 + r.IntN(3) {
			sb.WriteString(syll[r.IntN(len(syll))])
		}
		words[i] = sb.String()
	}
	return words
}()

// benchMessage returns message i: a short header and about 1.5 KiB of text, with its search
// columns filled as internal/mailparse would.
func benchMessage(i int) store.NewMessage {
	r := rand.New(rand.NewPCG(uint64(i), 9))
	word := func() string { return benchWords[r.IntN(len(benchWords))] }
	subject := word() + " " + word() + " " + word()
	var body strings.Builder
	for body.Len() < 1200+r.IntN(600) {
		body.WriteString(word())
		if r.IntN(10) == 0 {
			body.WriteString("\r\n")
		} else {
			body.WriteByte(' ')
		}
	}
	hdr := fmt.Sprintf("From: %s <%s@example.org>\nTo: Alice <alice@example.org>\nSubject: %s\nMessage-Id: <b%d@example.org>\n", word(), word(), subject, i)
	raw := strings.ReplaceAll(hdr, "\n", "\r\n") + "\r\n" + body.String()
	return store.NewMessage{Raw: []byte(raw), SearchHeader: hdr, SearchText: body.String()}
}

// BenchmarkAppendIndexCost measures store.Append (1.5 KiB messages) with the trigram indexes
// of 00003_search.sql, without them, and with them but without GIN's pending list
// (fastupdate off), with 1 and 8 writers into one mailbox, to show what the indexes cost at
// ingest:
//
//	go test -run '^$' -bench AppendIndexCost -benchtime 3000x ./store/
func BenchmarkAppendIndexCost(b *testing.B) {
	for _, indexes := range []string{"trgm", "none", "trgm-nofastupdate"} {
		for _, writers := range []int{1, 8} {
			name := fmt.Sprintf("indexes=%s/writers=%d", indexes, writers)
			b.Run(name, func(b *testing.B) { benchAppend(b, indexes, writers) })
		}
	}
}

// indexVariants change the trigram indexes of a fresh database.
var indexVariants = map[string]string{
	"trgm":              ``,
	"none":              `DROP INDEX messages_search_header_trgm, messages_search_text_trgm`,
	"trgm-nofastupdate": `ALTER INDEX messages_search_header_trgm SET (fastupdate = off); ALTER INDEX messages_search_text_trgm SET (fastupdate = off)`,
}

func benchAppend(b *testing.B, indexes string, writers int) {
	ctx := context.Background()
	dsn := storetest.DSN(b)
	if q := indexVariants[indexes]; q != "" {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		_, err = conn.Exec(ctx, q)
		conn.Close(ctx)
		if err != nil {
			b.Fatal(err)
		}
	}
	s, err := store.Open(ctx, dsn, store.Options{BcryptCost: 4, MaxConns: int32(writers + 2)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	acct, err := s.CreateAccount(ctx, "bench", "pw")
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]store.NewMessage, 256)
	for i := range msgs {
		msgs[i] = benchMessage(i)
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := w; i < b.N; i += writers {
				m := msgs[i%len(msgs)]
				m.Raw = append([]byte(fmt.Sprintf("X-Seq: %d\r\n", i)), m.Raw...) // distinct bodies
				start := time.Now()
				if _, err := s.Append(ctx, acct.ID, "INBOX", m); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if len(lats) > 0 {
		slices.Sort(lats)
		b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lats[len(lats)-1].Microseconds())/1000, "max-ms")
	}
}

// TestSearchEveryKey covers each kind of SEARCH key, alone, negated and combined. Every
// condition must be two-valued: NOT of a key matches exactly the messages the key does not.
func TestSearchEveryKey(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	a, err := s.CreateAccount(ctx, "keys", "pw")
	if err != nil {
		t.Fatal(err)
	}
	day := func(d int) time.Time { return time.Date(2024, 3, d, 12, 0, 0, 0, time.UTC) }
	msgs := []struct {
		subject, from, body string
		date, sent          time.Time // sent zero: no Date header
		flags               []string
		pad                 int
	}{
		{"C++ (draft) review", "Bob <bob@example.org>", "the project plan", day(1), day(1), []string{`\Seen`, "$Work"}, 0},
		{"lunch", "Carol <carol@example.org>", "see you at noon", day(2), time.Time{}, nil, 2000},
		{"Re: project", "Bob <bob@example.org>", "nothing here", day(3), day(2), []string{`\Flagged`}, 0},
	}
	var mb store.MailboxID
	for _, m := range msgs {
		hdr := "From: " + m.from + "\nSubject: " + m.subject + "\n"
		if !m.sent.IsZero() {
			hdr += "Date: " + m.sent.Format(time.RFC1123Z) + "\n"
		}
		raw := strings.ReplaceAll(hdr, "\n", "\r\n") + "\r\n" + m.body + strings.Repeat("x", m.pad) + "\r\n"
		res, err := s.Append(ctx, a.ID, "INBOX", store.NewMessage{Raw: []byte(raw), Flags: m.flags, InternalDate: m.date, SentDate: m.sent, SearchHeader: hdr, SearchText: m.body})
		if err != nil {
			t.Fatal(err)
		}
		mb = res.Mailbox
	}
	uids := func(u ...store.UID) []store.UID { return u }
	hdr := func(k, v string) store.SearchCriteria {
		return store.SearchCriteria{Header: []store.HeaderMatch{{Key: k, Value: v}}}
	}
	tests := []struct {
		name string
		c    store.SearchCriteria
		want []store.UID
	}{
		{"all", store.SearchCriteria{}, uids(1, 2, 3)},
		{"uid set", store.SearchCriteria{UIDs: []store.UIDSet{{{Start: 2, Stop: 0}}}}, uids(2, 3)},
		{"two uid sets", store.SearchCriteria{UIDs: []store.UIDSet{{{Start: 1, Stop: 2}}, {{Start: 2, Stop: 3}}}}, uids(2)},
		{"empty uid set", store.SearchCriteria{UIDs: []store.UIDSet{{}}}, nil},
		{"since", store.SearchCriteria{Since: day(2)}, uids(2, 3)},
		{"before", store.SearchCriteria{Before: day(2)}, uids(1)},
		{"on", store.SearchCriteria{Since: day(2), Before: day(3)}, uids(2)},
		{"sentsince", store.SearchCriteria{SentSince: day(2)}, uids(2, 3)}, // 2 has no Date: its internal date counts
		{"sentbefore", store.SearchCriteria{SentBefore: day(2)}, uids(1)},
		{"not sentbefore", store.SearchCriteria{Not: []store.SearchCriteria{{SentBefore: day(2)}}}, uids(2, 3)},
		{"subject case-insensitive", hdr("subject", "PROJECT"), uids(3)},
		{"subject with regexp characters", hdr("Subject", "c++ (draft)"), uids(1)},
		{"from", hdr("From", "bob@"), uids(1, 3)},
		{"value of another field", hdr("From", "lunch"), nil},
		{"header present", hdr("Date", ""), uids(1, 3)},
		{"header absent", store.SearchCriteria{Not: []store.SearchCriteria{hdr("date", "")}}, uids(2)},
		{"unknown header", hdr("X-Nothing", ""), nil},
		{"body", store.SearchCriteria{Body: []string{"PROJECT"}}, uids(1)},
		{"body with like characters", store.SearchCriteria{Body: []string{"_"}}, nil},
		{"text in header or body", store.SearchCriteria{Text: []string{"project"}}, uids(1, 3)},
		{"seen", store.SearchCriteria{Flag: []string{`\seen`}}, uids(1)},
		{"unseen", store.SearchCriteria{NotFlag: []string{`\Seen`}}, uids(2, 3)},
		{"keyword any case", store.SearchCriteria{Flag: []string{"$work"}}, uids(1)},
		{"unkeyword", store.SearchCriteria{NotFlag: []string{"$WORK"}}, uids(2, 3)},
		{"recent", store.SearchCriteria{Flag: []string{`\Recent`}}, nil},
		{"not recent", store.SearchCriteria{NotFlag: []string{`\Recent`}}, uids(1, 2, 3)},
		{"larger", store.SearchCriteria{Larger: 1000}, uids(2)},
		{"smaller", store.SearchCriteria{Smaller: 1000}, uids(1, 3)},
		{"modseq", store.SearchCriteria{ModSeq: 3}, uids(2, 3)}, // the appends got MODSEQs 2, 3 and 4
		{"or", store.SearchCriteria{Or: [][2]store.SearchCriteria{{{Flag: []string{`\Flagged`}}, {Body: []string{"noon"}}}}}, uids(2, 3)},
		{"not not", store.SearchCriteria{Not: []store.SearchCriteria{{Not: []store.SearchCriteria{{Flag: []string{`\Seen`}}}}}}, uids(1)},
		{"and of or and not", store.SearchCriteria{
			Or:  [][2]store.SearchCriteria{{hdr("From", "bob"), hdr("From", "carol")}},
			Not: []store.SearchCriteria{{Flag: []string{`\Flagged`}}},
		}, uids(1, 2)},
	}
	for _, tc := range tests {
		got, err := s.Search(ctx, a.ID, mb, &tc.c)
		if err != nil {
			t.Errorf("%s: Search: %v", tc.name, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Search = %v, want %v", tc.name, got, tc.want)
		}
		// The negation matches exactly the others.
		neg := store.SearchCriteria{Not: []store.SearchCriteria{tc.c}}
		got, err = s.Search(ctx, a.ID, mb, &neg)
		if err != nil {
			t.Errorf("NOT %s: Search: %v", tc.name, err)
			continue
		}
		want := slices.DeleteFunc(uids(1, 2, 3), func(u store.UID) bool { return slices.Contains(tc.want, u) })
		if !slices.Equal(got, want) {
			t.Errorf("NOT %s: Search = %v, want %v", tc.name, got, want)
		}
	}
	// The unseen index serves FirstUnseen.
	if u, err := s.FirstUnseen(ctx, a.ID, mb, 3); err != nil || u != 2 {
		t.Errorf("FirstUnseen = %d, %v; want 2", u, err)
	}
	if u, err := s.FirstUnseen(ctx, a.ID, mb, 1); err != nil || u != 0 {
		t.Errorf("FirstUnseen up to UID 1 = %d, %v; want 0", u, err)
	}
}
