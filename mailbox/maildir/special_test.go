package maildir

import (
	"context"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox/index"
)

// TestStageSpecial delivers a quarantined message into the account's
// \Junk folder: the default Junk when the index has none marked (made if
// missing, even before the account was ever opened), the folder the
// index marks \Junk otherwise; INBOX gets nothing, and the folder's
// watchers are woken.
func TestStageSpecial(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	ctx := context.Background()
	deliver := func() {
		t.Helper()
		st, err := e.store.StageSpecial(ctx, testHome, `\Junk`, strings.NewReader("Subject: spam\n\nbuy\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deliver()
	f := e.folders(testHome)
	count := func(name string) int {
		t.Helper()
		snap, err := f.Sync(ctx, name)
		if err != nil {
			t.Fatalf("Sync %s: %v", name, err)
		}
		return len(snap.Messages)
	}
	if n, in := count("Junk"), count("INBOX"); n != 1 || in != 0 {
		t.Fatalf("Junk has %d, INBOX %d; want 1 and 0", n, in)
	}

	// The user's own junk folder, "Spam", marked \Junk instead.
	if err := f.Create(ctx, "Spam"); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Update(func(tx *bolt.Tx) error {
		b := index.Special(tree.Home(tx, testHome))
		if err := b.Delete([]byte("Junk")); err != nil {
			return err
		}
		return b.Put([]byte("Spam"), []byte(`\Junk`))
	}); err != nil {
		t.Fatal(err)
	}
	count("Spam")
	woken := f.Watch("Spam")
	deliver()
	select {
	case <-woken:
	default:
		t.Error("a delivery into Spam did not wake its watchers")
	}
	if n, j := count("Spam"), count("Junk"); n != 1 || j != 1 {
		t.Errorf("Spam has %d, Junk %d; want 1 and 1", n, j)
	}
	if _, err := e.store.StageSpecial(ctx, testHome, `\Nonesuch`, strings.NewReader("x\n")); err == nil {
		t.Error("StageSpecial of an unknown special use did not fail")
	}
}
