package maildir

// Loading a folder's index from bbolt, and starting it afresh (taking
// over Dovecot's UIDs where there are any) when it is missing or damaged.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// stored is what bbolt holds of a folder's index, as read by readIndex:
// its entries, or (read for a load) the snapshot's messages alone.
type stored struct {
	meta             folderMeta
	ents             []*entry          // ascending UID
	msgs             []mailbox.Message // instead of ents: see load
	seenNew, seenCur dirSeen           // what the last run saw (seen.go)
	hint             loadHint
}

// load reads the folder's index from bbolt, or starts a new one (new
// UIDVALIDITY, empty) if there is none or it is inconsistent; the scan
// that follows then indexes every file. The folder must exist on disk.
//
// It builds the snapshot alone and leaves the entries (file names, what
// scans compare) for need: a SELECT after a restart, of a folder unchanged
// since, needs only the snapshot, and the entries and their names were
// twice its memory. A 100,000-message folder's first SELECT touched 25 MB
// of fresh memory, most of its time on a VM where a first touch of a page
// costs microseconds.
func (f *folder) load() error {
	// Writes still on their way (or failing) first, so that the index
	// read is the whole of what is durable.
	f.last.wait()
	f.last = nil
	f.loadedEpoch = f.epoch.Load()
	st, bad, err := f.readIndex(true)
	if err != nil {
		return fmt.Errorf("maildir: read index of %s: %w", f.dir, err)
	}
	if st == nil || bad != nil {
		return f.startAfresh(bad)
	}
	f.take(st)
	return nil
}

// take makes st the folder's index in memory and publishes it. The map
// by unique name is built when first needed (keys): a SELECT after a
// restart, of a folder unchanged since, reads neither directory and
// needs no map of every name.
func (f *folder) take(st *stored) {
	f.uidValidity, f.uidNext, f.modSeq = st.meta.uidValidity, st.meta.uidNext, st.meta.modSeq
	f.uv.Store(st.meta.uidValidity)
	f.ents, f.lazy, f.hint = st.ents, st.msgs != nil, st.hint
	f.byKey = nil
	// What the last run saw of new/ and cur/ (index unchanged since):
	// a first SELECT after a restart then reads neither if the folder
	// did not change meanwhile.
	f.seenNew, f.seenCur = st.seenNew, st.seenCur
	f.snaps.ForgetFlags()
	f.loaded = true
	if f.lazy {
		f.setSnap(st.msgs)
	} else {
		f.publish()
	}
	f.durable.Store(f.snap)
}

// need reads the folder's entries, which load left for later, from the
// index: every change of the index goes through the entries, so the
// records are still those the snapshot was made of (which need checks).
// The caller holds f.mu.
func (f *folder) need() error {
	if !f.lazy {
		return nil
	}
	f.last.wait()
	st, bad, err := f.readIndex(false)
	if err == nil && bad == nil {
		switch {
		case st == nil || st.meta.counters() != f.counters():
			bad = errors.New("the folder's record changed")
		case !sameUIDs(st.ents, f.snap.Messages):
			bad = errors.New("its messages differ from the snapshot's")
		}
	}
	if err == nil {
		err = bad
	}
	if err != nil {
		// Read afresh at the next sync.
		f.loaded, f.lazy = false, false
		return fmt.Errorf("maildir: read index of %s: %w", f.dir, err)
	}
	f.ents, f.lazy = st.ents, false
	return nil
}

// sameUIDs reports whether ents are the messages of msgs, in order.
func sameUIDs(ents []*entry, msgs []mailbox.Message) bool {
	if len(ents) != len(msgs) {
		return false
	}
	for i, e := range ents {
		if e.uid != msgs[i].UID {
			return false
		}
	}
	return true
}

// startAfresh rebuilds the folder's index (empty, a new UIDVALIDITY)
// when there is none or bad says how it is damaged; the scan that
// follows indexes every file.
func (f *folder) startAfresh(bad error) error {
	if bad != nil {
		f.a.ix.log.Warn("index inconsistent: rebuilding it from the Maildir", "home", f.a.home, "folder", f.name, "err", bad)
	}
	// Writes to the old index first, so that none lands in the new one.
	f.last.wait()
	f.last = nil
	st, err := f.rebuild()
	if err != nil {
		return err
	}
	f.take(st)
	// An index rebuilt empty is no view of the folder: until the scan
	// that follows is durable, other sessions wait for it (Sync) rather
	// than be shown an empty folder.
	f.durable.Store(nil)
	return nil
}

// keys is the folder's entries by unique name, built from ents the first
// time a scan or a move needs it. A unique name twice is a damaged
// index (the error says which).
func (f *folder) keys() (map[string]*entry, error) {
	if err := f.need(); err != nil {
		return nil, err
	}
	if f.byKey == nil {
		m, err := keyMap(f.ents)
		if err != nil {
			return nil, err
		}
		f.byKey = m
	}
	return f.byKey, nil
}

// readIndex reads the folder's index: its entries, or with snapshot its
// snapshot's messages alone. It returns nil without an error if there is
// none, and bad if a record is damaged or inconsistent with the folder's
// meta (a UID at or above UIDNEXT, a modseq above HIGHESTMODSEQ).
func (f *folder) readIndex(snapshot bool) (st *stored, bad, err error) {
	err = f.a.ix.db.View(func(tx *bolt.Tx) error {
		fb := tree.Folder(tx, f.a.home, f.name)
		if fb == nil {
			return nil
		}
		meta, ok := decodeMeta(index.Meta(fb))
		ub := index.UIDs(fb)
		if !ok || ub == nil {
			return nil
		}
		s := &stored{meta: meta}
		s.seenNew, s.seenCur, s.hint = decodeSeen(fb.Get(keySeen))
		if snapshot {
			s.msgs, bad = decodeMessages(ub, meta, s.hint, f.snaps.Flags)
		} else {
			s.ents, bad = decodeRecords(ub, meta, s.hint)
		}
		if bad == nil {
			st = s
		}
		return nil
	})
	return st, bad, err
}

// decodeRecords decodes every record of a folder's uids bucket. Entries
// are allocated in slabs and their names kept in one string, so a large
// folder loads with a few hundred allocations rather than two per
// message; hint (from the seen record) sizes them.
func decodeRecords(ub *bolt.Bucket, meta folderMeta, hint loadHint) ([]*entry, error) {
	var (
		slab  []entry
		names strings.Builder
		ends  = make([]int, 0, min(hint.n, 1<<24))
		ents  = make([]*entry, 0, min(hint.n, 1<<24))
	)
	names.Grow(int(min(hint.nameBytes, 1<<30)))
	counters := meta.counters()
	c := ub.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 4 {
			return nil, errBadRecord
		}
		uid := binary.BigEndian.Uint32(k)
		if len(slab) == cap(slab) {
			slab = make([]entry, 0, min(max(len(ents), 64), 4096))
		}
		slab = append(slab, entry{uid: uid})
		e := &slab[len(slab)-1]
		name, err := e.decode(v)
		if err == nil && !counters.Holds(uid, e.modSeq) {
			err = errBadRecord
		}
		if err != nil {
			return nil, fmt.Errorf("uid %d: %w", uid, err)
		}
		names.Write(name)
		ends = append(ends, names.Len())
		ents = append(ents, e)
	}
	all, start := names.String(), 0
	for i, e := range ents {
		e.name, start = all[start:ends[i]], ends[i]
	}
	return ents, nil
}

// decodeMessages decodes every record of a folder's uids bucket into the
// messages of a snapshot, without keeping the entries; hint (from the
// seen record) sizes them, and flagsOf gives a message's flag list
// (index.Snapshots.Flags).
func decodeMessages(ub *bolt.Bucket, meta folderMeta, hint loadHint, flagsOf func(index.Flags, []string) []string) ([]mailbox.Message, error) {
	c := ub.Cursor()
	// The array is sized once, by the hint the last run left or else by
	// counting: growing it would copy it over fresh memory again. A hint
	// beyond a million messages is counted instead, so that a damaged
	// record cannot make it allocate gigabytes.
	n := int(hint.n)
	if n == 0 || n > 1<<20 {
		n = 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
	}
	msgs := index.Make(n)[:0]
	counters := meta.counters()
	var e entry
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 4 {
			return nil, errBadRecord
		}
		uid := binary.BigEndian.Uint32(k)
		e = entry{uid: uid}
		_, err := e.decode(v)
		if err == nil && !counters.Holds(uid, e.modSeq) {
			err = errBadRecord
		}
		if err != nil {
			return nil, fmt.Errorf("uid %d: %w", uid, err)
		}
		m := mailbox.Message{UID: uid, Flags: flagsOf(e.flags, e.kws), Size: e.size, ModSeq: e.modSeq}
		if e.date != noDate {
			m.InternalDate = time.Unix(e.date, 0)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// keyMap indexes entries by unique name; a name twice is a damaged index.
func keyMap(ents []*entry) (map[string]*entry, error) {
	m := make(map[string]*entry, len(ents))
	for _, e := range ents {
		m[e.key()] = e
	}
	if len(m) != len(ents) {
		// Rare: only then is each looked up again to name the culprit.
		for _, e := range ents {
			if m[e.key()] != e {
				return nil, fmt.Errorf("unique name %s twice", e.key())
			}
		}
	}
	return m, nil
}

// rebuild starts the folder's index afresh: empty, under a new
// UIDVALIDITY, or under Dovecot's UIDVALIDITY and UIDNEXT for a Maildir
// that comes with a dovecot-uidlist (dovecot.go), whose UIDs the first
// scan then gives to the files.
func (f *folder) rebuild() (*stored, error) {
	// The uidlist is retired before the index is written, so that a
	// crash can lose the import but never repeat it.
	imp := f.a.readDovecot(f.dir)
	if imp.list != nil {
		f.a.retireUIDList(f.dir)
		f.a.ix.log.Info("taking over Dovecot's UIDs", "home", f.a.home, "folder", f.name,
			"uidvalidity", imp.list.uidValidity, "messages", len(imp.list.uids))
	}
	if imp.list != nil || len(imp.keywords) > 0 {
		f.imp = &imp
	}
	meta := folderMeta{uidNext: 1, modSeq: 1}
	if imp.list != nil {
		meta.uidValidity, meta.uidNext = imp.list.uidValidity, imp.list.uidNext
	} else {
		uv, err := newUIDValidity(f.a.ix.db, f.a.readHint(f.dir))
		if err != nil {
			return nil, fmt.Errorf("maildir: create index of %s: %w", f.dir, err)
		}
		meta.uidValidity = uv
	}
	// The hint is on disk before any UID is handed out under it.
	if err := f.a.writeHint(f.dir, meta.uidValidity); err != nil {
		f.a.ix.log.Warn("cannot record UIDVALIDITY in the Maildir", "home", f.a.home, "folder", f.name, "err", err)
	}
	if err := f.a.ix.db.Update(func(tx *bolt.Tx) error { return f.resetBucket(tx, meta) }); err != nil {
		return nil, fmt.Errorf("maildir: create index of %s: %w", f.dir, err)
	}
	return &stored{meta: meta}, nil
}

// resetBucket replaces the folder's bucket by an empty one holding meta,
// and records meta's UIDVALIDITY as handed out.
func (f *folder) resetBucket(tx *bolt.Tx, meta folderMeta) error {
	if err := tree.NoteUIDValidity(tx, meta.uidValidity); err != nil {
		return err
	}
	return tree.ResetFolder(tx, f.a.home, f.name, meta.encode())
}
