package mbox

import (
	"context"
	"sync"

	"mailroom/mailbox"
)

// The header cache (mailbox.HeaderCache): the ENVELOPE header fields of
// each message as the IMAP server extracted them, so that a message is
// read and parsed once rather than at every FETCH ENVELOPE or header
// SEARCH (reading a message's header out of an mbox costs an open, a
// check of its From line and a read). Unlike Maildir's, it is kept in
// memory only, per folder, under the UIDVALIDITY its UIDs were given
// under; a restart parses each message again at its first FETCH. Its
// entries go with their messages, and the whole of it is bounded by
// maxCacheBytes for the Store (beyond it new entries are dropped).

// maxCacheBytes bounds the fields cached by a Store, all folders
// together (about 200,000 messages of ENVELOPE fields, encoded ENVELOPE
// and BODYSTRUCTURE).
const maxCacheBytes = 256 << 20

var _ mailbox.HeaderCache = (*session)(nil)

// headerCache is one folder's cached fields.
type headerCache struct {
	mu    sync.Mutex
	uv    uint32
	m     map[uint32][]byte
	bytes int64
}

// put records fields for uid under uv, dropping entries of another
// UIDVALIDITY first.
func (c *headerCache) put(s *Store, uv, uid uint32, fields []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.uv != uv {
		c.clearLocked(s)
		c.uv = uv
	}
	if c.m == nil {
		c.m = map[uint32][]byte{}
	}
	n := int64(len(fields)) + 16
	if old, ok := c.m[uid]; ok {
		c.bytes -= int64(len(old)) + 16
		s.cacheBytes.Add(-int64(len(old)) - 16)
	}
	if s.cacheBytes.Add(n) > maxCacheBytes {
		s.cacheBytes.Add(-n)
		delete(c.m, uid)
		return
	}
	c.m[uid] = append(make([]byte, 0, len(fields)), fields...)
	c.bytes += n
}

// get returns the entries of uids given under uv.
func (c *headerCache) get(uv uint32, uids []uint32) map[uint32][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uint32][]byte, len(uids))
	if c.uv != uv {
		return out
	}
	for _, u := range uids {
		if v, ok := c.m[u]; ok {
			out[u] = v
		}
	}
	return out
}

// drop removes the entries of uids (messages gone).
func (c *headerCache) drop(s *Store, uids []uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range uids {
		if v, ok := c.m[u]; ok {
			delete(c.m, u)
			c.bytes -= int64(len(v)) + 16
			s.cacheBytes.Add(-int64(len(v)) - 16)
		}
	}
}

func (c *headerCache) clear(s *Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked(s)
}

func (c *headerCache) clearLocked(s *Store) {
	s.cacheBytes.Add(-c.bytes)
	c.m, c.bytes = nil, 0
}

// CacheFields records the header fields of a message; see
// mailbox.HeaderCache. It takes only the cache's lock.
func (s *session) CacheFields(name string, uid uint32, fields []byte) {
	if s.Closed() || uid == 0 {
		return
	}
	f, err := s.a.folder(name)
	if err != nil {
		return
	}
	if uv := f.uv.Load(); uv != 0 { // 0: not loaded, the UID may not be this folder's
		f.cache.put(s.a.s, uv, uid, fields)
	}
}

// CachedFields returns the cached header fields of those of uids that
// have an entry; see mailbox.HeaderCache.
func (s *session) CachedFields(ctx context.Context, name string, uids []uint32) (map[uint32][]byte, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	f, err := s.a.folder(name)
	if err != nil {
		return nil, err
	}
	return f.cache.get(f.uv.Load(), uids), nil
}
