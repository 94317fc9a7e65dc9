package index

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTree(t *testing.T) (*bolt.DB, Tree) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tr := NewTree("test")
	if err := db.Update(tr.Create); err != nil {
		t.Fatal(err)
	}
	return db, tr
}

// A UIDVALIDITY handed out is never handed out again, even within the
// same second or below a folder's hint; two trees count apart.
func TestUIDValidity(t *testing.T) {
	t.Parallel()
	db, tr := openTree(t)
	other := NewTree("other")
	err := db.Update(func(tx *bolt.Tx) error {
		if err := other.Create(tx); err != nil {
			return err
		}
		now := uint32(time.Now().Unix())
		v1 := tr.NextUIDValidity(tx, 0)
		if v1 < now {
			t.Errorf("first UIDVALIDITY %d below the time %d", v1, now)
		}
		if err := tr.NoteUIDValidity(tx, v1); err != nil {
			return err
		}
		if v2 := tr.NextUIDValidity(tx, 0); v2 <= v1 {
			t.Errorf("second UIDVALIDITY %d not above %d", v2, v1)
		}
		if v := tr.NextUIDValidity(tx, now+1000); v != now+1001 {
			t.Errorf("UIDVALIDITY %d not above the hint", v)
		}
		if err := tr.NoteUIDValidity(tx, v1-5); err != nil { // lower: kept
			return err
		}
		if v := tr.NextUIDValidity(tx, 0); v <= v1 {
			t.Errorf("a lower note moved the counter back: %d", v)
		}
		if v := other.NextUIDValidity(tx, 0); v > now+2 {
			t.Errorf("the other tree counts with this one: %d", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// MoveFolder takes the index, subscription and special use along and
// replaces a stale index under the new name; NamesUnder finds a folder
// and those below it in any of the three.
func TestMoveFolder(t *testing.T) {
	t.Parallel()
	db, tr := openTree(t)
	err := db.Update(func(tx *bolt.Tx) error {
		for _, n := range []string{"a", "a/b", "new", "ab"} {
			fb, err := tr.MakeFolder(tx, "h", n)
			if err != nil {
				return err
			}
			if err := PutMeta(fb, []byte(n)); err != nil {
				return err
			}
			if err := UIDs(fb).Put(UIDKey(1), []byte("m-"+n)); err != nil {
				return err
			}
		}
		hb := tr.Home(tx, "h")
		Subs(hb).Put([]byte("a"), nil)
		Subs(hb).Put([]byte("a/c"), nil) // subscribed, no folder
		Special(hb).Put([]byte("a/b"), []byte(`\Junk`))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		hb := tr.Home(tx, "h")
		if got, want := NamesUnder(hb, "a"), []string{"a", "a/b", "a/c"}; !slices.Equal(got, want) {
			t.Errorf("NamesUnder = %q, want %q", got, want)
		}
		for _, n := range NamesUnder(hb, "a") {
			if err := MoveFolder(hb, n, "new"+n[1:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		hb := tr.Home(tx, "h")
		if fb := tr.Folder(tx, "h", "new"); fb == nil || string(Meta(fb)) != "a" || string(UIDs(fb).Get(UIDKey(1))) != "m-a" {
			t.Error("index of a not under new, or the stale one kept")
		}
		if fb := tr.Folder(tx, "h", "new/b"); fb == nil || string(Meta(fb)) != "a/b" {
			t.Error("index of a/b not under new/b")
		}
		if tr.Folder(tx, "h", "a") != nil || tr.Folder(tx, "h", "a/b") != nil || tr.Folder(tx, "h", "ab") == nil {
			t.Error("old indexes left, or a sibling moved")
		}
		if Subs(hb).Get([]byte("new")) == nil || Subs(hb).Get([]byte("new/c")) == nil || Subs(hb).Get([]byte("a")) != nil {
			t.Error("subscriptions not moved")
		}
		if string(Special(hb).Get([]byte("new/b"))) != `\Junk` || Special(hb).Get([]byte("a/b")) != nil {
			t.Error("special use not moved")
		}
		if err := tr.DropFolder(tx, "h", "ab"); err != nil {
			return err
		}
		if err := tr.DropFolder(tx, "h", "ab"); err != nil { // gone already
			return err
		}
		if tr.Folder(tx, "h", "ab") != nil {
			t.Error("DropFolder left the index")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
