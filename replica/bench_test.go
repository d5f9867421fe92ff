package replica

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmail/twinmail/store"
)

var catchUpN = flag.Int("catchup.n", 10000, "messages on one side for BenchmarkCatchUp")

// bodyOf returns a distinct message of about size bytes.
func bodyOf(i, size int) []byte {
	head := fmt.Sprintf("Message-ID: <bench-%d@example.org>\r\nSubject: bench %d\r\nFrom: a@example.org\r\n\r\n", i, i)
	line := strings.Repeat("x", 76) + "\r\n"
	var sb strings.Builder
	sb.WriteString(head)
	for sb.Len() < size {
		sb.WriteString(line)
	}
	return []byte(sb.String())
}

// BenchmarkCatchUp measures how fast a pair catches up after catchup.n messages of 10 KiB
// were delivered on one side while the other was cut off.
//
//	go test -run '^$' -bench CatchUp -benchtime 1x -catchup.n 100000 ./replica/
func BenchmarkCatchUp(b *testing.B) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		p := newPair(b)
		var wg sync.WaitGroup
		const writers = 8
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < *catchUpN; i += writers {
					if _, err := p.a.Append(ctx, p.acct.ID, "INBOX", store.NewMessage{Raw: bodyOf(i, 10<<10)}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		p.w.stats = Stats{}
		p.w.opts.BatchSize = 2000
		b.StartTimer()
		start := time.Now()
		if err := p.w.SyncOnce(ctx); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		b.StopTimer()
		st := p.w.Stats()
		if st.Copied != int64(*catchUpN) {
			b.Fatalf("copied %d, want %d", st.Copied, *catchUpN)
		}
		b.ReportMetric(float64(*catchUpN)/el.Seconds(), "msgs/s")
		b.ReportMetric(float64(st.Bytes)/el.Seconds()/1e6, "MB/s")
	}
}

// BenchmarkLiveLag measures the time from a delivery on A to its visibility on B with the
// worker running (p50 and p99 over b.N deliveries).
//
//	go test -run '^$' -bench LiveLag -benchtime 200x ./replica/
func BenchmarkLiveLag(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newPair(b)
	done := make(chan struct{})
	go func() { defer close(done); _ = p.w.Run(ctx) }()
	mb, err := p.b.GetMailbox(ctx, p.acct.ID, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	lags := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		r, err := p.a.Append(ctx, p.acct.ID, "INBOX", store.NewMessage{Raw: bodyOf(i, 4<<10)})
		if err != nil {
			b.Fatal(err)
		}
		for {
			live, _, err := p.b.SyncLookup(ctx, p.acct.ID, []store.MessageID{r.Message})
			if err != nil {
				b.Fatal(err)
			}
			if _, ok := live[r.Message]; ok {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("message %d not on B after 10s", i)
			}
			time.Sleep(time.Millisecond)
		}
		lags = append(lags, time.Since(start))
	}
	b.StopTimer()
	_ = mb
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "p99-ms")
	cancel()
	<-done
}
