package maildir

// Snapshots: the immutable view of a folder that sessions share, made
// anew (cheaply, from the last one) after each commit.

import (
	"strings"
	"time"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// publishDelta makes the new snapshot from the last one and the changes
// just committed: a copy of the unchanged messages is much cheaper than
// building each again, and a STORE or a delivery into a large folder is
// the common case.
func (f *folder) publishDelta(updates []entryUpdate, added, removed []*entry) {
	old := f.snap
	if old == nil || len(old.Messages)-len(removed)+len(added) != len(f.ents) {
		f.publish()
		return
	}
	var msgs []mailbox.Message
	if len(updates) == 0 && len(removed) == 0 && len(f.msgs) == len(old.Messages) {
		// Only additions (a delivery): appended to the array the last
		// snapshot shares, beyond its length (and capacity, so that
		// nobody else can write there).
		msgs = f.msgs
		if cap(msgs) < len(f.ents) {
			msgs = append(make([]mailbox.Message, 0, growCap(len(f.ents))), msgs...)
		}
	} else {
		msgs = make([]mailbox.Message, 0, growCap(len(f.ents)))
		changed := make(map[uint32]*entry, len(updates))
		for _, u := range updates {
			changed[u.e.uid] = u.e
		}
		gone := make(map[uint32]bool, len(removed))
		for _, e := range removed {
			gone[e.uid] = true
		}
		for _, m := range old.Messages {
			if len(removed) > 0 && gone[m.UID] {
				continue
			}
			if e := changed[m.UID]; e != nil {
				m = f.message(e)
			}
			msgs = append(msgs, m)
		}
	}
	for _, e := range added {
		msgs = append(msgs, f.message(e))
	}
	f.setSnap(msgs)
}

// growCap is the capacity of a snapshot's array of n messages: room for
// deliveries to come.
func growCap(n int) int { return n + n/16 + 16 }

// setSnap publishes the snapshot of msgs (which f.msgs keeps for the
// next additions).
func (f *folder) setSnap(msgs []mailbox.Message) {
	f.msgs = msgs
	f.snap = &mailbox.Snapshot{
		UIDValidity:   f.uidValidity,
		UIDNext:       f.uidNext,
		HighestModSeq: f.modSeq,
		Messages:      msgs[:len(msgs):len(msgs)],
	}
}

func (f *folder) message(e *entry) mailbox.Message {
	m := mailbox.Message{
		UID:    e.uid,
		Flags:  f.flags(e),
		Size:   e.size,
		ModSeq: e.modSeq,
	}
	if e.date != noDate {
		m.InternalDate = time.Unix(e.date, 0)
	}
	return m
}

// publish makes a new immutable snapshot of the folder.
func (f *folder) publish() {
	msgs := make([]mailbox.Message, len(f.ents), growCap(len(f.ents)))
	for i, e := range f.ents {
		msgs[i] = f.message(e)
	}
	f.setSnap(msgs)
}

// sysOnly holds the flag lists of messages without keywords, shared by
// every snapshot (they are never modified).
var sysOnly = func() (t [64][]string) {
	for i := range t {
		t[i] = index.List(sysFlags(i), nil)
	}
	return t
}()

// flags returns e's IMAP flags, one shared slice per distinct set, so that
// a large folder's snapshot does not hold a slice per message.
func (f *folder) flags(e *entry) []string {
	if len(e.kws) == 0 {
		return sysOnly[e.flags&63]
	}
	k := string(rune('A'+e.flags&63)) + strings.Join(e.kws, " ")
	fl, ok := f.flagCache[k]
	if !ok {
		fl = index.List(e.flags, e.kws)
		if len(f.flagCache) > 10000 {
			clear(f.flagCache)
		}
		f.flagCache[k] = fl
	}
	return fl
}

// find returns the entry with uid, or nil.
func (f *folder) find(uid uint32) *entry {
	lo, hi := 0, len(f.ents)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if f.ents[m].uid < uid {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(f.ents) && f.ents[lo].uid == uid {
		return f.ents[lo]
	}
	return nil
}
