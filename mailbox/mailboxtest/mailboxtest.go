// Package mailboxtest is the conformance suite of mailbox.Folders: Run
// checks, through the interface alone, the promises every store makes to
// the IMAP server (UIDs that only grow, immutable snapshots, a modseq per
// change, flags, copies and moves, folder operations, Watch). Each store
// (maildir.Index, mbox.Store, internal/memfolders) runs
// it from its own tests, so that the in-memory fake the IMAP tests use
// cannot drift from the real stores. It imports only mailbox.
package mailboxtest

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/mailbox"
)

// Opener opens one session's Folders of the account whose mail home is
// home; imap.Store has this method set.
type Opener interface {
	Open(ctx context.Context, home string) (mailbox.Folders, error)
}

// Run runs the suite; newStore returns a fresh, empty store for each
// subtest (cleaned up by the test).
func Run(t *testing.T, newStore func(t *testing.T) Opener) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, s Opener)
	}{
		{"NewAccount", testNewAccount},
		{"AppendSyncOpen", testAppendSyncOpen},
		{"UIDsOnlyGrow", testUIDsOnlyGrow},
		{"SetFlags", testSetFlags},
		{"SnapshotsImmutable", testSnapshotsImmutable},
		{"CopyMove", testCopyMove},
		{"Expunge", testExpunge},
		{"FolderOps", testFolderOps},
		{"Rename", testRename},
		{"Watch", testWatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newStore(t))
		})
	}
}

const home = "example.org/conformance"

func open(t *testing.T, s Opener) mailbox.Folders {
	t.Helper()
	f, err := s.Open(t.Context(), home)
	if err != nil {
		t.Fatalf("Open(%s): %v", home, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func sync(t *testing.T, f mailbox.Folders, name string) *mailbox.Snapshot {
	t.Helper()
	s, err := f.Sync(t.Context(), name)
	if err != nil {
		t.Fatalf("Sync(%s): %v", name, err)
	}
	return s
}

var date = time.Date(2024, 3, 1, 12, 30, 45, 0, time.UTC)

func appendMsg(t *testing.T, f mailbox.Folders, name, body string, flags ...string) uint32 {
	t.Helper()
	_, uid, err := f.Append(t.Context(), name, strings.NewReader(body), flags, date)
	if err != nil {
		t.Fatalf("Append to %s: %v", name, err)
	}
	return uid
}

func read(t *testing.T, f mailbox.Folders, name string, uid uint32) string {
	t.Helper()
	r, size, err := f.Open(t.Context(), name, uid)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", name, uid, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Errorf("Open(%s, %d): size %d, read %d bytes", name, uid, size, len(b))
	}
	return string(b)
}

func uids(s *mailbox.Snapshot) []uint32 {
	out := make([]uint32, len(s.Messages))
	for i, m := range s.Messages {
		out[i] = m.UID
	}
	return out
}

func find(s *mailbox.Snapshot, uid uint32) *mailbox.Message {
	for i := range s.Messages {
		if s.Messages[i].UID == uid {
			return &s.Messages[i]
		}
	}
	return nil
}

// A new account has INBOX (subscribed) and the special-use folders.
func testNewAccount(t *testing.T, s Opener) {
	f := open(t, s)
	l, err := f.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]mailbox.Folder{}
	for _, fo := range l {
		got[fo.Name] = fo
	}
	want := map[string]string{"INBOX": "", "Sent": `\Sent`, "Drafts": `\Drafts`, "Trash": `\Trash`, "Junk": `\Junk`, "Archive": `\Archive`}
	for name, use := range want {
		fo, ok := got[name]
		if !ok {
			t.Errorf("new account lacks %s: %v", name, l)
			continue
		}
		if fo.SpecialUse != use || !fo.Subscribed {
			t.Errorf("%s: special use %q subscribed %v, want %q and subscribed", name, fo.SpecialUse, fo.Subscribed, use)
		}
	}
	if s := sync(t, f, "INBOX"); len(s.Messages) != 0 || s.UIDValidity == 0 || s.UIDNext == 0 {
		t.Errorf("new INBOX: %+v", s)
	}
	if _, err := f.Sync(t.Context(), "No/Such"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Sync of a missing folder: %v, want ErrNoFolder", err)
	}
}

// What Append stores, Sync shows and Open serves, with CRLF line ends.
func testAppendSyncOpen(t *testing.T, s Opener) {
	f := open(t, s)
	uv, uid, err := f.Append(t.Context(), "Drafts", strings.NewReader("Subject: a\n\nline one\nline two\n"), []string{`\Seen`, "$Work"}, date)
	if err != nil {
		t.Fatal(err)
	}
	snap := sync(t, f, "Drafts")
	if snap.UIDValidity != uv || snap.UIDNext <= uid {
		t.Errorf("Append gave UIDVALIDITY %d UID %d; snapshot %d/%d", uv, uid, snap.UIDValidity, snap.UIDNext)
	}
	m := find(snap, uid)
	if m == nil {
		t.Fatalf("uid %d not in %v", uid, uids(snap))
	}
	const want = "Subject: a\r\n\r\nline one\r\nline two\r\n"
	if got := read(t, f, "Drafts", uid); got != want {
		t.Errorf("content %q, want %q", got, want)
	}
	if m.Size != int64(len(want)) {
		t.Errorf("Size %d, want %d (as served)", m.Size, len(want))
	}
	if !slices.Equal(m.Flags, []string{"$Work", `\Seen`}) {
		t.Errorf("flags %v, want [$Work \\Seen] (sorted)", m.Flags)
	}
	if !m.InternalDate.Equal(date) {
		t.Errorf("internal date %v, want %v", m.InternalDate, date)
	}
	if m.ModSeq == 0 || snap.HighestModSeq < m.ModSeq {
		t.Errorf("modseq %d, highest %d", m.ModSeq, snap.HighestModSeq)
	}
	if _, _, err := f.Append(t.Context(), "No/Such", strings.NewReader("x\n"), nil, date); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Append to a missing folder: %v, want ErrNoFolder", err)
	}
}

// UIDs ascend and are never given twice, even after an expunge of the
// last message; UIDVALIDITY stays.
func testUIDsOnlyGrow(t *testing.T, s Opener) {
	f := open(t, s)
	a := appendMsg(t, f, "INBOX", "a\n")
	b := appendMsg(t, f, "INBOX", "b\n")
	if b <= a {
		t.Fatalf("UIDs %d then %d", a, b)
	}
	before := sync(t, f, "INBOX")
	if _, err := f.Expunge(t.Context(), "INBOX", []uint32{b}); err != nil {
		t.Fatal(err)
	}
	c := appendMsg(t, f, "INBOX", "c\n")
	after := sync(t, f, "INBOX")
	if c <= b || after.UIDValidity != before.UIDValidity {
		t.Errorf("after expunging %d the next UID is %d (UIDVALIDITY %d -> %d)", b, c, before.UIDValidity, after.UIDValidity)
	}
	if !slices.Equal(uids(after), []uint32{a, c}) {
		t.Errorf("UIDs %v, want [%d %d]", uids(after), a, c)
	}
}

// SetFlags adds, removes and replaces; each changed message gets a new
// modseq, unchanged ones keep theirs, and missing UIDs are skipped.
func testSetFlags(t *testing.T, s Opener) {
	f := open(t, s)
	a := appendMsg(t, f, "INBOX", "a\n")
	b := appendMsg(t, f, "INBOX", "b\n")
	s0 := sync(t, f, "INBOX")
	steps := []struct {
		op    mailbox.FlagOp
		flags []string
		want  []string
	}{
		{mailbox.FlagsAdd, []string{`\Seen`, `\Flagged`}, []string{`\Flagged`, `\Seen`}},
		{mailbox.FlagsAdd, []string{"kw"}, []string{`\Flagged`, `\Seen`, "kw"}},
		{mailbox.FlagsRemove, []string{`\Flagged`}, []string{`\Seen`, "kw"}},
		{mailbox.FlagsSet, []string{`\Answered`}, []string{`\Answered`}},
		{mailbox.FlagsSet, nil, []string{}},
	}
	prev := find(s0, a).ModSeq
	for _, st := range steps {
		snap, err := f.SetFlags(t.Context(), "INBOX", []uint32{a, a, 9999}, st.op, st.flags)
		if err != nil {
			t.Fatalf("%v %v: %v", st.op, st.flags, err)
		}
		m := find(snap, a)
		if m == nil || !slices.Equal(append([]string{}, m.Flags...), st.want) {
			t.Fatalf("%v %v: flags %v, want %v", st.op, st.flags, m, st.want)
		}
		if m.ModSeq <= prev || snap.HighestModSeq < m.ModSeq {
			t.Errorf("%v %v: modseq %d after %d, highest %d", st.op, st.flags, m.ModSeq, prev, snap.HighestModSeq)
		}
		prev = m.ModSeq
		if got := find(snap, b); got.ModSeq != find(s0, b).ModSeq || len(got.Flags) != 0 {
			t.Errorf("the other message changed: %+v", got)
		}
	}
	// A STORE that changes nothing gives no new modseq.
	snap, err := f.SetFlags(t.Context(), "INBOX", []uint32{a}, mailbox.FlagsSet, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := find(snap, a); m.ModSeq != prev {
		t.Errorf("a no-op STORE moved modseq %d -> %d", prev, m.ModSeq)
	}
}

// A snapshot once returned never changes.
func testSnapshotsImmutable(t *testing.T, s Opener) {
	f := open(t, s)
	a := appendMsg(t, f, "INBOX", "a\n")
	s1 := sync(t, f, "INBOX")
	appendMsg(t, f, "INBOX", "b\n")
	if _, err := f.SetFlags(t.Context(), "INBOX", []uint32{a}, mailbox.FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	if len(s1.Messages) != 1 || len(s1.Messages[0].Flags) != 0 {
		t.Errorf("an earlier snapshot changed: %+v", s1.Messages)
	}
}

// Copy keeps flags and internal dates and returns the UIDs pairwise; Move
// also removes the messages from the source.
func testCopyMove(t *testing.T, s Opener) {
	f := open(t, s)
	a := appendMsg(t, f, "INBOX", "a\n", `\Flagged`, "kw")
	b := appendMsg(t, f, "INBOX", "b\n")
	uv, src, dst, err := f.Copy(t.Context(), "INBOX", []uint32{a, b, 9999}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	arch := sync(t, f, "Archive")
	if uv != arch.UIDValidity || !slices.Equal(src, []uint32{a, b}) || len(dst) != 2 {
		t.Fatalf("Copy = %d %v %v; Archive UIDVALIDITY %d", uv, src, dst, arch.UIDValidity)
	}
	m := find(arch, dst[0])
	if m == nil || !slices.Equal(m.Flags, []string{`\Flagged`, "kw"}) || !m.InternalDate.Equal(date) {
		t.Errorf("the copy of %d: %+v", a, m)
	}
	if got := read(t, f, "Archive", dst[1]); got != "b\r\n" {
		t.Errorf("the copy of %d reads %q", b, got)
	}
	if n := len(sync(t, f, "INBOX").Messages); n != 2 {
		t.Errorf("INBOX has %d messages after Copy, want 2", n)
	}
	_, src, dst, err = f.Move(t.Context(), "INBOX", []uint32{a}, "Trash")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src, []uint32{a}) || len(dst) != 1 {
		t.Fatalf("Move = %v %v", src, dst)
	}
	if got := uids(sync(t, f, "INBOX")); !slices.Equal(got, []uint32{b}) {
		t.Errorf("INBOX after Move: %v, want [%d]", got, b)
	}
	if m := find(sync(t, f, "Trash"), dst[0]); m == nil || !slices.Equal(m.Flags, []string{`\Flagged`, "kw"}) {
		t.Errorf("the moved message: %+v", m)
	}
	if _, _, _, err := f.Copy(t.Context(), "INBOX", []uint32{b}, "No/Such"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Copy to a missing folder: %v, want ErrNoFolder", err)
	}
}

// Expunge removes the messages; their content is gone.
func testExpunge(t *testing.T, s Opener) {
	f := open(t, s)
	a := appendMsg(t, f, "INBOX", "a\n")
	b := appendMsg(t, f, "INBOX", "b\n")
	snap, err := f.Expunge(t.Context(), "INBOX", []uint32{a, 9999})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(uids(snap), []uint32{b}) {
		t.Errorf("after Expunge: %v, want [%d]", uids(snap), b)
	}
	if _, _, err := f.Open(t.Context(), "INBOX", a); !errors.Is(err, mailbox.ErrNoMessage) {
		t.Errorf("Open of an expunged message: %v, want ErrNoMessage", err)
	}
}

// Create, Delete and their refusals.
func testFolderOps(t *testing.T, s Opener) {
	f := open(t, s)
	ctx := t.Context()
	if err := f.Create(ctx, "Lists/Go"); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		l, err := f.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, fo := range l {
			out = append(out, fo.Name)
		}
		return out
	}
	if n := names(); !slices.Contains(n, "Lists/Go") || !slices.Contains(n, "Lists") {
		t.Errorf("after Create(Lists/Go): %v, want it and its parent", n)
	}
	appendMsg(t, f, "Lists/Go", "x\n")
	for _, c := range []struct {
		what string
		err  error
		want error
	}{
		{"Create of an existing folder", f.Create(ctx, "Lists/Go"), mailbox.ErrFolderExists},
		{"Create of INBOX", f.Create(ctx, "INBOX"), mailbox.ErrFolderExists},
		{"Create of an empty name", f.Create(ctx, ""), mailbox.ErrBadFolderName},
		{"Create of /a", f.Create(ctx, "/a"), mailbox.ErrBadFolderName},
		{"Create of a/", f.Create(ctx, "a/"), mailbox.ErrBadFolderName},
		{"Delete of INBOX", f.Delete(ctx, "INBOX"), mailbox.ErrNotAllowed},
		{"Delete of a missing folder", f.Delete(ctx, "No/Such"), mailbox.ErrNoFolder},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.err, c.want)
		}
	}
	if err := f.Delete(ctx, "Lists/Go"); err != nil {
		t.Fatal(err)
	}
	if n := names(); slices.Contains(n, "Lists/Go") || !slices.Contains(n, "Lists") {
		t.Errorf("after Delete(Lists/Go): %v", n)
	}
	if _, err := f.Sync(ctx, "Lists/Go"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Sync of a deleted folder: %v, want ErrNoFolder", err)
	}
	// A folder made again under the same name does not get the old
	// messages back.
	if err := f.Create(ctx, "Lists/Go"); err != nil {
		t.Fatal(err)
	}
	if n := len(sync(t, f, "Lists/Go").Messages); n != 0 {
		t.Errorf("a folder made again has %d messages", n)
	}
	if err := f.SetSubscribed(ctx, "Lists/Go", true); err != nil {
		t.Fatal(err)
	}
	l, _ := f.List(ctx)
	for _, fo := range l {
		if fo.Name == "Lists/Go" && !fo.Subscribed {
			t.Errorf("SetSubscribed(true) did not show in List")
		}
	}
}

// Rename keeps messages, UIDs and UIDVALIDITY and takes the children;
// renaming INBOX moves its messages and leaves it empty. (A folder that
// holds messages has no children here: in mbox, as in Dovecot's, a
// folder is a file or a directory, not both.)
func testRename(t *testing.T, s Opener) {
	f := open(t, s)
	ctx := t.Context()
	if err := f.Create(ctx, "Old"); err != nil {
		t.Fatal(err)
	}
	if err := f.Create(ctx, "Tree/Child"); err != nil {
		t.Fatal(err)
	}
	uid := appendMsg(t, f, "Old", "kept\n")
	child := appendMsg(t, f, "Tree/Child", "below\n")
	before := sync(t, f, "Old")
	childBefore := sync(t, f, "Tree/Child")
	if err := f.Rename(ctx, "Old", "New"); err != nil {
		t.Fatal(err)
	}
	after := sync(t, f, "New")
	if after.UIDValidity != before.UIDValidity || !slices.Equal(uids(after), []uint32{uid}) {
		t.Errorf("renamed folder: UIDVALIDITY %d -> %d, UIDs %v -> %v", before.UIDValidity, after.UIDValidity, uids(before), uids(after))
	}
	if got := read(t, f, "New", uid); got != "kept\r\n" {
		t.Errorf("renamed message reads %q", got)
	}
	if _, err := f.Sync(ctx, "Old"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Sync of the old name: %v, want ErrNoFolder", err)
	}
	if err := f.Rename(ctx, "Tree", "Forest"); err != nil {
		t.Fatal(err)
	}
	moved, err := f.Sync(ctx, "Forest/Child")
	if err != nil {
		t.Fatalf("the child did not move: %v", err)
	}
	if moved.UIDValidity != childBefore.UIDValidity || !slices.Equal(uids(moved), []uint32{child}) {
		t.Errorf("the moved child: UIDVALIDITY %d -> %d, UIDs %v, want [%d]", childBefore.UIDValidity, moved.UIDValidity, uids(moved), child)
	}
	if got := read(t, f, "Forest/Child", child); got != "below\r\n" {
		t.Errorf("the moved child's message reads %q", got)
	}
	if _, err := f.Sync(ctx, "Tree/Child"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Sync of the child's old name: %v, want ErrNoFolder", err)
	}
	for _, c := range []struct {
		what string
		err  error
		want error
	}{
		{"Rename onto an existing folder", f.Rename(ctx, "New", "Sent"), mailbox.ErrFolderExists},
		{"Rename into its own child", f.Rename(ctx, "Forest", "Forest/Child/X"), mailbox.ErrNotAllowed},
		{"Rename of a missing folder", f.Rename(ctx, "No/Such", "Else"), mailbox.ErrNoFolder},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.err, c.want)
		}
	}
	appendMsg(t, f, "INBOX", "in inbox\n")
	if err := f.Rename(ctx, "INBOX", "Old Inbox"); err != nil {
		t.Fatal(err)
	}
	if n := len(sync(t, f, "INBOX").Messages); n != 0 {
		t.Errorf("INBOX has %d messages after its rename", n)
	}
	if n := len(sync(t, f, "Old Inbox").Messages); n != 1 {
		t.Errorf("the renamed INBOX has %d messages, want 1", n)
	}
}

// Watch is closed by a change made through another session of the
// account.
func testWatch(t *testing.T, s Opener) {
	f1, f2 := open(t, s), open(t, s)
	sync(t, f1, "INBOX")
	w := f1.Watch("INBOX")
	appendMsg(t, f2, "INBOX", "hello\n")
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch not closed by another session's Append")
	}
	if n := len(sync(t, f1, "INBOX").Messages); n != 1 {
		t.Errorf("the first session sees %d messages, want 1", n)
	}
}
