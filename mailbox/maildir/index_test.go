package maildir

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
)

const testHome = "example.org/alice"

// indexEnv is a mail root, a Store delivering into it and an Index over
// it with its own bbolt file, reopenable as after a restart.
type indexEnv struct {
	t      *testing.T
	root   string
	dbPath string
	store  *Store
	db     *bolt.DB
	ix     *Index
	opts   IndexOptions
}

func newIndexEnv(t *testing.T) *indexEnv {
	t.Helper()
	dir := t.TempDir()
	e := &indexEnv{t: t, root: filepath.Join(dir, "mail"), dbPath: filepath.Join(dir, "mailroom.db")}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *indexEnv) open() {
	e.t.Helper()
	s, err := Open(Options{Root: e.root, Hostname: "mx.test"})
	if err != nil {
		e.t.Fatal(err)
	}
	if strings.HasPrefix(e.t.Name(), "TestIndexWithoutOpenat2/") {
		s.noOpenat2.Store(true) // the fallback path, for that test's subtests
	}
	db, err := bolt.Open(e.dbPath, 0o600, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	ix, err := NewIndex(db, s, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.store, e.db, e.ix = s, db, ix
}

func (e *indexEnv) close() {
	if e.ix == nil {
		return
	}
	e.ix.Close()
	e.db.Close()
	e.store.Close()
	e.ix = nil
}

// reopen is a restart: new Store, db handle and Index, same files.
func (e *indexEnv) reopen() {
	e.close()
	e.open()
}

func (e *indexEnv) folders(home string) mailbox.Folders {
	e.t.Helper()
	f, err := e.ix.Open(context.Background(), home)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { f.Close() })
	return f
}

// md is the on-disk path of home's Maildir.
func (e *indexEnv) md(home string) string { return filepath.Join(e.root, home, "Maildir") }

func (e *indexEnv) deliver(home, msg string) {
	e.t.Helper()
	ctx := context.Background()
	m, err := e.store.Stage(ctx, home, strings.NewReader(msg))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := m.Commit(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func mustSync(t *testing.T, f mailbox.Folders, name string) *mailbox.Snapshot {
	t.Helper()
	s, err := f.Sync(context.Background(), name)
	if err != nil {
		t.Fatalf("Sync(%s): %v", name, err)
	}
	return s
}

func uidsOf(s *mailbox.Snapshot) []uint32 {
	var u []uint32
	for _, m := range s.Messages {
		u = append(u, m.UID)
	}
	return u
}

func readMsg(t *testing.T, f mailbox.Folders, name string, uid uint32) string {
	t.Helper()
	rc, size, err := f.Open(context.Background(), name, uid)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", name, uid, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Errorf("Open(%s, %d): size %d, read %d bytes", name, uid, size, len(b))
	}
	return string(b)
}

// files lists a folder directory's sub-directory.
func files(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestNewAccount(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	got, err := f.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []mailbox.Folder{
		{Name: "INBOX", Subscribed: true},
		{Name: "Archive", SpecialUse: `\Archive`, Subscribed: true},
		{Name: "Drafts", SpecialUse: `\Drafts`, Subscribed: true},
		{Name: "Junk", SpecialUse: `\Junk`, Subscribed: true},
		{Name: "Sent", SpecialUse: `\Sent`, Subscribed: true},
		{Name: "Trash", SpecialUse: `\Trash`, Subscribed: true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %+v\nwant %+v", got, want)
	}
	for _, d := range []string{"", ".Sent", ".Drafts", ".Trash", ".Junk", ".Archive"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if fi, err := os.Stat(filepath.Join(e.md(testHome), d, sub)); err != nil || !fi.IsDir() {
				t.Errorf("%s/%s: %v", d, sub, err)
			}
		}
	}
	// A second Open does not make them again: a deleted default stays
	// deleted.
	if err := f.Delete(context.Background(), "Junk"); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	got, _ = e.folders(testHome).List(context.Background())
	if len(got) != 5 {
		t.Fatalf("after deleting Junk and reopening: %+v", got)
	}
}

func TestDeliverySyncAndRestart(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	s0 := mustSync(t, f, "INBOX")
	if len(s0.Messages) != 0 || s0.UIDNext != 1 || s0.UIDValidity == 0 {
		t.Fatalf("empty INBOX: %+v", s0)
	}
	msgs := []string{"Subject: 1\n\none\n", "Subject: 2\r\n\r\ntwo\r\n", "Subject: 3\n\nthree"}
	for _, m := range msgs {
		e.deliver(testHome, m)
	}
	s1 := mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(s1), []uint32{1, 2, 3}) || s1.UIDNext != 4 || s1.UIDValidity != s0.UIDValidity {
		t.Fatalf("after 3 deliveries: %+v", s1)
	}
	if s1.HighestModSeq <= s0.HighestModSeq {
		t.Errorf("HIGHESTMODSEQ did not grow: %d -> %d", s0.HighestModSeq, s1.HighestModSeq)
	}
	for i, m := range msgs {
		want := strings.ReplaceAll(strings.ReplaceAll(m, "\r\n", "\n"), "\n", "\r\n")
		if got := readMsg(t, f, "INBOX", uint32(i+1)); got != want {
			t.Errorf("message %d = %q, want %q", i+1, got, want)
		}
		if s1.Messages[i].Size != int64(len(want)) {
			t.Errorf("message %d size %d, want %d", i+1, s1.Messages[i].Size, len(want))
		}
	}
	if mustSync(t, f, "INBOX") != s1 {
		t.Error("a sync with no change made a new snapshot")
	}

	e.reopen()
	f = e.folders(testHome)
	s2 := mustSync(t, f, "INBOX")
	if s2.UIDValidity != s1.UIDValidity || !slices.Equal(uidsOf(s2), uidsOf(s1)) || s2.UIDNext != 4 {
		t.Fatalf("after restart: %+v, before %+v", s2, s1)
	}
	e.deliver(testHome, "x\n")
	if s3 := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(s3), []uint32{1, 2, 3, 4}) {
		t.Fatalf("delivery after restart: %v", uidsOf(s3))
	}
}

func TestWatchClosesOnDelivery(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	mustSync(t, f, "INBOX")
	w := f.Watch("INBOX")
	other := f.Watch("Sent")
	e.deliver(testHome, "hello\n")
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch(INBOX) not closed by a delivery")
	}
	select {
	case <-other:
		t.Fatal("Watch(Sent) closed by a delivery to INBOX")
	default:
	}
	if s := mustSync(t, f, "INBOX"); len(s.Messages) != 1 {
		t.Fatalf("after delivery: %+v", s)
	}
	// A change by another session wakes watchers too.
	w = f.Watch("INBOX")
	g := e.folders(testHome)
	if _, err := g.SetFlags(context.Background(), "INBOX", []uint32{1}, mailbox.FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w:
	default:
		t.Fatal("Watch not closed by another session's STORE")
	}
}

func TestAppendOpenSetFlags(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	date := time.Date(2020, 5, 17, 10, 20, 30, 0, time.UTC)
	msg := "From: a@b\r\nSubject: hi\r\n\r\nbody\r\nbare\nend\r"
	uv, uid, err := f.Append(ctx, "Drafts", strings.NewReader(msg), []string{`\Draft`, `\Seen`, "$Label1", "$label1", `\Recent`}, date)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSync(t, f, "Drafts")
	if uv != s.UIDValidity || uid != 1 || len(s.Messages) != 1 {
		t.Fatalf("Append = %d,%d; snapshot %+v", uv, uid, s)
	}
	m := s.Messages[0]
	if !m.InternalDate.Equal(date) {
		t.Errorf("internal date %v, want %v", m.InternalDate, date)
	}
	if want := []string{"$Label1", `\Draft`, `\Seen`}; !slices.Equal(m.Flags, want) {
		t.Errorf("flags %v, want %v", m.Flags, want)
	}
	want := "From: a@b\r\nSubject: hi\r\n\r\nbody\r\nbare\r\nend\r"
	if got := readMsg(t, f, "Drafts", uid); got != want {
		t.Errorf("content %q, want %q", got, want)
	}
	names := files(t, filepath.Join(e.md(testHome), ".Drafts", "cur"))
	if len(names) != 1 || !strings.HasSuffix(names[0], ":2,DS") || !strings.Contains(names[0], ",W=") {
		t.Fatalf("cur/ = %v", names)
	}
	disk, _ := os.ReadFile(filepath.Join(e.md(testHome), ".Drafts", "cur", names[0]))
	if strings.Contains(string(disk), "\r\n") {
		t.Errorf("stored with CRLF: %q", disk)
	}

	cases := []struct {
		op     mailbox.FlagOp
		flags  []string
		want   []string
		suffix string
	}{
		{mailbox.FlagsAdd, []string{`\Flagged`, `\Answered`}, []string{"$Label1", `\Answered`, `\Draft`, `\Flagged`, `\Seen`}, ":2,DFRS"},
		{mailbox.FlagsRemove, []string{`\Draft`, "$LABEL1"}, []string{`\Answered`, `\Flagged`, `\Seen`}, ":2,FRS"},
		{mailbox.FlagsSet, []string{`\Deleted`, "work"}, []string{`\Deleted`, "work"}, ":2,T"},
		{mailbox.FlagsAdd, []string{"later"}, []string{`\Deleted`, "later", "work"}, ":2,T"},
		{mailbox.FlagsSet, nil, []string{}, ":2,"},
	}
	prev := s.HighestModSeq
	for _, c := range cases {
		s, err := f.SetFlags(ctx, "Drafts", []uint32{uid, uid, 99}, c.op, c.flags)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Messages[0].Flags; !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("%v %v: flags %v, want %v", c.op, c.flags, got, c.want)
		}
		if s.HighestModSeq <= prev || s.Messages[0].ModSeq != s.HighestModSeq {
			t.Errorf("%v %v: modseq %d/%d after %d", c.op, c.flags, s.Messages[0].ModSeq, s.HighestModSeq, prev)
		}
		prev = s.HighestModSeq
		names := files(t, filepath.Join(e.md(testHome), ".Drafts", "cur"))
		if len(names) != 1 || !strings.HasSuffix(names[0], c.suffix) {
			t.Errorf("%v %v: file %v, want suffix %s", c.op, c.flags, names, c.suffix)
		}
	}
	// Keywords survive a restart (they live in the index).
	f.SetFlags(ctx, "Drafts", []uint32{uid}, mailbox.FlagsSet, []string{`\Seen`, "kw1"})
	e.reopen()
	f = e.folders(testHome)
	if got := mustSync(t, f, "Drafts").Messages[0].Flags; !slices.Equal(got, []string{`\Seen`, "kw1"}) {
		t.Errorf("after restart: %v", got)
	}
	if _, _, err := f.Append(ctx, "Nope", strings.NewReader("x"), nil, time.Time{}); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Append to a missing folder: %v", err)
	}
}

// TestIndexWithoutOpenat2 runs the index's confinement and file tests
// again on the os.Root fallback used where openat2 is unavailable.
func TestIndexWithoutOpenat2(t *testing.T) {
	t.Parallel()
	t.Run("BadNames", TestBadNames)
	t.Run("ChangesBehindOurBack", TestChangesBehindOurBack)
	t.Run("AppendOpenSetFlags", TestAppendOpenSetFlags)
	t.Run("Rename", TestRename)
}

// TestSnapshotsStayImmutable: a delivery appends to the array the last
// snapshot shares, never into what an earlier snapshot shows, and an
// append by a reader to a snapshot's Messages does not reach the next.
func TestSnapshotsStayImmutable(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	e.deliver(testHome, "one\n")
	s1 := mustSync(t, f, "INBOX")
	_ = append(s1.Messages, mailbox.Message{UID: 999})
	e.deliver(testHome, "two\n")
	s2 := mustSync(t, f, "INBOX")
	e.deliver(testHome, "three\n")
	s3 := mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(s1), []uint32{1}) || !slices.Equal(uidsOf(s2), []uint32{1, 2}) || !slices.Equal(uidsOf(s3), []uint32{1, 2, 3}) {
		t.Fatalf("snapshots %v %v %v", uidsOf(s1), uidsOf(s2), uidsOf(s3))
	}
	if _, err := f.SetFlags(context.Background(), "INBOX", []uint32{1}, mailbox.FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	if len(s3.Messages[0].Flags) != 0 || len(s2.Messages[0].Flags) != 0 {
		t.Errorf("an earlier snapshot changed: %v %v", s2.Messages[0].Flags, s3.Messages[0].Flags)
	}
}

// TestDeliveryDuringScanLeavesCurUnread: a message delivered while a scan
// reads new/ makes the scan read new/ again, but not an unchanged cur/,
// which may be large (a session watching the folder scans at every
// delivery). The message is in the snapshot.
func TestDeliveryDuringScanLeavesCurUnread(t *testing.T) {
	t.Parallel()
	const home = "example.org/w"
	var mu sync.Mutex
	var reads []string
	var during atomic.Bool
	dir := t.TempDir()
	e := &indexEnv{t: t, root: filepath.Join(dir, "mail"), dbPath: filepath.Join(dir, "mailroom.db")}
	e.opts.listHook = func(sub string) {
		mu.Lock()
		reads = append(reads, sub)
		mu.Unlock()
		if sub == "new" && during.CompareAndSwap(true, false) {
			e.deliver(home, "Subject: during\n\nx\n")
			// The delivery's own mtime may fall in the clock tick of the
			// last change: make the change plain.
			if err := os.Chtimes(filepath.Join(e.md(home), "new"), time.Time{}, time.Now().Add(time.Second)); err != nil {
				t.Error(err)
			}
		}
	}
	e.open()
	t.Cleanup(e.close)
	e.deliver(home, "Subject: first\n\nx\n")
	old := time.Now().Add(-time.Hour)
	cur := filepath.Join(e.md(home), "cur")
	if err := os.WriteFile(filepath.Join(cur, "1000000000.M1P1Q1.mx.test,S=15,W=17:2,S"), []byte("Subject: old\n\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(cur, old, old); err != nil {
		t.Fatal(err)
	}
	f := e.folders(home)
	if n := len(mustSync(t, f, "INBOX").Messages); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
	mu.Lock()
	reads = nil
	mu.Unlock()
	during.Store(true)
	e.deliver(home, "Subject: second\n\nx\n")
	snap := mustSync(t, f, "INBOX")
	if n := len(snap.Messages); n != 4 {
		t.Fatalf("%d messages after the delivery during the scan, want 4", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(reads, []string{"new", "new"}) {
		t.Fatalf("the scan read %v, want new/ twice and cur/ not at all", reads)
	}
}
