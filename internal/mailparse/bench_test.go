package mailparse

import (
	"fmt"
	"strings"
	"testing"
)

// benchMessage returns a typical ~10 KiB newsletter-style message: a dozen
// trace and authentication header fields, and a multipart/alternative with
// quoted-printable text and HTML parts.
func benchMessage() []byte {
	var b strings.Builder
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n"+
			"\tby mx.example.com (Postfix) with ESMTPS id 4Yx%dQk2Zz\r\n"+
			"\tfor <user@example.com>; Tue, 14 Jan 2025 10:00:0%d +0100 (CET)\r\n", i, i, i, i, i)
	}
	b.WriteString("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=shop.example; s=s1;\r\n" +
		"\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
		"\tb=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR\r\n")
	b.WriteString("Date: Tue, 14 Jan 2025 10:00:00 +0100\r\n" +
		"From: =?utf-8?q?Caf=C3=A9_Shop?= <news@shop.example>\r\n" +
		"Reply-To: Support <support@shop.example>\r\n" +
		"To: \"User, Example\" <user@example.com>\r\n" +
		"Cc: team:a@example.com, b@example.com;\r\n" +
		"Subject: =?utf-8?B?V2Vla2x5IGRlYWxzIOKCrDk5?=\r\n" +
		"Message-ID: <20250114100000.deadbeef@shop.example>\r\n" +
		"In-Reply-To: <prev@shop.example>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"=_b1\"\r\n\r\n")
	b.WriteString("--=_b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "Line %02d of the plain text: caf=C3=A9 deals =E2=82=AC%d, lorem ipsum dolor=\r\n sit amet.\r\n", i, i)
	}
	b.WriteString("--=_b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><body>\r\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "<p class=3D\"deal\">Deal %02d: <b>caf=C3=A9</b> =E2=82=AC%d lorem ipsum dolor sit</p>\r\n", i, i)
	}
	b.WriteString("</body></html>\r\n--=_b1--\r\n")
	return []byte(b.String())
}

func BenchmarkParse10K(b *testing.B) {
	raw := benchMessage()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		Parse(raw)
	}
}

func TestBenchMessage(t *testing.T) {
	raw := benchMessage()
	if len(raw) < 9<<10 || len(raw) > 11<<10 {
		t.Fatalf("bench message is %d bytes, want ~10 KiB", len(raw))
	}
	m := Parse(raw)
	checkInvariants(t, m)
	checkRoundTrip(t, m)
	if got := shape(m.BodyStructure); got != "multipart/alternative(text/plain,text/html)" {
		t.Fatalf("shape %s", got)
	}
	if unserved := checkSections(t, raw, m.BodyStructure); unserved != nil {
		t.Fatalf("unserved %v", unserved)
	}
	if got := fmtAddrs(m.Envelope.Cc); strings.Join(got, ",") != "group:team,a@example.com,b@example.com,;" {
		t.Fatalf("cc %q", got)
	}
}
