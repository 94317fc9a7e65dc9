package mbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
)

// TestDeliveryDuringRewrite: a delivery by another writer of the file
// (another process: its own Store, so that only the file locks keep the
// two apart) that starts while an EXPUNGE rewrites the file waits for the
// locks and lands in the new file, in both lock orders. In "fcntl
// dotlock" order it opens the old file and waits for its fcntl lock, so
// it must notice the rename and start over on the new file; appending to
// the old one would lose the message.
func TestDeliveryDuringRewrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		order LockOrder
		waits string // the lock the delivery waits for
	}{
		{"dotlock-fcntl", DotlockFirst, "dotlock"},
		{"fcntl-dotlock", FcntlFirst, "fcntl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := filepath.Join(t.TempDir(), "mail")
			a := newTestStore(t, StoreOptions{Root: root, Lock: Options{Order: tc.order}})
			rec := newRecorder()
			b, err := OpenStore(StoreOptions{Root: root, Lock: Options{Order: tc.order}, Logger: slog.New(rec)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			for i := range 3 {
				deliver(t, a, "", fmt.Sprintf("Subject: m%d\n\nbody %d\n", i, i))
			}
			f := openFolders(t, a)
			uids := snapUIDs(mustSync(t, f, "INBOX"))
			done := make(chan error, 1)
			reached := false
			a.rewriteHook = func(step string) {
				if step != "checked" { // the new file written, just before the rename
					return
				}
				reached = true
				go func() {
					st, err := b.Stage(context.Background(), testHome, strings.NewReader("Subject: late\n\nlate\n"))
					if err == nil {
						err = st.Commit(context.Background())
					}
					done <- err
				}()
				select {
				case kind := <-rec.busy:
					if kind != tc.waits {
						t.Errorf("the delivery waited for the %s lock, want %s", kind, tc.waits)
					}
				case err := <-done:
					t.Errorf("the delivery finished during the rewrite (%v)", err)
				case <-time.After(20 * time.Second):
					t.Error("the delivery neither waited for a lock nor finished")
				}
			}
			if _, err := f.Expunge(t.Context(), "INBOX", uids[1:2]); err != nil {
				t.Fatal(err)
			}
			if !reached {
				t.Fatal("the rewrite did not reach its step before the rename")
			}
			if err := <-done; err != nil {
				t.Fatalf("the delivery: %v", err)
			}
			snap := mustSync(t, f, "INBOX")
			if got := snapUIDs(snap); len(got) != 3 || got[0] != uids[0] || got[1] != uids[2] || got[2] <= uids[2] {
				t.Fatalf("UIDs %v after the expunge of %d and the delivery, had %v", got, uids[1], uids)
			}
			if c := content(t, f, "INBOX", snap.Messages[2].UID); !strings.HasSuffix(c, "\r\nlate\r\n") {
				t.Errorf("the late delivery reads %q", c)
			}
			raw, err := os.ReadFile(filepath.Join(root, testHome, "mbox"))
			if err != nil {
				t.Fatal(err)
			}
			if got := subjectsOf(t, raw); !slices.Equal(got, []string{"m0", "m2", "late"}) {
				t.Errorf("the file holds %q", got)
			}
		})
	}
}

// subjectsOf is the Subject of every message in the mbox raw, in order.
func subjectsOf(t *testing.T, raw []byte) []string {
	t.Helper()
	msgs, err := Split(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		for _, l := range strings.Split(string(m.Body), "\n") {
			if s, ok := strings.CutPrefix(l, "Subject: "); ok {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// rewriteSteps are the steps of a rewrite where folder.rewrite calls
// its hook, in order; renamed says whether the new file has replaced the
// old one by then.
var rewriteSteps = []struct {
	step    string
	renamed bool
}{
	{"created", false},   // the temporary file made, empty
	{"partial", false},   // its first message written
	{"written", false},   // all written, not fsynced
	{"synced", false},    // fsynced, not checked
	{"checked", false},   // read back and checked, not renamed
	{"renamed", true},    // renamed over the old file, the directory not fsynced
	{"dir-synced", true}, // the directory fsynced, the index not updated
}

// Environment of TestRewriteCrash's child process.
const (
	crashStepEnv = "MAILROOM_MBOX_CRASH_STEP"
	crashDirEnv  = "MAILROOM_MBOX_CRASH_DIR"
	crashUIDsEnv = "MAILROOM_MBOX_CRASH_UIDS"
)

// storeAt opens a store over dir/mail with its index in dir/mailroom.db,
// closed by the returned function.
func storeAt(t *testing.T, dir string, opts StoreOptions) (*Store, func()) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "mailroom.db"), 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	opts.Root, opts.DB = filepath.Join(dir, "mail"), db
	if err := mkdirAll(opts.Root); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(opts)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return s, func() { s.Close(); db.Close() }
}

// TestRewriteCrash: a process killed (SIGKILL) at any step of an
// EXPUNGE's rewrite leaves the old file, byte for byte, until the
// rename, and the new one from the rename on, never a mix; the next
// process (its index as the killed one left it) serves every message
// under its UID with its flags, the expunged ones gone only if the new
// file is in place, and the next EXPUNGE removes the temporary file a
// crash left. The killed process is this test binary again, run with
// crashStepEnv naming the step where its rewrite hook kills it.
func TestRewriteCrash(t *testing.T) {
	if step := os.Getenv(crashStepEnv); step != "" {
		crashChild(t, step)
		return
	}
	t.Parallel()
	for _, tc := range rewriteSteps {
		t.Run(tc.step, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, closeStore := storeAt(t, dir, StoreOptions{})
			for i := range 5 {
				deliver(t, s, "", fmt.Sprintf("Subject: m%d\n\nbody %d\nFrom a quoted line\n", i, i))
			}
			f, err := s.Open(t.Context(), testHome)
			if err != nil {
				t.Fatal(err)
			}
			uids := snapUIDs(mustSync(t, f, "INBOX"))
			if _, err := f.SetFlags(t.Context(), "INBOX", uids[:1], mailbox.FlagsAdd, []string{`\Seen`}); err != nil {
				t.Fatal(err)
			}
			f.Close()
			closeStore()
			box := filepath.Join(dir, "mail", testHome, "mbox")
			old, err := os.ReadFile(box)
			if err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(os.Args[0], "-test.run=^TestRewriteCrash$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashStepEnv+"="+tc.step, crashDirEnv+"="+dir,
				fmt.Sprintf("%s=%d,%d", crashUIDsEnv, uids[1], uids[3]))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the child was not killed at %s: %v\n%s", tc.step, err, out)
			}

			raw, err := os.ReadFile(box)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"m0", "m1", "m2", "m3", "m4"}
			keep := uids
			if tc.renamed {
				want, keep = []string{"m0", "m2", "m4"}, []uint32{uids[0], uids[2], uids[4]}
			} else if string(raw) != string(old) {
				t.Errorf("killed at %s, before the rename, the file changed:\n%s\nwas\n%s", tc.step, raw, old)
			}
			if got := subjectsOf(t, raw); !slices.Equal(got, want) {
				t.Errorf("killed at %s, the file holds %q, want %q:\n%s", tc.step, got, want, raw)
			}

			// The killed writer's dotlock is left behind: stale at once
			// here, as it would be after StaleLock.
			s, closeStore = storeAt(t, dir, StoreOptions{Lock: Options{StaleLock: time.Millisecond}})
			defer closeStore()
			f, err = s.Open(t.Context(), testHome)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			check := func(when string, want []uint32) {
				t.Helper()
				snap := mustSync(t, f, "INBOX")
				if got := snapUIDs(snap); !slices.Equal(got, want) {
					t.Fatalf("%s: UIDs %v, want %v (had %v)", when, got, want, uids)
				}
				for _, m := range snap.Messages {
					i := slices.Index(uids, m.UID)
					if c := content(t, f, "INBOX", m.UID); !strings.HasSuffix(c, fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\nFrom a quoted line\r\n", i, i)) {
						t.Errorf("%s: UID %d reads %q", when, m.UID, c)
					}
					if seen := slices.Contains(m.Flags, `\Seen`); seen != (i == 0) {
						t.Errorf("%s: UID %d has flags %v", when, m.UID, m.Flags)
					}
				}
			}
			check("after the crash", keep)
			if _, err := f.Expunge(t.Context(), "INBOX", []uint32{uids[1], uids[3]}); err != nil {
				t.Fatal(err)
			}
			check("after the next expunge", []uint32{uids[0], uids[2], uids[4]})
			ents, err := os.ReadDir(filepath.Dir(box))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if strings.Contains(e.Name(), "rewrite") || strings.HasSuffix(e.Name(), ".lock") {
					t.Errorf("%s left in the home after the next expunge", e.Name())
				}
			}
		})
	}
}

// crashChild is TestRewriteCrash's killed process: it expunges the UIDs
// of crashUIDsEnv from the store in crashDirEnv and kills itself at step.
func crashChild(t *testing.T, step string) {
	s, closeStore := storeAt(t, os.Getenv(crashDirEnv), StoreOptions{})
	defer closeStore()
	s.rewriteHook = func(at string) {
		if at == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	var uids []uint32
	for _, f := range strings.Split(os.Getenv(crashUIDsEnv), ",") {
		var u uint32
		fmt.Sscan(f, &u)
		uids = append(uids, u)
	}
	f, err := s.Open(t.Context(), testHome)
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, f, "INBOX")
	if _, err := f.Expunge(t.Context(), "INBOX", uids); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("the rewrite finished without reaching step %q", step)
}
