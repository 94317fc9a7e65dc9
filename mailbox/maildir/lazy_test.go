package maildir

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// restartedEnv delivers msgs to INBOX, lets a scan see the Maildir's
// directories settled (mtimes an hour old, as a folder nobody changed
// for a while), restarts, and selects INBOX again: its UIDs, and the
// folder as the restarted index holds it.
func restartedEnv(t *testing.T, msgs []string) (*indexEnv, mailbox.Folders, []uint32, *folder) {
	t.Helper()
	e := newIndexEnv(t)
	for _, m := range msgs {
		e.deliver(testHome, m)
	}
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{"new", "cur"} {
		if err := os.Chtimes(filepath.Join(e.md(testHome), d), old, old); err != nil {
			t.Fatal(err)
		}
	}
	fs := e.folders(testHome)
	uids := uidsOf(mustSync(t, fs, "INBOX"))
	fs.Close()
	e.reopen()
	fs = e.folders(testHome)
	mustSync(t, fs, "INBOX")
	f := e.ix.accts.Lookup(testHome).folders.Lookup(inbox)
	if f == nil {
		t.Fatal("INBOX not loaded")
	}
	return e, fs, uids, f
}

func served(t *testing.T, fs mailbox.Folders, name string, uid uint32) string {
	t.Helper()
	r, _, err := fs.Open(context.Background(), name, uid)
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

// TestRestartReadsEntriesWhenNeeded: after a restart, SELECT of a folder
// unchanged since builds the snapshot without the entries; every
// operation that needs them reads them first and behaves as on a server
// that never stopped.
func TestRestartReadsEntriesWhenNeeded(t *testing.T) {
	t.Parallel()
	msgs := []string{"Subject: one\n\nfirst\n", "Subject: two\n\nsecond\n", "Subject: three\n\nthird\n"}
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		op   func(t *testing.T, e *indexEnv, fs mailbox.Folders, uids []uint32)
	}{
		{"open", func(t *testing.T, e *indexEnv, fs mailbox.Folders, uids []uint32) {
			if got := served(t, fs, "INBOX", uids[1]); !strings.HasSuffix(got, crlf(msgs[1])) {
				t.Errorf("served %q, want it to end in %q", got, crlf(msgs[1]))
			}
		}},
		{"store", func(t *testing.T, e *indexEnv, fs mailbox.Folders, uids []uint32) {
			snap, err := fs.SetFlags(ctx, "INBOX", uids[2:], mailbox.FlagsAdd, []string{mailbox.FlagFlagged, "$Work"})
			if err != nil {
				t.Fatal(err)
			}
			if got := snap.Messages[2].Flags; !slices.Contains(got, mailbox.FlagFlagged) || !slices.Contains(got, "$Work") {
				t.Errorf("flags %v", got)
			}
			if got := snap.Messages[0].Flags; slices.Contains(got, mailbox.FlagFlagged) {
				t.Errorf("flags of another message %v", got)
			}
		}},
		{"expunge", func(t *testing.T, e *indexEnv, fs mailbox.Folders, uids []uint32) {
			snap, err := fs.Expunge(ctx, "INBOX", uids[:1])
			if err != nil {
				t.Fatal(err)
			}
			if got := uidsOf(snap); !slices.Equal(got, uids[1:]) {
				t.Errorf("UIDs %v, want %v", got, uids[1:])
			}
		}},
		{"append", func(t *testing.T, e *indexEnv, fs mailbox.Folders, uids []uint32) {
			_, uid, err := fs.Append(ctx, "INBOX", strings.NewReader(crlf("Subject: four\n\nfourth\n")), nil, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got := uidsOf(mustSync(t, fs, "INBOX")); !slices.Equal(got, append(slices.Clone(uids), uid)) {
				t.Errorf("UIDs %v after APPEND of %d", got, uid)
			}
		}},
		{"move", func(t *testing.T, e *indexEnv, fs mailbox.Folders, uids []uint32) {
			_, src, dst, err := fs.Move(ctx, "INBOX", uids[1:2], "Archive")
			if err != nil || !slices.Equal(src, uids[1:2]) || len(dst) != 1 {
				t.Fatalf("Move: %v %v %v", src, dst, err)
			}
			if got := served(t, fs, "Archive", dst[0]); !strings.HasSuffix(got, crlf(msgs[1])) {
				t.Errorf("moved message %q", got)
			}
			if got := uidsOf(mustSync(t, fs, "INBOX")); !slices.Equal(got, []uint32{uids[0], uids[2]}) {
				t.Errorf("INBOX UIDs %v after MOVE", got)
			}
		}},
		{"delivery", func(t *testing.T, e *indexEnv, fs mailbox.Folders, uids []uint32) {
			e.deliver(testHome, "Subject: later\n\nlater\n")
			if got := uidsOf(mustSync(t, fs, "INBOX")); len(got) != 4 || !slices.Equal(got[:3], uids) {
				t.Errorf("UIDs %v after a delivery", got)
			}
		}},
		{"file removed by hand", func(t *testing.T, e *indexEnv, fs mailbox.Folders, uids []uint32) {
			dir := filepath.Join(e.md(testHome), "new")
			names, err := os.ReadDir(dir)
			if err != nil || len(names) != 3 {
				t.Fatalf("new/: %v %v", names, err)
			}
			if err := os.Remove(filepath.Join(dir, names[0].Name())); err != nil {
				t.Fatal(err)
			}
			if got := uidsOf(mustSync(t, fs, "INBOX")); len(got) != 2 {
				t.Errorf("UIDs %v after a file was removed by hand", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, fs, uids, f := restartedEnv(t, msgs)
			f.mu.Lock()
			lazy := f.lazy
			f.mu.Unlock()
			if !lazy {
				t.Error("SELECT after a restart read every entry")
			}
			tc.op(t, e, fs, uids)
		})
	}
}

// TestRestartIndexChangedUnderSnapshot: if the records under a snapshot
// made without its entries are not those it was made of when the entries
// are read, the folder's index is read afresh, rather than acted on as
// the snapshot showed it.
func TestRestartIndexChangedUnderSnapshot(t *testing.T) {
	t.Parallel()
	e, fs, uids, _ := restartedEnv(t, []string{"Subject: a\n\na\n", "Subject: b\n\nb\n"})
	if err := e.db.Update(func(tx *bolt.Tx) error {
		return index.UIDs(tree.Folder(tx, testHome, inbox)).Delete(index.UIDKey(uids[0]))
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fs.Open(context.Background(), "INBOX", uids[0]); err == nil {
		t.Error("Open served a message whose record is gone")
	}
	if got := uidsOf(mustSync(t, fs, "INBOX")); slices.Contains(got, uids[0]) {
		t.Errorf("UIDs %v after the index was read again still hold %d", got, uids[0])
	}
}
