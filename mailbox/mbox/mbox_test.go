package mbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mailroom/internal/mailtest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"
)

// lockHolderEnv makes the test binary a helper process that holds a
// classic fcntl lock on the named file, as Dovecot or Postfix would, until
// its stdin is closed.
const lockHolderEnv = "MBOX_TEST_LOCK_HOLDER"

// appenderEnv makes the test binary a helper process that appends "hello"
// to the named mbox, logging to stderr, and exits 1 on failure: a writer
// with another user's rights.
const appenderEnv = "MBOX_TEST_APPEND"

func TestMain(m *testing.M) {
	if p := os.Getenv(lockHolderEnv); p != "" {
		os.Exit(holdLock(p))
	}
	if p := os.Getenv(appenderEnv); p != "" {
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if err := Append(context.Background(), p, "", testDate, strings.NewReader("hello\n"), Options{Logger: logger}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func holdLock(path string) int {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk); err != nil {
		fmt.Fprintln(os.Stderr, "lock:", err)
		return 1
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin) // until the test closes the pipe
	return 0
}

// startLockHolder runs the helper process on path and returns once it
// holds the lock; release makes it let go and exit.
func startLockHolder(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockHolderEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		stdin.Close()
		cmd.Wait()
		t.Fatalf("lock holder: %q, %v", line, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Errorf("lock holder: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// recorder is a slog handler that keeps records and announces lock waits.
type recorder struct {
	mu      sync.Mutex
	records []string
	busy    chan string // kind of each "mbox lock busy"
}

func newRecorder() *recorder { return &recorder{busy: make(chan string, 100)} }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var kind string
	s := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		s += " " + a.String()
		if a.Key == "kind" {
			kind = a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	r.records = append(r.records, s)
	r.mu.Unlock()
	if rec.Message == "mbox lock busy" {
		r.busy <- kind
	}
	return nil
}

func (r *recorder) has(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.records {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

var testDate = time.Date(2026, 11, 25, 9, 5, 3, 0, time.UTC)

const testFromLine = "From alice@example.org Wed Nov 25 09:05:03 2026\n"

func appendString(t *testing.T, path, msg string, opts Options) error {
	t.Helper()
	return Append(t.Context(), path, "alice@example.org", testDate, strings.NewReader(msg), opts)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func split(t *testing.T, path string) []Message {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msgs, err := Split(f)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestQuoting(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		file string // what follows the From line
		back string // what Split returns
	}{
		{"plain", "Subject: x\n\nhello\n", "Subject: x\n\nhello\n\n", "Subject: x\n\nhello\n"},
		{"from line", "a\nFrom me\nb\n", "a\n>From me\nb\n\n", "a\nFrom me\nb\n"},
		{"quoted from", "a\n>From me\n", "a\n>>From me\n\n", "a\n>From me\n"},
		{"twice quoted", ">>From x\n", ">>>From x\n\n", ">>From x\n"},
		{"first line", "From x\n", ">From x\n\n", "From x\n"},
		{"last line no newline", "a\nFrom x", "a\n>From x\n\n", "a\nFrom x\n"},
		{"no final newline", "a\nb", "a\nb\n\n", "a\nb\n"},
		{"crlf", "Subject: x\r\n\r\nFrom y\r\nz\r\n", "Subject: x\n\n>From y\nz\n\n", "Subject: x\n\nFrom y\nz\n"},
		{"lone cr kept", "a\rb\r\n", "a\rb\n\n", "a\rb\n"},
		{"not from", "Froma\nFrom\n>From\n> From x\n>Fro", "Froma\nFrom\n>From\n> From x\n>Fro\n\n", "Froma\nFrom\n>From\n> From x\n>Fro\n"},
		{"from mid line", "x From y\n", "x From y\n\n", "x From y\n"},
		{"lowercase", "from x\n", "from x\n\n", "from x\n"},
		{"empty", "", "\n", ""},
		{"blank lines at end", "a\n\n\n", "a\n\n\n\n", "a\n\n\n"},
		{"many gt", strings.Repeat(">", 200) + "From x\n", strings.Repeat(">", 201) + "From x\n\n", strings.Repeat(">", 200) + "From x\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "mbox")
			if err := appendString(t, path, tc.in, Options{}); err != nil {
				t.Fatal(err)
			}
			if got, want := readFile(t, path), testFromLine+tc.file; got != want {
				t.Errorf("file:\n got %q\nwant %q", got, want)
			}
			msgs := split(t, path)
			if len(msgs) != 1 || string(msgs[0].Body) != tc.back {
				t.Fatalf("split: %q", msgs)
			}
			if msgs[0].Sender != "alice@example.org" || msgs[0].Date != "Wed Nov 25 09:05:03 2026" {
				t.Errorf("envelope: %q %q", msgs[0].Sender, msgs[0].Date)
			}
			// The same through a reader giving one byte at a time:
			// chunk ends between '\r' and '\n' or inside "From ".
			path2 := filepath.Join(t.TempDir(), "mbox")
			err := Append(t.Context(), path2, "alice@example.org", testDate, iotest.OneByteReader(strings.NewReader(tc.in)), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := readFile(t, path2), testFromLine+tc.file; got != want {
				t.Errorf("one byte at a time:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestFromLine(t *testing.T) {
	t.Parallel()
	cases := []struct{ from, want string }{
		{"", "MAILER-DAEMON"},
		{"bob@example.net", "bob@example.net"},
		{"\"a b\"@example.net", "\"a_b\"@example.net"},
		{"x\r\nFrom evil@x", "x__From_evil@x"},
		{"tab\there", "tab_here"},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "mbox")
		if err := Append(t.Context(), path, tc.from, testDate, strings.NewReader("x\n"), Options{}); err != nil {
			t.Fatal(err)
		}
		want := "From " + tc.want + " Wed Nov 25 09:05:03 2026\nx\n\n"
		if got := readFile(t, path); got != want {
			t.Errorf("from %q: got %q, want %q", tc.from, got, want)
		}
	}
}

func TestAppendToExisting(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, existing, want string
	}{
		{"empty file", "", testFromLine + "new\n\n"},
		{"ends with empty line", testFromLine + "old\n\n", testFromLine + "old\n\n" + testFromLine + "new\n\n"},
		{"ends with one newline", testFromLine + "old\n", testFromLine + "old\n\n" + testFromLine + "new\n\n"},
		{"no final newline", testFromLine + "old", testFromLine + "old\n\n" + testFromLine + "new\n\n"},
		{"just a newline", "\n", "\n" + testFromLine + "new\n\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "mbox")
			if err := os.WriteFile(path, []byte(tc.existing), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := appendString(t, path, "new\n", Options{}); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, path); got != tc.want {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestCreateMode(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mbox")
	if err := appendString(t, path, "x\n", Options{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Lstat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dotlock left behind: %v", err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mbox")
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				// Big enough to need several write calls, with lines
				// that must be quoted.
				body := fmt.Sprintf("Subject: %d-%d\n\nFrom here\n%s\nend %d-%d\n", w, i, strings.Repeat("x", 100<<10), w, i)
				if err := appendString(t, path, body, Options{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	msgs := split(t, path)
	if len(msgs) != writers*each {
		t.Fatalf("%d messages, want %d", len(msgs), writers*each)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		var w, i int
		if _, err := fmt.Sscanf(string(m.Body), "Subject: %d-%d\n", &w, &i); err != nil {
			t.Fatalf("message %.40q: %v", m.Body, err)
		}
		want := fmt.Sprintf("Subject: %d-%d\n\nFrom here\n%s\nend %d-%d\n", w, i, strings.Repeat("x", 100<<10), w, i)
		if string(m.Body) != want {
			t.Fatalf("message %d-%d is mangled", w, i)
		}
		seen[fmt.Sprint(w, i)] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct messages", len(seen))
	}
}

// TestFcntlLockOtherProcess: a reader in another process (Dovecot, mutt)
// holding a classic fcntl lock makes Append wait, and Append finishes once
// it lets go.
func TestFcntlLockOtherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mbox")
	const old = testFromLine + "old\n\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	release := startLockHolder(t, path)
	rec := newRecorder()
	done := make(chan error, 1)
	go func() { done <- appendString(t, path, "new\n", Options{Logger: slog.New(rec)}) }()
	select {
	case kind := <-rec.busy:
		if kind != "fcntl" {
			t.Fatalf("waited for %s, want fcntl", kind)
		}
	case err := <-done:
		t.Fatalf("Append returned %v while the file was locked", err)
	}
	if got := readFile(t, path); got != old {
		t.Fatalf("file changed while locked: %q", got)
	}
	if _, err := os.Lstat(path + ".lock"); err != nil {
		t.Errorf("Append waits for fcntl without holding the dotlock: %v", err)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), old+testFromLine+"new\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFcntlLockTimeout(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mbox")
	const old = testFromLine + "old\n\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	startLockHolder(t, path)
	err := appendString(t, path, "new\n", Options{LockTimeout: 200 * time.Millisecond})
	assertTemporary(t, err, ErrLockTimeout)
	if got := readFile(t, path); got != old {
		t.Errorf("file changed: %q", got)
	}
	if _, err := os.Lstat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dotlock left behind after a timeout: %v", err)
	}
}

func TestDotlock(t *testing.T) {
	t.Parallel()
	t.Run("fresh lock respected", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "mbox")
		if err := os.WriteFile(path+".lock", nil, 0o600); err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		err := appendString(t, path, "new\n", Options{LockTimeout: 200 * time.Millisecond, Logger: slog.New(rec)})
		assertTemporary(t, err, ErrLockTimeout)
		if kind := <-rec.busy; kind != "dotlock" {
			t.Errorf("waited for %s", kind)
		}
		if _, err := os.Lstat(path + ".lock"); err != nil {
			t.Errorf("someone else's dotlock was removed: %v", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("mbox touched without the lock: %v", err)
		}
	})
	t.Run("released while waiting", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "mbox")
		if err := os.WriteFile(path+".lock", nil, 0o600); err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		done := make(chan error, 1)
		go func() { done <- appendString(t, path, "new\n", Options{Logger: slog.New(rec)}) }()
		<-rec.busy
		os.Remove(path + ".lock")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, path); got != testFromLine+"new\n\n" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("stale lock broken", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "mbox")
		if err := os.WriteFile(path+".lock", []byte("12345\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-10 * time.Minute)
		if err := os.Chtimes(path+".lock", old, old); err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		if err := appendString(t, path, "new\n", Options{LockTimeout: 5 * time.Second, Logger: slog.New(rec)}); err != nil {
			t.Fatal(err)
		}
		if !rec.has("breaking stale mbox dotlock") {
			t.Error("no warning about the stale lock")
		}
		if _, err := os.Lstat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dotlock left behind: %v", err)
		}
		if got := readFile(t, path); got != testFromLine+"new\n\n" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("holds pid", func(t *testing.T) {
		t.Parallel()
		// While Append holds the locks (blocked on the fcntl lock of a
		// helper), its dotlock names this process.
		path := filepath.Join(t.TempDir(), "mbox")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		release := startLockHolder(t, path)
		rec := newRecorder()
		done := make(chan error, 1)
		go func() { done <- appendString(t, path, "new\n", Options{Logger: slog.New(rec)}) }()
		<-rec.busy
		if got, want := readFile(t, path+".lock"), fmt.Sprintf("%d\n", os.Getpid()); got != want {
			t.Errorf("dotlock holds %q, want %q", got, want)
		}
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// failingReader gives n bytes of a message and then fails, as a spool
// file on a failing disk would.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	for i := range k {
		p[i] = 'x'
		if i%80 == 79 {
			p[i] = '\n'
		}
	}
	f.n -= k
	return k, nil
}

func TestTruncateBackOnFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"read error", errors.New("disk on fire")},
		{"ENOSPC", syscall.ENOSPC},
		{"EIO", syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "mbox")
			const old = testFromLine + "old\n" // no final empty line: padding is rolled back too
			if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
				t.Fatal(err)
			}
			// More than the write buffer, so part of it reaches the file.
			r := &failingReader{n: 300 << 10, err: tc.err}
			err := Append(t.Context(), path, "", testDate, r, Options{})
			assertTemporary(t, err, tc.err)
			if got := readFile(t, path); got != old {
				t.Errorf("file not truncated back: %d bytes, want %d", len(got), len(old))
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "mbox")
		ctx, cancel := context.WithCancel(t.Context())
		r := &cancelReader{r: strings.NewReader(strings.Repeat("y\n", 200<<10)), after: 100 << 10, cancel: cancel}
		err := Append(ctx, path, "", testDate, r, Options{})
		assertTemporary(t, err, context.Canceled)
		if got := readFile(t, path); got != "" {
			t.Errorf("file not truncated back: %d bytes", len(got))
		}
	})
}

// cancelReader cancels its context once after bytes have been read.
type cancelReader struct {
	r      io.Reader
	after  int
	cancel func()
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.after -= n
	if c.after <= 0 {
		c.cancel()
	}
	return n, err
}

// TestDiskFull fills a small tmpfs: the real ENOSPC from write(2).
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, filepath.Join(t.TempDir(), "small"), "size=64k")
	path := filepath.Join(dir, "mbox")
	old := testFromLine + strings.Repeat("old\n", 4<<10) + "\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	err := appendString(t, path, strings.Repeat("z", 1<<20), Options{})
	assertTemporary(t, err, syscall.ENOSPC)
	if got := readFile(t, path); got != old {
		t.Errorf("file not truncated back: %d bytes, want %d", len(got), len(old))
	}
	// Room again for a small message once the failed one is gone.
	if err := appendString(t, path, "small\n", Options{}); err != nil {
		t.Fatal(err)
	}
}

// mountTmpfs mounts a small tmpfs with opts over dir (created) until the
// test ends. It needs root, which CI has; elsewhere the test is skipped,
// loudly.
func mountTmpfs(t *testing.T, dir, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if mailtest.InCI() {
			t.Fatal("this test needs root, which CI has")
		}
		t.Skip("SKIP: mounting a tmpfs needs root (CI runs as root)")
	}
	os.MkdirAll(dir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		if mailtest.InCI() {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("SKIP: cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func TestRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "exe")
	if err := os.WriteFile(exe, nil, 0o700); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard")
	if err := os.Link(target, hard); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		want       error
	}{
		{"symlink", link, ErrSymlink},
		{"dangling symlink", dangling, ErrSymlink},
		{"relative", "mbox", ErrRelative},
		{"dot relative", "./mbox", ErrRelative},
		{"directory", dir, syscall.EISDIR},
		{"fifo", fifo, ErrNotRegular},
		{"device", "/dev/zero", ErrNotRegular},
		{"executable", exe, ErrUnsafe},
		{"hard link", hard, ErrUnsafe},
		{"missing directory", filepath.Join(dir, "no", "mbox"), syscall.ENOENT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := appendString(t, tc.path, "x\n", Options{LockTimeout: time.Second})
			var e *Error
			if !errors.As(err, &e) || e.Temporary() || !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want a permanent %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the path", err)
			}
			if _, err := os.Lstat(tc.path + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dotlock left behind: %v", err)
			}
		})
	}
	if got := readFile(t, target); got != "precious\n" {
		t.Errorf("symlink target changed: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dangling symlink followed: %v", err)
	}
}

// TestDotlockNotPossible: a writer that may write the mbox but not create
// files in its directory (/var/mail without group mail) appends under the
// fcntl lock alone, as Postfix does, instead of failing.
func TestDotlockNotPossible(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		if mailtest.InCI() {
			t.Fatal("this test needs root, which CI has")
		}
		t.Skip("SKIP: running a writer as another user needs root (CI runs as root)")
	}
	const nobody = 65534
	// The test binary, copied where user nobody can run it.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // both made by t.TempDir
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "mbox.test")
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool") // root's, mode 0755: no dotlock for nobody
	if err := os.Mkdir(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(spool, "nobody")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	release := startLockHolder(t, path)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = []string{appenderEnv + "=" + path}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The writer still waits for the fcntl lock of the other process.
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "mbox lock busy") {
			if !strings.Contains(sc.Text(), "kind=fcntl") {
				t.Errorf("waits for the wrong lock: %s", sc.Text())
			}
			break
		}
	}
	release()
	io.Copy(&log, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer as nobody: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "mbox dotlock not possible") {
		t.Errorf("no record of the missing dotlock:\n%s", log.String())
	}
	if got, want := readFile(t, path), "From MAILER-DAEMON Wed Nov 25 09:05:03 2026\nhello\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDevNull(t *testing.T) {
	t.Parallel()
	if err := Append(t.Context(), "/dev/null", "", testDate, &failingReader{err: errors.New("read")}, Options{}); err != nil {
		t.Fatal(err)
	}
}

func assertTemporary(t *testing.T, err, want error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !e.Temporary() {
		t.Fatalf("got %v, want a temporary *Error", err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
}

func TestSplitErrors(t *testing.T) {
	t.Parallel()
	if _, err := Split(strings.NewReader("junk\nFrom x y\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("got %v", err)
	}
	msgs, err := Split(strings.NewReader(""))
	if err != nil || len(msgs) != 0 {
		t.Errorf("empty: %v %v", msgs, err)
	}
}

// normalize is what Append stores for msg: LF line ends and a final
// newline on a non-empty message, the hidden fields dropped.
func normalize(msg []byte) []byte {
	out := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return []byte(dropHidden(string(out)))
}

func encode(t *testing.T, msgs ...[]byte) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	for i, m := range msgs {
		r := io.Reader(bytes.NewReader(m))
		if i%2 == 1 {
			r = iotest.OneByteReader(r)
		}
		if err := writeMessage(bw, fromLine("s@x", testDate), r, ""); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// FuzzQuoteRoundTrip: whatever two messages hold, Split gives them back as
// stored (LF, final newline), whether written in one piece or byte by byte.
func FuzzQuoteRoundTrip(f *testing.F) {
	f.Add([]byte("From x\n>From y\r\n"), []byte(">>From z"))
	f.Add([]byte(""), []byte("\r"))
	f.Add([]byte("a\r\r\nFrom \n\n"), []byte("\n\nFrom"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		mbox := encode(t, a, b)
		msgs, err := Split(bytes.NewReader(mbox))
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 {
			t.Fatalf("%d messages in %q", len(msgs), mbox)
		}
		for i, want := range [][]byte{normalize(a), normalize(b)} {
			if !bytes.Equal(msgs[i].Body, want) || msgs[i].Sender != "s@x" {
				t.Fatalf("message %d: got %q, want %q (file %q)", i, msgs[i].Body, want, mbox)
			}
		}
	})
}

// FuzzSplit: any input splits without panic, and what it yields survives
// being written and split again.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("From a b\nx\n>From y\n\nFrom c d\n\n"))
	f.Add([]byte("From \n"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := Split(bytes.NewReader(data))
		if err != nil {
			return
		}
		var bodies [][]byte
		for _, m := range msgs {
			bodies = append(bodies, m.Body)
		}
		again, err := Split(bytes.NewReader(encode(t, bodies...)))
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("re-split: %d messages, %v", len(again), err)
		}
		for i := range again {
			if want := normalize(bodies[i]); !bytes.Equal(again[i].Body, want) {
				t.Fatalf("message %d: got %q, want %q", i, again[i].Body, want)
			}
		}
	})
}
