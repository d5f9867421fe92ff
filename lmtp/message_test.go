package lmtp

import (
	"strings"
	"testing"
	"time"
)

func TestAppendCRLF(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a", "a"},
		{"\n", "\r\n"},
		{"\r\n", "\r\n"},
		{"a\nb\r\nc\n", "a\r\nb\r\nc\r\n"},
		{"\n\n\r\n\r\r\n", "\r\n\r\n\r\n\r\r\n"},
		{"lone\rCR\r", "lone\rCR\r"},
	} {
		// Every split into chunks of one size must give the same result.
		for size := 1; size <= len(tc.in)+1; size++ {
			var got []byte
			prevCR := false
			for in := tc.in; len(in) > 0; {
				n := min(size, len(in))
				got, prevCR = appendCRLF(got, []byte(in[:n]), prevCR)
				in = in[n:]
			}
			if string(got) != tc.want {
				t.Errorf("appendCRLF(%q) in chunks of %d = %q, want %q", tc.in, size, got, tc.want)
			}
		}
	}
}

func TestReadDataLimit(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int64
		ok    bool
	}{
		{"abc\n", 4, true},
		{"abc\n", 3, false},
		{strings.Repeat("x", 100000), 100000, true},
		{strings.Repeat("x", 100001), 100000, false},
	} {
		got, err := readData(nil, strings.NewReader(tc.in), tc.limit)
		if (err == nil) != tc.ok {
			t.Errorf("readData(%d bytes, limit %d) error = %v, want ok %v", len(tc.in), tc.limit, err, tc.ok)
		}
		if tc.ok && len(got) < len(tc.in) {
			t.Errorf("readData(%d bytes) returned %d bytes", len(tc.in), len(got))
		}
	}
}

func TestTraceHeaders(t *testing.T) {
	date := time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		t    trace
		want string
	}{{
		name: "one recipient",
		t:    trace{from: "carol@example.org", helo: "mx.example.org", remote: "[192.0.2.1]", host: "mail.test", id: "ABCDEFGHIJKL", forRcpt: "alice+Lists@example.org", date: date},
		want: "Return-Path: <carol@example.org>\r\n" +
			"Received: from mx.example.org ([192.0.2.1])\r\n" +
			"\tby mail.test (twinmail) with LMTP id ABCDEFGHIJKL\r\n" +
			"\tfor <alice+Lists@example.org>; Mon, 02 Jun 2025 10:00:00 +0000\r\n",
	}, {
		name: "several recipients, null sender",
		t:    trace{helo: "", remote: "unix socket", host: "mail.test", id: "X", date: date},
		want: "Return-Path: <>\r\n" +
			"Received: from unknown (unix socket)\r\n" +
			"\tby mail.test (twinmail) with LMTP id X; Mon, 02 Jun 2025 10:00:00 +0000\r\n",
	}, {
		name: "quoted local part, hostile helo",
		t:    trace{from: `a "b"\c@example.org`, helo: "evil; (x)\r\nX-Injected: 1", remote: "[IPv6:::1]", host: "mail.test", id: "X", forRcpt: ".bob@example.org", date: date},
		want: `Return-Path: <"a \"b\"\\c"@example.org>` + "\r\n" +
			"Received: from evil___x___X-Injected:_1 ([IPv6:::1])\r\n" +
			"\tby mail.test (twinmail) with LMTP id X\r\n" +
			"\tfor <\".bob\"@example.org>; Mon, 02 Jun 2025 10:00:00 +0000\r\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(traceHeaders(nil, tc.t)); got != tc.want {
				t.Errorf("traceHeaders() =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestCheckAddress(t *testing.T) {
	for _, tc := range []struct {
		addr string
		err  error
	}{
		{"alice@example.org", nil},
		{"jörg+Entwürfe@example.org", nil},
		{"", errAddrEmpty},
		{strings.Repeat("a", 245) + "@example.org", errAddrTooLong},
		{"a\x00b@example.org", errAddrChars},
		{"a\x7fb@example.org", errAddrChars},
		{"a\u0085b@example.org", errAddrChars},
		{"a\xffb@example.org", errAddrChars},
	} {
		if err := checkAddress(tc.addr); err != tc.err {
			t.Errorf("checkAddress(%q) = %v, want %v", tc.addr, err, tc.err)
		}
	}
}
