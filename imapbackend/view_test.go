package imapbackend

import (
	"fmt"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/store"
)

func testView(uids []store.UID, ghosts ...store.UID) *view {
	v := newView(uids, 10)
	for _, g := range ghosts {
		v.ghosts[g] = struct{}{}
	}
	return v
}

func refsString(refs []msgRef) string {
	s := ""
	for _, r := range refs {
		s += fmt.Sprintf("%d=%d ", r.seq, r.uid)
	}
	return s
}

func TestViewResolve(t *testing.T) {
	uids := []store.UID{10, 20, 30, 40}
	seq := func(ranges ...[2]uint32) imap.SeqSet {
		var s imap.SeqSet
		for _, r := range ranges {
			s = append(s, imap.SeqRange{Start: r[0], Stop: r[1]})
		}
		return s
	}
	uid := func(ranges ...[2]imap.UID) imap.UIDSet {
		var s imap.UIDSet
		for _, r := range ranges {
			s = append(s, imap.UIDRange{Start: r[0], Stop: r[1]})
		}
		return s
	}
	tests := []struct {
		name   string
		uids   []store.UID
		ghosts []store.UID
		set    imap.NumSet
		saved  []store.UID
		want   string
	}{
		{"seq all", uids, nil, seq([2]uint32{1, 0}), nil, "1=10 2=20 3=30 4=40 "},
		{"seq all skips ghost", uids, []store.UID{30}, seq([2]uint32{1, 0}), nil, "1=10 2=20 4=40 "},
		{"seq star is client's last", uids, nil, seq([2]uint32{0, 0}), nil, "4=40 "},
		{"seq star on ghost", uids, []store.UID{40}, seq([2]uint32{0, 0}), nil, ""},
		{"seq beyond view", uids, nil, seq([2]uint32{5, 5}), nil, ""},
		{"seq reversed range", uids, nil, seq([2]uint32{3, 2}), nil, "2=20 3=30 "},
		{"seq range past end", uids, nil, seq([2]uint32{4, 10}), nil, "4=40 "},
		{"seq overlapping ranges", uids, nil, seq([2]uint32{1, 2}, [2]uint32{2, 3}, [2]uint32{1, 1}), nil, "1=10 2=20 3=30 "},
		{"seq empty view", nil, nil, seq([2]uint32{1, 0}), nil, ""},
		{"uid range", uids, []store.UID{30}, uid([2]imap.UID{15, 35}), nil, "2=20 "},
		{"uid n:* above last includes last", uids, nil, uid([2]imap.UID{41, 0}), nil, "4=40 "},
		{"uid star", uids, nil, uid([2]imap.UID{0, 0}), nil, "4=40 "},
		{"uid single", uids, nil, uid([2]imap.UID{10, 10}), nil, "1=10 "},
		{"uid missing", uids, nil, uid([2]imap.UID{11, 19}), nil, ""},
		{"uid empty view", nil, nil, uid([2]imap.UID{1, 0}), nil, ""},
		{"saved result", uids, []store.UID{20}, imap.SearchRes(), []store.UID{40, 20, 10, 99, 10}, "1=10 4=40 "},
		{"saved result empty", uids, nil, imap.SearchRes(), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := testView(tt.uids, tt.ghosts...)
			if got := refsString(v.resolve(tt.set, tt.saved)); got != tt.want {
				t.Errorf("resolve(%v) = %q, want %q", tt.set, got, tt.want)
			}
		})
	}
}

func TestUIDSet(t *testing.T) {
	tests := []struct {
		refs []msgRef
		want store.UIDSet
	}{
		{nil, nil},
		{[]msgRef{{1, 10}}, store.UIDSet{{Start: 10, Stop: 10}}},
		{[]msgRef{{1, 10}, {2, 20}, {4, 40}}, store.UIDSet{{Start: 10, Stop: 20}, {Start: 40, Stop: 40}}},
		{[]msgRef{{2, 20}, {3, 35}, {4, 40}}, store.UIDSet{{Start: 20, Stop: 40}}},
	}
	for _, tt := range tests {
		if got := uidSet(tt.refs); !slices.Equal(got, tt.want) {
			t.Errorf("uidSet(%v) = %v, want %v", tt.refs, got, tt.want)
		}
	}
}

func TestViewRemove(t *testing.T) {
	v := testView([]store.UID{1, 2, 3, 4, 5}, 3)
	v.echoed[4] = 11
	got := v.remove([]store.UID{4, 2, 9, 4})
	if want := []uint32{4, 2}; !slices.Equal(got, want) {
		t.Errorf("remove = %v, want %v", got, want)
	}
	if want := []store.UID{1, 3, 5}; !slices.Equal(v.uids, want) {
		t.Errorf("uids after remove = %v, want %v", v.uids, want)
	}
	if _, ok := v.echoed[4]; ok {
		t.Errorf("echo of removed uid 4 kept")
	}
	if got := v.remove([]store.UID{4}); len(got) != 0 {
		t.Errorf("second remove of 4 = %v, want nothing", got)
	}
	if got := v.seqOf(5); got != 3 {
		t.Errorf("seqOf(5) = %d, want 3", got)
	}
}

func updatesString(ups []update) string {
	s := ""
	for _, u := range ups {
		switch u.kind {
		case updExpunge:
			s += fmt.Sprintf("EXPUNGE %d; ", u.num)
		case updExists:
			s += fmt.Sprintf("EXISTS %d; ", u.num)
		case updFlags:
			s += fmt.Sprintf("FETCH %d UID %d %v; ", u.num, u.uid, u.flags)
		}
	}
	return s
}

func state(uid store.UID, m store.ModSeq, flags ...string) store.MessageState {
	return store.MessageState{UID: uid, ModSeq: m, Flags: flags}
}

func TestViewApply(t *testing.T) {
	type step struct {
		ch           store.Changes
		allowExpunge bool
		echo         map[store.UID]store.ModSeq // noted before the step
		want         string
		wantUIDs     []store.UID
	}
	tests := []struct {
		name  string
		uids  []store.UID
		steps []step
	}{
		{"expunge highest first", []store.UID{1, 2, 3, 4}, []step{
			{ch: store.Changes{HighestModSeq: 11, Expunged: []store.UID{2, 4}}, allowExpunge: true,
				want: "EXPUNGE 4; EXPUNGE 2; ", wantUIDs: []store.UID{1, 3}},
		}},
		{"ghosts until expunge allowed", []store.UID{1, 2, 3, 4}, []step{
			{ch: store.Changes{HighestModSeq: 11, Expunged: []store.UID{2, 4}},
				want: "", wantUIDs: []store.UID{1, 2, 3, 4}},
			{ch: store.Changes{HighestModSeq: 12, Changed: []store.MessageState{state(5, 12)}},
				want: "EXISTS 5; ", wantUIDs: []store.UID{1, 2, 3, 4, 5}},
			{ch: store.Changes{}, allowExpunge: true,
				want: "EXPUNGE 4; EXPUNGE 2; ", wantUIDs: []store.UID{1, 3, 5}},
			{ch: store.Changes{}, allowExpunge: true, want: "", wantUIDs: []store.UID{1, 3, 5}},
		}},
		{"tombstones outside the view are ignored", []store.UID{1, 2}, []step{
			{ch: store.Changes{HighestModSeq: 11, Expunged: []store.UID{3, 7}}, allowExpunge: true,
				want: "", wantUIDs: []store.UID{1, 2}},
		}},
		{"new messages then flags", []store.UID{1, 2}, []step{
			{ch: store.Changes{HighestModSeq: 12, Changed: []store.MessageState{state(2, 12, `\Seen`), state(3, 11), state(4, 12)}},
				allowExpunge: true,
				want:         `EXISTS 4; FETCH 2 UID 2 [\Seen]; `, wantUIDs: []store.UID{1, 2, 3, 4}},
		}},
		{"own echo is not repeated", []store.UID{1, 2}, []step{
			{ch: store.Changes{HighestModSeq: 11, Changed: []store.MessageState{state(1, 11, `\Flagged`)}},
				echo: map[store.UID]store.ModSeq{1: 11}, want: "", wantUIDs: []store.UID{1, 2}},
			{ch: store.Changes{HighestModSeq: 12, Changed: []store.MessageState{state(1, 12)}},
				want: "FETCH 1 UID 1 []; ", wantUIDs: []store.UID{1, 2}},
		}},
		{"later change after own echo is reported", []store.UID{1, 2}, []step{
			{ch: store.Changes{HighestModSeq: 13, Changed: []store.MessageState{state(1, 13, `\Seen`)}},
				echo: map[store.UID]store.ModSeq{1: 11}, want: `FETCH 1 UID 1 [\Seen]; `, wantUIDs: []store.UID{1, 2}},
		}},
		{"uid below the view that it never had", []store.UID{5, 9}, []step{
			{ch: store.Changes{HighestModSeq: 11, Changed: []store.MessageState{state(7, 11)}}, allowExpunge: true,
				want: "", wantUIDs: []store.UID{5, 9}},
		}},
		{"re-added after own expunge is not new", []store.UID{1, 2, 3}, []step{
			{ch: store.Changes{HighestModSeq: 11, Changed: []store.MessageState{state(3, 11, `\Deleted`)}}, allowExpunge: true,
				want: `FETCH 3 UID 3 [\Deleted]; `, wantUIDs: []store.UID{1, 2, 3}},
		}},
		{"flag change of a ghost is dropped", []store.UID{1, 2}, []step{
			{ch: store.Changes{HighestModSeq: 11, Expunged: []store.UID{2}, Changed: []store.MessageState{state(1, 11, `\Seen`)}},
				want: `FETCH 1 UID 1 [\Seen]; `, wantUIDs: []store.UID{1, 2}},
			{ch: store.Changes{HighestModSeq: 12, Changed: []store.MessageState{state(2, 12, `\Seen`)}},
				want: "", wantUIDs: []store.UID{1, 2}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := testView(tt.uids)
			for i, st := range tt.steps {
				for u, m := range st.echo {
					v.noteEcho(u, m)
				}
				got := updatesString(v.apply(st.ch, st.allowExpunge))
				if got != st.want {
					t.Errorf("step %d: apply = %q, want %q", i, got, st.want)
				}
				if !slices.Equal(v.uids, st.wantUIDs) {
					t.Errorf("step %d: uids = %v, want %v", i, v.uids, st.wantUIDs)
				}
				if st.ch.HighestModSeq > 0 && v.modseq < st.ch.HighestModSeq {
					t.Errorf("step %d: modseq = %d, want >= %d", i, v.modseq, st.ch.HighestModSeq)
				}
			}
		})
	}
}

func TestListMailboxes(t *testing.T) {
	boxes := []store.Mailbox{
		{Name: "INBOX", Subscribed: true},
		{Name: "Archive", SpecialUse: `\Archive`},
		{Name: "a/b/c", Subscribed: true},
		{Name: "a/b/d"},
		{Name: "x", Subscribed: false},
		{Name: "x/y", Subscribed: true},
	}
	list := func(items []listItem) string {
		s := ""
		for _, it := range items {
			s += fmt.Sprintf("%s%v", it.data.Mailbox, it.data.Attrs)
			if it.data.ChildInfo != nil {
				s += "+childinfo"
			}
			s += " "
		}
		return s
	}
	tests := []struct {
		name     string
		ref      string
		patterns []string
		opts     imap.ListOptions
		rev2     bool
		want     string
	}{
		{"star", "", []string{"*"}, imap.ListOptions{}, false,
			`INBOX[\HasNoChildren] Archive[\HasNoChildren \Archive] a/b/c[\HasNoChildren] a/b/d[\HasNoChildren] x[\HasChildren] x/y[\HasNoChildren] `},
		{"percent shows implied parent", "", []string{"%"}, imap.ListOptions{}, false,
			`INBOX[\HasNoChildren] Archive[\HasNoChildren \Archive] a[\Noselect \HasChildren] x[\HasChildren] `},
		{"percent rev2 nonexistent", "", []string{"a/%"}, imap.ListOptions{}, true,
			`a/b[\NonExistent \HasChildren] `},
		{"inbox any case", "", []string{"inbox"}, imap.ListOptions{}, false, `INBOX[\HasNoChildren] `},
		{"reference", "a/b", []string{"%"}, imap.ListOptions{}, false, `a/b/c[\HasNoChildren] a/b/d[\HasNoChildren] `},
		{"special-use only", "", []string{"*"}, imap.ListOptions{SelectSpecialUse: true}, false, `Archive[\HasNoChildren \Archive] `},
		{"lsub percent", "", []string{"%"}, imap.ListOptions{SelectSubscribed: true}, false,
			`INBOX[\HasNoChildren \Subscribed] a[\Noselect \HasChildren] x[\Noselect \HasChildren] `},
		{"subscribed recursivematch", "", []string{"%"}, imap.ListOptions{SelectSubscribed: true, SelectRecursiveMatch: true}, false,
			`INBOX[\HasNoChildren \Subscribed] a[\NonExistent \HasChildren]+childinfo x[\HasChildren]+childinfo `},
		{"two patterns", "", []string{"INBOX", "x/*"}, imap.ListOptions{}, false, `INBOX[\HasNoChildren] x/y[\HasNoChildren] `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := list(listMailboxes(boxes, tt.ref, tt.patterns, &tt.opts, tt.rev2))
			if got != tt.want {
				t.Errorf("listMailboxes(%q, %q) =\n%s\nwant\n%s", tt.ref, tt.patterns, got, tt.want)
			}
		})
	}
}

func TestSafeBodyStructure(t *testing.T) {
	bs := safeBodyStructure(&imap.BodyStructureMultiPart{Subtype: "mixed"})
	mp, ok := bs.(*imap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 1 || mp.Extended == nil {
		t.Fatalf("safeBodyStructure(empty multipart) = %#v, want one child and extension data", bs)
	}
	if c, ok := mp.Children[0].(*imap.BodyStructureSinglePart); !ok || c.Extended == nil {
		t.Errorf("child = %#v, want a single part with extension data", mp.Children[0])
	}
	if _, ok := safeBodyStructure(nil).(*imap.BodyStructureSinglePart); !ok {
		t.Errorf("safeBodyStructure(nil) is not a single part")
	}
}

func TestCRLF(t *testing.T) {
	tests := map[string]string{
		"":                "",
		"a\r\nb\r\n":      "a\r\nb\r\n",
		"a\nb\n":          "a\r\nb\r\n",
		"\na\r\n\n":       "\r\na\r\n\r\n",
		"Subject: x\n\nb": "Subject: x\r\n\r\nb",
	}
	for in, want := range tests {
		if got := string(crlf([]byte(in))); got != want {
			t.Errorf("crlf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHub(t *testing.T) {
	h := newHub()
	var a, b store.MailboxID
	a[0], b[0] = 1, 2
	h.bump(a, 5) // nobody watches a: ignored
	wa := h.acquire(a)
	if got := wa.modseq.Load(); got != 0 {
		t.Errorf("modseq of a new watch = %d, want 0", got)
	}
	wake := h.waitChan(wa)
	h.bump(a, 7)
	select {
	case <-wake:
	default:
		t.Errorf("bump did not wake the watchers")
	}
	wake = h.waitChan(wa)
	h.bump(a, 6) // lower: no change, no wake-up
	select {
	case <-wake:
		t.Errorf("a lower bump woke the watchers")
	default:
	}
	if got := wa.modseq.Load(); got != 7 {
		t.Errorf("modseq = %d, want 7", got)
	}
	gen := wa.gen.Load()
	h.notify(store.Notification{}) // listener reconnected
	if wa.gen.Load() == gen {
		t.Errorf("a zero notification did not force a re-check")
	}
	select {
	case <-wake:
	default:
		t.Errorf("a zero notification did not wake the watchers")
	}
	h.notify(store.Notification{Mailbox: a, ModSeq: 9})
	if got := wa.modseq.Load(); got != 9 {
		t.Errorf("modseq after notify = %d, want 9", got)
	}
	wa2 := h.acquire(a)
	if wa2 != wa {
		t.Errorf("second acquire gave another watch")
	}
	h.release(wa)
	h.release(wa2)
	h.bump(a, 20)
	if got := wa.modseq.Load(); got != 9 {
		t.Errorf("released watch still bumped to %d", got)
	}
	if wb := h.acquire(b); wb.modseq.Load() != 0 {
		t.Errorf("watch of b shares state")
	}
}
