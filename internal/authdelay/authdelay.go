// Package authdelay slows down password guessing: each failed login from a
// client address makes the next answer to that address wait longer. The
// SMTP and IMAP servers share it, so that both protocols slow a guesser
// down alike; it knows nothing of protocols.
package authdelay

import (
	"sync"
	"time"
)

const (
	// Max is the longest pause.
	Max = time.Minute
	// memory is how long a quiet address keeps its count.
	memory = 15 * time.Minute
)

// Failures counts failed logins per client key (an IP address, or an IPv6
// /64). The n-th failure within the memory window waits base·2^(n-1), at
// most Max. The zero value is not usable; call New.
type Failures struct {
	mu   sync.Mutex
	base time.Duration
	now  func() time.Time
	m    map[string]*record
}

type record struct {
	n    int
	last time.Time
}

// New returns a Failures whose first pause is base; now is time.Now unless
// a test fixes the clock.
func New(base time.Duration, now func() time.Time) *Failures {
	if now == nil {
		now = time.Now
	}
	return &Failures{base: base, now: now, m: map[string]*record{}}
}

// Add records a failure from key and returns how long to wait before
// answering it.
func (f *Failures) Add(key string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	for k, r := range f.m { // forget quiet addresses; the map stays small
		if now.Sub(r.last) > memory {
			delete(f.m, k)
		}
	}
	r := f.m[key]
	if r == nil {
		r = &record{}
		f.m[key] = r
	}
	r.n++
	r.last = now
	d := f.base
	for i := 1; i < r.n && d < Max; i++ {
		d *= 2
	}
	return min(d, Max)
}
