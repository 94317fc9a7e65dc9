package maildir

// Snapshots: the immutable view of a folder that sessions share, made
// anew (cheaply, from the last one) after each commit.

import (
	"cmp"
	"slices"
	"time"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// publishDelta makes the new snapshot from the last one and the changes
// just committed (index.Snapshots.Delta).
func (f *folder) publishDelta(updates []entryUpdate, added, removed []*entry) {
	if f.snap == nil || len(f.snap.Messages)-len(removed)+len(added) != len(f.ents) {
		f.publish()
		return
	}
	var upd, add []mailbox.Message
	var gone []uint32
	if len(updates) > 0 {
		upd = make([]mailbox.Message, len(updates))
		for i, u := range updates {
			upd[i] = f.message(u.e)
		}
	}
	if len(added) > 0 {
		add = make([]mailbox.Message, len(added))
		for i, e := range added {
			add[i] = f.message(e)
		}
	}
	if len(removed) > 0 {
		gone = make([]uint32, len(removed))
		for i, e := range removed {
			gone[i] = e.uid
		}
	}
	msgs := f.snaps.Delta(f.snap, len(f.ents), upd, add, gone)
	if msgs == nil {
		f.publish()
		return
	}
	f.setSnap(msgs)
}

// setSnap publishes the snapshot of msgs.
func (f *folder) setSnap(msgs []mailbox.Message) { f.snap = f.snaps.Set(f.counters(), msgs) }

// counters are the folder's IMAP numbers.
func (f *folder) counters() index.Counters {
	return index.Counters{UIDValidity: f.uidValidity, UIDNext: f.uidNext, ModSeq: f.modSeq}
}

func (f *folder) message(e *entry) mailbox.Message {
	m := mailbox.Message{
		UID:    e.uid,
		Flags:  f.snaps.Flags(e.flags, e.kws),
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
	msgs := index.Make(len(f.ents))
	for i, e := range f.ents {
		msgs[i] = f.message(e)
	}
	f.setSnap(msgs)
}

// find returns the entry with uid, or nil if there is none (or the
// entries cannot be read: need says why to those who ask it first).
func (f *folder) find(uid uint32) *entry {
	if f.need() != nil {
		return nil
	}
	if i, ok := slices.BinarySearchFunc(f.ents, uid, byUID); ok {
		return f.ents[i]
	}
	return nil
}

func byUID(e *entry, uid uint32) int { return cmp.Compare(e.uid, uid) }
