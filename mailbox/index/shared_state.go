package index

import "sync"

// Shared is state that the sessions of one process share, by name (an
// account by its home, a folder by its canonical name), made on first use
// and kept until dropped. The zero value is ready. Its lock is held only
// while the map is read or changed (and while make runs), never for I/O.
type Shared[V any] struct {
	mu sync.Mutex
	m  map[string]*V
}

// Get returns name's state, made by make if there is none.
func (s *Shared[V]) Get(name string, make func() *V) *V {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[name]
	if v == nil {
		if s.m == nil {
			s.m = map[string]*V{}
		}
		v = make()
		s.m[name] = v
	}
	return v
}

// Lookup returns name's state, or nil if it was never made (or dropped).
func (s *Shared[V]) Lookup(name string) *V {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name]
}

// DropIf drops name's state if it is still v and unused(v) says so (a
// folder that turned out not to exist: a client trying many names must
// not grow the map). unused runs under the lock.
func (s *Shared[V]) DropIf(name string, v *V, unused func(*V) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[name] == v && unused(v) {
		delete(s.m, name)
	}
}

// Remove drops the state of every name that match accepts and returns it.
func (s *Shared[V]) Remove(match func(name string) bool) []*V {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []*V
	for n, v := range s.m {
		if match(n) {
			gone = append(gone, v)
			delete(s.m, n)
		}
	}
	return gone
}

// All returns every state kept, in no order.
func (s *Shared[V]) All() []*V {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*V, 0, len(s.m))
	for _, v := range s.m {
		out = append(out, v)
	}
	return out
}

// Drop drops name's state and returns it (nil if there was none).
func (s *Shared[V]) Drop(name string) *V {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[name]
	delete(s.m, name)
	return v
}
