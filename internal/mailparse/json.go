package mailparse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
)

// The JSON forms are this package's own schema (not encoding/json of the
// go-imap types, whose BodyStructure is an interface). Empty fields are
// omitted; "null" stands for a nil envelope or body structure.
//
// Envelope:
//
//	{"date":"2006-01-02T15:04:05-07:00","subject":"...",
//	 "from":[{"name":"...","mailbox":"...","host":"..."}],"sender":[...],
//	 "reply_to":[...],"to":[...],"cc":[...],"bcc":[...],
//	 "in_reply_to":["id@host"],"message_id":"id@host"}
//
// A group start is {"mailbox":"group name"}, a group end is {}.
//
// Body structure, single part:
//
//	{"type":"text","subtype":"plain","params":{"charset":"utf-8"},
//	 "id":"...","description":"...","encoding":"base64","size":123,
//	 "lines":4,                       // present iff Text != nil
//	 "message":{"envelope":{...},"body":{...},"lines":9}, // message/rfc822
//	 "ext":{"disposition":{"value":"attachment","params":{...}},
//	        "language":["en"],"location":"..."}}
//
// Multipart:
//
//	{"multipart":true,"subtype":"mixed","children":[...],
//	 "ext":{"params":{"boundary":"..."},"disposition":...,"language":...,"location":...}}

type jsonAddress struct {
	Name    string `json:"name,omitempty"`
	Mailbox string `json:"mailbox,omitempty"`
	Host    string `json:"host,omitempty"`
}

type jsonEnvelope struct {
	Date      string        `json:"date,omitempty"`
	Subject   string        `json:"subject,omitempty"`
	From      []jsonAddress `json:"from,omitempty"`
	Sender    []jsonAddress `json:"sender,omitempty"`
	ReplyTo   []jsonAddress `json:"reply_to,omitempty"`
	To        []jsonAddress `json:"to,omitempty"`
	Cc        []jsonAddress `json:"cc,omitempty"`
	Bcc       []jsonAddress `json:"bcc,omitempty"`
	InReplyTo []string      `json:"in_reply_to,omitempty"`
	MessageID string        `json:"message_id,omitempty"`
}

type jsonDisposition struct {
	Value  string            `json:"value"`
	Params map[string]string `json:"params,omitempty"`
}

type jsonExt struct {
	Params      map[string]string `json:"params,omitempty"` // multipart only
	Disposition *jsonDisposition  `json:"disposition,omitempty"`
	Language    []string          `json:"language,omitempty"`
	Location    string            `json:"location,omitempty"`
}

type jsonMessage struct {
	Envelope *jsonEnvelope `json:"envelope"`
	Body     *jsonBody     `json:"body"`
	Lines    int64         `json:"lines"`
}

type jsonBody struct {
	Multipart   bool              `json:"multipart,omitempty"`
	Type        string            `json:"type,omitempty"`
	Subtype     string            `json:"subtype,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	ID          string            `json:"id,omitempty"`
	Description string            `json:"description,omitempty"`
	Encoding    string            `json:"encoding,omitempty"`
	Size        uint32            `json:"size,omitempty"`
	Lines       *int64            `json:"lines,omitempty"`
	Message     *jsonMessage      `json:"message,omitempty"`
	Children    []*jsonBody       `json:"children,omitempty"`
	Ext         *jsonExt          `json:"ext,omitempty"`
}

const jsonDateLayout = time.RFC3339Nano

// MarshalEnvelope encodes an envelope as JSON. A nil envelope is "null".
func MarshalEnvelope(env *imap.Envelope) ([]byte, error) {
	return marshal(envToJSON(env))
}

// UnmarshalEnvelope decodes the output of MarshalEnvelope. "null" gives a
// nil envelope.
func UnmarshalEnvelope(b []byte) (*imap.Envelope, error) {
	var j *jsonEnvelope
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("mailparse: envelope: %w", err)
	}
	return envFromJSON(j)
}

// MarshalBodyStructure encodes a body structure as JSON. A nil body
// structure is "null".
func MarshalBodyStructure(bs imap.BodyStructure) ([]byte, error) {
	j, err := bodyToJSON(bs, 0)
	if err != nil {
		return nil, err
	}
	return marshal(j)
}

// UnmarshalBodyStructure decodes the output of MarshalBodyStructure. "null"
// gives nil. The result is repaired like Parse's (Extended filled in, empty
// multiparts given a text/plain child), so even a damaged or hand-written
// value is safe to pass to imapserver's WriteBodyStructure; for the output
// of MarshalBodyStructure(Parse(...).BodyStructure) this changes nothing.
func UnmarshalBodyStructure(b []byte) (imap.BodyStructure, error) {
	var j *jsonBody
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("mailparse: body structure: %w", err)
	}
	if j == nil {
		return nil, nil
	}
	bs, err := bodyFromJSON(j, 0)
	if err != nil {
		return nil, err
	}
	return fixStructure(bs), nil
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("mailparse: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), nl), nil
}

func addrsToJSON(l []imap.Address) []jsonAddress {
	if len(l) == 0 {
		return nil
	}
	out := make([]jsonAddress, len(l))
	for i, a := range l {
		out[i] = jsonAddress(a)
	}
	return out
}

func addrsFromJSON(l []jsonAddress) []imap.Address {
	if len(l) == 0 {
		return nil
	}
	out := make([]imap.Address, len(l))
	for i, a := range l {
		out[i] = imap.Address(a)
	}
	return out
}

func envToJSON(env *imap.Envelope) *jsonEnvelope {
	if env == nil {
		return nil
	}
	j := &jsonEnvelope{
		Subject:   env.Subject,
		From:      addrsToJSON(env.From),
		Sender:    addrsToJSON(env.Sender),
		ReplyTo:   addrsToJSON(env.ReplyTo),
		To:        addrsToJSON(env.To),
		Cc:        addrsToJSON(env.Cc),
		Bcc:       addrsToJSON(env.Bcc),
		InReplyTo: env.InReplyTo,
		MessageID: env.MessageID,
	}
	if len(j.InReplyTo) == 0 {
		j.InReplyTo = nil
	}
	if !env.Date.IsZero() {
		j.Date = env.Date.Format(jsonDateLayout)
	}
	return j
}

func envFromJSON(j *jsonEnvelope) (*imap.Envelope, error) {
	if j == nil {
		return nil, nil
	}
	env := &imap.Envelope{
		Subject:   j.Subject,
		From:      addrsFromJSON(j.From),
		Sender:    addrsFromJSON(j.Sender),
		ReplyTo:   addrsFromJSON(j.ReplyTo),
		To:        addrsFromJSON(j.To),
		Cc:        addrsFromJSON(j.Cc),
		Bcc:       addrsFromJSON(j.Bcc),
		InReplyTo: j.InReplyTo,
		MessageID: j.MessageID,
	}
	if len(env.InReplyTo) == 0 {
		env.InReplyTo = nil
	}
	if j.Date != "" {
		t, err := time.Parse(jsonDateLayout, j.Date)
		if err != nil {
			return nil, fmt.Errorf("mailparse: envelope date: %w", err)
		}
		env.Date = normDate(t)
	}
	return env, nil
}

var errTooDeep = errors.New("mailparse: body structure nested too deeply")

// jsonMaxDepth bounds recursion on (possibly foreign) JSON input; Parse
// never nests deeper than maxDepth.
const jsonMaxDepth = 2*maxDepth + 10

func bodyToJSON(bs imap.BodyStructure, depth int) (*jsonBody, error) {
	if depth > jsonMaxDepth {
		return nil, errTooDeep
	}
	switch bs := bs.(type) {
	case nil:
		return nil, nil
	case *imap.BodyStructureSinglePart:
		if bs == nil {
			return nil, nil
		}
		j := &jsonBody{
			Type:        bs.Type,
			Subtype:     bs.Subtype,
			Params:      nilIfEmpty(bs.Params),
			ID:          bs.ID,
			Description: bs.Description,
			Encoding:    bs.Encoding,
			Size:        bs.Size,
		}
		if bs.Text != nil {
			n := bs.Text.NumLines
			j.Lines = &n
		}
		if m := bs.MessageRFC822; m != nil {
			inner, err := bodyToJSON(m.BodyStructure, depth+1)
			if err != nil {
				return nil, err
			}
			j.Message = &jsonMessage{Envelope: envToJSON(m.Envelope), Body: inner, Lines: m.NumLines}
		}
		if e := bs.Extended; e != nil {
			j.Ext = &jsonExt{
				Disposition: dispToJSON(e.Disposition),
				Language:    nilIfEmptySlice(e.Language),
				Location:    e.Location,
			}
		}
		return j, nil
	case *imap.BodyStructureMultiPart:
		if bs == nil {
			return nil, nil
		}
		j := &jsonBody{Multipart: true, Subtype: bs.Subtype}
		for _, c := range bs.Children {
			cj, err := bodyToJSON(c, depth+1)
			if err != nil {
				return nil, err
			}
			j.Children = append(j.Children, cj)
		}
		if e := bs.Extended; e != nil {
			j.Ext = &jsonExt{
				Params:      nilIfEmpty(e.Params),
				Disposition: dispToJSON(e.Disposition),
				Language:    nilIfEmptySlice(e.Language),
				Location:    e.Location,
			}
		}
		return j, nil
	default:
		return nil, fmt.Errorf("mailparse: unsupported body structure type %T", bs)
	}
}

func bodyFromJSON(j *jsonBody, depth int) (imap.BodyStructure, error) {
	if depth > jsonMaxDepth {
		return nil, errTooDeep
	}
	if j == nil {
		return nil, nil
	}
	if j.Multipart {
		bs := &imap.BodyStructureMultiPart{Subtype: j.Subtype}
		for _, cj := range j.Children {
			c, err := bodyFromJSON(cj, depth+1)
			if err != nil {
				return nil, err
			}
			bs.Children = append(bs.Children, c)
		}
		if e := j.Ext; e != nil {
			bs.Extended = &imap.BodyStructureMultiPartExt{
				Params:      nilIfEmpty(e.Params),
				Disposition: dispFromJSON(e.Disposition),
				Language:    nilIfEmptySlice(e.Language),
				Location:    e.Location,
			}
		}
		return bs, nil
	}
	bs := &imap.BodyStructureSinglePart{
		Type:        j.Type,
		Subtype:     j.Subtype,
		Params:      nilIfEmpty(j.Params),
		ID:          j.ID,
		Description: j.Description,
		Encoding:    j.Encoding,
		Size:        j.Size,
	}
	if j.Lines != nil {
		bs.Text = &imap.BodyStructureText{NumLines: *j.Lines}
	}
	if m := j.Message; m != nil {
		env, err := envFromJSON(m.Envelope)
		if err != nil {
			return nil, err
		}
		inner, err := bodyFromJSON(m.Body, depth+1)
		if err != nil {
			return nil, err
		}
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{Envelope: env, BodyStructure: inner, NumLines: m.Lines}
	}
	if e := j.Ext; e != nil {
		bs.Extended = &imap.BodyStructureSinglePartExt{
			Disposition: dispFromJSON(e.Disposition),
			Language:    nilIfEmptySlice(e.Language),
			Location:    e.Location,
		}
	}
	return bs, nil
}

func dispToJSON(d *imap.BodyStructureDisposition) *jsonDisposition {
	if d == nil {
		return nil
	}
	return &jsonDisposition{Value: d.Value, Params: nilIfEmpty(d.Params)}
}

func dispFromJSON(d *jsonDisposition) *imap.BodyStructureDisposition {
	if d == nil {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: d.Value, Params: nilIfEmpty(d.Params)}
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func nilIfEmptySlice(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}
