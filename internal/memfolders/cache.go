package memfolders

import (
	"context"

	"mailroom/mailbox"
)

// NewWithHeaderCache returns an empty Store whose folders implement
// mailbox.HeaderCache, so that tests can compare a caching store with one
// that does not cache (New).
func NewWithHeaderCache() *Store {
	s := New()
	s.headerCache = true
	return s
}

// CacheStats counts a caching Store's HeaderCache calls.
type CacheStats struct {
	Hits, Misses int // UIDs asked for with and without an entry
	Calls        int // CachedFields calls
	Stored       int // CacheFields calls
}

// CacheStats returns the counts so far.
func (s *Store) CacheStats() CacheStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cacheStats
}

// cachingFolders are Folders with a HeaderCache; an entry lives on the
// message, so it goes when the message goes.
type cachingFolders struct{ Folders }

var _ mailbox.HeaderCache = (*cachingFolders)(nil)

func (f *cachingFolders) CachedFields(ctx context.Context, name string, uids []uint32) (map[uint32][]byte, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(name)
	if err != nil {
		return nil, err
	}
	want := make(map[uint32]bool, len(uids))
	for _, u := range uids {
		want[u] = true
	}
	out := map[uint32][]byte{}
	for _, m := range fo.msgs {
		if want[m.UID] && m.fields != nil {
			out[m.UID] = append([]byte{}, m.fields...)
		}
	}
	f.s.cacheStats.Calls++
	f.s.cacheStats.Hits += len(out)
	f.s.cacheStats.Misses += len(uids) - len(out)
	return out, nil
}

func (f *cachingFolders) CacheFields(name string, uid uint32, fields []byte) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.cacheStats.Stored++
	fo := f.a.folders[name]
	if fo == nil {
		return
	}
	for _, m := range fo.msgs {
		if m.UID == uid {
			m.fields = append([]byte{}, fields...)
			return
		}
	}
}
