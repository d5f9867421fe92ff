package mailparse

import (
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
)

// envelopeFromHeader builds the IMAP envelope of a header. Unlike
// imapserver.ExtractEnvelope it keeps group syntax (as go-imap group
// start/end markers), keeps addresses without '@' (see MissingHost),
// tolerates malformed dates, message IDs and address lists, and defaults
// Sender and Reply-To to From (RFC 3501 7.4.2).
func envelopeFromHeader(h textproto.Header) *imap.Envelope {
	env := &imap.Envelope{
		Subject:   decodeText(h.Get("Subject")),
		From:      parseAddressList(h.Get("From")),
		Sender:    parseAddressList(h.Get("Sender")),
		ReplyTo:   parseAddressList(h.Get("Reply-To")),
		To:        parseAddressList(h.Get("To")),
		Cc:        parseAddressList(h.Get("Cc")),
		Bcc:       parseAddressList(h.Get("Bcc")),
		InReplyTo: parseMsgIDs(h.Get("In-Reply-To")),
	}
	if ids := parseMsgIDs(h.Get("Message-Id")); len(ids) > 0 {
		env.MessageID = ids[0]
	}
	env.Date = parseDate(h.Get("Date"))
	if len(env.Sender) == 0 {
		env.Sender = copyAddrs(env.From)
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = copyAddrs(env.From)
	}
	return env
}

func copyAddrs(l []imap.Address) []imap.Address {
	if len(l) == 0 {
		return nil
	}
	return append([]imap.Address(nil), l...)
}

// parseMsgIDs returns the message identifiers of an In-Reply-To or
// Message-ID value, without angle brackets. Anything outside <...> is
// ignored; a value without brackets that is a single word is taken as is.
func parseMsgIDs(v string) []string {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	var ids []string
	rest := v
	for {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		rest = rest[i+1:]
		j := strings.IndexAny(rest, "<>")
		if j < 0 {
			j = len(rest)
		}
		id := strings.Join(strings.Fields(rest[:j]), "")
		if id != "" {
			ids = append(ids, clean(id))
		}
		if j < len(rest) && rest[j] == '>' {
			j++
		}
		rest = rest[j:]
	}
	if len(ids) == 0 && !strings.ContainsAny(v, " \t\r\n<>") {
		ids = append(ids, clean(v))
	}
	return ids
}

// obsolete RFC 5322 zones (section 4.3); military zones count as +0000.
var obsZones = map[string]string{
	"UT": "+0000", "GMT": "+0000", "Z": "+0000",
	"EST": "-0500", "EDT": "-0400", "CST": "-0600", "CDT": "-0500",
	"MST": "-0700", "MDT": "-0600", "PST": "-0800", "PDT": "-0700",
}

var fallbackDateLayouts = []string{
	time.RFC3339Nano,
	"Mon Jan _2 15:04:05 2006",       // asctime
	"Mon Jan _2 15:04:05 -0700 2006", // asctime with zone
	"Mon, 2 Jan 2006 15:04:05",       // no zone
	"2 Jan 2006 15:04:05",
	"Mon, 2 Jan 2006 15:04",
	"Mon, 2 Jan 2006 15.04.05 -0700",
	"Mon, 2 January 2006 15:04:05 -0700",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
}

// parseDate parses a Date header value; the zero time if it is missing or
// cannot be understood. The result is normalised (see normDate).
func parseDate(v string) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}
	// Drop comments and normalise whitespace and named zones.
	if i := strings.IndexByte(v, '('); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	f := strings.Fields(v)
	if len(f) > 0 {
		if z, ok := obsZones[strings.ToUpper(f[len(f)-1])]; ok {
			f[len(f)-1] = z
		} else if last := f[len(f)-1]; len(last) == 1 && isAlpha(last[0]) {
			f[len(f)-1] = "+0000" // military zone
		}
	}
	v = strings.Join(f, " ")
	// Fast path for the common RFC 5322 form; net/mail.ParseDate tries
	// (and allocates an error for) many layouts.
	t, err := time.Parse("Mon, 2 Jan 2006 15:04:05 -0700", v)
	if err != nil {
		t, err = mail.ParseDate(v)
	}
	if err != nil {
		for _, layout := range fallbackDateLayouts {
			if t, err = time.Parse(layout, v); err == nil {
				break
			}
		}
	}
	if err != nil {
		return time.Time{}
	}
	return normDate(t)
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// normDate returns t in an unnamed fixed zone with the same offset, so that
// values parsed from headers and from JSON compare equal with
// reflect.DeepEqual whatever the process's local zone is. Years outside
// 1..9999 give the zero time (they cannot be written as an RFC 5322 or
// RFC 3339 date).
func normDate(t time.Time) time.Time {
	if t.IsZero() || t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}
	}
	_, off := t.Zone()
	if off <= -24*3600 || off >= 24*3600 {
		return time.Time{}
	}
	u := time.Unix(t.Unix(), int64(t.Nanosecond())).In(time.FixedZone("", off))
	if u.Year() < 1 || u.Year() > 9999 {
		return time.Time{}
	}
	return u
}
