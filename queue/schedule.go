package queue

import (
	"container/heap"
	"sync"
	"time"
)

// schedule is the in-memory index of when each message is next due. The
// records in bbolt are the truth; the schedule is rebuilt from them at
// Open. A message is in at most one of two places: waiting in the heap or
// in flight with a worker, which puts it back when it is done.
type schedule struct {
	mu       sync.Mutex
	h        itemHeap
	live     map[string]uint64 // id -> seq of its current heap entry
	inflight map[string]bool
	again    map[string]bool // flushed while in flight: due again at once
	seq      uint64
	wake     chan struct{}
}

type item struct {
	at  time.Time
	id  string
	seq uint64
}

type itemHeap []item

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)        { *h = append(*h, x.(item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func newSchedule() *schedule {
	return &schedule{live: map[string]uint64{}, inflight: map[string]bool{}, again: map[string]bool{},
		wake: make(chan struct{}, 1)}
}

// set makes id due at at, replacing its previous time. A message in
// flight is left to its worker.
func (s *schedule) set(id string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(id, at)
}

func (s *schedule) setLocked(id string, at time.Time) {
	if s.inflight[id] || at.IsZero() {
		return
	}
	s.seq++
	s.live[id] = s.seq
	heap.Push(&s.h, item{at: at, id: id, seq: s.seq})
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// due takes the earliest message that is due by now, marking it in
// flight, or says how long until one is.
func (s *schedule) due(now time.Time) (string, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.h.Len() > 0 {
		top := s.h[0]
		if s.live[top.id] != top.seq {
			heap.Pop(&s.h) // replaced or removed
			continue
		}
		if top.at.After(now) {
			return "", top.at.Sub(now)
		}
		heap.Pop(&s.h)
		delete(s.live, top.id)
		s.inflight[top.id] = true
		return top.id, 0
	}
	return "", time.Hour
}

// done ends id's flight; next is when it is due again (zero: never).
func (s *schedule) done(id string, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, id)
	if s.again[id] && !next.IsZero() {
		next = time.Now()
	}
	delete(s.again, id)
	s.setLocked(id, next)
}

// remove forgets id (dropped or set aside).
func (s *schedule) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, id)
	delete(s.again, id)
}

// flush makes every message due now.
func (s *schedule) flush(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.live))
	for id := range s.live {
		ids = append(ids, id)
	}
	for _, id := range ids {
		s.setLocked(id, now)
	}
	for id := range s.inflight {
		s.again[id] = true
	}
	return len(ids) + len(s.inflight)
}
