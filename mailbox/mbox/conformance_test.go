package mbox

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox/mailboxtest"
)

// newTestStore is a Store over a fresh mail root and database.
func newTestStore(t *testing.T, opts StoreOptions) *Store {
	t.Helper()
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "mailroom.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if opts.Root == "" {
		opts.Root = filepath.Join(dir, "mail")
	}
	if err := mkdirAll(opts.Root); err != nil {
		t.Fatal(err)
	}
	opts.DB = db
	s, err := OpenStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The mbox store keeps the contract of mailbox.Folders.
func TestConformance(t *testing.T) {
	t.Parallel()
	mailboxtest.Run(t, func(t *testing.T) mailboxtest.Opener { return newTestStore(t, StoreOptions{}) })
}
