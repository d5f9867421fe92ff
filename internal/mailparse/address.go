package mailparse

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// A lenient RFC 5322 address-list parser producing go-imap addresses.
//
// go-imap's writeEnvelope writes every imap.Address as
// (name NIL mailbox host), with "" written as NIL. RFC 3501 7.4.2 gives the
// NIL host a meaning: (NIL NIL "name" NIL) starts a group called "name" and
// (NIL NIL NIL NIL) ends it. So groups are expressed as
// imap.Address{Mailbox: groupName} ... imap.Address{}, and a real address
// must never have an empty host or (with an empty host) an empty mailbox;
// MissingHost and MissingMailbox fill the gaps.

type addrTokKind uint8

const (
	tWord    addrTokKind = iota // atom, dot-atom or encoded-word
	tQuoted                     // quoted-string (text unquoted)
	tLiteral                    // domain literal, brackets included
	tSpecial                    // one of < > @ : ; ,
	tComment                    // comment (text without parentheses)
)

type addrTok struct {
	kind  addrTokKind
	text  string
	space bool // preceded by whitespace or a comment
}

func (t addrTok) is(c byte) bool { return t.kind == tSpecial && t.text[0] == c }

func scanAddrs(s string) []addrTok {
	var toks []addrTok
	space := false
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			space = true
			i++
			continue
		case c == '(':
			depth, j := 0, i
			var b strings.Builder
			for ; j < len(s); j++ {
				ch := s[j]
				if ch == '\\' && j+1 < len(s) {
					j++
					b.WriteByte(s[j])
					continue
				}
				if ch == '(' {
					depth++
					if depth == 1 {
						continue
					}
				} else if ch == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
				b.WriteByte(ch)
			}
			toks = append(toks, addrTok{kind: tComment, text: strings.TrimSpace(b.String()), space: space})
			space = true
			i = j + 1
			continue
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			toks = append(toks, addrTok{kind: tQuoted, text: b.String(), space: space})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				j = len(s)
			} else {
				j += i + 1
			}
			toks = append(toks, addrTok{kind: tLiteral, text: s[i:j], space: space})
			i = j
		case strings.IndexByte("<>@:;,", c) >= 0:
			toks = append(toks, addrTok{kind: tSpecial, text: s[i : i+1], space: space})
			i++
		default:
			j := i
			for j < len(s) {
				if n := encodedWordLen(s[j:]); n > 0 {
					j += n
					continue
				}
				if j > i && strings.IndexByte(" \t\r\n()\"[<>@:;,", s[j]) >= 0 {
					break
				}
				j++
			}
			toks = append(toks, addrTok{kind: tWord, text: s[i:j], space: space})
			i = j
		}
		space = false
	}
	return toks
}

// encodedWordLen returns the length of the RFC 2047 encoded-word at the
// start of s, or 0. Encoded-words are kept whole even when (against the
// RFC) their text contains specials such as ',' or '@'.
func encodedWordLen(s string) int {
	if !strings.HasPrefix(s, "=?") {
		return 0
	}
	q := 0 // '?' seen after "=?"
	for i := 2; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\r', '\n':
			return 0
		case '?':
			q++
			if q == 3 {
				if i+1 < len(s) && s[i+1] == '=' {
					return i + 2
				}
				return 0
			}
		}
	}
	return 0
}

type addrParser struct {
	toks []addrTok
	pos  int
}

func (p *addrParser) eof() bool     { return p.pos >= len(p.toks) }
func (p *addrParser) peek() addrTok { return p.toks[p.pos] }

// parseAddressList parses an address-list header value.
func parseAddressList(v string) []imap.Address {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	p := &addrParser{toks: scanAddrs(v)}
	var out []imap.Address
	for !p.eof() {
		out = p.item(out, false)
	}
	return out
}

// item parses one mailbox or group, or skips one separator. It always
// consumes at least one token, except that inside a group it stops in front
// of ';'.
func (p *addrParser) item(out []imap.Address, inGroup bool) []imap.Address {
	t := p.peek()
	if t.kind == tSpecial {
		switch t.text[0] {
		case ';':
			if inGroup {
				return out
			}
			p.pos++
			return out
		case ',', '>', ':':
			p.pos++
			return out
		}
	}

	// The phrase (display name, or local part of a bare addr-spec).
	start := p.pos
	var comment string
	for !p.eof() {
		t := p.peek()
		if t.kind == tSpecial {
			break
		}
		if t.kind == tComment && comment == "" {
			comment = t.text
		}
		p.pos++
	}
	words := p.toks[start:p.pos]

	if p.eof() {
		return appendMailbox(out, words, comment)
	}
	switch p.peek().text[0] {
	case ':':
		p.pos++
		if inGroup { // nested group: not valid, just ignore its name
			return out
		}
		name := phrase(words)
		var members []imap.Address
		for !p.eof() && !p.peek().is(';') {
			members = p.item(members, true)
		}
		if !p.eof() {
			p.pos++ // ';'
		}
		if decodeText(name) == "" {
			return append(out, members...)
		}
		out = append(out, imap.Address{Mailbox: decodeText(name)})
		out = append(out, members...)
		return append(out, imap.Address{})

	case '<':
		p.pos++
		astart := p.pos
		// An obsolete route ("<@a,@b:user@c>") may contain commas.
		route := !p.eof() && p.peek().is('@')
		for !p.eof() {
			t := p.peek()
			if t.is('>') {
				break
			}
			if t.is(':') && route {
				route = false
				astart = p.pos + 1
			} else if (t.is(',') || t.is(';') || t.is('<')) && !route {
				break // missing '>'
			}
			p.pos++
		}
		spec := p.toks[astart:p.pos]
		if !p.eof() && p.peek().is('>') {
			p.pos++
		}
		// A trailing comment may hold the name: "<a@b> (Name)".
		for !p.eof() && p.peek().kind == tComment {
			if comment == "" {
				comment = p.peek().text
			}
			p.pos++
		}
		mbox, host := splitSpec(spec)
		return appendAddr(out, phrase(words), mbox, host, comment)

	case '@':
		// Bare addr-spec: the local part is the last run of words not
		// separated by whitespace; anything before it is a name.
		local := len(words)
		for local > 0 && words[local-1].kind != tComment {
			local--
			if words[local].space {
				break
			}
		}
		// Domain: following words and literals up to whitespace or a
		// special.
		p.pos++
		dstart := p.pos
		for !p.eof() {
			t := p.peek()
			if t.kind == tSpecial || t.kind == tComment || (p.pos > dstart && t.space) {
				break
			}
			p.pos++
		}
		host := concat(p.toks[dstart:p.pos])
		for !p.eof() && p.peek().kind == tComment {
			if comment == "" {
				comment = p.peek().text
			}
			p.pos++
		}
		return appendAddr(out, phrase(words[:local]), concat(words[local:]), host, comment)

	default: // ',' ';' '>': an address without '@', or nothing
		return appendMailbox(out, words, comment)
	}
}

// appendMailbox handles a phrase not followed by '<' or '@': an address
// without a host ("To: root"). The last word run is the mailbox, anything
// before it the name.
func appendMailbox(out []imap.Address, words []addrTok, comment string) []imap.Address {
	var nonComment []addrTok
	for _, w := range words {
		if w.kind != tComment {
			nonComment = append(nonComment, w)
		}
	}
	if len(nonComment) == 0 {
		return out
	}
	local := len(nonComment) - 1
	for local > 0 && !nonComment[local].space {
		local--
	}
	return appendAddr(out, phrase(nonComment[:local]), concat(nonComment[local:]), "", comment)
}

func appendAddr(out []imap.Address, name, mbox, host, comment string) []imap.Address {
	name = strings.TrimSpace(decodeText(name))
	if name == "" {
		name = strings.TrimSpace(decodeText(comment))
	}
	mbox, host = clean(mbox), clean(host)
	if mbox == "" && host == "" && name == "" {
		return out
	}
	if host == "" {
		host = MissingHost
	}
	if mbox == "" {
		mbox = MissingMailbox
	}
	return append(out, imap.Address{Name: name, Mailbox: mbox, Host: host})
}

// splitSpec splits the tokens of an addr-spec at its last '@'.
func splitSpec(spec []addrTok) (mbox, host string) {
	at := -1
	for i, t := range spec {
		if t.is('@') {
			at = i
		}
	}
	if at < 0 {
		return concat(spec), ""
	}
	return concat(spec[:at]), concat(spec[at+1:])
}

// concat joins the text of word, quoted and literal tokens without spaces
// (dot-atoms with CFWS, quoted local parts).
func concat(toks []addrTok) string {
	var b strings.Builder
	for _, t := range toks {
		switch t.kind {
		case tWord, tQuoted, tLiteral:
			b.WriteString(t.text)
		case tSpecial:
			if t.text[0] == '@' {
				b.WriteByte('@')
			}
		}
	}
	return b.String()
}

// phrase joins the words of a display name with single spaces. Encoded
// words are decoded later (decodeText), which also removes the whitespace
// between adjacent encoded-words.
func phrase(toks []addrTok) string {
	var b strings.Builder
	for _, t := range toks {
		if t.kind == tComment {
			continue
		}
		if b.Len() > 0 && t.space {
			b.WriteByte(' ')
		}
		b.WriteString(t.text)
	}
	return b.String()
}
