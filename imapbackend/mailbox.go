package imapbackend

import (
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmail/twinmail/store"
)

// specialUses are the special-use attributes CREATE accepts (RFC 6154).
var specialUses = []imap.MailboxAttr{
	imap.MailboxAttrAll,
	imap.MailboxAttrArchive,
	imap.MailboxAttrDrafts,
	imap.MailboxAttrFlagged,
	imap.MailboxAttrJunk,
	imap.MailboxAttrSent,
	imap.MailboxAttrTrash,
}

// mailboxName turns a client's mailbox argument into store's spelling: any case of INBOX is
// INBOX, and a trailing delimiter (allowed by CREATE, RFC 9051 §6.3.4) is dropped.
func mailboxName(name string) string {
	if len(name) > 1 {
		name = strings.TrimSuffix(name, string(store.Delim))
	}
	return store.CanonicalMailboxName(name)
}

// Create creates a mailbox, with a special use when CREATE-SPECIAL-USE asked for one.
func (s *Session) Create(name string, options *imap.CreateOptions) error {
	var use string
	if options != nil && len(options.SpecialUse) > 0 {
		if len(options.SpecialUse) > 1 || !slices.Contains(specialUses, options.SpecialUse[0]) {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Unsupported special-use attribute"}
		}
		use = string(options.SpecialUse[0])
	}
	ctx, cancel := s.cmdCtx()
	defer cancel()
	name = mailboxName(name)
	if _, err := s.b.store.CreateMailbox(ctx, s.account(), name, use); err != nil {
		return imapError(fmt.Errorf("create mailbox %q: %w", name, err), false)
	}
	return nil
}

// Delete deletes a mailbox; its children stay.
func (s *Session) Delete(name string) error {
	ctx, cancel := s.cmdCtx()
	defer cancel()
	name = mailboxName(name)
	if err := s.b.store.DeleteMailbox(ctx, s.account(), name); err != nil {
		return imapError(fmt.Errorf("delete mailbox %q: %w", name, err), false)
	}
	return nil
}

// Rename renames a mailbox and its children.
func (s *Session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	ctx, cancel := s.cmdCtx()
	defer cancel()
	oldName, newName = mailboxName(oldName), mailboxName(newName)
	if err := s.b.store.RenameMailbox(ctx, s.account(), oldName, newName); err != nil {
		return imapError(fmt.Errorf("rename mailbox %q to %q: %w", oldName, newName, err), false)
	}
	return nil
}

// Subscribe subscribes to a mailbox.
func (s *Session) Subscribe(name string) error { return s.setSubscribed(name, true) }

// Unsubscribe unsubscribes from a mailbox.
func (s *Session) Unsubscribe(name string) error { return s.setSubscribed(name, false) }

func (s *Session) setSubscribed(name string, on bool) error {
	ctx, cancel := s.cmdCtx()
	defer cancel()
	name = mailboxName(name)
	if err := s.b.store.SetSubscribed(ctx, s.account(), name, on); err != nil {
		return imapError(fmt.Errorf("set subscription of mailbox %q: %w", name, err), false)
	}
	return nil
}

// Status answers STATUS, filling every requested field (imapserver dereferences them).
func (s *Session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	if options.DeletedStorage {
		return nil, errUnknownStatusItem
	}
	ctx, cancel := s.cmdCtx()
	defer cancel()
	name = mailboxName(name)
	st, err := s.b.store.Status(ctx, s.account(), name)
	if err != nil {
		return nil, imapError(fmt.Errorf("read status of mailbox %q: %w", name, err), false)
	}
	return s.statusData(st, options), nil
}

func (s *Session) statusData(st store.MailboxStatus, options *imap.StatusOptions) *imap.StatusData {
	data := &imap.StatusData{Mailbox: st.Mailbox.Name}
	if options.NumMessages {
		data.NumMessages = &st.NumMessages
	}
	if options.NumRecent {
		data.NumRecent = new(uint32)
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(st.Mailbox.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = st.Mailbox.UIDValidity
	}
	if options.NumUnseen {
		data.NumUnseen = &st.NumUnseen
	}
	if options.NumDeleted {
		data.NumDeleted = &st.NumDeleted
	}
	if options.Size {
		data.Size = &st.Size
	}
	if options.AppendLimit {
		limit := s.b.appendLimit
		data.AppendLimit = &limit
	}
	if options.HighestModSeq {
		data.HighestModSeq = uint64(st.Mailbox.HighestModSeq)
	}
	return data
}

// List answers LIST and LSUB, including LIST-EXTENDED selection options, special-use
// attributes, CHILDREN and LIST-STATUS.
func (s *Session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root.
		return w.WriteList(&imap.ListData{
			Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect},
			Delim: store.Delim,
		})
	}
	if options.ReturnStatus != nil && options.ReturnStatus.DeletedStorage {
		return errUnknownStatusItem
	}
	ctx, cancel := s.cmdCtx()
	defer cancel()
	acct := s.account()
	boxes, err := s.b.store.ListMailboxes(ctx, acct)
	if err != nil {
		return fmt.Errorf("list mailboxes: %w", err)
	}
	rev2 := s.conn != nil && s.conn.EnabledCaps().Has(imap.CapIMAP4rev2)
	for _, item := range listMailboxes(boxes, ref, patterns, options, rev2) {
		if options.ReturnStatus != nil && item.exists {
			st, err := s.b.store.Status(ctx, acct, item.data.Mailbox)
			if err != nil {
				return imapError(fmt.Errorf("read status of mailbox %q: %w", item.data.Mailbox, err), false)
			}
			item.data.Status = s.statusData(st, options.ReturnStatus)
		}
		if err := w.WriteList(&item.data); err != nil {
			return err
		}
	}
	return nil
}

// listItem is one LIST response line.
type listItem struct {
	data   imap.ListData
	exists bool
}

// listMailboxes selects and describes the mailboxes a LIST names, INBOX first. A name that
// is not selected itself (a parent that exists only through its children, or for LSUB an
// unsubscribed parent of subscribed mailboxes) is returned as \Noselect (\NonExistent in
// IMAP4rev2 mode) when it matches and none of its selected descendants does, which is what
// "%" needs; with RECURSIVEMATCH it is returned with CHILDINFO instead.
func listMailboxes(boxes []store.Mailbox, ref string, patterns []string, options *imap.ListOptions, rev2 bool) []listItem {
	byName := make(map[string]*store.Mailbox, len(boxes))
	universe := make(map[string]struct{}, len(boxes))
	for i := range boxes {
		b := &boxes[i]
		byName[b.Name] = b
		universe[b.Name] = struct{}{}
		for j := 0; j < len(b.Name); j++ {
			if b.Name[j] == store.Delim {
				universe[b.Name[:j]] = struct{}{}
			}
		}
	}
	sorted := make([]string, 0, len(universe))
	for n := range universe {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)

	match := func(name string) bool {
		for _, p := range patterns {
			if matchMailbox(name, ref, p) {
				return true
			}
		}
		return false
	}
	selected := func(name string) bool {
		b := byName[name]
		switch {
		case b == nil:
			return false
		case options.SelectSubscribed && !b.Subscribed:
			return false
		case options.SelectSpecialUse && b.SpecialUse == "":
			return false
		}
		return true
	}
	// under returns the names below name, using that names sharing a prefix are contiguous
	// in sorted order.
	under := func(name string) []string {
		prefix := name + string(store.Delim)
		i, _ := slices.BinarySearch(sorted, prefix)
		j := i
		for j < len(sorted) && strings.HasPrefix(sorted[j], prefix) {
			j++
		}
		return sorted[i:j]
	}

	order := sorted
	if _, ok := universe[store.InboxName]; ok {
		order = make([]string, 0, len(sorted))
		order = append(order, store.InboxName)
		for _, n := range sorted {
			if n != store.InboxName {
				order = append(order, n)
			}
		}
	}

	var items []listItem
	for _, name := range order {
		if !match(name) {
			continue
		}
		b := byName[name]
		children := under(name)
		var selUnder, matchUnder bool
		for _, n := range children {
			if selected(n) {
				selUnder = true
				matchUnder = matchUnder || match(n)
			}
		}

		item := listItem{exists: b != nil}
		item.data.Delim = store.Delim
		item.data.Mailbox = name
		if !selected(name) {
			switch {
			case !selUnder:
				continue
			case options.SelectRecursiveMatch:
				// returned for its subscribed children, with CHILDINFO below
			case matchUnder:
				continue
			case b == nil && rev2:
				item.data.Attrs = append(item.data.Attrs, imap.MailboxAttrNonExistent)
			default:
				item.data.Attrs = append(item.data.Attrs, imap.MailboxAttrNoSelect)
			}
			if b == nil && options.SelectRecursiveMatch {
				item.data.Attrs = append(item.data.Attrs, imap.MailboxAttrNonExistent)
			}
		}
		if options.SelectRecursiveMatch && selUnder {
			item.data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if len(children) > 0 {
			item.data.Attrs = append(item.data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			item.data.Attrs = append(item.data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if b != nil {
			if (options.SelectSubscribed || options.ReturnSubscribed) && b.Subscribed {
				item.data.Attrs = append(item.data.Attrs, imap.MailboxAttrSubscribed)
			}
			if b.SpecialUse != "" {
				item.data.Attrs = append(item.data.Attrs, imap.MailboxAttr(b.SpecialUse))
			}
		}
		items = append(items, item)
	}
	return items
}

// matchMailbox is imapserver.MatchList with INBOX matched case-insensitively.
func matchMailbox(name, ref, pattern string) bool {
	const delim = rune(store.Delim)
	if imapserver.MatchList(name, delim, ref, pattern) {
		return true
	}
	if name != store.InboxName && !strings.HasPrefix(name, store.InboxName+string(store.Delim)) {
		return false
	}
	// Canonicalise the INBOX spelling where the reference or the pattern starts with it.
	if ref != "" {
		ref = store.CanonicalMailboxName(ref)
	} else {
		pattern = store.CanonicalMailboxName(pattern)
	}
	return imapserver.MatchList(name, delim, ref, pattern)
}
