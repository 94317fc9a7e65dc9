package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailroom/mailbox"
)

func appendN(t *testing.T, f mailbox.Folders, folder string, n int) []uint32 {
	t.Helper()
	var uids []uint32
	for i := range n {
		_, uid, err := f.Append(context.Background(), folder, strings.NewReader(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i)), []string{`\Seen`, fmt.Sprintf("kw%d", i)}, time.Unix(int64(1e9+i), 0))
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	return uids
}

func inode(t *testing.T, dir string) map[uint64]bool {
	t.Helper()
	m := map[uint64]bool{}
	for _, n := range files(t, dir) {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		m[fi.Sys().(*syscall.Stat_t).Ino] = true
	}
	return m
}

func TestCopy(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	appendN(t, f, "INBOX", 3)
	f.Create(ctx, "Dest")
	appendN(t, f, "Dest", 1)
	src := mustSync(t, f, "INBOX")

	uv, from, to, err := f.Copy(ctx, "INBOX", []uint32{3, 1, 1, 42}, "Dest")
	if err != nil {
		t.Fatal(err)
	}
	dst := mustSync(t, f, "Dest")
	if uv != dst.UIDValidity || !slices.Equal(from, []uint32{3, 1}) || !slices.Equal(to, []uint32{2, 3}) {
		t.Fatalf("Copy = %d %v %v; dest %+v", uv, from, to, dst)
	}
	for i, uid := range to {
		s, d := src.Messages[from[i]-1], dst.Messages[uid-1]
		if !slices.Equal(s.Flags, d.Flags) || !s.InternalDate.Equal(d.InternalDate) || s.Size != d.Size {
			t.Errorf("copy of %d: %+v, source %+v", from[i], d, s)
		}
		if readMsg(t, f, "Dest", uid) != readMsg(t, f, "INBOX", from[i]) {
			t.Errorf("copy of %d: content differs", from[i])
		}
	}
	if s := mustSync(t, f, "INBOX"); s != src {
		t.Error("Copy changed the source")
	}
	// Hard links: the copies share the source's inodes.
	srcIno := inode(t, filepath.Join(e.md(testHome), "cur"))
	shared := 0
	for ino := range inode(t, filepath.Join(e.md(testHome), ".Dest", "cur")) {
		if srcIno[ino] {
			shared++
		}
	}
	if shared != 2 {
		t.Errorf("%d copies share an inode with the source, want 2", shared)
	}
	// A flag change on the copy leaves the source alone.
	f.SetFlags(ctx, "Dest", []uint32{2}, mailbox.FlagsSet, []string{`\Deleted`})
	if s := mustSync(t, f, "INBOX"); !slices.Contains(s.Messages[2].Flags, `\Seen`) {
		t.Errorf("source flags changed with the copy's: %v", s.Messages[2].Flags)
	}
	// Copy into the same folder, and into a missing one.
	if _, from, to, err := f.Copy(ctx, "INBOX", []uint32{2}, "INBOX"); err != nil || !slices.Equal(from, []uint32{2}) || !slices.Equal(to, []uint32{4}) {
		t.Errorf("Copy to itself = %v %v %v", from, to, err)
	}
	if _, _, _, err := f.Copy(ctx, "INBOX", []uint32{1}, "Missing"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Copy to a missing folder: %v", err)
	}
	// UIDs survive a restart.
	e.reopen()
	if d := mustSync(t, e.folders(testHome), "Dest"); !slices.Equal(uidsOf(d), []uint32{1, 2, 3}) || d.UIDValidity != uv {
		t.Errorf("after restart: %+v", d)
	}
}

func TestMove(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	appendN(t, f, "INBOX", 4)
	e.deliver(testHome, "in new/\n") // uid 5, still in new/
	src := mustSync(t, f, "INBOX")
	w := f.Watch("INBOX")

	uv, from, to, err := f.Move(ctx, "INBOX", []uint32{2, 5, 77}, "Trash")
	if err != nil {
		t.Fatal(err)
	}
	trash := mustSync(t, f, "Trash")
	if uv != trash.UIDValidity || !slices.Equal(from, []uint32{2, 5}) || !slices.Equal(to, []uint32{1, 2}) {
		t.Fatalf("Move = %d %v %v", uv, from, to)
	}
	select {
	case <-w:
	default:
		t.Error("Move did not wake the source's watchers")
	}
	in := mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(in), []uint32{1, 3, 4}) || in.HighestModSeq <= src.HighestModSeq {
		t.Errorf("source after Move: %+v", in)
	}
	if !slices.Equal(trash.Messages[0].Flags, src.Messages[1].Flags) || !trash.Messages[0].InternalDate.Equal(src.Messages[1].InternalDate) {
		t.Errorf("moved message: %+v, was %+v", trash.Messages[0], src.Messages[1])
	}
	if got := readMsg(t, f, "Trash", 2); got != "in new/\r\n" {
		t.Errorf("moved content %q", got)
	}
	// By rename: the unique names went along, and nothing is left.
	srcFiles := append(files(t, filepath.Join(e.md(testHome), "cur")), files(t, filepath.Join(e.md(testHome), "new"))...)
	if len(srcFiles) != 3 {
		t.Errorf("source files %v", srcFiles)
	}
	// Move within a folder: new UIDs, old ones gone.
	if _, from, to, err := f.Move(ctx, "INBOX", []uint32{1}, "inbox"); err != nil || !slices.Equal(from, []uint32{1}) || !slices.Equal(to, []uint32{6}) {
		t.Errorf("Move to itself = %v %v %v", from, to, err)
	}
	if in := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(in), []uint32{3, 4, 6}) {
		t.Errorf("after Move to itself: %v", uidsOf(in))
	}
	// Moving back a message whose unique name is already there (a copy
	// made by hand) gives it a new unique name.
	trashCur := filepath.Join(e.md(testHome), ".Trash", "cur")
	name := files(t, trashCur)[0]
	os.Link(filepath.Join(trashCur, name), filepath.Join(e.md(testHome), "cur", name))
	mustSync(t, f, "INBOX")
	if _, _, to, err := f.Move(ctx, "Trash", []uint32{1}, "INBOX"); err != nil || len(to) != 1 {
		t.Fatalf("Move onto an existing unique name: %v %v", to, err)
	}
	if in := mustSync(t, f, "INBOX"); len(in.Messages) != 5 {
		t.Errorf("INBOX after moving back: %v", uidsOf(in))
	}
	e.reopen()
	if in := mustSync(t, e.folders(testHome), "INBOX"); len(in.Messages) != 5 {
		t.Errorf("INBOX after restart: %v", uidsOf(in))
	}
}

func TestExpunge(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	appendN(t, f, "INBOX", 3)
	e.deliver(testHome, "x\n")
	before := mustSync(t, f, "INBOX")
	s, err := f.Expunge(ctx, "INBOX", []uint32{1, 4, 4, 9})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(uidsOf(s), []uint32{2, 3}) || s.HighestModSeq <= before.HighestModSeq || s.UIDNext != 5 {
		t.Fatalf("after Expunge: %+v", s)
	}
	n := len(files(t, filepath.Join(e.md(testHome), "cur"))) + len(files(t, filepath.Join(e.md(testHome), "new")))
	if n != 2 {
		t.Errorf("%d files left, want 2", n)
	}
	// A file already removed by hand is expunged without error.
	cur := filepath.Join(e.md(testHome), "cur")
	os.Remove(filepath.Join(cur, files(t, cur)[0]))
	if s, err := f.Expunge(ctx, "INBOX", []uint32{2}); err != nil || !slices.Equal(uidsOf(s), []uint32{3}) {
		t.Errorf("Expunge of a vanished file: %v %v", uidsOf(s), err)
	}
	if _, _, err := f.Open(ctx, "INBOX", 1); !errors.Is(err, mailbox.ErrNoMessage) {
		t.Errorf("Open of an expunged message: %v", err)
	}
	e.reopen()
	if s := mustSync(t, e.folders(testHome), "INBOX"); !slices.Equal(uidsOf(s), []uint32{3}) || s.UIDNext != 5 {
		t.Errorf("after restart: %+v", s)
	}
}

// TestAppendDurability: a failed fsync fails the APPEND, leaves no file
// and uses no UID.
func TestAppendDurability(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	e.store.syncFile = func(int) error { return errors.New("EIO") }
	if _, _, err := f.Append(ctx, "INBOX", strings.NewReader("x\n"), nil, time.Time{}); err == nil {
		t.Fatal("Append with a failing fsync succeeded")
	}
	e.store.syncFile = fsync
	for _, d := range []string{"tmp", "cur", "new"} {
		if got := files(t, filepath.Join(e.md(testHome), d)); len(got) != 0 {
			t.Errorf("%s/ = %v", d, got)
		}
	}
	boom := errors.New("connection lost")
	if _, _, err := f.Append(ctx, "INBOX", io.MultiReader(strings.NewReader("half"), errReader{boom}), nil, time.Time{}); !errors.Is(err, boom) {
		t.Fatalf("Append of a broken stream: %v", err)
	}
	if _, uid, err := f.Append(ctx, "INBOX", strings.NewReader("x\n"), nil, time.Time{}); err != nil || uid != 1 {
		t.Errorf("Append after failures: uid %d, %v", uid, err)
	}
	if got := files(t, filepath.Join(e.md(testHome), "tmp")); len(got) != 0 {
		t.Errorf("tmp/ = %v", got)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestOpenSeek(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	body := strings.Repeat("line of text\n", 3000) + "last"
	_, uid, err := f.Append(ctx, "INBOX", strings.NewReader(body), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(body, "\n", "\r\n")
	rc, size, err := f.Open(ctx, "INBOX", uid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if size != int64(len(want)) {
		t.Fatalf("size %d, want %d", size, len(want))
	}
	buf := make([]byte, 100)
	io.ReadFull(rc, buf)
	for _, c := range []struct {
		off    int64
		whence int
		pos    int64
	}{
		{0, io.SeekStart, 0},
		{20001, io.SeekStart, 20001},
		{-4, io.SeekEnd, size - 4},
		{5, io.SeekStart, 5},
		{10, io.SeekCurrent, 15},
		{13, io.SeekStart, 13}, // between the CR and LF of a line end
		{14, io.SeekStart, 14},
	} {
		pos, err := rc.Seek(c.off, c.whence)
		if err != nil || pos != c.pos {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", c.off, c.whence, pos, err, c.pos)
		}
		rest, err := io.ReadAll(rc)
		if err != nil || string(rest) != want[pos:] {
			t.Fatalf("after Seek(%d, %d): read %d bytes, want %d", c.off, c.whence, len(rest), len(want)-int(pos))
		}
		rc.Seek(pos, io.SeekStart)
	}
	if _, err := rc.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek before the start succeeded")
	}
	if _, _, err := f.Open(ctx, "INBOX", 99); !errors.Is(err, mailbox.ErrNoMessage) {
		t.Errorf("Open of a missing UID: %v", err)
	}
}

// TestConcurrentSessions: sessions of one account append, store, copy,
// expunge and sync at once while mail is delivered. UIDs stay unique and
// ascending, nothing is lost, and the index agrees with the disk after a
// restart.
func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	ctx := context.Background()
	e.folders(testHome).Create(ctx, "Other")
	const sessions, per = 8, 15
	var wg sync.WaitGroup
	for i := range sessions {
		f := e.folders(testHome)
		wg.Go(func() {
			for j := range per {
				_, uid, err := f.Append(ctx, "INBOX", strings.NewReader(fmt.Sprintf("s%d m%d\n", i, j)), nil, time.Time{})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := f.SetFlags(ctx, "INBOX", []uint32{uid}, mailbox.FlagsAdd, []string{`\Seen`, fmt.Sprintf("s%d", i)}); err != nil {
					t.Error(err)
				}
				if j%5 == 0 {
					_, _, dst, err := f.Copy(ctx, "INBOX", []uint32{uid}, "Other")
					if err != nil || len(dst) != 1 {
						t.Error(dst, err)
						return
					}
					if j%10 == 0 {
						if _, _, _, err := f.Move(ctx, "Other", dst, "INBOX"); err != nil {
							t.Error(err)
						}
					}
				}
				if _, err := f.Sync(ctx, "INBOX"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range per {
			e.deliver(testHome, "delivered\n")
		}
	})
	wg.Wait()
	f := e.folders(testHome)
	in := mustSync(t, f, "INBOX")
	other := mustSync(t, f, "Other")
	// Each session: per appends, 3 copies to Other of which 2 move back.
	if len(in.Messages) != sessions*(per+2)+per || len(other.Messages) != sessions {
		t.Errorf("INBOX has %d messages, Other %d; want %d, %d", len(in.Messages), len(other.Messages), sessions*(per+2)+per, sessions)
	}
	for i := 1; i < len(in.Messages); i++ {
		if in.Messages[i].UID <= in.Messages[i-1].UID {
			t.Fatalf("UIDs not ascending at %d", i)
		}
	}
	e.reopen()
	f = e.folders(testHome)
	if s := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(s), uidsOf(in)) {
		t.Errorf("INBOX after restart differs")
	}
	if s := mustSync(t, f, "Other"); !slices.Equal(uidsOf(s), uidsOf(other)) {
		t.Errorf("Other after restart differs")
	}
}

// signalReader closes started at its first Read.
type signalReader struct {
	r       io.Reader
	once    sync.Once
	started chan struct{}
}

func (s *signalReader) Read(p []byte) (int, error) {
	s.once.Do(func() { close(s.started) })
	return s.r.Read(p)
}

// TestSlowAppendBlocksNobody: while one session's APPEND waits for its
// client, other sessions can change folders and sync.
func TestSlowAppendBlocksNobody(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f, g := e.folders(testHome), e.folders(testHome)
	ctx := context.Background()
	pr, pw := io.Pipe()
	sr := &signalReader{r: pr, started: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, _, err := f.Append(ctx, "INBOX", sr, nil, time.Time{})
		done <- err
	}()
	<-sr.started
	others := make(chan error, 1)
	go func() {
		err := g.Create(ctx, "While/Appending")
		if err == nil {
			_, err = g.Sync(ctx, "INBOX")
		}
		if err == nil {
			err = g.Rename(ctx, "While", "After")
		}
		others <- err
	}()
	select {
	case err := <-others:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("another session was blocked by a pending APPEND")
	}
	pw.Write([]byte("late\n"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := mustSync(t, g, "INBOX"); len(s.Messages) != 1 {
		t.Fatalf("%+v", s)
	}
}

// TestMaildirRemadeByDelivery: the whole Maildir removed by hand and made
// again by the next delivery is followed by the index.
func TestMaildirRemadeByDelivery(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	e.deliver(testHome, "one\n")
	mustSync(t, f, "INBOX")
	os.RemoveAll(e.md(testHome))
	e.deliver(testHome, "two\n")
	s := mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(s), []uint32{2}) {
		t.Fatalf("after the Maildir was made again: %+v", s)
	}
	if got := readMsg(t, f, "INBOX", 2); got != "two\r\n" {
		t.Fatalf("content %q", got)
	}
	if _, err := f.Sync(context.Background(), "Sent"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Sent after the Maildir was removed: %v", err)
	}
}

// TestOpenEditedFile: a message file edited behind the index's back
// never serves more or fewer bytes than the size announced.
func TestOpenEditedFile(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	_, uid, _ := f.Append(ctx, "INBOX", strings.NewReader("0123456789\n"), nil, time.Time{})
	cur := filepath.Join(e.md(testHome), "cur")
	name := filepath.Join(cur, files(t, cur)[0])
	for _, c := range []struct {
		content string
		want    string
		err     bool
	}{
		{"0123456789 and much more\n", "0123456789 a", false},
		{"short\n", "short\r\n", true},
	} {
		os.WriteFile(name, []byte(c.content), 0o600)
		rc, size, err := f.Open(ctx, "INBOX", uid)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if string(b) != c.want || (err != nil) != c.err || size != 12 {
			t.Errorf("edited to %q: read %q, %v (size %d)", c.content, b, err, size)
		}
	}
}
