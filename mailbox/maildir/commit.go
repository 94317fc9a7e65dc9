package maildir

// Commit: a scan's or an operation's changes written to bbolt in one
// transaction (or, for a first indexing, in consistent prefixes), then
// applied in memory.

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"mailroom/mailbox/index"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// entryUpdate is a new value for an indexed message.
type entryUpdate struct {
	e *entry
	u entry
}

// commit records changes in one bbolt transaction, then in memory, then
// publishes a new snapshot and wakes the watchers. Added entries get the
// next UIDs, in order; every change gets the next modseq. The caller holds
// f.mu.
func (f *folder) commit(updates []entryUpdate, added, removed []*entry) error {
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
	// grows its map. If one fails, memory takes the prefixes written.
	var err error
	chunk := f.a.ix.commitChunk
	if len(updates) == 0 && len(removed) == 0 && len(added) > chunk {
		done, final := 0, meta
		for done < len(added) && err == nil {
			part := added[done:min(done+chunk, len(added))]
			pm := final
			if done+len(part) < len(added) {
				pm.uidNext = max(f.uidNext, part[len(part)-1].uid+1)
			}
			if err = f.write(nil, nil, part, pm); err == nil {
				done += len(part)
				meta = pm
			}
		}
		if err != nil && done > 0 {
			f.seenNew, f.seenCur = dirSeen{}, dirSeen{}
			added = added[:done]
			f.apply(nil, added, nil, meta)
			return fmt.Errorf("maildir: update index of %s: %w", f.dir, err)
		}
	} else {
		err = f.write(updates, removed, added, meta)
	}
	if err != nil {
		// Memory is left as it was; forget what the scan saw so that
		// the next sync tries again.
		f.seenNew, f.seenCur = dirSeen{}, dirSeen{}
		return fmt.Errorf("maildir: update index of %s: %w", f.dir, err)
	}
	f.apply(updates, added, removed, meta)
	return nil
}

// defaultCommitChunk is the most additions commit writes in one
// transaction.
const defaultCommitChunk = 8192

// write records changes and meta in one bbolt transaction.
func (f *folder) write(updates []entryUpdate, removed, added []*entry, meta folderMeta) error {
	return f.a.ix.db.Update(func(tx *bolt.Tx) error {
		fb, err := f.bucket(tx)
		if err != nil {
			return err
		}
		ub := fb.Bucket(bucketUIDs)
		if len(added) > 64 && len(updates) == 0 && len(removed) == 0 {
			ub.FillPercent = 0.9 // appended in UID order: fuller pages
		}
		cb := fb.Bucket(bucketCache)
		for _, e := range removed {
			if err := ub.Delete(uidKey(e.uid)); err != nil {
				return err
			}
			if cb != nil {
				if err := cb.Delete(uidKey(e.uid)); err != nil {
					return err
				}
			}
		}
		for _, u := range updates {
			if err := ub.Put(uidKey(u.u.uid), u.u.encode()); err != nil {
				return err
			}
		}
		// Keys and records from one buffer each (bbolt keeps them
		// until the commit).
		keys := make([]byte, 0, 4*len(added))
		var recs []byte
		for _, e := range added {
			if len(recs)+64+len(e.name) > cap(recs) {
				recs = make([]byte, 0, 256*64)
			}
			k0, r0 := len(keys), len(recs)
			keys = binary.BigEndian.AppendUint32(keys, e.uid)
			recs = e.appendTo(recs)
			if err := ub.Put(keys[k0:len(keys):len(keys)], recs[r0:len(recs):len(recs)]); err != nil {
				return err
			}
		}
		return fb.Put(keyMeta, meta.encode())
	})
}

// apply makes in memory the changes just written, publishes a new
// snapshot and wakes the watchers.
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
		f.byKey[e.key()] = e
	}
	f.publishDelta(updates, added, removed)
	f.notify()
}
