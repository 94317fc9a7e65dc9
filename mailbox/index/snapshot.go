package index

// Snapshots: the immutable view of a folder that its sessions share, made
// anew after each change, cheaply from the last one where it can be.

import (
	"strings"
	"unsafe"

	"mailroom/mailbox"
)

// Counters are a folder's IMAP numbers as its snapshot shows them.
type Counters struct {
	UIDValidity, UIDNext uint32
	ModSeq               uint64 // HIGHESTMODSEQ
}

// Snapshots makes the snapshots of one folder. It keeps the array of the
// last one, with room beyond its length, so that a delivery appends to it
// rather than copying every message, and the flag lists its messages
// share. The zero value is ready; it is not safe for concurrent use (the
// folder's lock guards it).
type Snapshots struct {
	msgs  []mailbox.Message // the last snapshot's Messages, with room to append
	lists map[string][]string
}

// Make returns the array for a full snapshot of n messages: fill it in
// UID order and hand it to Set.
// An array of megabytes is advised as huge pages (adviseHuge), so that
// filling it takes a few page faults rather than one per 4 KiB.
func Make(n int) []mailbox.Message {
	msgs := make([]mailbox.Message, n, growCap(n))
	if size := uintptr(cap(msgs)) * unsafe.Sizeof(mailbox.Message{}); size >= 2*hugePage {
		adviseHuge(unsafe.Pointer(unsafe.SliceData(msgs)), size)
	}
	return msgs
}

// growCap is the capacity of a snapshot's array of n messages: room for
// deliveries to come.
func growCap(n int) int { return n + n/16 + 16 }

// Set publishes msgs (from Make or Delta) as the folder's snapshot.
func (s *Snapshots) Set(c Counters, msgs []mailbox.Message) *mailbox.Snapshot {
	s.msgs = msgs
	return &mailbox.Snapshot{
		UIDValidity:   c.UIDValidity,
		UIDNext:       c.UIDNext,
		HighestModSeq: c.ModSeq,
		// Capacity cut at the length, so that nobody holding this
		// snapshot can write where the next one appends.
		Messages: msgs[:len(msgs):len(msgs)],
	}
}

// Delta returns the messages of the snapshot that follows old, the last
// one Set, after a change that updated some messages (their new state),
// added others (above every UID in old, ascending) and removed the UIDs
// in removed, leaving total messages. A copy of old's unchanged messages
// is much cheaper than building each again, and a STORE or a delivery
// into a large folder is the common case; additions alone append to the
// array old shares. It returns nil when old does not add up to total (a
// change it was not told of): the caller then makes a full snapshot.
func (s *Snapshots) Delta(old *mailbox.Snapshot, total int, updated, added []mailbox.Message, removed []uint32) []mailbox.Message {
	if old == nil || len(old.Messages)-len(removed)+len(added) != total {
		return nil
	}
	var msgs []mailbox.Message
	if len(updated) == 0 && len(removed) == 0 && len(s.msgs) == len(old.Messages) {
		// Only additions (a delivery): appended to the array the last
		// snapshot shares, beyond its length (and capacity, so that
		// nobody else can write there).
		msgs = s.msgs
		if cap(msgs) < total {
			msgs = append(make([]mailbox.Message, 0, growCap(total)), msgs...)
		}
	} else {
		msgs = make([]mailbox.Message, 0, growCap(total))
		changed := make(map[uint32]int, len(updated))
		for i, m := range updated {
			changed[m.UID] = i
		}
		gone := make(map[uint32]bool, len(removed))
		for _, uid := range removed {
			gone[uid] = true
		}
		for _, m := range old.Messages {
			if len(removed) > 0 && gone[m.UID] {
				continue
			}
			if i, ok := changed[m.UID]; ok {
				m = updated[i]
			}
			msgs = append(msgs, m)
		}
	}
	return append(msgs, added...)
}

// sysOnly holds the flag lists of messages without keywords, shared by
// every snapshot of every folder (they are never modified).
var sysOnly = func() (t [64][]string) {
	for i := range t {
		t[i] = List(Flags(i), nil)
	}
	return t
}()

// Flags returns the IMAP flags of a message with system flags sys and
// keywords kws (sorted), one shared slice per distinct set, so that a
// large folder's snapshot does not hold a slice per message. The slices
// are shared: never modify one.
func (s *Snapshots) Flags(sys Flags, kws []string) []string {
	if len(kws) == 0 {
		return sysOnly[sys&63]
	}
	k := string(rune('A'+sys&63)) + strings.Join(kws, " ")
	fl, ok := s.lists[k]
	if !ok {
		fl = List(sys, kws)
		if s.lists == nil || len(s.lists) > 10000 {
			s.lists = map[string][]string{}
		}
		s.lists[k] = fl
	}
	return fl
}

// ForgetFlags drops the flag lists kept for Flags (the folder's index was
// read again).
func (s *Snapshots) ForgetFlags() { s.lists = nil }
