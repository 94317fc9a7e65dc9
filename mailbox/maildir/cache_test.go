package maildir

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/internal/mailtest"
	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

func cacheOf(t *testing.T, f mailbox.Folders) mailbox.HeaderCache {
	t.Helper()
	hc, ok := f.(mailbox.HeaderCache)
	if !ok {
		t.Fatal("Folders is not a mailbox.HeaderCache")
	}
	return hc
}

func cached(t *testing.T, hc mailbox.HeaderCache, name string, uids ...uint32) map[uint32][]byte {
	t.Helper()
	m, err := hc.CachedFields(context.Background(), name, uids)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func fieldsOf(uid uint32) []byte { return []byte(fmt.Sprintf("Subject: message %d\r\n", uid)) }

// storedEntries counts the cache entries of a folder in bbolt.
func storedEntries(t *testing.T, db *bolt.DB, name string) int {
	t.Helper()
	n := 0
	db.View(func(tx *bolt.Tx) error {
		hb := tree.Home(tx, testHome)
		if hb == nil {
			return nil
		}
		fb := index.Folders(hb).Bucket([]byte(name))
		if fb == nil || fb.Bucket(bucketCache) == nil {
			return nil
		}
		n = fb.Bucket(bucketCache).Stats().KeyN
		return nil
	})
	return n
}

func TestHeaderCacheRoundTrip(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	hc := cacheOf(t, f)
	uids := appendN(t, f, "INBOX", 5)
	for _, u := range uids[:4] {
		hc.CacheFields("INBOX", u, fieldsOf(u))
	}
	hc.CacheFields("INBOX", uids[3], []byte{}) // a message without such fields, cached again
	check := func(when string, hc mailbox.HeaderCache) {
		t.Helper()
		m := cached(t, hc, "INBOX", uids[4], uids[2], uids[0], uids[1], uids[3], 999)
		if len(m) != 4 {
			t.Fatalf("%s: %d entries, want 4: %v", when, len(m), m)
		}
		for _, u := range uids[:3] {
			if string(m[u]) != string(fieldsOf(u)) {
				t.Errorf("%s: uid %d: %q", when, u, m[u])
			}
		}
		if v, ok := m[uids[3]]; !ok || v == nil || len(v) != 0 {
			t.Errorf("%s: empty entry = %q, %v; want empty and non-nil", when, v, ok)
		}
		if none := cached(t, hc, "INBOX"); len(none) != 0 {
			t.Errorf("%s: no UIDs asked, got %d", when, len(none))
		}
		if other := cached(t, hc, "Sent", uids...); len(other) != 0 {
			t.Errorf("%s: Sent has %d entries", when, len(other))
		}
	}
	check("buffered", hc)
	// Close writes the buffer; a restart reads it from bbolt.
	e.reopen()
	if n := storedEntries(t, e.db, "INBOX"); n != 4 {
		t.Fatalf("%d entries stored, want 4", n)
	}
	f = e.folders(testHome)
	check("after reopen, folder not loaded", cacheOf(t, f))
	mustSync(t, f, "INBOX")
	check("after reopen", cacheOf(t, f))
	if _, err := cacheOf(t, f).CachedFields(context.Background(), "../x", uids); err == nil {
		t.Error("CachedFields of a bad name: no error")
	}
}

// TestHeaderCacheGoesWithMessage: an entry goes with its message
// (expunge, move out, a file removed by another program), with its
// folder, and with an index rebuilt; whether it was buffered or written.
func TestHeaderCacheGoesWithMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, flushed := range []bool{false, true} {
		t.Run(fmt.Sprintf("flushed=%v", flushed), func(t *testing.T) {
			e := newIndexEnv(t)
			f := e.folders(testHome)
			hc := cacheOf(t, f)
			uids := appendN(t, f, "INBOX", 6)
			for _, u := range uids {
				hc.CacheFields("INBOX", u, fieldsOf(u))
			}
			if flushed {
				e.ix.cache.flush()
				if n := storedEntries(t, e.db, "INBOX"); n != 6 {
					t.Fatalf("%d stored, want 6", n)
				}
			}
			if _, err := f.Expunge(ctx, "INBOX", uids[:2]); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := f.Move(ctx, "INBOX", uids[2:3], "Archive"); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := f.Copy(ctx, "INBOX", uids[3:4], "Archive"); err != nil {
				t.Fatal(err)
			}
			m := cached(t, hc, "INBOX", uids...)
			if len(m) != 3 || m[uids[3]] == nil || m[uids[4]] == nil || m[uids[5]] == nil {
				t.Errorf("after expunge and move: %v", m)
			}
			if a := cached(t, hc, "Archive", 1, 2, 3); len(a) != 0 {
				t.Errorf("Archive has entries: %v", a)
			}
			// An entry for an expunged message cached late (a FETCH
			// racing the EXPUNGE) is never written.
			hc.CacheFields("INBOX", uids[0], fieldsOf(uids[0]))
			e.ix.cache.flush()
			if n := storedEntries(t, e.db, "INBOX"); n != 3 {
				t.Errorf("%d stored after flush, want 3", n)
			}

			// The folder deleted and made again: no entries.
			hc.CacheFields("Archive", 1, fieldsOf(1))
			if err := f.Delete(ctx, "Archive"); err != nil {
				t.Fatal(err)
			}
			if err := f.Create(ctx, "Archive"); err != nil {
				t.Fatal(err)
			}
			appendN(t, f, "Archive", 2)
			e.ix.cache.flush()
			if a := cached(t, hc, "Archive", 1, 2); len(a) != 0 {
				t.Errorf("Archive made again has entries: %v", a)
			}

			// The index lost: rebuilt under a new UIDVALIDITY, empty.
			e.close()
			db, err := bolt.Open(e.dbPath, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error {
				return tree.Folder(tx, testHome, inbox).Delete([]byte("meta"))
			}); err != nil {
				t.Fatal(err)
			}
			db.Close()
			e.open()
			f = e.folders(testHome)
			s := mustSync(t, f, "INBOX")
			if m := cached(t, cacheOf(t, f), "INBOX", uidsOf(s)...); len(m) != 0 {
				t.Errorf("rebuilt index has entries: %v", m)
			}
			if n := storedEntries(t, e.db, "INBOX"); n != 0 {
				t.Errorf("rebuilt index: %d stored", n)
			}
		})
	}
}

// TestHeaderCacheConcurrent caches, reads, expunges and flushes at once
// (run with -race).
func TestHeaderCacheConcurrent(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	ctx := context.Background()
	f := e.folders(testHome)
	uids := appendN(t, f, "INBOX", 40)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := e.folders(testHome)
			hc := cacheOf(t, s)
			for i, u := range uids {
				if i%4 == w {
					hc.CacheFields("INBOX", u, fieldsOf(u))
				}
				m, err := hc.CachedFields(ctx, "INBOX", uids)
				if err != nil {
					t.Error(err)
					return
				}
				for u, v := range m {
					if string(v) != string(fieldsOf(u)) {
						t.Errorf("uid %d: %q", u, v)
					}
				}
				if i%10 == 0 {
					e.ix.cache.flush()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			if _, err := f.Expunge(ctx, "INBOX", uids[i:i+1]); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	e.reopen()
	f = e.folders(testHome)
	m := cached(t, cacheOf(t, f), "INBOX", uids...)
	if len(m) != 30 {
		t.Errorf("%d entries after reopen, want 30", len(m))
	}
	for _, u := range uids[:10] {
		if m[u] != nil {
			t.Errorf("expunged uid %d has an entry", u)
		}
	}
}

// TestHeaderCacheWriterBatches: the writer writes by itself, without
// Close.
func TestHeaderCacheWriterBatches(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	f := e.folders(testHome)
	hc := cacheOf(t, f)
	uids := appendN(t, f, "INBOX", 3)
	for _, u := range uids {
		hc.CacheFields("INBOX", u, fieldsOf(u))
	}
	// The writer owns no signal for tests; poll the database, which it
	// fills within cacheDelay.
	mailtest.Eventually(t, 5*time.Second, "the entries to be written", func() bool {
		return storedEntries(t, e.db, "INBOX") == 3
	})
}
