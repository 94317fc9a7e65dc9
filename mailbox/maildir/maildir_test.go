package maildir

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "mail")
	s, err := Open(Options{Root: root, Hostname: "mx/odd:host"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(t.Name(), "TestWithoutOpenat2/") {
		s.noOpenat2.Store(true) // the fallback path, for that test's subtests
	}
	if strings.HasPrefix(t.Name(), "TestWithoutTmpfile/") {
		s.noTmpfile.Store(true) // named files in tmp/, renamed
	}
	t.Cleanup(func() { s.Close() })
	return s, root
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestStageCommit(t *testing.T) {
	t.Parallel()
	s, root := newStore(t)
	ctx := context.Background()
	m, err := s.Stage(ctx, "example.org/alice", strings.NewReader("Subject: x\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(root, "example.org/alice/Maildir")
	if got := listDir(t, filepath.Join(md, "new")); len(got) != 0 {
		t.Fatalf("visible before Commit: %v", got)
	}
	// A staged message is an unnamed file (O_TMPFILE), or a named one
	// in tmp/ where that is unavailable.
	wantTmp := 0
	if s.noTmpfile.Load() {
		wantTmp = 1
	}
	if got := listDir(t, filepath.Join(md, "tmp")); len(got) != wantTmp {
		t.Fatalf("tmp/ = %v, want %d files", got, wantTmp)
	}
	if err := m.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	names := listDir(t, filepath.Join(md, "new"))
	if len(names) != 1 || len(listDir(t, filepath.Join(md, "tmp"))) != 0 {
		t.Fatalf("after Commit new/=%v tmp/=%v", names, listDir(t, filepath.Join(md, "tmp")))
	}
	name := names[0]
	if !strings.HasSuffix(name, `.mx\057odd\072host,S=17,W=20`) || strings.Contains(name, ":") {
		t.Errorf("file name %q: host not escaped or size missing", name)
	}
	b, _ := os.ReadFile(filepath.Join(md, "new", name))
	if string(b) != "Subject: x\n\nbody\n" {
		t.Errorf("content %q", b)
	}
	for _, d := range []string{"example.org", "example.org/alice", "example.org/alice/Maildir", "example.org/alice/Maildir/cur"} {
		fi, err := os.Stat(filepath.Join(root, d))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v mode %v, want 0700", d, err, fi.Mode().Perm())
		}
	}
	fi, _ := os.Stat(filepath.Join(md, "new", name))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", fi.Mode().Perm())
	}
}

func TestAbort(t *testing.T) {
	t.Parallel()
	s, root := newStore(t)
	ctx := context.Background()
	md := filepath.Join(root, "d/u/Maildir")
	staged, _ := s.Stage(ctx, "d/u", strings.NewReader("a"))
	if err := staged.Abort(); err != nil {
		t.Fatal(err)
	}
	committed, _ := s.Stage(ctx, "d/u", strings.NewReader("b"))
	committed.Commit(ctx)
	if err := committed.Abort(); err != nil {
		t.Fatal(err)
	}
	if n, m := listDir(t, filepath.Join(md, "tmp")), listDir(t, filepath.Join(md, "new")); len(n)+len(m) != 0 {
		t.Fatalf("left behind: tmp=%v new=%v", n, m)
	}
}

// TestFailedWriteLeavesNothing covers both failure points of Stage: the
// message stream breaking, and fsync failing.
func TestFailedWriteLeavesNothing(t *testing.T) {
	t.Parallel()
	s, root := newStore(t)
	ctx := context.Background()
	md := filepath.Join(root, "d/u/Maildir")

	boom := errors.New("connection lost")
	_, err := s.Stage(ctx, "d/u", io.MultiReader(strings.NewReader("half a mess"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("Stage with broken reader: %v", err)
	}

	var synced atomic.Int32
	s.syncFile = func(int) error { synced.Add(1); return errors.New("EIO") }
	if _, err := s.Stage(ctx, "d/u", strings.NewReader("msg")); err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("Stage with failing fsync: %v", err)
	}
	if synced.Load() != 1 {
		t.Fatalf("fsync called %d times", synced.Load())
	}
	if n, m := listDir(t, filepath.Join(md, "tmp")), listDir(t, filepath.Join(md, "new")); len(n)+len(m) != 0 {
		t.Fatalf("left behind: tmp=%v new=%v", n, m)
	}
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Stage(ctx, "d/u", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stage = %v", err)
	}
}

func TestHostileHomes(t *testing.T) {
	t.Parallel()
	s, root := newStore(t)
	outside := filepath.Dir(root)
	// A symlink planted inside the mail root that points out of it.
	os.MkdirAll(filepath.Join(root, "d"), 0o700)
	os.Symlink(outside, filepath.Join(root, "d", "evil"))
	for _, home := range []string{"", "/etc", "../x", "d/../../x", "d/./u", "d/.hidden", "d/u\x00", `d\u`, "d/evil"} {
		t.Run(home, func(t *testing.T) {
			m, err := s.Stage(context.Background(), home, strings.NewReader("x"))
			if err == nil {
				m.Abort()
				t.Fatalf("Stage(%q) succeeded", home)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(outside, "Maildir")); err == nil {
		t.Fatal("a Maildir was created outside the mail root")
	}
}

// TestConcurrentDeliveries checks that group commit loses nothing: many
// goroutines deliver into one Maildir at once and every message lands,
// with unique names.
func TestConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	s, root := newStore(t)
	ctx := context.Background()
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m, err := s.Stage(ctx, "d/u", strings.NewReader(strings.Repeat("x", i)))
			if err == nil {
				err = m.Commit(ctx)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := len(listDir(t, filepath.Join(root, "d/u/Maildir/new"))); got != n {
		t.Fatalf("%d messages in new/, want %d", got, n)
	}
}

// TestWithoutOpenat2 runs the delivery and confinement tests again on the
// fallback path used where openat2 is unavailable.
func TestWithoutOpenat2(t *testing.T) {
	t.Parallel()
	t.Run("StageCommit", TestStageCommit)
	t.Run("Abort", TestAbort)
	t.Run("HostileHomes", TestHostileHomes)
	t.Run("FailedWrite", TestFailedWriteLeavesNothing)
}

// TestWithoutTmpfile runs the delivery tests again with named files in
// tmp/, renamed into new/, as where O_TMPFILE is unavailable.
func TestWithoutTmpfile(t *testing.T) {
	t.Parallel()
	t.Run("StageCommit", TestStageCommit)
	t.Run("Abort", TestAbort)
	t.Run("FailedWrite", TestFailedWriteLeavesNothing)
	t.Run("RemovedByHand", TestMaildirRemovedByHand)
}

// TestTmpfileInUse: this kernel and file system have O_TMPFILE and the
// link through /proc, so delivery takes that path (the tests above run
// it, and TestWithoutTmpfile the other); a crash before Commit leaves
// nothing.
func TestTmpfileInUse(t *testing.T) {
	t.Parallel()
	s, root := newStore(t)
	if s.noTmpfile.Load() {
		t.Fatal("O_TMPFILE or the link through /proc/self/fd is unavailable here")
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmpfile-check") {
			t.Errorf("the check's file %s stayed in the mail root", e.Name())
		}
	}
}

// TestMaildirRemovedByHand: a Maildir (or its new/) removed while the
// server runs is made again by the next delivery.
func TestMaildirRemovedByHand(t *testing.T) {
	t.Parallel()
	s, root := newStore(t)
	ctx := context.Background()
	deliver := func() error {
		m, err := s.Stage(ctx, "d/u", strings.NewReader("x"))
		if err == nil {
			err = m.Commit(ctx)
		}
		return err
	}
	if err := deliver(); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(root, "d/u/Maildir"))
	if err := deliver(); err != nil {
		t.Fatalf("after removing the Maildir: %v", err)
	}
	os.RemoveAll(filepath.Join(root, "d/u/Maildir/new"))
	if err := deliver(); err == nil {
		t.Fatal("a delivery succeeded without new/")
	}
	if err := deliver(); err != nil {
		t.Fatalf("the delivery after that did not make new/ again: %v", err)
	}
	if n := len(listDir(t, filepath.Join(root, "d/u/Maildir/new"))); n != 1 {
		t.Fatalf("%d messages in the new new/", n)
	}
}
