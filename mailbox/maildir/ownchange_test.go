package maildir

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mailroom/internal/mailtest"
	"mailroom/mailbox"
)

// ownEnv is an INBOX of three messages in cur/ and a folder Kept,
// synced once, with the reads of new/ and cur/ recorded from then on.
type ownEnv struct {
	*indexEnv
	f     mailbox.Folders
	mu    sync.Mutex
	reads []string
}

func newOwnEnv(t *testing.T) *ownEnv {
	t.Helper()
	dir := t.TempDir()
	o := &ownEnv{indexEnv: &indexEnv{t: t, root: filepath.Join(dir, "mail"), dbPath: filepath.Join(dir, "mailroom.db")}}
	o.opts.listHook = func(sub string) {
		o.mu.Lock()
		o.reads = append(o.reads, sub)
		o.mu.Unlock()
	}
	o.open()
	t.Cleanup(o.close)
	o.f = o.folders(testHome)
	ctx := context.Background()
	if err := o.f.Create(ctx, "Kept"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := o.f.Append(ctx, "INBOX", strings.NewReader("Subject: "+string(rune('a'+i))+"\r\n\r\nx\r\n"), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	// The directories as in a folder used for a while: not changed
	// in the last hour.
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{"", ".Kept"} {
		for _, sub := range []string{"new", "cur"} {
			if err := os.Chtimes(filepath.Join(o.md(testHome), d, sub), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustSync(t, o.f, "INBOX")
	mustSync(t, o.f, "Kept")
	o.takeReads()
	return o
}

func (o *ownEnv) takeReads() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.reads
	o.reads = nil
	return r
}

// TestOwnChangesLeaveCurUnread: after the folder's own change to cur/
// (flags, expunge, append, copy, move), neither the change's sessions nor
// the others read the directory again to learn what the change did: under
// imaptest's stress, every command of every session read all of cur/
// (its mtime always too recent to trust), under the folder's lock.
func TestOwnChangesLeaveCurUnread(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		op   func(f mailbox.Folders, uids []uint32) error
		want map[string]int // messages after, per folder
	}{
		{"STORE", func(f mailbox.Folders, uids []uint32) error {
			_, err := f.SetFlags(ctx, "INBOX", uids[:2], mailbox.FlagsAdd, []string{mailbox.FlagSeen, mailbox.FlagFlagged})
			return err
		}, map[string]int{"INBOX": 3, "Kept": 0}},
		{"EXPUNGE", func(f mailbox.Folders, uids []uint32) error {
			_, err := f.Expunge(ctx, "INBOX", uids[1:2])
			return err
		}, map[string]int{"INBOX": 2, "Kept": 0}},
		{"APPEND", func(f mailbox.Folders, uids []uint32) error {
			_, _, err := f.Append(ctx, "INBOX", strings.NewReader("Subject: d\r\n\r\nx\r\n"), []string{mailbox.FlagSeen}, time.Time{})
			return err
		}, map[string]int{"INBOX": 4, "Kept": 0}},
		{"COPY", func(f mailbox.Folders, uids []uint32) error {
			_, _, _, err := f.Copy(ctx, "INBOX", uids, "Kept")
			return err
		}, map[string]int{"INBOX": 3, "Kept": 3}},
		{"MOVE", func(f mailbox.Folders, uids []uint32) error {
			_, _, _, err := f.Move(ctx, "INBOX", uids[:1], "Kept")
			return err
		}, map[string]int{"INBOX": 2, "Kept": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newOwnEnv(t)
			other := o.folders(testHome) // another session of the account
			if err := tc.op(o.f, uidsOf(mustSync(t, o.f, "INBOX"))); err != nil {
				t.Fatal(err)
			}
			for _, s := range []mailbox.Folders{o.f, other} {
				for name, n := range tc.want {
					if got := len(mustSync(t, s, name).Messages); got != n {
						t.Errorf("%s: %d messages after %s, want %d", name, got, tc.name, n)
					}
				}
			}
			if r := o.takeReads(); len(r) > 0 {
				t.Errorf("after %s the folders' directories were read again: %v", tc.name, r)
			}
		})
	}
}

// TestOtherChangeBehindOwnChangeSeen: a file another program puts into
// cur/ where the folder's own change hides it (the directory's mtime as
// it was, as in one timestamp tick) is seen within ownTrust; one that a
// delivery puts there (with flags) at the next sync.
func TestOtherChangeBehindOwnChangeSeen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("another program", func(t *testing.T) {
		t.Parallel()
		o := newOwnEnv(t)
		cur := filepath.Join(o.md(testHome), "cur")
		var st unix.Stat_t
		if err := unix.Stat(cur, &st); err != nil {
			t.Fatal(err)
		}
		// Added behind the index's back, the mtime put back.
		if err := os.WriteFile(filepath.Join(cur, "1000000000.M1P1Q1.other.test,S=15,W=17:2,"), []byte("Subject: o\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		if err := unix.UtimesNano(cur, ts); err != nil {
			t.Fatal(err)
		}
		if _, err := o.f.SetFlags(ctx, "INBOX", uidsOf(mustSync(t, o.f, "INBOX"))[:1], mailbox.FlagsAdd, []string{mailbox.FlagSeen}); err != nil {
			t.Fatal(err)
		}
		mailtest.Eventually(t, 5*time.Second+ownTrust, "the other program's file in INBOX", func() bool {
			return len(mustSync(t, o.f, "INBOX").Messages) == 4
		})
		if r := o.takeReads(); !slices.Contains(r, "cur") {
			t.Errorf("reads %v: cur/ never read", r)
		}
	})
	t.Run("a delivery", func(t *testing.T) {
		t.Parallel()
		o := newOwnEnv(t)
		if _, err := o.f.SetFlags(ctx, "INBOX", uidsOf(mustSync(t, o.f, "INBOX"))[:1], mailbox.FlagsAdd, []string{mailbox.FlagSeen}); err != nil {
			t.Fatal(err)
		}
		cur := filepath.Join(o.md(testHome), "cur")
		var st unix.Stat_t
		if err := unix.Stat(cur, &st); err != nil {
			t.Fatal(err)
		}
		m, err := o.store.StageFolder(ctx, testHome, mailbox.Delivery{Folder: "INBOX", Flags: []string{mailbox.FlagFlagged}}, strings.NewReader("Subject: d\n\nx\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := unix.UtimesNano(cur, []unix.Timespec{st.Atim, st.Mtim}); err != nil {
			t.Fatal(err)
		}
		if n := len(mustSync(t, o.f, "INBOX").Messages); n != 4 {
			t.Fatalf("%d messages after a delivery into cur/, want 4", n)
		}
	})
}
