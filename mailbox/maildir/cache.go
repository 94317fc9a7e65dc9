package maildir

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// The header cache (mailbox.HeaderCache): the ENVELOPE header fields of
// each message, as the IMAP server extracted them, so that a message is
// parsed once rather than at every FETCH ENVELOPE or header SEARCH. They
// live beside the folder's index, under
//
//	homes/<home>/folders/<name>/cache/<uid>   the fields (a header block)
//
// so that a folder deleted, renamed or rebuilt (new UIDVALIDITY) takes its
// cache with it, and commit deletes a message's entry with the message.
//
// CacheFields never waits for the disk: entries go to a write-behind
// buffer in memory that a background goroutine writes to bbolt in
// batches, one transaction per batch. A write checks, in its transaction,
// that the message is still in the index under the same UIDVALIDITY, so
// an entry buffered for a message expunged meanwhile is dropped. Readers
// see buffered entries too. Index.Close writes what is buffered.

var bucketCache = []byte("cache")

// arenaChunk is the size of the buffers CachedFields copies entries into.
const arenaChunk = 256 << 10

const (
	// cacheBatch is the most entries written in one transaction.
	cacheBatch = 4096
	// cacheDelay is how long entries wait for others to share their
	// transaction.
	cacheDelay = 100 * time.Millisecond
	// cacheMaxBuffered bounds the buffer (bytes of fields): beyond it
	// new entries are dropped until the writer catches up.
	cacheMaxBuffered = 64 << 20
)

var _ mailbox.HeaderCache = (*session)(nil)

// cacheFolder names a folder of an account in the buffer.
type cacheFolder struct{ home, name string }

// cacheVal is one buffered entry: the fields and the UIDVALIDITY under
// which the UID was given.
type cacheVal struct {
	uv     uint32
	fields []byte
}

type cacheBuf map[cacheFolder]map[uint32]cacheVal

// cacheWriter is the write-behind buffer of an Index.
type cacheWriter struct {
	db      *bolt.DB
	flushMu sync.Mutex

	mu       sync.Mutex
	pending  cacheBuf // not yet taken by the writer
	inflight cacheBuf // being written now
	n, bytes int      // in pending
	closed   bool

	start sync.Once
	kick  chan struct{} // pending became non-empty
	full  chan struct{} // pending reached a batch
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

func newCacheWriter(db *bolt.DB) *cacheWriter {
	return &cacheWriter{
		db:      db,
		pending: cacheBuf{},
		kick:    make(chan struct{}, 1),
		full:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// put buffers one entry; it takes only the buffer's lock.
func (c *cacheWriter) put(k cacheFolder, uid, uv uint32, fields []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.bytes+len(fields) > cacheMaxBuffered {
		return
	}
	c.start.Do(func() { go c.run() })
	m := c.pending[k]
	if m == nil {
		m = map[uint32]cacheVal{}
		c.pending[k] = m
	}
	if old, ok := m[uid]; ok {
		c.n--
		c.bytes -= len(old.fields)
	}
	m[uid] = cacheVal{uv: uv, fields: fields} // the caller's, not to be changed (mailbox.HeaderCache)
	c.n++
	c.bytes += len(fields)
	if c.n == 1 {
		signal(c.kick)
	}
	if c.n >= cacheBatch {
		signal(c.full)
	}
}

// forget drops the pending entries of uids (messages removed).
func (c *cacheWriter) forget(k cacheFolder, uids []uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.pending[k]; m != nil {
		for _, u := range uids {
			if old, ok := m[u]; ok {
				delete(m, u)
				c.n--
				c.bytes -= len(old.fields)
			}
		}
		if len(m) == 0 {
			delete(c.pending, k)
		}
	}
	// The batch being written is left alone: its transaction checks
	// that each message is still indexed.
}

// buffered returns the buffered entries of k among uids (sorted) that
// were given under uv.
func (c *cacheWriter) buffered(k cacheFolder, uv uint32, uids []uint32) map[uint32][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out map[uint32][]byte
	for _, buf := range []cacheBuf{c.inflight, c.pending} { // pending is newer
		m := buf[k]
		if len(m) == 0 {
			continue
		}
		for _, u := range uids {
			if v, ok := m[u]; ok && v.uv == uv {
				if out == nil {
					out = map[uint32][]byte{}
				}
				out[u] = v.fields
			}
		}
	}
	return out
}

// run writes the buffer in the background until stop.
func (c *cacheWriter) run() {
	defer close(c.done)
	t := time.NewTimer(cacheDelay)
	t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		}
		t.Reset(cacheDelay)
		select {
		case <-c.full:
		case <-t.C:
		case <-c.stop:
			t.Stop()
			return
		}
		t.Stop()
		c.flush()
	}
}

// flush writes everything buffered, in batches of at most cacheBatch
// entries, one transaction each. A failed write loses its batch (the
// cache is only a cache).
func (c *cacheWriter) flush() {
	c.flushMu.Lock() // one batch in flight at a time
	defer c.flushMu.Unlock()
	for {
		c.mu.Lock()
		batch, n := cacheBuf{}, 0
		for k, m := range c.pending {
			bm := map[uint32]cacheVal{}
			for u, v := range m {
				if n == cacheBatch {
					break
				}
				bm[u] = v
				delete(m, u)
				c.bytes -= len(v.fields)
				n++
			}
			batch[k] = bm
			if len(m) == 0 {
				delete(c.pending, k)
			}
			if n == cacheBatch {
				break
			}
		}
		c.n -= n
		c.inflight = batch
		c.mu.Unlock()
		if n == 0 {
			return
		}
		c.write(batch)
		c.mu.Lock()
		c.inflight = nil
		c.mu.Unlock()
	}
}

// write stores one batch: only entries of messages still indexed under
// the UIDVALIDITY they were given under.
func (c *cacheWriter) write(batch cacheBuf) {
	c.db.Update(func(tx *bolt.Tx) error {
		for k, m := range batch {
			fb := tree.Folder(tx, k.home, k.name)
			if fb == nil {
				continue
			}
			meta, ok := decodeMeta(index.Meta(fb))
			ub := index.UIDs(fb)
			if !ok || ub == nil {
				continue
			}
			cb, err := fb.CreateBucketIfNotExists(bucketCache)
			if err != nil {
				return err
			}
			uids := make([]uint32, 0, len(m))
			for u := range m {
				uids = append(uids, u)
			}
			slices.Sort(uids)
			cb.FillPercent = 0.9 // mostly appended in UID order
			for _, u := range uids {
				v := m[u]
				key := index.UIDKey(u)
				if v.uv != meta.uidValidity || ub.Get(key) == nil {
					continue
				}
				if err := cb.Put(key, v.fields); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// shutdown stops the writer and writes what is buffered; later entries
// are dropped.
func (c *cacheWriter) shutdown() {
	c.close.Do(func() {
		c.mu.Lock()
		c.closed = true
		started := true
		c.start.Do(func() { started = false })
		c.mu.Unlock()
		close(c.stop)
		if started {
			<-c.done
		}
		c.flush()
	})
}

// CacheFields buffers the header fields of a message; see
// mailbox.HeaderCache. It takes no lock that disk I/O is done under.
func (s *session) CacheFields(name string, uid uint32, fields []byte) {
	if s.Closed() || uid == 0 {
		return
	}
	f, err := s.a.folder(name)
	if err != nil {
		return
	}
	uv := f.uv.Load()
	if uv == 0 {
		return // not loaded: the UID may not be this folder's
	}
	s.a.ix.cache.put(cacheFolder{s.a.home, f.name}, uid, uv, fields)
}

// CachedFields returns the cached header fields of those of uids that
// have an entry, in one read transaction plus the buffer; see
// mailbox.HeaderCache.
func (s *session) CachedFields(ctx context.Context, name string, uids []uint32) (map[uint32][]byte, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	canon, _, err := folderDir(name)
	if err != nil {
		return nil, err
	}
	sorted := slices.Clone(uids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	out := make(map[uint32][]byte, len(sorted))
	if len(sorted) == 0 {
		return out, nil
	}
	k := cacheFolder{s.a.home, canon}
	// The buffer before the database: an entry the writer moves from
	// one to the other meanwhile is then seen in at least one.
	var buffered map[uint32][]byte
	f := s.a.folders.Lookup(canon)
	if f != nil {
		if uv := f.uv.Load(); uv != 0 {
			buffered = s.a.ix.cache.buffered(k, uv, sorted)
		}
	}
	err = s.a.ix.db.View(func(tx *bolt.Tx) error {
		fb := tree.Folder(tx, s.a.home, canon)
		if fb == nil {
			return nil
		}
		if f != nil {
			// Entries of another UIDVALIDITY than the one the caller's
			// UIDs are from are not theirs.
			if meta, ok := decodeMeta(index.Meta(fb)); !ok || (f.uv.Load() != 0 && meta.uidValidity != f.uv.Load()) {
				return nil
			}
		}
		cb := fb.Bucket(bucketCache)
		if cb == nil {
			return nil
		}
		// The values are copied (bbolt's are valid only in the
		// transaction) into chunks of arenaChunk bytes, a few
		// allocations for a thousand entries and no copy of what was
		// copied already, as growing one buffer would do.
		var arena []byte
		cur := cb.Cursor()
		var key [4]byte
		binary.BigEndian.PutUint32(key[:], sorted[0])
		ck, cv := cur.Seek(key[:])
		for _, u := range sorted {
			if ck == nil {
				break
			}
			// Walk forward over a short gap, seek over a long one.
			for steps := 0; len(ck) == 4 && binary.BigEndian.Uint32(ck) < u; steps++ {
				if steps == 16 {
					binary.BigEndian.PutUint32(key[:], u)
					ck, cv = cur.Seek(key[:])
					break
				}
				ck, cv = cur.Next()
			}
			if ck == nil || len(ck) != 4 || binary.BigEndian.Uint32(ck) != u {
				continue
			}
			if _, ok := buffered[u]; !ok {
				if cap(arena)-len(arena) < len(cv) || arena == nil {
					arena = make([]byte, 0, max(arenaChunk, len(cv))) // never nil: an empty entry is non-nil
				}
				n := len(arena)
				arena = append(arena, cv...)
				out[u] = arena[n:len(arena):len(arena)]
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("maildir: read header cache of %s: %w", canon, err)
	}
	for u, v := range buffered {
		out[u] = v
	}
	return out, nil
}
