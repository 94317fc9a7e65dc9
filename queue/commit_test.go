package queue

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestCommitterGroupsAndIsolatesFailures(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	c := &committer{db: db}
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 100)
	for i := range errs {
		wg.Go(func() {
			errs[i] = c.do(func(tx *bolt.Tx) error {
				if err := tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint(i)), []byte("v")); err != nil {
					return err
				}
				if i%10 == 3 {
					return boom // its Put must be rolled back
				}
				return nil
			})
		})
	}
	wg.Wait()
	db.View(func(tx *bolt.Tx) error {
		for i, err := range errs {
			stored := tx.Bucket([]byte("b")).Get([]byte(fmt.Sprint(i))) != nil
			if i%10 == 3 {
				if !errors.Is(err, boom) || stored {
					t.Errorf("write %d: err %v, stored %v; want boom and nothing stored", i, err, stored)
				}
			} else if err != nil || !stored {
				t.Errorf("write %d: err %v, stored %v", i, err, stored)
			}
		}
		return nil
	})
}
