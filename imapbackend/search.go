package imapbackend

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/store"
)

// Search answers SEARCH and UID SEARCH, with ESEARCH's MIN, MAX, COUNT and ALL and SEARCHRES's
// SAVE. Sequence-number keys, "*" and "$" are resolved against the client's view, and the
// result is restricted to it: messages the client has not been told about yet, and ghosts,
// are never returned.
func (s *Session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel := s.sel
	if sel == nil {
		return nil, errNotSelected
	}
	v := sel.view
	var refs []msgRef
	if all := v.allRefs(); len(all) > 0 {
		c := searchCriteria(v, sel.saved, criteria)
		c.UIDs = append(c.UIDs, store.UIDSet{{Start: all[0].uid, Stop: all[len(all)-1].uid}})
		ctx, cancel := s.cmdCtx()
		defer cancel()
		uids, err := s.b.store.Search(ctx, s.account(), sel.mbox.ID, &c)
		if err != nil {
			if options.ReturnSave {
				sel.saved = nil
			}
			return nil, imapError(fmt.Errorf("search mailbox %q: %w", sel.mbox.Name, err), false)
		}
		refs = v.refsOf(uids)
	}

	num := func(r msgRef) uint32 {
		if kind == imapserver.NumKindUID {
			return uint32(r.uid)
		}
		return r.seq
	}
	data := &imap.SearchData{Count: uint32(len(refs))}
	if len(refs) > 0 {
		data.Min, data.Max = num(refs[0]), num(refs[len(refs)-1])
	}
	if kind == imapserver.NumKindUID {
		uids := make([]store.UID, len(refs))
		for i, r := range refs {
			uids[i] = r.uid
		}
		data.All = imapUIDSet(uids)
	} else {
		set := imap.SeqSet{}
		for _, r := range refs {
			if n := len(set); n > 0 && set[n-1].Stop+1 == r.seq {
				set[n-1].Stop = r.seq
				continue
			}
			set = append(set, imap.SeqRange{Start: r.seq, Stop: r.seq})
		}
		data.All = set
	}

	if options.ReturnSave {
		sel.saved = savedResult(refs, options)
	}
	return data, nil
}

// savedResult is what SEARCH RETURN (SAVE) keeps for "$" (RFC 5182 §2.4): all matches, or
// only the MIN and/or MAX ones when those are asked for without ALL or COUNT.
func savedResult(refs []msgRef, options *imap.SearchOptions) []store.UID {
	if len(refs) == 0 {
		return nil
	}
	if options.ReturnAll || options.ReturnCount || (!options.ReturnMin && !options.ReturnMax) {
		out := make([]store.UID, len(refs))
		for i, r := range refs {
			out[i] = r.uid
		}
		return out
	}
	var out []store.UID
	if options.ReturnMin {
		out = append(out, refs[0].uid)
	}
	if options.ReturnMax && (len(out) == 0 || refs[len(refs)-1].uid != out[0]) {
		out = append(out, refs[len(refs)-1].uid)
	}
	return out
}

// searchCriteria translates a SEARCH program for the store. Message sets become UID sets
// through the view; \Recent, which no message has here, matches nothing.
func searchCriteria(v *view, saved []store.UID, c *imap.SearchCriteria) store.SearchCriteria {
	out := store.SearchCriteria{
		Since:      c.Since,
		Before:     c.Before,
		SentSince:  c.SentSince,
		SentBefore: c.SentBefore,
		Body:       c.Body,
		Text:       c.Text,
		Larger:     c.Larger,
		Smaller:    c.Smaller,
	}
	if c.ModSeq != nil {
		out.ModSeq = store.ModSeq(c.ModSeq.ModSeq)
	}
	addSet := func(refs []msgRef) {
		if len(refs) == 0 {
			out.UIDs = append(out.UIDs, store.UIDSet{})
			return
		}
		out.UIDs = append(out.UIDs, uidSet(refs))
	}
	for _, set := range c.SeqNum {
		addSet(v.resolve(set, saved))
	}
	for _, set := range c.UID {
		addSet(v.resolve(set, saved))
	}
	for _, h := range c.Header {
		out.Header = append(out.Header, store.HeaderMatch{Key: h.Key, Value: h.Value})
	}
	for _, f := range c.Flag {
		if f == flagRecent {
			out.UIDs = append(out.UIDs, store.UIDSet{})
			continue
		}
		out.Flag = append(out.Flag, canonicalFlag(f))
	}
	for _, f := range c.NotFlag {
		if f == flagRecent {
			continue
		}
		out.NotFlag = append(out.NotFlag, canonicalFlag(f))
	}
	for i := range c.Not {
		out.Not = append(out.Not, searchCriteria(v, saved, &c.Not[i]))
	}
	for i := range c.Or {
		out.Or = append(out.Or, [2]store.SearchCriteria{
			searchCriteria(v, saved, &c.Or[i][0]),
			searchCriteria(v, saved, &c.Or[i][1]),
		})
	}
	return out
}

// canonicalFlag spells system flags canonically; keywords are left to the store.
func canonicalFlag(f imap.Flag) string {
	if c, ok := systemFlag(f); ok {
		return string(c)
	}
	return string(f)
}
