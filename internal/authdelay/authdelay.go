// Package authdelay slows password guessing down, per client address and
// across protocols: one Throttle per process is shared by the SMTP
// submission and IMAP servers (and ManageSieve or POP3 when they exist),
// so a guesser gains nothing by switching protocol or opening more
// connections. It knows nothing of protocols.
//
// A failed login makes its client key (conns.ClientKey: the address, or
// an IPv6 /64) wait before the next attempt for the same user name. The
// first failure costs nothing (Free), so that one mistyped password can be
// corrected at once; then the wait is base after the second failure,
// doubling with each further one, up to Max.
// When failures from one key name several users (SprayUsers), the key is
// held back for every user alike: that is someone trying passwords
// across accounts, not one user who mistyped. Keeping the count per user
// name below that spares the other users behind the same address (an
// office behind NAT, a webmail on loopback) from one user's phone that
// retries a stale password.
//
// An attempt that comes too early is refused outright, without checking
// its password, with a temporary error: a correct password is never
// answered differently from a wrong one while it is held back (a delay
// on failures alone would tell a guesser that a quick answer means
// success), and a refused attempt is answered at once, so a throttled
// client holds no connection slot while it waits. Servers also close a
// connection after a few failed attempts (MaxPerConn), as Dovecot does.
package authdelay

import (
	"strings"
	"sync"
	"time"
)

const (
	// Max is the longest wait between two attempts.
	Max = time.Minute
	// Free is how many failures for one user name cost no wait: a user
	// who mistyped a password retries at once, and must not be refused.
	Free = 1
	// MaxPerConn is how many failed or refused attempts a server allows
	// on one connection before it closes it.
	MaxPerConn = 3
	// SprayUsers is how many user names must have failed from one key
	// (within the memory) before the key is held back for every user.
	SprayUsers = 3
	// memory is how long a quiet key keeps its counts.
	memory = 15 * time.Minute
	// maxUsers bounds the user names remembered per key.
	maxUsers = 64
)

// Throttle counts failed logins per client key and user name. The zero
// value is not usable; call New.
type Throttle struct {
	mu     sync.Mutex
	base   time.Duration
	now    func() time.Time
	keys   map[string]*keyRecord
	pruned time.Time
}

// keyRecord is one client key's failures.
type keyRecord struct {
	last  time.Time
	users map[string]*backoff // by lower-cased user name
	// all holds the key back for every user once SprayUsers have failed.
	all backoff
}

// backoff is a count of failures and when the next attempt may come.
type backoff struct {
	n     int
	last  time.Time
	until time.Time
}

// New returns a Throttle whose first wait is base; now is time.Now unless
// a test fixes the clock.
func New(base time.Duration, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{base: base, now: now, keys: map[string]*keyRecord{}}
}

// userKey is how a user name is remembered: case folded (servers accept
// any case) and bounded in length.
func userKey(user string) string {
	if len(user) > 256 {
		user = user[:256]
	}
	return strings.ToLower(user)
}

// Allow reports whether key may try a password for user now; if not, wait
// is how long until it may. user "" asks about the key as a whole (before
// the client has named a user). A nil Throttle allows everything.
func (t *Throttle) Allow(key, user string) (wait time.Duration, ok bool) {
	if t == nil {
		return 0, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.keys[key]
	if r == nil {
		return 0, true
	}
	now := t.now()
	until := r.all.until
	if u := r.users[userKey(user)]; user != "" && u != nil && u.until.After(until) {
		until = u.until
	}
	if now.Before(until) {
		return until.Sub(now), false
	}
	return 0, true
}

// Fail records a failed login for user from key and returns how long the
// key must wait before its next attempt for that user.
func (t *Throttle) Fail(key, user string) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.prune(now)
	r := t.keys[key]
	if r == nil {
		r = &keyRecord{users: map[string]*backoff{}}
		t.keys[key] = r
	}
	r.last = now
	for name, u := range r.users {
		if now.Sub(u.last) > memory {
			delete(r.users, name)
		}
	}
	u := r.users[userKey(user)]
	if u == nil && len(r.users) < maxUsers {
		u = &backoff{}
		r.users[userKey(user)] = u
	}
	d := t.base
	if u != nil {
		d = t.fail(u, now, Free)
	}
	if len(r.users) >= SprayUsers || u == nil {
		d = max(d, t.fail(&r.all, now, 0))
	}
	return d
}

// fail counts a failure on b and returns its wait: none for the first
// free failures, then base·2^(n-free-1), at most Max.
func (t *Throttle) fail(b *backoff, now time.Time, free int) time.Duration {
	if now.Sub(b.last) > memory {
		b.n = 0
	}
	b.n++
	b.last = now
	if b.n <= free {
		b.until = now
		return 0
	}
	d := t.base
	for i := free + 1; i < b.n && d < Max; i++ {
		d *= 2
	}
	d = min(d, Max)
	b.until = now.Add(d)
	return d
}

// prune forgets quiet keys, at most once a minute, so that the map stays
// small without a scan on every failure.
func (t *Throttle) prune(now time.Time) {
	if now.Sub(t.pruned) < time.Minute {
		return
	}
	t.pruned = now
	for k, r := range t.keys {
		if now.Sub(r.last) > memory {
			delete(t.keys, k)
		}
	}
}
