package maildir

import (
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestIndexWithPartsMissing: a home bucket without its folders (what
// `mailroom check -repair` may leave after damage) is indexed again from
// the Maildir instead of crashing on the missing bucket.
func TestIndexWithPartsMissing(t *testing.T) {
	for _, part := range []string{"folders", "subs", "special"} {
		t.Run(part, func(t *testing.T) {
			e := newIndexEnv(t)
			e.deliver(testHome, "Subject: one\n\nbody\n")
			if got := len(mustSync(t, e.folders(testHome), inbox).Messages); got != 1 {
				t.Fatalf("INBOX has %d messages, want 1", got)
			}
			e.close()
			db, err := bolt.Open(e.dbPath, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error {
				return tree.Homes(tx).Bucket([]byte(testHome)).DeleteBucket([]byte(part))
			}); err != nil {
				t.Fatal(err)
			}
			db.Close()
			e.open()
			f := e.folders(testHome)
			if _, err := f.List(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := len(mustSync(t, f, inbox).Messages); got != 1 {
				t.Fatalf("INBOX has %d messages after the index lost its %s, want 1", got, part)
			}
		})
	}
}
