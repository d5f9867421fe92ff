package mailparse

import (
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	files := testdataFiles(f)
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"",
		"\r\n",
		"\n\n",
		" leading space\r\n\r\nbody",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b--",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c--\r\n--b--\r\n",
		"Content-Type: multipart/digest; boundary=b\n\n--b\n\nSubject: x\n\nbody\n--b--\n",
		"Content-Type: message/rfc822\r\n\r\nnot a header\r\n\r\nbody",
		"To: a:b:c;d;;,<@x,@y:z@w>,\"q\\\"x\"@[1.2.3.4] (c (n)),=?utf-8?q?a,b?= <e@f>\r\n\r\n",
		"Date: Mon, 1 Jan 9999 23:59:59 -2359\r\n\r\n",
		"Date: Sat, 1 Jan 0000 00:00:00 +2359\r\n\r\n",
		"Subject: =?x-unknown?q?abc?= =?utf-8?b?/w==?=\r\n\r\n",
		"Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: base64\r\n\r\n//5oAGkA\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := Parse(raw)
		checkInvariants(t, m)
		checkRoundTrip(t, m)
		if topHeaderOK(raw) {
			// Parts ExtractBodySection cannot serve (nil) are skipped;
			// every part it serves must match our size and lines.
			checkSections(t, raw, m.BodyStructure)
		}
	})
}
