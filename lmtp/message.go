package lmtp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// maxPathLen is the longest reverse- or forward-path, RFC 5321 4.5.3.1.3.
const maxPathLen = 256

// Why an address is refused.
var (
	errAddrEmpty   = errors.New("empty address")
	errAddrTooLong = fmt.Errorf("address longer than %d bytes", maxPathLen)
	errAddrChars   = errors.New("address contains control characters or invalid UTF-8")
)

// checkAddress reports whether addr, as go-smtp parsed it from MAIL or RCPT, can be
// looked up and written into a header.
func checkAddress(addr string) error {
	switch {
	case addr == "":
		return errAddrEmpty
	case len(addr) > maxPathLen:
		return errAddrTooLong
	case !utf8.ValidString(addr):
		return errAddrChars
	}
	for _, r := range addr {
		if unicode.IsControl(r) {
			return errAddrChars
		}
	}
	return nil
}

// addressError is the reply to a refused address: 501 for a missing or overlong path,
// 553 for one that is not allowed.
func addressError(err error, what string, code smtp.EnhancedCode) error {
	reply := 553
	if errors.Is(err, errAddrEmpty) || errors.Is(err, errAddrTooLong) {
		reply = 501
	}
	return &smtp.SMTPError{Code: reply, EnhancedCode: code, Message: "Bad " + what + ": " + err.Error()}
}

// tooBigError reports a message over the size limit.
type tooBigError struct{ read int64 }

func (e *tooBigError) Error() string { return fmt.Sprintf("message too big (%d bytes read)", e.read) }

// readData appends the message from r to dst with every bare LF turned into CRLF. It
// stops with a *tooBigError as soon as more than limit bytes have come, so it never holds
// more than about twice limit bytes.
func readData(dst []byte, r io.Reader, limit int64) ([]byte, error) {
	buf := make([]byte, 32<<10)
	var read int64
	prevCR := false
	for {
		n, err := r.Read(buf)
		if n > 0 {
			read += int64(n)
			if read > limit {
				return nil, &tooBigError{read: read}
			}
			dst, prevCR = appendCRLF(dst, buf[:n], prevCR)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read message: %w", err)
		}
	}
}

// appendCRLF appends src to dst with each LF not preceded by CR turned into CRLF. prevCR
// says whether the byte before src was a CR; the result says the same of src's last byte.
func appendCRLF(dst, src []byte, prevCR bool) ([]byte, bool) {
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			return append(dst, src...), src[len(src)-1] == '\r'
		}
		cr := prevCR
		if i > 0 {
			cr = src[i-1] == '\r'
		}
		dst = append(dst, src[:i]...)
		if !cr {
			dst = append(dst, '\r')
		}
		dst = append(dst, '\n')
		src = src[i+1:]
		prevCR = false
	}
	return dst, prevCR
}

// trace is what the Return-Path and Received headers record.
type trace struct {
	from    string // reverse-path, "" for <>
	helo    string // the client's LHLO argument
	remote  string // "[192.0.2.1]", "[IPv6:...]" or "unix socket"
	host    string // this server
	id      string // the transaction's id, also in the log and the 250 replies
	forRcpt string // the recipient, only when there is exactly one
	date    time.Time
}

// traceHeaders appends the Return-Path and Received header fields, CRLF-terminated.
func traceHeaders(dst []byte, t trace) []byte {
	dst = append(dst, "Return-Path: <"...)
	dst = appendPath(dst, t.from)
	dst = append(dst, ">\r\nReceived: from "...)
	dst = appendDomain(dst, t.helo)
	dst = append(dst, " ("...)
	dst = append(dst, t.remote...)
	dst = append(dst, ")\r\n\tby "...)
	dst = appendDomain(dst, t.host)
	dst = append(dst, " (twinmail) with LMTP id "...)
	dst = append(dst, t.id...)
	if t.forRcpt != "" {
		dst = append(dst, "\r\n\tfor <"...)
		dst = appendPath(dst, t.forRcpt)
		dst = append(dst, '>')
	}
	dst = append(dst, "; "...)
	dst = t.date.AppendFormat(dst, time.RFC1123Z)
	return append(dst, "\r\n"...)
}

// appendPath appends addr (local@domain, as go-smtp unquoted it, or "") with its local
// part quoted again when it is not a dot-atom.
func appendPath(dst []byte, addr string) []byte {
	if addr == "" {
		return dst // the null reverse-path
	}
	local, domain := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain = addr[:i], addr[i:]
	}
	if isDotAtom(local) {
		dst = append(dst, local...)
	} else {
		dst = append(dst, '"')
		for i := 0; i < len(local); i++ {
			if c := local[i]; c == '"' || c == '\\' {
				dst = append(dst, '\\')
			}
			dst = append(dst, local[i])
		}
		dst = append(dst, '"')
	}
	return append(dst, domain...)
}

// isDotAtom reports whether s is an RFC 5322 dot-atom (with UTF-8 allowed, RFC 6532).
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80, 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// appendDomain appends a host name the client chose, with anything that could break the
// Received field's syntax replaced by '_'.
func appendDomain(dst []byte, name string) []byte {
	if name == "" {
		return append(dst, "unknown"...)
	}
	if len(name) > 255 {
		name = name[:255]
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(".-_:[]", c) >= 0:
		default:
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}
