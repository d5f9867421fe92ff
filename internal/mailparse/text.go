package mailparse

import (
	"bytes"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset" // also sets go-message's CharsetReader
	"golang.org/x/text/encoding/charmap"
)

// clean returns s as valid UTF-8 without NUL bytes. Bytes that are not part
// of a valid UTF-8 sequence are taken as Windows-1252 (a superset of
// ISO-8859-1 for printable characters), the usual charset of raw 8-bit
// header bytes.
func clean(s string) string {
	if isClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(charmap.Windows1252.DecodeByte(s[i]))
		case r == 0:
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func isClean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 {
			return false
		}
		if c >= utf8.RuneSelf {
			return utf8.ValidString(s[i:]) && strings.IndexByte(s[i:], 0) < 0
		}
	}
	return true
}

func cleanParams(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[clean(k)] = clean(v)
	}
	return out
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

func charsetReader(cs string, r io.Reader) (io.Reader, error) {
	return charset.Reader(cs, r)
}

// decodeWords decodes RFC 2047 encoded-words; on error (e.g. an unknown
// charset) it returns s unchanged. The result may need clean.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// decodeText decodes a header value to clean UTF-8.
func decodeText(s string) string { return clean(decodeWords(s)) }

// decodeTransfer undoes a Content-Transfer-Encoding, leniently: invalid
// input never fails, it decodes as much as makes sense.
func decodeTransfer(cte string, b []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return decodeBase64(b)
	case "quoted-printable":
		return decodeQP(b)
	default:
		return b
	}
}

var b64 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	t['-'], t['_'] = 62, 63 // URL-safe alphabet, seen in the wild
	return t
}()

// decodeBase64 skips characters outside the alphabet; '=' ends a quantum
// (so concatenated base64 blobs decode too).
func decodeBase64(src []byte) []byte {
	dst := make([]byte, 0, len(src)*3/4+3)
	var acc uint32
	var nbits uint
	for _, c := range src {
		v := b64[c]
		if v == 0xFF {
			if c == '=' {
				acc, nbits = 0, 0
			}
			continue
		}
		acc = acc<<6 | uint32(v)
		nbits += 6
		if nbits >= 8 {
			nbits -= 8
			dst = append(dst, byte(acc>>nbits))
			acc &= 1<<nbits - 1
		}
	}
	return dst
}

// decodeQP decodes quoted-printable; invalid escapes are kept literally.
func decodeQP(src []byte) []byte {
	if bytes.IndexByte(src, '=') < 0 {
		return src
	}
	dst := make([]byte, 0, len(src))
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '=' {
			dst = append(dst, c)
			continue
		}
		if i+2 < len(src) && isHex(src[i+1]) && isHex(src[i+2]) {
			dst = append(dst, unhex(src[i+1])<<4|unhex(src[i+2]))
			i += 2
			continue
		}
		// Soft line break: "=", optional trailing whitespace, EOL or EOF.
		j := i + 1
		for j < len(src) && (src[j] == ' ' || src[j] == '\t') {
			j++
		}
		switch {
		case j == len(src):
			i = j
		case src[j] == '\n':
			i = j
		case src[j] == '\r' && j+1 < len(src) && src[j+1] == '\n':
			i = j + 1
		default:
			dst = append(dst, '=')
		}
	}
	return dst
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// decodeCharset converts b from the named charset to clean UTF-8. Unknown
// charsets, and bytes invalid in the declared one, fall back to clean's
// Windows-1252 rule.
func decodeCharset(cs string, b []byte) string {
	return string(appendCharset(nil, cs, b))
}

// appendCharset is decodeCharset appending to dst.
func appendCharset(dst []byte, cs string, b []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(cs)) {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
	default:
		if r, err := charset.Reader(cs, bytes.NewReader(b)); err == nil {
			b, _ = io.ReadAll(r)
		}
	}
	return appendClean(dst, b)
}

// appendClean appends b to dst with clean's rules.
func appendClean(dst, b []byte) []byte {
	if utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 {
		return append(dst, b...)
	}
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = utf8.AppendRune(dst, charmap.Windows1252.DecodeByte(b[i]))
		case r == 0:
		default:
			dst = append(dst, b[i:i+size]...)
		}
		i += size
	}
	return dst
}
