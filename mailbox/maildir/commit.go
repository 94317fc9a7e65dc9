package maildir

// Commit: a scan's or an operation's changes applied in memory and handed
// to the committer (committer.go), which writes them to bbolt in order (a
// first indexing in consistent prefixes).

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"mailroom/mailbox/index"
)

// entryUpdate is a new value for an indexed message.
type entryUpdate struct {
	e *entry
	u entry
}

// commit records changes: in memory at once (publishing a new snapshot
// and waking the watchers), and in bbolt through the Index's committer
// (committer.go), which the caller's session waits for before it answers
// (f.last). Added entries get the next UIDs, in order; every change gets
// the next modseq. undo, if not nil, is called should the write fail: it
// removes the files the change added. The caller holds f.mu.
func (f *folder) commit(updates []entryUpdate, added, removed []*entry, undo func()) error {
	if err := f.need(); err != nil {
		if undo != nil {
			undo()
		}
		return err
	}
	if f.epoch.Load() != f.loadedEpoch {
		// An earlier write failed: memory is ahead of the disk until
		// the next sync reads the folder again.
		f.loaded = false
		f.seenNew, f.seenCur = dirSeen{}, dirSeen{}
		if undo != nil {
			undo()
		}
		return fmt.Errorf("maildir: update index of %s: %w", f.dir, errEarlierWrite)
	}
	modSeq := f.modSeq + 1
	uidNext := f.uidNext
	// Entries come with a UID only from a Dovecot import, into an empty
	// index and below its next UID; the others get the next ones.
	for _, e := range added {
		if e.uid == 0 {
			e.uid = uidNext
			uidNext++
		}
		e.modSeq = modSeq
		e.mark = f.gen
	}
	slices.SortStableFunc(added, func(a, b *entry) int { return cmp.Compare(a.uid, b.uid) })
	bumped := len(added) > 0 || len(removed) > 0
	for i := range updates {
		u := &updates[i]
		if u.u.flags != u.e.flags || !index.SameKeywords(u.u.kws, u.e.kws) {
			u.u.modSeq = modSeq
			bumped = true
		}
	}
	meta := folderMeta{f.uidValidity, uidNext, f.modSeq}
	if bumped {
		meta.modSeq = modSeq
	}
	// Many additions alone (a folder indexed for the first time) are
	// written in several transactions, each a consistent prefix (its
	// UIDNEXT above its last UID): one huge transaction costs more
	// than its parts, as bbolt copies every dirty node whenever it
	// grows its map.
	chunk := f.a.ix.commitChunk
	var writes []*indexWrite
	if len(updates) == 0 && len(removed) == 0 && len(added) > chunk {
		for done := 0; done < len(added); done += chunk {
			part := added[done:min(done+chunk, len(added))]
			pm := meta
			if done+len(part) < len(added) {
				pm.uidNext = max(f.uidNext, part[len(part)-1].uid+1)
			}
			writes = append(writes, f.encode(nil, nil, part, pm))
		}
	} else {
		writes = append(writes, f.encode(updates, removed, added, meta))
	}
	f.apply(updates, added, removed, meta)
	last := writes[len(writes)-1]
	last.undo, last.snap = undo, f.snap
	for _, w := range writes {
		f.submit(w)
	}
	return nil
}

// defaultCommitChunk is the most additions commit writes in one
// transaction.
const defaultCommitChunk = 8192

// submit hands w to the committer as the folder's last write. The caller
// holds f.mu.
func (f *folder) submit(w *indexWrite) {
	w.f, w.epoch = f, f.loadedEpoch
	f.last = w
	f.a.ix.commits.submit(w)
}

// encode makes the index write of changes and meta: the records are
// encoded now, as the entries change in memory before the write is made.
func (f *folder) encode(updates []entryUpdate, removed, added []*entry, meta folderMeta) *indexWrite {
	w := &indexWrite{meta: meta.encode(), fill: len(added) > 64 && len(updates) == 0 && len(removed) == 0}
	if len(removed) > 0 {
		w.dels = make([][]byte, len(removed))
		for i, e := range removed {
			w.dels[i] = index.UIDKey(e.uid)
		}
	}
	w.puts = make([][2][]byte, 0, len(updates)+len(added))
	for _, u := range updates {
		w.puts = append(w.puts, [2][]byte{index.UIDKey(u.u.uid), u.u.encode()})
	}
	// Keys and records from one buffer each (bbolt keeps them until the
	// commit).
	keys := make([]byte, 0, 4*len(added))
	var recs []byte
	for _, e := range added {
		if len(recs)+64+len(e.name) > cap(recs) {
			recs = make([]byte, 0, 256*64)
		}
		k0, r0 := len(keys), len(recs)
		keys = binary.BigEndian.AppendUint32(keys, e.uid)
		recs = e.appendTo(recs)
		w.puts = append(w.puts, [2][]byte{keys[k0:len(keys):len(keys)], recs[r0:len(recs):len(recs)]})
	}
	return w
}

// apply makes the changes in memory and publishes a new snapshot; the
// committer wakes the watchers once it is durable.
func (f *folder) apply(updates []entryUpdate, added, removed []*entry, meta folderMeta) {
	f.uidNext, f.modSeq = meta.uidNext, meta.modSeq
	for _, u := range updates {
		*u.e = u.u
	}
	if len(removed) > 0 {
		uids := make([]uint32, len(removed))
		for i, e := range removed {
			uids[i] = e.uid
		}
		f.a.ix.cache.forget(cacheFolder{f.a.home, f.name}, uids)
		gone := make(map[*entry]bool, len(removed))
		for _, e := range removed {
			gone[e] = true
			if f.byKey[e.key()] == e {
				delete(f.byKey, e.key())
			}
		}
		kept := make([]*entry, 0, len(f.ents)-len(removed)+len(added))
		for _, e := range f.ents {
			if !gone[e] {
				kept = append(kept, e)
			}
		}
		f.ents = kept
	}
	for _, e := range added {
		f.ents = append(f.ents, e)
		if f.byKey != nil {
			f.byKey[e.key()] = e
		}
	}
	f.publishDelta(updates, added, removed)
}
