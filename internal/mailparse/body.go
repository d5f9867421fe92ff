package mailparse

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// parser holds the per-Parse state of the body walker.
type parser struct {
	scratch []byte // read buffer for counting part bodies
	raw     []byte // capture buffer for the raw bytes of a text part
	dec     []byte // decoded text of a part
	text    limitedBuilder
	parts   int
}

var parserPool = sync.Pool{New: func() any {
	return &parser{scratch: make([]byte, 16<<10)}
}}

func newParser() *parser {
	p := parserPool.Get().(*parser)
	p.text = limitedBuilder{limit: MaxSearchBytes}
	p.parts = 0
	return p
}

func (p *parser) release() {
	p.text = limitedBuilder{}
	if cap(p.raw) > 256<<10 {
		p.raw = nil
	}
	if cap(p.dec) > 256<<10 {
		p.dec = nil
	}
	parserPool.Put(p)
}

// mediaInfo is the Content-Type of an entity, in two views:
//   - the structural view decides whether the entity is a multipart or an
//     encapsulated message. It must be exactly what imapserver's
//     findMessagePart/openMessagePart see (go-message's Header.ContentType,
//     which returns the raw field value on a parse error, and a
//     case-sensitive "multipart/" prefix test), so that our part numbering
//     matches what ExtractBodySection serves.
//   - the display view (typ, sub, params) is what goes into BODYSTRUCTURE:
//     lower case, never empty, and consistent with the structural view.
type mediaInfo struct {
	structural string
	boundary   string
	multipart  bool
	message    bool
	typ, sub   string
	params     map[string]string
}

func mediaOf(h textproto.Header, parentStructural string) mediaInfo {
	gh := gomessage.Header{Header: h}
	st, stParams, stErr := gh.ContentType()
	mi := mediaInfo{structural: st}
	mi.multipart = strings.HasPrefix(st, "multipart/")
	if mi.multipart {
		mi.boundary = stParams["boundary"]
	}
	mi.message = !mi.multipart && (st == "message/rfc822" || st == "message/global" ||
		(!h.Has("Content-Type") && parentStructural == "multipart/digest"))

	disp, params := st, stParams
	if stErr != nil {
		raw := h.Get("Content-Type")
		disp, _, _ = mime.ParseMediaType(raw)
		params = lenientParams(raw)
	}
	typ, sub, _ := strings.Cut(disp, "/")
	if typ == "" || sub == "" {
		typ, sub = "text", "plain"
	}
	switch {
	case mi.multipart:
		if typ != "multipart" {
			sub = ""
		}
		typ = "multipart"
		if sub == "" {
			sub = "mixed"
		}
	case mi.message:
		if typ != "message" || (sub != "rfc822" && sub != "global") {
			sub = "rfc822"
		}
		typ = "message"
	case typ == "multipart" || (typ == "message" && (sub == "rfc822" || sub == "global")):
		// Looks like a container to a client but is not one to
		// ExtractBodySection: show it as what it is served as, text.
		typ, sub = "text", "plain"
	}
	mi.typ, mi.sub = clean(typ), clean(sub)
	mi.params = cleanParams(params)
	return mi
}

// entity returns the body structure of an entity with header h and body r.
// data, if non-nil, is the whole body (r reads the same bytes).
func (p *parser) entity(h textproto.Header, r io.Reader, data []byte, parentStructural string, depth int) imap.BodyStructure {
	mi := mediaOf(h, parentStructural)
	if depth >= maxDepth && (mi.multipart || mi.message) {
		mi.multipart, mi.message = false, false
		mi.typ, mi.sub, mi.params = "application", "octet-stream", nil
	}
	switch {
	case mi.multipart:
		return p.multipart(h, &mi, r, depth)
	case mi.message:
		return p.message(h, &mi, r, depth)
	default:
		return p.leaf(h, &mi, r, data)
	}
}

func (p *parser) multipart(h textproto.Header, mi *mediaInfo, r io.Reader, depth int) imap.BodyStructure {
	bs := &imap.BodyStructureMultiPart{
		Subtype: mi.sub,
		Extended: &imap.BodyStructureMultiPartExt{
			Params:      mi.params,
			Disposition: disposition(h),
			Language:    language(h),
			Location:    clean(h.Get("Content-Location")),
		},
	}

	// Until a first part is found, keep the bytes read: if there is none,
	// the "multipart" is most likely plain text and worth searching.
	var capt *captureReader
	if !p.text.full() {
		capt = &captureReader{r: r, max: MaxSearchBytes - p.text.Len()}
		r = capt
	}

	mr := textproto.NewMultipartReader(r, mi.boundary)
	for p.parts < maxParts {
		part, err := mr.NextPart()
		if err != nil {
			// io.EOF, or a malformed delimiter or part header: like
			// ExtractBodySection, there are no more reachable parts.
			break
		}
		if capt != nil {
			capt.stop()
			capt = nil
		}
		p.parts++
		bs.Children = append(bs.Children, p.entity(part.Header, part, nil, mi.structural, depth+1))
	}

	if len(bs.Children) == 0 {
		bs.Children = []imap.BodyStructure{emptyTextPart()}
		if capt != nil {
			readDrain(capt, p.scratch, nil, 0)
			p.addText(capt.buf, h.Get("Content-Transfer-Encoding"), mi.params["charset"])
		}
	}
	return bs
}

func (p *parser) message(h textproto.Header, mi *mediaInfo, r io.Reader, depth int) imap.BodyStructure {
	cr := &countReader{r: r}
	br := bufio.NewReader(cr)
	// Like imapserver.openMessagePart: a malformed header is not an error,
	// the body starts wherever ReadHeader stopped.
	ih, _ := textproto.ReadHeader(br)
	env := envelopeFromHeader(ih)
	if !p.text.full() {
		p.sep()
		appendHeaderLines(&p.text, ih)
	}
	inner := p.entity(ih, br, nil, "", depth+1)
	readDrain(br, p.scratch, nil, 0)

	return &imap.BodyStructureSinglePart{
		Type:        mi.typ,
		Subtype:     mi.sub,
		Params:      mi.params,
		ID:          clean(h.Get("Content-Id")),
		Description: clean(h.Get("Content-Description")),
		Encoding:    encoding(h),
		Size:        clampSize(cr.n),
		MessageRFC822: &imap.BodyStructureMessageRFC822{
			Envelope:      env,
			BodyStructure: inner,
			NumLines:      cr.lines,
		},
		Extended: singleExt(h),
	}
}

func (p *parser) leaf(h textproto.Header, mi *mediaInfo, r io.Reader, data []byte) imap.BodyStructure {
	isText := mi.typ == "text"
	wantText := isText && !p.text.full()

	var (
		n, lines int64
		raw      []byte
	)
	if data != nil {
		n, lines = int64(len(data)), int64(bytes.Count(data, nl))
		if wantText {
			raw = data[:min(len(data), maxRawTextPart)]
		}
	} else {
		var capture *[]byte
		if wantText {
			p.raw = p.raw[:0]
			capture = &p.raw
		}
		n, lines = readDrain(r, p.scratch, capture, maxRawTextPart)
		if wantText {
			raw = p.raw
		}
	}
	if wantText {
		p.addText(raw, h.Get("Content-Transfer-Encoding"), mi.params["charset"])
	}

	bs := &imap.BodyStructureSinglePart{
		Type:        mi.typ,
		Subtype:     mi.sub,
		Params:      mi.params,
		ID:          clean(h.Get("Content-Id")),
		Description: clean(h.Get("Content-Description")),
		Encoding:    encoding(h),
		Size:        clampSize(n),
		Extended:    singleExt(h),
	}
	if isText {
		bs.Text = &imap.BodyStructureText{NumLines: lines}
	}
	return bs
}

// sep separates search text chunks.
func (p *parser) sep() {
	if p.text.Len() > 0 {
		p.text.WriteString("\n")
	}
}

func (p *parser) addText(raw []byte, cte, charset string) {
	if len(raw) == 0 || p.text.full() {
		return
	}
	p.dec = appendCharset(p.dec[:0], charset, decodeTransfer(cte, raw))
	if len(p.dec) == 0 {
		return
	}
	p.sep()
	p.text.WriteBytes(p.dec)
}

func singleExt(h textproto.Header) *imap.BodyStructureSinglePartExt {
	return &imap.BodyStructureSinglePartExt{
		Disposition: disposition(h),
		Language:    language(h),
		Location:    clean(h.Get("Content-Location")),
	}
}

func encoding(h textproto.Header) string {
	return strings.ToLower(strings.TrimSpace(clean(h.Get("Content-Transfer-Encoding"))))
}

func disposition(h textproto.Header) *imap.BodyStructureDisposition {
	v := h.Get("Content-Disposition")
	if v == "" {
		return nil
	}
	d, params, err := mime.ParseMediaType(v)
	if err != nil {
		params = lenientParams(v)
		if d == "" {
			d, _, _ = strings.Cut(v, ";")
			d = strings.ToLower(strings.TrimSpace(d))
		}
	} else {
		for k, pv := range params {
			params[k] = decodeWords(pv)
		}
	}
	d = clean(d)
	if d == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: d, Params: cleanParams(params)}
}

func language(h textproto.Header) []string {
	v := h.Get("Content-Language")
	if v == "" {
		return nil
	}
	var l []string
	for _, s := range strings.Split(v, ",") {
		if s = clean(strings.TrimSpace(s)); s != "" {
			l = append(l, s)
		}
	}
	return l
}

// lenientParams extracts "key=value" parameters from a Content-Type or
// Content-Disposition value that mime.ParseMediaType rejected. Keys are
// lower-cased; the first occurrence of a key wins.
func lenientParams(v string) map[string]string {
	var m map[string]string
	for i, part := range splitParams(v) {
		if i == 0 {
			continue // the media type or disposition
		}
		k, val, ok := strings.Cut(part, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			continue
		}
		val = strings.TrimSpace(val)
		if strings.HasPrefix(val, `"`) {
			val = unquote(val)
		}
		if strings.HasSuffix(k, "*") { // RFC 2231: charset'lang'pct-encoded
			k = strings.TrimSuffix(k, "*")
			if cs, rest, ok := strings.Cut(val, "'"); ok {
				if _, enc, ok := strings.Cut(rest, "'"); ok {
					val = decodeCharset(cs, percentDecode(enc))
				}
			}
		}
		if m == nil {
			m = make(map[string]string)
		}
		if _, dup := m[k]; !dup {
			m[k] = decodeWords(val)
		}
	}
	return m
}

// splitParams splits v on semicolons outside double quotes.
func splitParams(v string) []string {
	var out []string
	start, inQuote := 0, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case ';':
			if !inQuote {
				out = append(out, v[start:i])
				start = i + 1
			}
		}
	}
	return append(out, v[start:])
}

// unquote removes the surrounding double quotes of s (the closing one may be
// missing) and its backslash escapes.
func unquote(s string) string {
	s = strings.TrimPrefix(s, `"`)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(s[i])
			continue
		}
		if c == '"' {
			break
		}
		b.WriteByte(c)
	}
	return b.String()
}

func percentDecode(s string) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return b
}

// countReader counts the bytes and newlines read through it.
type countReader struct {
	r        io.Reader
	n, lines int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	c.lines += int64(bytes.Count(b[:n], nl))
	return n, err
}

// captureReader keeps a copy of up to max bytes read through it, until stop.
type captureReader struct {
	r       io.Reader
	buf     []byte
	max     int
	stopped bool
}

func (c *captureReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if !c.stopped && len(c.buf) < c.max {
		k := min(n, c.max-len(c.buf))
		c.buf = append(c.buf, b[:k]...)
	}
	return n, err
}

func (c *captureReader) stop() {
	c.stopped = true
	c.buf = nil
}
