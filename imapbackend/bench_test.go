package imapbackend_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/google/uuid"

	"github.com/twinmail/twinmail/imapbackend"
	"github.com/twinmail/twinmail/internal/mailparse"
	"github.com/twinmail/twinmail/store"
	"github.com/twinmail/twinmail/store/storetest"
)

// The benchmarks measure the server over real TCP against a real PostgreSQL. They share one
// large mailbox (100,000 messages, 10,000 with -short), built once per run through
// store.ApplySync, the bulk path of replication, rather than through 100,000 APPENDs:
//
//	go test -run '^$' -bench . -benchtime 20x ./imapbackend/
//	go test -run '^$' -bench 'IMAP/Select' -benchtime 200x ./imapbackend/
//
// docs/performance.md records the figures and how they compare with Dovecot.
func BenchmarkIMAP(b *testing.B) {
	f := &bigFixture{parent: b}
	b.Run("Append/clients=1", func(b *testing.B) { benchAppend(b, 1) })
	b.Run("Append/clients=8", func(b *testing.B) { benchAppend(b, 8) })
	b.Run("Select", func(b *testing.B) { benchSelect(b, f) })
	b.Run("FetchMeta", func(b *testing.B) { benchFetchMeta(b, f) })
	b.Run("FetchBody", func(b *testing.B) { benchFetchBody(b, f) })
	for _, q := range []struct{ name, query string }{
		{"subject-rare", "SUBJECT " + rareSubject},
		{"subject-common", "SUBJECT " + commonSubject},
		{"from", "FROM " + rareSender},
		{"text-rare", "TEXT " + rareBody},
		{"text-common", "TEXT " + commonBody},
		{"body-rare", "BODY " + rareBody},
		{"unseen", "UNSEEN"},
	} {
		b.Run("Search/"+q.name, func(b *testing.B) { benchSearch(b, f, q.query) })
	}
	b.Run("SearchPlans", func(b *testing.B) { benchSearchPlans(b, f) })
	b.Run("Store", func(b *testing.B) { benchStore(b, f) })
	b.Run("IdleConns", benchIdleConns)
	b.Run("IdleWakeup", benchIdleWakeup)
}

// Words that the generated mailbox contains in a known number of messages.
const (
	rareSubject   = "xylophonic"   // the subject of one message
	commonSubject = "meeting"      // about a third of the subjects
	rareSender    = "zanzibar"     // the From of one message
	rareBody      = "quetzalcoatl" // the body of one message
	commonBody    = "project"      // about half of the bodies
)

// bigFixture is the shared large mailbox: a store with one account whose INBOX holds n
// messages, served by a backend. The first benchmark that needs it builds it; the parent
// benchmark owns its database, so it lives until the whole run ends.
type bigFixture struct {
	parent *testing.B
	once   sync.Once
	err    error
	srv    *server
	n      int

	plansLogged bool
}

// failTB sends failures to the benchmark that is running and everything else (cleanups) to
// the parent, which outlives it.
type failTB struct {
	testing.TB
	fail testing.TB
}

func (t failTB) Fatal(args ...any)                 { t.fail.Fatal(args...) }
func (t failTB) Fatalf(format string, args ...any) { t.fail.Fatalf(format, args...) }
func (t failTB) Error(args ...any)                 { t.fail.Error(args...) }
func (t failTB) Errorf(format string, args ...any) { t.fail.Errorf(format, args...) }

func (f *bigFixture) get(b *testing.B) *server {
	b.Helper()
	f.once.Do(func() {
		n := 100_000
		if testing.Short() {
			n = 10_000
		}
		tb := failTB{TB: f.parent, fail: b}
		st := openStore(tb)
		start := time.Now()
		acct, err := fillBig(st, n)
		if err != nil {
			f.err = err
			return
		}
		b.Logf("built a mailbox of %d messages in %v", n, time.Since(start).Round(time.Millisecond))
		f.srv = startServer(tb, st, imapbackend.Options{Logger: quietLogger(), MaxConnsPerIP: -1, MaxConnsPerAccount: -1})
		f.srv.acct = acct
		f.n = n
	})
	if f.err != nil {
		b.Fatalf("build the large mailbox: %v", f.err)
	}
	if f.srv == nil {
		b.Fatal("the large mailbox could not be built")
	}
	return f.srv
}

// openStore opens a store on a new database of tb's, logging only warnings.
func openStore(tb testing.TB) *store.Store {
	tb.Helper()
	st, err := store.Open(context.Background(), storetest.DSN(tb), store.Options{BcryptCost: 4, Logger: quietLogger(), MaxConns: 16})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(st.Close)
	return st
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// vocabulary is a fixed list of pseudo-words for generated text.
var vocabulary = func() []string {
	r := rand.New(rand.NewPCG(1, 2))
	syll := []string{"ba", "ke", "lo", "mi", "nu", "ra", "si", "to", "ve", "do", "fa", "gu", "pe", "ri", "sa", "te", "vo", "za", "chi", "mon", "tar", "len", "dis", "pro", "con"}
	seen := map[string]bool{rareSubject: true, commonSubject: true, rareSender: true, rareBody: true, commonBody: true}
	var words []string
	for len(words) < 3000 {
		var sb strings.Builder
		for range 2 + r.IntN(3) {
			sb.WriteString(syll[r.IntN(len(syll))])
		}
		w := sb.String()
		if !seen[w] && !strings.Contains(w, commonBody) && !strings.Contains(w, commonSubject) {
			seen[w] = true
			words = append(words, w)
		}
	}
	return words
}()

// genMessage returns message i of n: about 1.5 KiB, with a subject of a few words, one of
// several senders and a body of plain text.
func genMessage(i, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	word := func() string { return vocabulary[r.IntN(len(vocabulary))] }
	var subj []string
	if r.IntN(4) == 0 {
		subj = append(subj, "Re:")
	}
	for range 3 + r.IntN(4) {
		subj = append(subj, word())
	}
	if r.IntN(3) == 0 {
		subj = append(subj, commonSubject)
	}
	if i == n/2 {
		subj = append(subj, rareSubject)
	}
	sender := word()
	if i == n/3 {
		sender = rareSender
	}
	var body strings.Builder
	line := 0
	for body.Len() < 1200+r.IntN(600) {
		w := word()
		if r.IntN(400) == 0 {
			w = commonBody
		}
		body.WriteString(w)
		line += len(w) + 1
		if line > 70 {
			body.WriteString("\r\n")
			line = 0
		} else {
			body.WriteByte(' ')
		}
	}
	if i == 2*n/3 {
		body.WriteString("\r\nSee " + rareBody + ".\r\n")
	}
	date := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 17 * time.Minute)
	return fmt.Appendf(nil, "From: %s <%s@example.org>\r\n"+
		"To: Alice <alice@example.org>\r\n"+
		"Subject: %s\r\n"+
		"Date: %s\r\n"+
		"Message-ID: <bench-%d@example.org>\r\n"+
		"MIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n"+
		"\r\n%s\r\n",
		strings.ToUpper(sender[:1])+sender[1:], sender, strings.Join(subj, " "), date.Format(time.RFC1123Z), i, body.String())
}

// fillBig creates the test account and puts n generated messages into its INBOX, a third of
// them \Seen, in batches through store.ApplySync.
func fillBig(st *store.Store, n int) (store.Account, error) {
	ctx := context.Background()
	acct, err := st.CreateAccount(ctx, testUser, testPassword)
	if err != nil {
		return store.Account{}, err
	}
	inbox, err := st.GetMailbox(ctx, acct.ID, "INBOX")
	if err != nil {
		return store.Account{}, err
	}
	const batch = 2000
	type job struct {
		from int
		out  chan []store.SyncInsert
	}
	jobs := make(chan job, 4)
	go func() {
		defer close(jobs)
		for from := 0; from < n; from += batch {
			j := job{from: from, out: make(chan []store.SyncInsert, 1)}
			jobs <- j
			go func() {
				var ins []store.SyncInsert
				now := time.Now()
				for i := j.from; i < min(j.from+batch, n); i++ {
					raw := genMessage(i, n)
					p := mailparse.Parse(raw)
					d := sha256.Sum256(raw)
					sent := p.SentDate
					var flags []string
					if i%3 == 0 {
						flags = []string{`\Seen`}
					}
					ins = append(ins, store.SyncInsert{
						SyncPlace: store.SyncPlace{Mailbox: inbox.ID, UID: store.UID(i + 1)},
						Message:   uuid.Must(uuid.NewV7()),
						Flags:     flags,
						ChangedAt: now,
						Record: &store.MessageRecord{
							Digest:        d[:],
							Size:          int64(len(raw)),
							InternalDate:  sent,
							SentDate:      &sent,
							Envelope:      p.EnvelopeJSON,
							BodyStructure: p.BodyStructureJSON,
							SearchHeader:  p.SearchHeader,
							SearchText:    p.SearchText,
						},
						Body: raw,
					})
					ins[len(ins)-1].Record.ID = ins[len(ins)-1].Message
				}
				j.out <- ins
			}()
		}
	}()
	modseq := inbox.HighestModSeq
	for j := range jobs {
		ins := <-j.out
		next := store.UID(j.from + len(ins) + 1)
		err := st.ApplySync(ctx, acct.ID, &store.SyncBatch{
			Targets: []store.SyncTarget{{ID: inbox.ID, Expect: modseq, ModSeq: modseq + 1, UIDNext: next}},
			Insert:  ins,
		})
		if err != nil {
			return store.Account{}, err
		}
		modseq++
	}
	// As autovacuum would in a while: statistics for the planner, and the trigram indexes'
	// pending entries merged.
	return acct, st.Vacuum(ctx)
}

// benchAppend measures APPEND of a 1.5 KiB message by clients connections at once, each on
// its own connection, all into INBOX of one account.
func benchAppend(b *testing.B, clients int) {
	s := newServer(b, imapbackend.Options{Logger: quietLogger()})
	cs := make([]*imapclient.Client, clients)
	for i := range cs {
		cs[i] = s.client(b, nil)
	}
	msgs := make([][]byte, 64)
	for i := range msgs {
		msgs[i] = genMessage(i, len(msgs))
	}
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for k, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < b.N; i += clients {
				raw := msgs[i%len(msgs)]
				cmd := c.Append("INBOX", int64(len(raw)), nil)
				cmd.Write(raw)
				cmd.Close()
				if _, err := cmd.Wait(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// benchSelect measures SELECT INBOX of the large mailbox, as an IMAP4rev1 client (which is
// also sent [UNSEEN n]): ms/op is a SELECT served from the view cache, cold-ms the first
// SELECT of a new backend (another process), which reads the UID list from the database.
func benchSelect(b *testing.B, f *bigFixture) {
	s := f.get(b)
	var cold []time.Duration
	for range 3 {
		fresh := startServer(b, s.store, imapbackend.Options{Logger: quietLogger()})
		c := fresh.client(b, nil)
		start := time.Now()
		data, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			b.Fatal(err)
		}
		cold = append(cold, time.Since(start))
		if data.NumMessages != uint32(f.n) {
			b.Fatalf("SELECT: %d messages, want %d", data.NumMessages, f.n)
		}
	}
	slices.Sort(cold)
	c := s.client(b, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cold[1].Microseconds())/1000, "cold-ms")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}

// fastConn is a minimal IMAP client for the throughput benchmarks: it reads responses
// without parsing them, as a fast client would, so that the figures are the server's.
type fastConn struct {
	tb   testing.TB
	c    net.Conn
	r    *bufio.Reader
	n    int
	long []byte
}

func dialFast(tb testing.TB, addr string) *fastConn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	fc := &fastConn{tb: tb, c: c, r: bufio.NewReaderSize(c, 256<<10)}
	if _, err := fc.r.ReadSlice('\n'); err != nil {
		tb.Fatalf("read greeting: %v", err)
	}
	fc.mustOK("LOGIN " + testUser + " " + testPassword)
	return fc
}

// stats counts what a command returned.
type stats struct {
	lines   int   // untagged responses
	literal int64 // bytes in literals
	status  string
}

// run sends a command and reads to its tagged response; each untagged line is passed to
// line (which must not keep it) when line is not nil.
func (fc *fastConn) run(cmd string, line func([]byte)) stats {
	fc.n++
	tag := "b" + strconv.Itoa(fc.n)
	if _, err := io.WriteString(fc.c, tag+" "+cmd+"\r\n"); err != nil {
		fc.tb.Fatalf("write: %v", err)
	}
	var st stats
	tagB := []byte(tag + " ")
	for {
		l, err := fc.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: collect it.
			fc.long = append(fc.long[:0], l...)
			for err == bufio.ErrBufferFull {
				l, err = fc.r.ReadSlice('\n')
				fc.long = append(fc.long, l...)
			}
			l = fc.long
		}
		if err != nil {
			fc.tb.Fatalf("read: %v", err)
		}
		if bytes.HasPrefix(l, tagB) {
			st.status = string(bytes.TrimSpace(l[len(tagB):]))
			return st
		}
		st.lines++
		if line != nil {
			line(l)
		}
		// A literal announced at the end of the line: skip it and the rest of the line.
		for {
			t := bytes.TrimRight(l, "\r\n")
			if len(t) == 0 || t[len(t)-1] != '}' {
				break
			}
			open := bytes.LastIndexByte(t, '{')
			size, err := strconv.ParseInt(string(bytes.TrimSuffix(t[open+1:len(t)-1], []byte("+"))), 10, 64)
			if open < 0 || err != nil {
				break
			}
			if _, err := fc.r.Discard(int(size)); err != nil {
				fc.tb.Fatalf("read literal: %v", err)
			}
			st.literal += size
			if l, err = fc.r.ReadSlice('\n'); err != nil {
				fc.tb.Fatalf("read: %v", err)
			}
		}
	}
}

func (fc *fastConn) mustOK(cmd string) stats {
	fc.tb.Helper()
	st := fc.run(cmd, nil)
	if !strings.HasPrefix(st.status, "OK") {
		fc.tb.Fatalf("%s: %s", cmd, st.status)
	}
	return st
}

// heapSampler records, while it runs, the peak growth of the heap: of all objects not yet
// freed (garbage included), and of the live heap as the last garbage collection found it.
type heapSampler struct {
	stop chan struct{}
	done chan [2]uint64
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan [2]uint64)}
	runtime.GC()
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		var base, peak [2]uint64
		for i := range s {
			base[i] = s[i].Value.Uint64()
		}
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				h.done <- peak
				return
			case <-t.C:
				metrics.Read(s)
				for i := range s {
					if v := s[i].Value.Uint64(); v > base[i] && v-base[i] > peak[i] {
						peak[i] = v - base[i]
					}
				}
			}
		}
	}()
	return h
}

// peak stops the sampler and returns the largest growth of all heap objects and of the live
// heap that it saw.
func (h *heapSampler) peak() (objects, live uint64) {
	close(h.stop)
	p := <-h.done
	return p[0], p[1]
}

// benchFetchMeta measures UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE) over
// the large mailbox.
func benchFetchMeta(b *testing.B, f *bigFixture) {
	s := f.get(b)
	fc := dialFast(b, s.addr)
	fc.mustOK("SELECT INBOX")
	var peak, live uint64
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	alloc0 := mem.TotalAlloc
	b.ResetTimer()
	for range b.N {
		h := sampleHeap()
		st := fc.mustOK("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")
		p, l := h.peak()
		peak, live = max(peak, p), max(live, l)
		if st.lines != f.n {
			b.Fatalf("FETCH returned %d responses, want %d", st.lines, f.n)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&mem)
	b.ReportMetric(float64(f.n*b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(mem.TotalAlloc-alloc0)/float64(f.n*b.N), "alloc-B/msg")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(live)/(1<<20), "peak-live-MiB")
}

// benchFetchBody measures UID FETCH 1:* BODY.PEEK[] over the large mailbox.
func benchFetchBody(b *testing.B, f *bigFixture) {
	s := f.get(b)
	fc := dialFast(b, s.addr)
	fc.mustOK("SELECT INBOX")
	var bytes int64
	var peak, live uint64
	b.ResetTimer()
	for range b.N {
		h := sampleHeap()
		st := fc.mustOK("UID FETCH 1:* BODY.PEEK[]")
		p, l := h.peak()
		peak, live = max(peak, p), max(live, l)
		if st.lines != f.n {
			b.Fatalf("FETCH returned %d responses, want %d", st.lines, f.n)
		}
		bytes += st.literal
	}
	b.StopTimer()
	b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(f.n*b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(live)/(1<<20), "peak-live-MiB")
}

// benchSearch measures UID SEARCH with one key over the large mailbox.
func benchSearch(b *testing.B, f *bigFixture, query string) {
	s := f.get(b)
	fc := dialFast(b, s.addr)
	fc.mustOK("SELECT INBOX")
	var hits int
	count := func(l []byte) {
		if bytes.HasPrefix(l, []byte("* SEARCH")) {
			hits = bytes.Count(l, []byte(" ")) - 1
		}
	}
	b.ResetTimer()
	for range b.N {
		if st := fc.run("UID SEARCH "+query, count); !strings.HasPrefix(st.status, "OK") {
			b.Fatalf("UID SEARCH %s: %s", query, st.status)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	b.ReportMetric(float64(hits), "hits")
}

// benchSearchPlans logs PostgreSQL's plans for the substring searches on the large mailbox
// and checks that the rare terms are found through the trigram indexes.
// The plans are logged once per run.
func benchSearchPlans(b *testing.B, f *bigFixture) {
	s := f.get(b)
	ctx := context.Background()
	mb, err := s.store.GetMailbox(ctx, s.acct.ID, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	all := store.UIDSet{{Start: 1, Stop: store.UID(f.n)}}
	for range b.N {
		for _, q := range []struct {
			name  string
			c     store.SearchCriteria
			index string // must appear in the plan
		}{
			{"SUBJECT " + rareSubject, store.SearchCriteria{Header: []store.HeaderMatch{{Key: "Subject", Value: rareSubject}}}, "messages_search_header_trgm"},
			{"SUBJECT " + commonSubject, store.SearchCriteria{Header: []store.HeaderMatch{{Key: "Subject", Value: commonSubject}}}, ""},
			{"TEXT " + rareBody, store.SearchCriteria{Text: []string{rareBody}}, "messages_search_text_trgm"},
			{"TEXT " + commonBody, store.SearchCriteria{Text: []string{commonBody}}, ""},
			{"UNSEEN", store.SearchCriteria{NotFlag: []string{store.FlagSeen}}, ""},
		} {
			q.c.UIDs = []store.UIDSet{all}
			plan, err := s.store.ExplainSearch(ctx, s.acct.ID, mb.ID, &q.c)
			if err != nil {
				b.Fatal(err)
			}
			if !f.plansLogged {
				b.Logf("UID SEARCH %s:\n%s", q.name, plan)
			}
			if q.index != "" && !strings.Contains(plan, q.index) {
				b.Errorf("UID SEARCH %s does not use %s", q.name, q.index)
			}
		}
		f.plansLogged = true
	}
}

// benchStore measures UID STORE +FLAGS / -FLAGS on one message of the large mailbox.
func benchStore(b *testing.B, f *bigFixture) {
	s := f.get(b)
	fc := dialFast(b, s.addr)
	fc.mustOK("SELECT INBOX")
	uid := f.n / 2
	b.ResetTimer()
	for i := range b.N {
		op := "+FLAGS"
		if i%2 == 1 {
			op = "-FLAGS"
		}
		fc.mustOK(fmt.Sprintf("UID STORE %d %s (\\Flagged)", uid, op))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}

// raiseFileLimit lifts the soft limit on open files to the hard limit.
func raiseFileLimit(tb testing.TB, want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur >= want {
		return
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatalf("setrlimit: %v", err)
	}
	if lim.Cur < want {
		tb.Fatalf("open files limited to %d, need %d", lim.Cur, want)
	}
}

// benchIdleConns measures the memory that 2,000 idle connections cost the process: each is
// logged in and has a small INBOX selected (half of them in IDLE). The client side of each
// connection is a bare socket, so nearly all of the growth is the server's.
// The time per operation is that of opening 2,000 connections, logging them in and selecting.
func benchIdleConns(b *testing.B) {
	const conns = 2000
	raiseFileLimit(b, 2*conns+512)
	s := newServer(b, imapbackend.Options{Logger: quietLogger(), MaxConnsPerIP: -1, MaxConnsPerAccount: -1})
	c := s.client(b, nil)
	fill(b, c, 3)
	c.Logout()
	var heap, stack float64
	b.ResetTimer()
	for range b.N {
		h, st := idleConnsMemory(b, s, conns)
		heap, stack = heap+h, stack+st
	}
	b.StopTimer()
	n := float64(conns * b.N)
	b.ReportMetric(heap/n, "heap-B/conn")
	b.ReportMetric(stack/n, "stack-B/conn")
	b.ReportMetric((heap+stack)/n, "B/conn")
}

func idleConnsMemory(b *testing.B, s *server, conns int) (heap, stack float64) {
	settle := func() runtime.MemStats {
		var m runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&m)
		return m
	}
	before := settle()
	open := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				b.Error(err)
				return
			}
			r := bufio.NewReaderSize(c, 512)
			cmds := "a LOGIN " + testUser + " " + testPassword + "\r\nb SELECT INBOX\r\n"
			if i%2 == 1 {
				cmds += "c IDLE\r\n"
			}
			io.WriteString(c, cmds)
			want := "b OK"
			if i%2 == 1 {
				want = "+ "
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					b.Errorf("connection %d: %v", i, err)
					c.Close()
					return
				}
				if strings.HasPrefix(l, want) {
					break
				}
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(open) != conns {
		b.Fatalf("%d of %d connections logged in", len(open), conns)
	}
	time.Sleep(200 * time.Millisecond) // let the server goroutines reach their reads
	after := settle()
	return float64(after.HeapInuse) - float64(before.HeapInuse), float64(after.StackInuse) - float64(before.StackInuse)
}

// benchIdleWakeup measures how long after an APPEND through one backend a client idling on
// another backend over the same database (two gateway processes) gets its EXISTS. The
// latency runs from sending the APPEND to receiving the EXISTS.
func benchIdleWakeup(b *testing.B) {
	dsn := storetest.DSN(b)
	open := func() *store.Store {
		st, err := store.Open(context.Background(), dsn, store.Options{BcryptCost: 4, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		return st
	}
	stA, stB := open(), open()
	a := startServer(b, stA, imapbackend.Options{Logger: quietLogger()})
	bsrv := startServer(b, stB, imapbackend.Options{Logger: quietLogger()})
	if _, err := stA.CreateAccount(context.Background(), testUser, testPassword); err != nil {
		b.Fatal(err)
	}
	exists := make(chan uint32, 16)
	idler := a.client(b, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	})
	if _, err := idler.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	idle, err := idler.Idle()
	if err != nil {
		b.Fatal(err)
	}
	defer idle.Close()
	appender := bsrv.client(b, nil)
	raw := genMessage(1, 2)
	lat := make([]time.Duration, 0, b.N)
	fromOK := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		cmd := appender.Append("INBOX", int64(len(raw)), nil)
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		ok := time.Now()
		select {
		case n := <-exists:
			if n != uint32(i+1) {
				b.Fatalf("EXISTS %d, want %d", n, i+1)
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("no EXISTS for message %d", i+1)
		}
		now := time.Now()
		lat = append(lat, now.Sub(start))
		fromOK = append(fromOK, now.Sub(ok))
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(fromOK)
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(fromOK, 0.50), "p50-after-OK-ms")
	b.ReportMetric(pct(fromOK, 0.99), "p99-after-OK-ms")
}
