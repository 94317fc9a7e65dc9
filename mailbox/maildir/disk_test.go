package maildir

import (
	"context"
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

// Changes made to the Maildir by other programs (an MDA, mutt, a human)
// are taken in by the next Sync.

func TestChangesBehindOurBack(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	e.deliver(testHome, "one\n")
	e.deliver(testHome, "two\n")
	s := mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(s), []uint32{1, 2}) {
		t.Fatalf("%v", uidsOf(s))
	}
	md := e.md(testHome)
	newDir, curDir := filepath.Join(md, "new"), filepath.Join(md, "cur")
	delivered := files(t, newDir)

	// Dropped by hand: one in new/ without sizes, one in cur/ with flags.
	os.WriteFile(filepath.Join(newDir, "100.hand1.host"), []byte("a\nb\n"), 0o600)
	os.WriteFile(filepath.Join(curDir, "101.hand2.host:2,FS"), []byte("c\r\nd\n"), 0o600)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	os.Chtimes(filepath.Join(newDir, "100.hand1.host"), old, old)
	s = mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(s), []uint32{1, 2, 3, 4}) {
		t.Fatalf("hand-dropped files: %v", uidsOf(s))
	}
	if m := s.Messages[2]; m.Size != 6 || !m.InternalDate.Equal(old) || len(m.Flags) != 0 {
		t.Errorf("new/ file: %+v", m)
	}
	if m := s.Messages[3]; m.Size != 6 || !slices.Equal(m.Flags, []string{`\Flagged`, `\Seen`}) {
		t.Errorf("cur/ file: %+v", m)
	}
	if got := readMsg(t, f, "INBOX", 4); got != "c\r\nd\r\n" {
		t.Errorf("content %q", got)
	}

	// mutt reads message 1: moves it to cur/ with S; and flags 4 as
	// answered.
	prev := s.HighestModSeq
	os.Rename(filepath.Join(newDir, delivered[0]), filepath.Join(curDir, delivered[0]+":2,S"))
	os.Rename(filepath.Join(curDir, "101.hand2.host:2,FS"), filepath.Join(curDir, "101.hand2.host:2,FRS"))
	s = mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(s), []uint32{1, 2, 3, 4}) {
		t.Fatalf("renamed files lost their UIDs: %v", uidsOf(s))
	}
	if m := s.Messages[0]; !slices.Equal(m.Flags, []string{`\Seen`}) || m.ModSeq <= prev {
		t.Errorf("message 1 after mutt: %+v (modseq before %d)", m, prev)
	}
	if m := s.Messages[3]; !slices.Equal(m.Flags, []string{`\Answered`, `\Flagged`, `\Seen`}) {
		t.Errorf("message 4 after mutt: %+v", m)
	}
	if s.Messages[1].ModSeq > prev {
		t.Errorf("unchanged message 2 got a new modseq")
	}
	if got := readMsg(t, f, "INBOX", 1); got != "one\r\n" {
		t.Errorf("message 1 after its rename: %q", got)
	}

	// Removed by hand.
	os.Remove(filepath.Join(newDir, "100.hand1.host"))
	os.Remove(filepath.Join(curDir, delivered[0]+":2,S"))
	s = mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(s), []uint32{2, 4}) || s.UIDNext != 5 {
		t.Fatalf("after removing 1 and 3: %v next %d", uidsOf(s), s.UIDNext)
	}
	if _, _, err := f.Open(ctx, "INBOX", 1); err == nil {
		t.Error("Open of a removed message succeeded")
	}

	// Renamed behind our back and then opened before any sync: Open
	// finds it again.
	name := files(t, newDir)[0]
	os.Rename(filepath.Join(newDir, name), filepath.Join(curDir, name+":2,T"))
	if got := readMsg(t, f, "INBOX", 2); got != "two\r\n" {
		t.Errorf("message 2 after a hidden rename: %q", got)
	}
	// And STORE on a message renamed behind our back works on the new
	// name.
	os.Rename(filepath.Join(curDir, name+":2,T"), filepath.Join(curDir, name+":2,ST"))
	s, err := f.SetFlags(ctx, "INBOX", []uint32{2}, mailbox.FlagsAdd, []string{`\Flagged`})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Messages[0].Flags, []string{`\Deleted`, `\Flagged`, `\Seen`}) {
		t.Errorf("flags %v", s.Messages[0].Flags)
	}
	if !slices.Contains(files(t, curDir), name+":2,FST") {
		t.Errorf("cur/ = %v", files(t, curDir))
	}

	// Junk the index must not take: dot files and directories.
	os.WriteFile(filepath.Join(curDir, ".hidden"), []byte("x"), 0o600)
	os.Mkdir(filepath.Join(curDir, "subdir"), 0o700)
	os.Symlink("/etc/passwd", filepath.Join(curDir, "200.link:2,"))
	if s := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(s), []uint32{2, 4}) {
		t.Errorf("junk taken in: %v", uidsOf(s))
	}
}

// TestUnchangedDirsAreNotRead: once a directory's mtime is old enough,
// Sync trusts it and reads nothing (the cheap path). A change hidden by
// restoring the mtime is then, as designed, not seen.
func TestUnchangedDirsAreNotRead(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	e.deliver(testHome, "one\n")
	mustSync(t, f, "INBOX")
	md := e.md(testHome)
	old := time.Now().Add(-time.Hour).Truncate(time.Second).Add(123456789)
	for _, d := range []string{"new", "cur"} {
		os.Chtimes(filepath.Join(md, d), old, old)
	}
	s1 := mustSync(t, f, "INBOX") // mtimes changed: read, and now sure
	os.WriteFile(filepath.Join(md, "cur", "300.hidden:2,"), []byte("x\n"), 0o600)
	os.Chtimes(filepath.Join(md, "cur"), old, old)
	if s2 := mustSync(t, f, "INBOX"); s2 != s1 {
		t.Fatalf("an unchanged folder was read again: %v", uidsOf(s2))
	}
	// A delivery is always seen, whatever the mtimes say (and cur/ is
	// still not read).
	e.deliver(testHome, "two\n")
	os.Chtimes(filepath.Join(md, "new"), old, old)
	if s3 := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(s3), []uint32{1, 2}) {
		t.Fatalf("after a delivery: %v", uidsOf(s3))
	}
}

func TestRebuildLostIndex(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	ctx := context.Background()
	for _, m := range []string{"a\n", "b\n", "c\n"} {
		e.deliver(testHome, m)
	}
	mustSync(t, f, "INBOX")
	f.Expunge(ctx, "INBOX", []uint32{1})
	f.SetFlags(ctx, "INBOX", []uint32{3}, mailbox.FlagsAdd, []string{`\Seen`, "kw"})
	f.Append(ctx, "Sent", strings.NewReader("sent\n"), []string{`\Seen`}, time.Time{})
	before := mustSync(t, f, "INBOX")
	sentBefore := mustSync(t, f, "Sent")

	for _, drop := range []string{"folder", "home", "all"} {
		t.Run(drop, func(t *testing.T) {
			e.close()
			db, err := bolt.Open(e.dbPath, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error {
				switch drop {
				case "folder":
					return index.Folders(tree.Home(tx, testHome)).DeleteBucket([]byte("INBOX"))
				case "home":
					return tree.Homes(tx).DeleteBucket([]byte(testHome))
				default:
					return tx.DeleteBucket(tree.Name())
				}
			})
			db.Close()
			e.open()
			f := e.folders(testHome)
			s := mustSync(t, f, "INBOX")
			if s.UIDValidity == before.UIDValidity {
				t.Errorf("UIDVALIDITY kept (%d) for a rebuilt index", s.UIDValidity)
			}
			if len(s.Messages) != 2 || !slices.Equal(s.Messages[1].Flags, []string{`\Seen`}) {
				t.Errorf("rebuilt: %+v", s.Messages)
			}
			if got := readMsg(t, f, "INBOX", s.Messages[1].UID); got != "c\r\n" {
				t.Errorf("content %q", got)
			}
			sent := mustSync(t, f, "Sent")
			if drop == "folder" && sent.UIDValidity != sentBefore.UIDValidity {
				t.Errorf("Sent's UIDVALIDITY changed with INBOX's index")
			}
			if len(sent.Messages) != 1 {
				t.Errorf("Sent rebuilt: %+v", sent)
			}
			before = s
		})
	}
}

func TestCorruptIndexIsRebuilt(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	e.deliver(testHome, "a\n")
	s1 := mustSync(t, e.folders(testHome), "INBOX")
	e.close()
	db, _ := bolt.Open(e.dbPath, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		return index.UIDs(tree.Folder(tx, testHome, "INBOX")).Put(index.UIDKey(1), []byte{9, 9})
	})
	db.Close()
	e.open()
	s2 := mustSync(t, e.folders(testHome), "INBOX")
	if s2.UIDValidity == s1.UIDValidity || len(s2.Messages) != 1 {
		t.Fatalf("after corruption: %+v (before %+v)", s2, s1)
	}
}

// An index naming one file under two UIDs is damaged: it is rebuilt
// (a new UIDVALIDITY, every file once) at the first scan that reads the
// folder, which is where the map by unique name is first built.
func TestDuplicateNameIsRebuilt(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	e.deliver(testHome, "a\n")
	e.deliver(testHome, "b\n")
	s1 := mustSync(t, e.folders(testHome), "INBOX")
	if len(s1.Messages) != 2 {
		t.Fatalf("before: %v", uidsOf(s1))
	}
	e.close()
	db, _ := bolt.Open(e.dbPath, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		ub := index.UIDs(tree.Folder(tx, testHome, "INBOX"))
		return ub.Put(index.UIDKey(s1.Messages[1].UID), slices.Clone(ub.Get(index.UIDKey(s1.Messages[0].UID))))
	})
	db.Close()
	e.open()
	f := e.folders(testHome)
	mustSync(t, f, "INBOX")
	e.deliver(testHome, "c\n")
	s2 := mustSync(t, f, "INBOX")
	if s2.UIDValidity == s1.UIDValidity {
		t.Errorf("UIDVALIDITY kept (%d) for an index with a name twice", s2.UIDValidity)
	}
	var got []string
	for _, m := range s2.Messages {
		got = append(got, readMsg(t, f, "INBOX", m.UID))
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a\r\n", "b\r\n", "c\r\n"}) {
		t.Errorf("after the rebuild: %q", got)
	}
}

func TestInboxRemovedByHand(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	e.deliver(testHome, "a\n")
	mustSync(t, f, "INBOX")
	for _, d := range []string{"new", "cur", "tmp"} {
		os.RemoveAll(filepath.Join(e.md(testHome), d))
	}
	if s := mustSync(t, f, "INBOX"); len(s.Messages) != 0 {
		t.Fatalf("INBOX without its files: %+v", s)
	}
	e.deliver(testHome, "b\n")
	if s := mustSync(t, f, "INBOX"); len(s.Messages) != 1 || s.Messages[0].UID != 2 {
		t.Fatalf("after a new delivery: %+v", s)
	}
	// A folder removed by hand is gone.
	os.RemoveAll(filepath.Join(e.md(testHome), ".Junk"))
	if _, err := f.Sync(context.Background(), "Junk"); err == nil {
		t.Fatal("Sync of a folder removed by hand succeeded")
	}
}

// TestIndexLostTwiceInOneSecond: with the whole index (and its record of
// UIDVALIDITYs handed out) lost twice in quick succession, each rebuild
// still gets a new UIDVALIDITY (from the hint file in the folder).
func TestIndexLostTwiceInOneSecond(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	for _, m := range []string{"a\n", "b\n", "c\n"} {
		e.deliver(testHome, m)
	}
	seen := map[uint32]bool{}
	for round := range 4 {
		f := e.folders(testHome)
		s := mustSync(t, f, "INBOX")
		if seen[s.UIDValidity] {
			t.Fatalf("round %d: UIDVALIDITY %d handed out again", round, s.UIDValidity)
		}
		seen[s.UIDValidity] = true
		// Change the numbering the next rebuild would give.
		f.Expunge(context.Background(), "INBOX", []uint32{s.Messages[0].UID})
		e.deliver(testHome, "more\n")
		e.close()
		db, _ := bolt.Open(e.dbPath, 0o600, nil)
		db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(tree.Name()) })
		db.Close()
		e.open()
	}
}
