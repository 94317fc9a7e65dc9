package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRestartTrustsUnchangedDirs: what was seen of new/ and cur/ is kept
// across a restart (Index.Close), so that the first Sync of an unchanged
// folder reads neither; any change made while stopped is still found,
// and a missing or damaged record only costs a read.
func TestRestartTrustsUnchangedDirs(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	md := e.md(testHome)
	old := time.Now().Add(-time.Hour).Truncate(time.Second).Add(123456789)
	settle := func() {
		for _, d := range []string{"new", "cur"} {
			os.Chtimes(filepath.Join(md, d), old, old)
		}
	}
	f := e.folders(testHome)
	e.deliver(testHome, "one\n")
	e.deliver(testHome, "two\n")
	mustSync(t, f, "INBOX")
	settle()
	mustSync(t, f, "INBOX") // read, and now sure

	// Hidden while stopped (mtime restored): the record is trusted, as
	// the running index would.
	e.close()
	os.WriteFile(filepath.Join(md, "cur", "300.hidden:2,"), []byte("x\n"), 0o600)
	settle()
	e.open()
	f = e.folders(testHome)
	if s := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(s), []uint32{1, 2}) {
		t.Fatalf("after restart, unchanged dirs: %v (cur/ was read)", uidsOf(s))
	}

	// A change that moves the mtime is found.
	e.close()
	os.WriteFile(filepath.Join(md, "cur", "301.visible:2,S"), []byte("y\n"), 0o600)
	e.open()
	f = e.folders(testHome)
	if s := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(s), []uint32{1, 2, 3, 4}) {
		t.Fatalf("after restart, cur/ changed: %v", uidsOf(s))
	}
	settle()
	mustSync(t, f, "INBOX")

	// cur/ replaced by another directory with the same mtime.
	e.close()
	cur := filepath.Join(md, "cur")
	os.Rename(cur, cur+".old")
	os.Mkdir(cur, 0o700)
	os.WriteFile(filepath.Join(cur, "302.only:2,"), []byte("z\n"), 0o600)
	settle()
	e.open()
	f = e.folders(testHome)
	s := mustSync(t, f, "INBOX")
	if !slices.Equal(uidsOf(s), []uint32{1, 2, 5}) {
		t.Fatalf("after restart, cur/ replaced: %v", uidsOf(s))
	}
	settle()
	mustSync(t, f, "INBOX")

	// A damaged record is no record.
	e.close()
	os.WriteFile(filepath.Join(cur, "303.hidden:2,"), []byte("w\n"), 0o600)
	settle()
	db, err := bolt.Open(e.dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tree.Folder(tx, testHome, inbox).Put(keySeen, []byte{seenVersion, 1, 2})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	e.open()
	f = e.folders(testHome)
	if s := mustSync(t, f, "INBOX"); !slices.Equal(uidsOf(s), []uint32{1, 2, 5, 6}) {
		t.Fatalf("after restart with a damaged record: %v", uidsOf(s))
	}
}

func TestSeenRecord(t *testing.T) {
	t.Parallel()
	a := dirSeen{valid: true, sure: true, dev: 1, ino: 2}
	a.mtime.Sec, a.mtime.Nsec = 1700000000, 5
	unsure := dirSeen{valid: true, dev: 3, ino: 4}
	for _, c := range []struct {
		newD, curD dirSeen
		h          loadHint
	}{
		{a, a, loadHint{7, 99}},
		{dirSeen{}, a, loadHint{}},
		{unsure, a, loadHint{1, 2}},
	} {
		n, cu, h := decodeSeen(encodeSeen(c.newD, c.curD, c.h))
		wantNew := c.newD
		if !wantNew.sure {
			wantNew = dirSeen{}
		}
		if n != wantNew || cu != c.curD || h != c.h {
			t.Errorf("round trip of %+v %+v %+v: %+v %+v %+v", c.newD, c.curD, c.h, n, cu, h)
		}
	}
	for _, b := range [][]byte{nil, {seenVersion}, make([]byte, 75), append([]byte{9}, make([]byte, 74)...)} {
		if n, c, _ := decodeSeen(b); n.valid || c.valid {
			t.Errorf("decodeSeen(%x) = valid", b)
		}
	}
}

// TestRebuildInChunks: a first scan of more files than one transaction
// takes gives the same UIDs, in unique-name order, as one transaction,
// and they survive a restart.
func TestRebuildInChunks(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	e.opts.commitChunk = 7
	e.reopen()
	md := e.md(testHome)
	f := e.folders(testHome)
	mustSync(t, f, "INBOX")
	var want []string
	for i := range 50 {
		name := fmt.Sprintf("%d.M1P1Q%d.host,S=2,W=3:2,S", 1700000000+i, i)
		dir := "cur"
		if i%5 == 0 {
			dir, name = "new", name[:len(name)-4]
		}
		os.WriteFile(filepath.Join(md, dir, name), []byte("x\n"), 0o600)
		want = append(want, name)
	}
	s := mustSync(t, f, "INBOX")
	if len(s.Messages) != 50 || s.UIDNext != 51 || s.Messages[49].UID != 50 {
		t.Fatalf("%d messages, UIDNEXT %d: %v", len(s.Messages), s.UIDNext, uidsOf(s))
	}
	e.reopen()
	f = e.folders(testHome)
	s2 := mustSync(t, f, "INBOX")
	if s2.UIDValidity != s.UIDValidity || !slices.Equal(uidsOf(s2), uidsOf(s)) || s2.UIDNext != 51 {
		t.Fatalf("after restart: %v next %d", uidsOf(s2), s2.UIDNext)
	}
	for i, m := range s2.Messages {
		if got := readMsg(t, f, "INBOX", m.UID); got != "x\r\n" {
			t.Fatalf("uid %d (%s): %q", m.UID, want[i], got)
		}
	}
}
