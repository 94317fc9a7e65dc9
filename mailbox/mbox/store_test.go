package mbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/mailbox"
)

const testHome = "example.org/alice"

// deliver stages and commits msg into home's folder (flags, if any).
func deliver(t *testing.T, s *Store, folder, msg string, flags ...string) {
	t.Helper()
	st, err := s.StageFolder(t.Context(), testHome, mailbox.Delivery{Folder: folder, Flags: flags}, strings.NewReader(msg))
	if err != nil {
		t.Fatalf("StageFolder: %v", err)
	}
	if err := st.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func openFolders(t *testing.T, s *Store) mailbox.Folders {
	t.Helper()
	f, err := s.Open(t.Context(), testHome)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mustSync(t *testing.T, f mailbox.Folders, name string) *mailbox.Snapshot {
	t.Helper()
	snap, err := f.Sync(t.Context(), name)
	if err != nil {
		t.Fatalf("Sync(%s): %v", name, err)
	}
	return snap
}

func content(t *testing.T, f mailbox.Folders, name string, uid uint32) string {
	t.Helper()
	r, _, err := f.Open(t.Context(), name, uid)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", name, uid, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func snapUIDs(s *mailbox.Snapshot) []uint32 {
	var out []uint32
	for _, m := range s.Messages {
		out = append(out, m.UID)
	}
	return out
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// TestDeliverThenServe: a delivery lands in <home>/mbox with the sender
// of its Return-Path in the From line, wakes IMAP's watchers, and is
// served as it was given.
func TestDeliverThenServe(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	f := openFolders(t, s)
	mustSync(t, f, "INBOX")
	w := f.Watch("INBOX")
	msg := "Return-Path: <bob@example.net>\nSubject: hi\n\nFrom the start\n>From quoted\n"
	deliver(t, s, "", msg)
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("a delivery did not wake the watcher")
	}
	snap := mustSync(t, f, "INBOX")
	if len(snap.Messages) != 1 {
		t.Fatalf("%d messages", len(snap.Messages))
	}
	if got := content(t, f, "INBOX", snap.Messages[0].UID); got != crlf(msg) {
		t.Errorf("served %q, want %q", got, crlf(msg))
	}
	raw, err := os.ReadFile(filepath.Join(s.opts.Root, testHome, "mbox"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), "From bob@example.net ") || !strings.Contains(string(raw), "\n>From the start\n>>From quoted\n") {
		t.Errorf("file %q", raw)
	}
}

// TestAbortCommitted: a committed message taken back is cut off the file.
func TestAbortCommitted(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	deliver(t, s, "", "Subject: kept\n\nx\n")
	path := filepath.Join(s.opts.Root, testHome, "mbox")
	// Written by a careless tool: no empty line at the end, so the
	// commit writes a separator first, which the abort takes back too.
	raw, _ := os.ReadFile(path)
	if err := os.WriteFile(path, raw[:len(raw)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	st, err := s.Stage(t.Context(), testHome, strings.NewReader("Subject: undone\n\ny\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.Abort(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("after Abort: %q, want %q", after, before)
	}
}

// TestFlagsWrittenOnRewrite: EXPUNGE rewrites the file with every other
// message's flags in Status:, X-Status: and X-Keywords:; what is served
// stays the same, and a new index (another mailroom, Dovecot) reads the
// flags back.
func TestFlagsWrittenOnRewrite(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	for i := range 3 {
		deliver(t, s, "", fmt.Sprintf("Subject: %d\nStatus: RO\n\nbody %d\n", i, i))
	}
	f := openFolders(t, s)
	snap := mustSync(t, f, "INBOX")
	u := snapUIDs(snap)
	if len(snap.Messages[0].Flags) != 0 {
		t.Errorf("a sender's Status: set flags %v", snap.Messages[0].Flags)
	}
	before := content(t, f, "INBOX", u[2])
	if _, err := f.SetFlags(t.Context(), "INBOX", []uint32{u[2]}, mailbox.FlagsAdd, []string{`\Seen`, `\Flagged`, `\Answered`, "$Work"}); err != nil {
		t.Fatal(err)
	}
	after, err := f.Expunge(t.Context(), "INBOX", []uint32{u[1]})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(snapUIDs(after), []uint32{u[0], u[2]}) {
		t.Fatalf("after expunge %v", snapUIDs(after))
	}
	if got := content(t, f, "INBOX", u[2]); got != before {
		t.Errorf("a rewrite changed what is served: %q, was %q", got, before)
	}
	raw, _ := os.ReadFile(filepath.Join(s.opts.Root, testHome, "mbox"))
	snapNow := mustSync(t, f, "INBOX")
	base := fmt.Sprintf("Subject: 0\nX-IMAPbase: %010d %010d $Work\nX-UID: %d\n\nbody 0\n", snapNow.UIDValidity, snapNow.UIDNext, u[0])
	for _, want := range []string{fmt.Sprintf("Subject: 2\nStatus: RO\nX-Status: AF\nX-Keywords: $Work\nX-UID: %d\n\nbody 2\n", u[2]), base} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("file lacks %q:\n%s", want, raw)
		}
	}
	if strings.Contains(string(raw), "body 1") {
		t.Errorf("the expunged message is still there:\n%s", raw)
	}
	// A new index of the same files reads the flags back.
	s2, err := OpenStore(StoreOptions{Root: s.opts.Root, DB: newTestStore(t, StoreOptions{}).opts.DB})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	f2 := openFolders(t, s2)
	snap2 := mustSync(t, f2, "INBOX")
	if len(snap2.Messages) != 2 || !slices.Equal(snap2.Messages[1].Flags, []string{"$Work", `\Answered`, `\Flagged`, `\Seen`}) {
		t.Errorf("flags read back: %+v", snap2.Messages)
	}
}

// TestOtherWriters: an append by another program gives a UID to the new
// message only; a rewrite by another program (mutt deleting a message
// and marking one read) keeps the UIDs of the others and takes the flags
// it wrote.
func TestOtherWriters(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	for i := range 3 {
		deliver(t, s, "", fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))
	}
	f := openFolders(t, s)
	u := snapUIDs(mustSync(t, f, "INBOX"))
	path := filepath.Join(s.opts.Root, testHome, "mbox")
	// procmail: dotlock, append.
	if err := Append(t.Context(), path, "carol@example.com", time.Now(), strings.NewReader("Subject: 3\n\nbody 3\n"), Options{}); err != nil {
		t.Fatal(err)
	}
	snap := mustSync(t, f, "INBOX")
	got := snapUIDs(snap)
	if len(got) != 4 || !slices.Equal(got[:3], u) || got[3] <= u[2] {
		t.Fatalf("after another program's append: %v (was %v)", got, u)
	}
	u = got
	// mutt: the file written again without message 1, message 0 read.
	raw, _ := os.ReadFile(path)
	parts := splitRaw(t, raw)
	parts[0] = strings.Replace(parts[0], "Subject: 0\n", "Subject: 0\nStatus: RO\n", 1)
	rewritten := parts[0] + parts[2] + parts[3]
	tmp := path + ".mutt"
	if err := os.WriteFile(tmp, []byte(rewritten), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	snap = mustSync(t, f, "INBOX")
	if !slices.Equal(snapUIDs(snap), []uint32{u[0], u[2], u[3]}) {
		t.Fatalf("after another program's rewrite: %v, want %v", snapUIDs(snap), []uint32{u[0], u[2], u[3]})
	}
	if !slices.Equal(snap.Messages[0].Flags, []string{`\Seen`}) || len(snap.Messages[1].Flags) != 0 {
		t.Errorf("flags after the rewrite: %v, %v", snap.Messages[0].Flags, snap.Messages[1].Flags)
	}
	if got := content(t, f, "INBOX", u[3]); got != crlf("Subject: 3\n\nbody 3\n") {
		t.Errorf("message 3 reads %q", got)
	}
}

// splitRaw cuts an mbox file into its messages, each with its From line
// and the empty line after it.
func splitRaw(t *testing.T, raw []byte) []string {
	t.Helper()
	var out []string
	rest := string(raw)
	for rest != "" {
		i := strings.Index(rest[1:], "\n\nFrom ")
		if i < 0 {
			out = append(out, rest)
			break
		}
		out = append(out, rest[:i+3])
		rest = rest[i+3:]
	}
	return out
}

// TestFirstSight: a file written by others, not starting with a From
// line, with flags in its headers: the leading bytes are kept through a
// rewrite but not served, the flags are read.
func TestFirstSight(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	dir := filepath.Join(s.opts.Root, testHome)
	os.MkdirAll(dir, 0o700)
	file := "stray text\n\n" +
		"From a@b Thu Nov 29 22:33:52 2007\nSubject: a\nStatus: RO\nX-Status: F\nX-Keywords: $Label1\n\nA\n\n" +
		"From c@d Thu Nov 29 22:34:00 2007\r\nSubject: b\r\n\r\nB\r\n\r\n" +
		"From e@f\nSubject: c\n\nC\n"
	if err := os.WriteFile(filepath.Join(dir, "mbox"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	f := openFolders(t, s)
	snap := mustSync(t, f, "INBOX")
	if len(snap.Messages) != 3 {
		t.Fatalf("%d messages", len(snap.Messages))
	}
	if !slices.Equal(snap.Messages[0].Flags, []string{"$Label1", `\Flagged`, `\Seen`}) {
		t.Errorf("flags %v", snap.Messages[0].Flags)
	}
	want := time.Date(2007, 11, 29, 22, 33, 52, 0, time.Local)
	if !snap.Messages[0].InternalDate.Equal(want) {
		t.Errorf("internal date %v, want %v", snap.Messages[0].InternalDate, want)
	}
	if got := content(t, f, "INBOX", snap.Messages[1].UID); got != "Subject: b\r\n\r\nB\r\n" {
		t.Errorf("CRLF message %q", got)
	}
	if _, err := f.Expunge(t.Context(), "INBOX", []uint32{snap.Messages[1].UID}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "mbox"))
	if !strings.HasPrefix(string(raw), "stray text\n\nFrom a@b") || strings.Contains(string(raw), "Subject: b") {
		t.Errorf("after the rewrite: %q", raw)
	}
	if got := content(t, f, "INBOX", snap.Messages[2].UID); got != "Subject: c\r\n\r\nC\r\n" {
		t.Errorf("last message %q", got)
	}
}

// TestFormatRefused: a home that holds a Maildir is not given an mbox
// beside it, temporarily (the mail waits).
func TestFormatRefused(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	os.MkdirAll(filepath.Join(s.opts.Root, testHome, "Maildir", "cur"), 0o700)
	_, err := s.Stage(t.Context(), testHome, strings.NewReader("x\n"))
	var fe *mailbox.FormatError
	if !errors.As(err, &fe) || !fe.Temporary() || !strings.Contains(err.Error(), "Maildir") {
		t.Errorf("Stage: %v, want a temporary FormatError", err)
	}
	if _, err := s.Open(t.Context(), testHome); !errors.As(err, &fe) {
		t.Errorf("Open: %v, want a FormatError", err)
	}
	if _, err := os.Stat(filepath.Join(s.opts.Root, testHome, "mbox")); err == nil {
		t.Error("an mbox was made beside the Maildir")
	}
}

// TestLockNeverReleased: a lock held by a process that never lets go is
// a temporary error after the lock timeout, not a hang; nothing is lost.
func TestLockNeverReleased(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{Lock: Options{LockTimeout: 300 * time.Millisecond}})
	deliver(t, s, "", "Subject: first\n\nx\n")
	path := filepath.Join(s.opts.Root, testHome, "mbox")
	release := startLockHolder(t, path)
	st, err := s.Stage(t.Context(), testHome, strings.NewReader("Subject: second\n\ny\n"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = st.Commit(t.Context())
	var me *Error
	if !errors.Is(err, ErrLockTimeout) || !errors.As(err, &me) || !me.Temporary() {
		t.Fatalf("Commit under a held lock: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Commit waited %v", d)
	}
	release()
	if err := st.Commit(t.Context()); err != nil {
		t.Fatalf("Commit once released: %v", err)
	}
	f := openFolders(t, s)
	if n := len(mustSync(t, f, "INBOX").Messages); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestDeliveryDuringExpunge: deliveries racing with expunges lose
// nothing.
func TestDeliveryDuringExpunge(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	f := openFolders(t, s)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := s.Stage(context.Background(), testHome, strings.NewReader(fmt.Sprintf("Subject: %d\n\nkeep\n", i)))
			if err == nil {
				err = st.Commit(context.Background())
			}
			errs <- err
		}()
	}
	for range 10 {
		_, uid, err := f.Append(t.Context(), "INBOX", strings.NewReader("Subject: doomed\n\nx\n"), nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		after, err := f.Expunge(t.Context(), "INBOX", []uint32{uid})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(snapUIDs(after), uid) {
			t.Errorf("uid %d still there after its expunge: %v", uid, snapUIDs(after))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	snap := mustSync(t, f, "INBOX")
	if len(snap.Messages) != n {
		t.Fatalf("%d messages, want %d", len(snap.Messages), n)
	}
	for _, m := range snap.Messages {
		if c := content(t, f, "INBOX", m.UID); !strings.HasSuffix(c, "\r\n\r\nkeep\r\n") {
			t.Errorf("uid %d: %q", m.UID, c)
		}
	}
}

// TestFolders: delivery into a folder with flags and :create, special
// use, the Dovecot layout on disk, and a folder below one that holds
// messages refused.
func TestFolders(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	ctx := t.Context()
	if _, err := s.StageFolder(ctx, testHome, mailbox.Delivery{Folder: "Lists/Go"}, strings.NewReader("x\n")); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("StageFolder to a missing folder: %v", err)
	}
	st, err := s.StageFolder(ctx, testHome, mailbox.Delivery{Folder: "Lists/Go", Create: true, Flags: []string{`\Seen`, "$Work"}}, strings.NewReader("Subject: go\n\nx\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(s.opts.Root, testHome, "mail", "Lists", "Go"))
	if err != nil || !strings.Contains(string(raw), "Subject: go\nStatus: RO\nX-Keywords: $Work\n\n") {
		t.Errorf("mail/Lists/Go: %q, %v", raw, err)
	}
	if ok, _ := s.FolderExists(ctx, testHome, "Lists/Go"); !ok {
		t.Error("FolderExists(Lists/Go) false")
	}
	if ok, _ := s.FolderExists(ctx, testHome, "Lists"); ok {
		t.Error("FolderExists(Lists), a directory, true")
	}
	junk, err := s.StageSpecial(ctx, testHome, `\Junk`, strings.NewReader("Subject: spam\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := junk.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	f := openFolders(t, s)
	if snap := mustSync(t, f, "Junk"); len(snap.Messages) != 1 {
		t.Errorf("Junk has %d messages", len(snap.Messages))
	}
	snap := mustSync(t, f, "Lists/Go")
	if len(snap.Messages) != 1 || !slices.Equal(snap.Messages[0].Flags, []string{"$Work", `\Seen`}) {
		t.Errorf("Lists/Go: %+v", snap.Messages)
	}
	if err := f.Create(ctx, "Lists/Go/Deeper"); !errors.Is(err, mailbox.ErrNotAllowed) {
		t.Errorf("Create below a folder that holds messages: %v, want ErrNotAllowed", err)
	}
	l, err := f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, fo := range l {
		if fo.Name == "Lists" && !fo.NoSelect || fo.Name == "Lists/Go" && fo.NoSelect {
			t.Errorf("List: %+v", fo)
		}
	}
	for _, bad := range []string{"Go.lock", ".hidden", "a/../b"} {
		if err := f.Create(ctx, bad); !errors.Is(err, mailbox.ErrBadFolderName) {
			t.Errorf("Create(%q): %v", bad, err)
		}
	}
	if err := f.Create(ctx, "Entwürfe"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.opts.Root, testHome, "mail", "Entw&APw-rfe")); err != nil {
		t.Errorf("a non-ASCII name is not spelt in modified UTF-7: %v", err)
	}
}

// TestSpoolInbox: [delivery] mbox_inbox puts INBOX in a spool file.
func TestSpoolInbox(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	s := newTestStore(t, StoreOptions{Inbox: filepath.Join(spool, "{local}")})
	deliver(t, s, "", "Subject: spool\n\nx\n")
	raw, err := os.ReadFile(filepath.Join(spool, "alice"))
	if err != nil || !strings.Contains(string(raw), "Subject: spool") {
		t.Fatalf("spool file: %q, %v", raw, err)
	}
	f := openFolders(t, s)
	snap := mustSync(t, f, "INBOX")
	if len(snap.Messages) != 1 {
		t.Fatalf("%d messages", len(snap.Messages))
	}
	if _, err := f.Expunge(t.Context(), "INBOX", snapUIDs(snap)); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(filepath.Join(spool, "alice")); len(raw) != 0 {
		t.Errorf("after expunging all: %q", raw)
	}
}

// TestStaleDotlock: a dotlock left by a crashed writer (older than
// StaleLock) is broken, and the delivery goes through.
func TestStaleDotlock(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{Lock: Options{LockTimeout: 5 * time.Second, StaleLock: time.Minute}})
	deliver(t, s, "", "Subject: first\n\nx\n")
	lock := filepath.Join(s.opts.Root, testHome, "mbox.lock")
	if err := os.WriteFile(lock, []byte("99999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(lock, old, old)
	deliver(t, s, "", "Subject: second\n\ny\n")
	if _, err := os.Stat(lock); err == nil {
		t.Error("the stale dotlock is still there")
	}
	if n := len(mustSync(t, openFolders(t, s), "INBOX").Messages); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestBinaryAndBig: binary data (NULs, no line ends, a lone CR) and a
// 100 MiB message come back as they were given, the big one served from
// the file without being held in memory.
func TestBinaryAndBig(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	bin := "Subject: bin\n\n\x00\x01\xff\rFrom \x00no line end"
	deliver(t, s, "", bin)
	var big strings.Builder
	big.WriteString("Subject: big\n\n")
	line := strings.Repeat("0123456789", 10) + "\n"
	for big.Len() < 100<<20 {
		big.WriteString(line)
	}
	deliver(t, s, "", big.String())
	f := openFolders(t, s)
	snap := mustSync(t, f, "INBOX")
	if len(snap.Messages) != 2 {
		t.Fatalf("%d messages", len(snap.Messages))
	}
	if got, want := content(t, f, "INBOX", snap.Messages[0].UID), "Subject: bin\r\n\r\n\x00\x01\xff\rFrom \x00no line end\r\n"; got != want {
		t.Errorf("binary message %q, want %q", got, want)
	}
	want := int64(big.Len() + strings.Count(big.String(), "\n"))
	if snap.Messages[1].Size != want {
		t.Errorf("big message: size %d, want %d", snap.Messages[1].Size, want)
	}
	r, size, err := f.Open(t.Context(), "INBOX", snap.Messages[1].UID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The end, after a seek: what a partial FETCH asks for.
	if _, err := r.Seek(size-int64(len(line)+1), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(r)
	if err != nil || string(tail) != strings.ReplaceAll(line, "\n", "\r\n") {
		t.Errorf("the big message's last line %q, %v", tail, err)
	}
}

// FuzzFromDate: any From line gives a date (its own or the file's) and
// never a panic.
func FuzzFromDate(f *testing.F) {
	f.Add([]byte("From a@b Thu Nov 29 22:33:52 2007"))
	f.Add([]byte("From alice@vm  Thu Dec 03 15:07:12 2026 +0200"))
	f.Add([]byte("From "))
	f.Fuzz(func(t *testing.T, line []byte) {
		fromDate(line, 12345e9)
	})
}

// TestDovecotUIDsTakenOver: a file that Dovecot indexed (X-IMAPbase in
// its first message, X-UID in each) keeps Dovecot's UIDVALIDITY and UIDs
// in a new index; a UID out of order gets a new one; the next delivery
// gets Dovecot's UIDNEXT.
func TestDovecotUIDsTakenOver(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	dir := filepath.Join(s.opts.Root, testHome)
	os.MkdirAll(dir, 0o700)
	file := "From a@b Thu Nov 29 22:33:52 2007\nSubject: a\nX-IMAPbase: 1234567 0000000010 $Work\nX-UID: 3\n\nA\n\n" +
		"From a@b Thu Nov 29 22:33:53 2007\nSubject: b\nX-UID: 7    \n\nB\n\n" +
		"From a@b Thu Nov 29 22:33:54 2007\nSubject: c\nX-UID: 5\n\nC\n\n"
	if err := os.WriteFile(filepath.Join(dir, "mbox"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	f := openFolders(t, s)
	snap := mustSync(t, f, "INBOX")
	if snap.UIDValidity != 1234567 || !slices.Equal(snapUIDs(snap), []uint32{3, 7, 10}) || snap.UIDNext != 11 {
		t.Fatalf("UIDVALIDITY %d, UIDs %v, UIDNEXT %d; want 1234567, [3 7 10], 11", snap.UIDValidity, snapUIDs(snap), snap.UIDNext)
	}
	deliver(t, s, "", "Subject: d\n\nD\n")
	if got := snapUIDs(mustSync(t, f, "INBOX")); !slices.Equal(got, []uint32{3, 7, 10, 11}) {
		t.Errorf("after a delivery: %v", got)
	}
}

// TestSpoolSizes: a message is held in memory up to stageMemory and in
// an anonymous file beyond; either way it is appended whole, its size is
// what was given, its From line names its Return-Path, and nothing is
// left in the home.
func TestSpoolSizes(t *testing.T) {
	t.Parallel()
	for _, size := range []int{stageMemory - 1, stageMemory, stageMemory + 1, 3*stageMemory + 7} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, StoreOptions{})
			head := "Return-Path: <bob@example.net>\nSubject: sized\n\n"
			body := strings.Repeat("x", 99) + "\n"
			var msg strings.Builder
			msg.WriteString(head)
			for msg.Len() < size-1 {
				msg.WriteString(body[:min(len(body), size-1-msg.Len())])
			}
			msg.WriteString("\n")
			st, err := s.Stage(t.Context(), testHome, strings.NewReader(msg.String()))
			if err != nil {
				t.Fatal(err)
			}
			if got := st.(*Staged).Size(); got != int64(size) {
				t.Errorf("Size %d, want %d", got, size)
			}
			if err := st.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			f := openFolders(t, s)
			snap := mustSync(t, f, "INBOX")
			if len(snap.Messages) != 1 {
				t.Fatalf("%d messages", len(snap.Messages))
			}
			if got := content(t, f, "INBOX", snap.Messages[0].UID); got != crlf(msg.String()) {
				t.Errorf("served %d bytes, want the %d given", len(got), len(crlf(msg.String())))
			}
			raw, err := os.ReadFile(filepath.Join(s.opts.Root, testHome, "mbox"))
			if err != nil || !strings.HasPrefix(string(raw), "From bob@example.net ") {
				t.Errorf("From line %.40q, %v", raw, err)
			}
			ents, _ := os.ReadDir(filepath.Join(s.opts.Root, testHome))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".mailroom-spool-") {
					t.Errorf("left in the home: %s", e.Name())
				}
			}
		})
	}
}

// TestHomeRemovedBetweenDeliveries: deliveries remember that a home's
// directory is in place (Store.ready); if it is removed, even between a
// Stage and its Commit, the delivery makes it again instead of failing.
func TestHomeRemovedBetweenDeliveries(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	deliver(t, s, "", "Subject: one\n\n1\n")
	home := filepath.Join(s.opts.Root, testHome)
	st, err := s.Stage(t.Context(), testHome, strings.NewReader("Subject: two\n\n2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(home); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(t.Context()); err != nil {
		t.Fatalf("Commit after the home was removed: %v", err)
	}
	os.RemoveAll(home)
	deliver(t, s, "", "Subject: three\n\n3\n")
	raw, err := os.ReadFile(filepath.Join(home, "mbox"))
	if err != nil || strings.Count(string(raw), "\nFrom ")+1 != 1 || !strings.Contains(string(raw), "Subject: three") {
		t.Errorf("mbox after the home was removed twice: %q, %v", raw, err)
	}
}
