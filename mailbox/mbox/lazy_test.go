package mbox

import (
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

// restarted is a second Store on s's database and mail root, as a
// restarted server opens them, and its INBOX synced (the SELECT).
func restarted(t *testing.T, s *Store) (*Store, mailbox.Folders, *folder) {
	t.Helper()
	s2, err := OpenStore(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	fs := openFolders(t, s2)
	mustSync(t, fs, "INBOX")
	f := s2.accts.Lookup(testHome).folders.Lookup(inbox)
	if f == nil {
		t.Fatal("INBOX not loaded")
	}
	return s2, fs, f
}

// TestRestartReadsEntriesWhenNeeded: after a restart, SELECT (Sync of an
// unchanged file) builds the snapshot without the entries; every
// operation that needs them reads them first and behaves as on a server
// that never stopped.
func TestRestartReadsEntriesWhenNeeded(t *testing.T) {
	t.Parallel()
	msgs := []string{
		"Subject: one\n\nfirst\n",
		"Subject: two\n\nFrom here\nsecond\n",
		"Subject: three\n\nthird\n",
	}
	for _, tc := range []struct {
		name string
		op   func(t *testing.T, s *Store, fs mailbox.Folders, uids []uint32)
	}{
		{"open", func(t *testing.T, s *Store, fs mailbox.Folders, uids []uint32) {
			if got := content(t, fs, "INBOX", uids[1]); got != crlf(msgs[1]) {
				t.Errorf("served %q, want %q", got, crlf(msgs[1]))
			}
		}},
		{"store", func(t *testing.T, s *Store, fs mailbox.Folders, uids []uint32) {
			snap, err := fs.SetFlags(t.Context(), "INBOX", uids[2:], mailbox.FlagsAdd, []string{mailbox.FlagFlagged, "$Work"})
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
		{"expunge", func(t *testing.T, s *Store, fs mailbox.Folders, uids []uint32) {
			snap, err := fs.Expunge(t.Context(), "INBOX", uids[:1])
			if err != nil {
				t.Fatal(err)
			}
			if got := snapUIDs(snap); !slices.Equal(got, uids[1:]) {
				t.Errorf("UIDs %v, want %v", got, uids[1:])
			}
			if got := content(t, fs, "INBOX", uids[2]); got != crlf(msgs[2]) {
				t.Errorf("served %q after the rewrite", got)
			}
		}},
		{"append", func(t *testing.T, s *Store, fs mailbox.Folders, uids []uint32) {
			_, uid, err := fs.Append(t.Context(), "INBOX", strings.NewReader(crlf("Subject: four\n\nfourth\n")), nil, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got := snapUIDs(mustSync(t, fs, "INBOX")); !slices.Equal(got, append(slices.Clone(uids), uid)) {
				t.Errorf("UIDs %v after APPEND of %d", got, uid)
			}
		}},
		{"move", func(t *testing.T, s *Store, fs mailbox.Folders, uids []uint32) {
			if err := fs.Create(t.Context(), "Projects"); err != nil {
				t.Fatal(err)
			}
			_, src, dst, err := fs.Move(t.Context(), "INBOX", uids[1:2], "Projects")
			if err != nil || !slices.Equal(src, uids[1:2]) || len(dst) != 1 {
				t.Fatalf("Move: %v %v %v", src, dst, err)
			}
			if got := content(t, fs, "Projects", dst[0]); got != crlf(msgs[1]) {
				t.Errorf("moved message %q", got)
			}
			if got := snapUIDs(mustSync(t, fs, "INBOX")); !slices.Equal(got, []uint32{uids[0], uids[2]}) {
				t.Errorf("INBOX UIDs %v after MOVE", got)
			}
		}},
		{"other program appends", func(t *testing.T, s *Store, fs mailbox.Folders, uids []uint32) {
			path := filepath.Join(s.opts.Root, testHome, "mbox")
			file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := file.WriteString("From other@example.net Thu Nov 29 22:33:52 2007\nSubject: other\n\nby hand\n\n"); err != nil {
				t.Fatal(err)
			}
			file.Close()
			snap := mustSync(t, fs, "INBOX")
			if got := snapUIDs(snap); len(got) != 4 || !slices.Equal(got[:3], uids) {
				t.Errorf("UIDs %v after another program's append", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, StoreOptions{})
			for _, m := range msgs {
				deliver(t, s, "", m)
			}
			uids := snapUIDs(mustSync(t, openFolders(t, s), "INBOX"))
			s2, fs, f := restarted(t, s)
			f.mu.Lock()
			lazy := f.lazy
			f.mu.Unlock()
			if !lazy {
				t.Error("SELECT after a restart read every entry")
			}
			tc.op(t, s2, fs, uids)
		})
	}
}

// TestRestartIndexChangedUnderSnapshot: if the records under a snapshot
// made without its entries are not those it was made of when the entries
// are read, the folder's index is read afresh, rather than acted on as
// the snapshot showed it.
func TestRestartIndexChangedUnderSnapshot(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	for _, m := range []string{"Subject: a\n\na\n", "Subject: b\n\nb\n"} {
		deliver(t, s, "", m)
	}
	uids := snapUIDs(mustSync(t, openFolders(t, s), "INBOX"))
	_, fs, _ := restarted(t, s)
	if err := s.opts.DB.Update(func(tx *bolt.Tx) error {
		return index.UIDs(tree.Folder(tx, testHome, inbox)).Delete(index.UIDKey(uids[0]))
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fs.Open(t.Context(), "INBOX", uids[0]); err == nil {
		t.Error("Open served a message whose record is gone")
	}
	if got := content(t, fs, "INBOX", uids[1]); got != crlf("Subject: b\n\nb\n") {
		t.Errorf("served %q", got)
	}
	if got := snapUIDs(mustSync(t, fs, "INBOX")); !slices.Equal(got, uids[1:]) {
		t.Errorf("UIDs %v after the index was read again, want %v", got, uids[1:])
	}
}

// TestRestartRecordBeyondCounters: a record whose UID the folder's
// counters never handed out (a damaged index) is not believed after a
// restart: the load reads the folder afresh from the file, and no session
// is shown that UID.
func TestRestartRecordBeyondCounters(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, StoreOptions{})
	for _, m := range []string{"Subject: a\n\na\n", "Subject: b\n\nb\n"} {
		deliver(t, s, "", m)
	}
	snap := mustSync(t, openFolders(t, s), "INBOX")
	stray := snap.UIDNext + 100
	if err := s.opts.DB.Update(func(tx *bolt.Tx) error {
		ub := index.UIDs(tree.Folder(tx, testHome, inbox))
		return ub.Put(index.UIDKey(stray), ub.Get(index.UIDKey(snap.Messages[0].UID)))
	}); err != nil {
		t.Fatal(err)
	}
	_, fs, _ := restarted(t, s)
	got := mustSync(t, fs, "INBOX")
	if slices.Contains(snapUIDs(got), stray) || len(got.Messages) != 2 {
		t.Errorf("UIDs %v after a restart over a record of UID %d beyond UIDNEXT %d", snapUIDs(got), stray, snap.UIDNext)
	}
}
