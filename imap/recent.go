package imap

import (
	"sync"

	"mailroom/mailbox"
)

// \Recent (IMAP4rev1, RFC 3501 §2.3.2): a message is recent for the
// first session that selects its folder (SELECT, not EXAMINE) after it
// arrived, and for no other. The server keeps, per account and folder,
// the lowest UID no session has claimed yet; a read-write session claims
// everything from there to UIDNEXT when it selects the folder and when it
// sees new messages. It lives in memory (docs/design/imap.md): after a
// restart every message is recent once more. IMAP4rev2 dropped \Recent;
// a client that enabled it is told nothing of it (RFC 9051 Appendix E).

type recentKey struct{ home, folder string }

type recentMark struct{ uidValidity, next uint32 }

// recentTracker is the server's record of what has been claimed.
type recentTracker struct {
	mu sync.Mutex
	m  map[recentKey]recentMark
}

// mark is the lowest unclaimed UID of a folder.
func (t *recentTracker) mark(k recentKey, uidValidity uint32) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.m[k]; ok && m.uidValidity == uidValidity {
		return m.next
	}
	return 0
}

// claim takes every UID from the mark up to uidNext and returns the
// first one taken (the range [from, uidNext) is the caller's).
func (t *recentTracker) claim(k recentKey, uidValidity, uidNext uint32) (from uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[recentKey]recentMark{}
	}
	m, ok := t.m[k]
	if !ok || m.uidValidity != uidValidity {
		m = recentMark{uidValidity: uidValidity}
	}
	from = m.next
	if uidNext > m.next {
		m.next = uidNext
	}
	t.m[k] = m
	return from
}

// recentSet is which UIDs are \Recent for one session: the ranges it
// claimed, or, in EXAMINE, everything from the mark at SELECT time on.
type recentSet struct {
	claimed  [][2]uint32 // half-open ranges, ascending
	readOnly bool
	from     uint32 // readOnly: UIDs from here on
}

func (r *recentSet) has(uid uint32) bool {
	if r.readOnly {
		return uid >= r.from
	}
	for i := len(r.claimed) - 1; i >= 0; i-- {
		if c := r.claimed[i]; uid >= c[0] && uid < c[1] {
			return true
		}
	}
	return false
}

func (r *recentSet) add(from, to uint32) {
	if from >= to {
		return
	}
	if n := len(r.claimed); n > 0 && r.claimed[n-1][1] == from {
		r.claimed[n-1][1] = to
		return
	}
	r.claimed = append(r.claimed, [2]uint32{from, to})
}

func (s *session) recentKey() recentKey { return recentKey{s.home, s.name} }

// claimRecent makes the messages of snap that nobody has claimed recent
// for this session (a read-write one; EXAMINE only looks).
func (s *session) claimRecent(snap *mailbox.Snapshot) {
	if s.readOnly {
		return
	}
	from := s.srv.recent.claim(s.recentKey(), snap.UIDValidity, snap.UIDNext)
	s.recent.add(from, snap.UIDNext)
}

// numRecent counts the view's recent messages.
func (s *session) numRecent() uint32 {
	var n uint32
	for _, m := range s.view.Messages {
		if s.recent.has(m.UID) {
			n++
		}
	}
	return n
}

// statusRecent is STATUS RECENT: the messages nobody has claimed.
func (s *session) statusRecent(name string, snap *mailbox.Snapshot) uint32 {
	mark := s.srv.recent.mark(recentKey{s.home, name}, snap.UIDValidity)
	var n uint32
	for i := len(snap.Messages) - 1; i >= 0 && snap.Messages[i].UID >= mark; i-- {
		n++
	}
	return n
}
