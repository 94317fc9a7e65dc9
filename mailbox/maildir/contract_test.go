package maildir_test

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"mailroom/imap"
	"mailroom/mailbox/maildir"
)

// The Index is the IMAP server's store.
var _ imap.Store = (*maildir.Index)(nil)

// TestThroughIMAPStore uses the Index only through imap.Store, as the
// server does.
func TestThroughIMAPStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := maildir.Open(maildir.Options{Root: filepath.Join(dir, "mail"), Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db, err := bolt.Open(filepath.Join(dir, "mailroom.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ix, err := maildir.NewIndex(db, s, maildir.IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	var store imap.Store = ix
	f, err := store.Open(context.Background(), "example.org/bob")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if l, err := f.List(context.Background()); err != nil || len(l) != 6 {
		t.Fatalf("List = %v, %v", l, err)
	}
	if _, err := store.Open(context.Background(), "../etc"); err == nil {
		t.Fatal("Open of a home outside the mail root succeeded")
	}
}
