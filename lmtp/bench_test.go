package lmtp_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/twinmail/twinmail/lmtp"
)

// benchMessage returns a message of about 4 KiB.
func benchMessage(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: benchmark %d\r\n"+
		"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <%d@bench.example.org>\r\n\r\n", n, n)
	for b.Len() < 4096 {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	return b.String()
}

// BenchmarkDeliver measures LMTP deliveries of a 4 KiB message into one INBOX, with one
// client and with eight at once (each client is one connection; a delivery is MAIL, RCPT,
// DATA and the commit).
func BenchmarkDeliver(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			st, addr := newServer(b, lmtp.Options{Logger: discard()})
			createAccount(b, st, "alice")
			pool := make(chan *smtp.Client, clients)
			for range clients {
				pool <- dialClient(b, "tcp", addr)
			}
			var seq atomic.Int64
			deliver := func(c *smtp.Client) {
				n := seq.Add(1)
				if _, err := send(c, "carol@example.org", []string{"alice@example.org"}, benchMessage(int(n))); err != nil {
					b.Error(err)
				}
			}
			b.SetBytes(int64(len(benchMessage(0))))
			b.ResetTimer()
			if clients == 1 {
				c := <-pool
				for b.Loop() {
					deliver(c)
				}
			} else {
				// At least `clients` goroutines share the `clients` connections.
				b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						c := <-pool
						deliver(c)
						pool <- c
					}
				})
			}
			b.ReportMetric(float64(seq.Load())/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
