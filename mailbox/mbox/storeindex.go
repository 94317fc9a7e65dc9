package mbox

// The IMAP index of the mbox files: what IMAP needs of each folder
// (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, and per UID where the message is
// in the file, a fingerprint of its From line and header, its flags,
// internal date and modseq) kept in mailroom.db, so that UIDs stay the
// same across restarts and across other programs' rewrites. The file
// stays the truth: a sync compares it (size, mtime, inode, the bytes at
// the last known end) with what the index last saw and takes in what
// others did. An append by another program gives UIDs to the new
// messages only; a rewrite (mutt deleting a message) is scanned again,
// and each message keeps its UID when its fingerprint is found, in
// order. Flags are the index's; those written in the file (Status:,
// X-Status:, X-Keywords:) are read when a message is first seen and
// when another program changed them, and written back when the file is
// rewritten (EXPUNGE).
//
// bbolt layout, under the top-level bucket "mbox" (index.Tree, the shape
// the Maildir index has under "imap"):
//
//	meta/uidvalidity                      last UIDVALIDITY handed out
//	homes/<home>/subs/<name>              subscribed folders
//	homes/<home>/special/<name>           SPECIAL-USE attribute
//	homes/<home>/folders/<name>/meta      see folderMeta.encode
//	homes/<home>/folders/<name>/uids/<uid> see entry.encode

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// tree is the mbox index's part of mailroom.db (mailbox/index holds what
// it shares with the Maildir index).
var tree = index.NewTree("mbox")

// fileState is what a sync saw of a folder's file.
type fileState struct {
	size, mtime int64
	dev, ino    uint64
	junk        int64  // bytes before the first From line
	tail        []byte // the last bytes (up to tailLen) at size
}

const tailLen = 32

func (a fileState) same(b fileState) bool {
	return a.size == b.size && a.mtime == b.mtime && a.dev == b.dev && a.ino == b.ino
}

// entry is one message in the index.
type entry struct {
	uid                   uint32
	modSeq                uint64
	date                  int64 // internal date, Unix seconds
	off, start, body, end int64 // From line, header, header's end, end
	quoted, bareLF        int64
	hidden                int64
	verbatim, truncated   bool
	hash                  [sha256.Size]byte
	sig                   uint64 // of the flag fields as last seen in the file
	flags                 index.Flags
	kws                   []string
}

func (e *entry) span() *Span {
	return &Span{Offset: e.off, Start: e.start, Body: e.body, End: e.end, Quoted: e.quoted, BareLF: e.bareLF, Hidden: e.hidden, Verbatim: e.verbatim, Truncated: e.truncated, Hash: e.hash}
}

func (e *entry) served() int64 { return e.span().Served() }

// setSpan takes a span's place in the file.
func (e *entry) setSpan(s *Span) {
	e.off, e.start, e.body, e.end = s.Offset, s.Start, s.Body, s.End
	e.quoted, e.bareLF, e.hidden, e.verbatim, e.truncated = s.Quoted, s.BareLF, s.Hidden, s.Verbatim, s.Truncated
	e.hash, e.sig = s.Hash, flagSig(s)
}

// flagSig fingerprints the flag fields of a span, so that a sync can
// tell another program's flag change from the fields mailroom wrote.
func flagSig(s *Span) uint64 {
	h := fnv.New64a()
	h.Write(s.Status)
	h.Write([]byte{0})
	h.Write(s.XStatus)
	h.Write([]byte{0})
	h.Write(s.XKeywords)
	return h.Sum64()
}

const entryVersion = 1

func (e *entry) encode() []byte {
	b := []byte{entryVersion}
	b = binary.AppendUvarint(b, e.modSeq)
	b = binary.AppendVarint(b, e.date)
	for _, v := range []int64{e.off, e.start - e.off, e.body - e.start, e.end - e.body, e.quoted, e.bareLF, e.hidden} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	var bits byte
	if e.verbatim {
		bits |= 1
	}
	if e.truncated {
		bits |= 2
	}
	b = append(b, bits, byte(e.flags))
	b = binary.BigEndian.AppendUint64(b, e.sig)
	b = append(b, e.hash[:]...)
	return index.AppendKeywords(b, e.kws)
}

var errBadRecord = errors.New("bad index record")

// decodeEntryInto reads the record b of uid into e (zero), so that a load
// can allocate its entries in chunks.
func decodeEntryInto(e *entry, uid uint32, b []byte) error {
	if len(b) < 1 || b[0] != entryVersion {
		return errBadRecord
	}
	b = b[1:]
	bad := false
	uv := func() int64 {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 1<<62 {
			bad = true
			return 0
		}
		b = b[n:]
		return int64(v)
	}
	e.uid = uid
	e.modSeq = uint64(uv())
	d, n := binary.Varint(b)
	if n <= 0 {
		return errBadRecord
	}
	e.date, b = d, b[n:]
	e.off = uv()
	e.start = e.off + uv()
	e.body = e.start + uv()
	e.end = e.body + uv()
	e.quoted, e.bareLF, e.hidden = uv(), uv(), uv()
	if bad || len(b) < 2+8+sha256.Size {
		return errBadRecord
	}
	e.verbatim, e.truncated, e.flags = b[0]&1 != 0, b[0]&2 != 0, index.Flags(b[1])
	e.sig = binary.BigEndian.Uint64(b[2:])
	copy(e.hash[:], b[10:])
	b = b[10+sha256.Size:]
	for len(b) > 0 {
		var k string
		var ok bool
		if k, b, ok = index.ReadKeyword(b); !ok {
			return errBadRecord
		}
		e.kws = append(e.kws, k)
	}
	return nil
}

// folderMeta is a folder's record: its IMAP numbers and its file as last
// seen.
type folderMeta struct {
	uidValidity, uidNext uint32
	modSeq               uint64
	file                 fileState
}

const metaVersion = 1

func (m *folderMeta) counters() index.Counters {
	return index.Counters{UIDValidity: m.uidValidity, UIDNext: m.uidNext, ModSeq: m.modSeq}
}

func (m *folderMeta) encode() []byte {
	b := index.AppendCounters([]byte{metaVersion}, m.counters())
	for _, v := range []uint64{uint64(m.file.size), uint64(m.file.mtime), m.file.dev, m.file.ino, uint64(m.file.junk)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return append(b, m.file.tail...)
}

func decodeMeta(b []byte) (folderMeta, bool) {
	if len(b) < 57 || b[0] != metaVersion || len(b) > 57+tailLen {
		return folderMeta{}, false
	}
	c, ok := index.ReadCounters(b[1:])
	m := folderMeta{uidValidity: c.UIDValidity, uidNext: c.UIDNext, modSeq: c.ModSeq}
	v := func(i int) uint64 { return binary.BigEndian.Uint64(b[1+index.CountersSize+8*i:]) }
	m.file = fileState{size: int64(v(0)), mtime: int64(v(1)), dev: v(2), ino: v(3), junk: int64(v(4)), tail: bytes.Clone(b[57:])}
	return m, ok
}

// specialFolder names home's folder of special use use, or "".
func (s *Store) specialFolder(home, use string) string {
	if s.opts.DB == nil {
		return ""
	}
	var name string
	s.opts.DB.View(func(tx *bolt.Tx) error {
		name = tree.SpecialFolder(tx, home, use)
		return nil
	})
	return name
}

// changed marks home's folder as changed by a delivery in this process
// and wakes its watchers; it takes only short, I/O-free locks.
func (s *Store) changed(home, name string) {
	a := s.accts.Lookup(home)
	if a == nil {
		return
	}
	if f := a.folders.Lookup(name); f != nil {
		f.dirty.Store(true)
		f.notify()
	}
}

// account is the state shared by every session of one mail home.
type account struct {
	s    *Store
	home string
	// mu is held shared by operations on messages and exclusively by
	// those that change the set of folders.
	mu     sync.RWMutex
	initMu sync.Mutex
	inited bool

	folders index.Shared[folder] // by canonical IMAP name; made on first use
}

// folder is the state of one folder shared by the sessions of the
// process.
type folder struct {
	a    *account
	name string
	p    place

	mu          sync.Mutex
	loaded      bool
	uidValidity uint32
	uidNext     uint32
	modSeq      uint64
	ents        []*entry // ascending UID, which is file order; see lazy
	lazy        bool     // ents not read yet: load made snap alone (need)
	file        fileState
	snap        *mailbox.Snapshot
	snaps       index.Snapshots // makes snap
	dirty       atomic.Bool
	// uv is uidValidity for the header cache, which reads it without mu
	// (0 until loaded).
	uv      atomic.Uint32
	cache   headerCache
	readers readers

	watchers index.Watcher
}

func (f *folder) watch() <-chan struct{} { return f.watchers.Watch() }

func (f *folder) notify() { f.watchers.Notify() }

func (a *account) folder(name string) (*folder, error) {
	canon, _, err := canonical(name)
	if err != nil {
		return nil, err
	}
	return a.folders.Get(canon, func() *folder { return &folder{a: a, name: canon, p: a.s.place(a.home, canon)} }), nil
}

// forget drops the shared state of a folder deleted or renamed, and
// wakes its watchers. The caller holds a.mu exclusively.
func (a *account) forget(name string) {
	gone := a.folders.Remove(func(n string) bool { return n == name || strings.HasPrefix(n, name+"/") })
	for _, f := range gone {
		f.mu.Lock()
		f.loaded = false
		f.uv.Store(0)
		f.mu.Unlock()
		f.cache.clear(a.s)
		f.readers.drop()
		f.notify()
	}
}

// load reads the folder's index, or starts an empty one under a new
// UIDVALIDITY. The caller holds f.mu.
//
// It builds the snapshot alone and leaves the entries (where each message
// lies in the file, its fingerprint) for need: a SELECT after a restart,
// of a file unchanged since, needs only the snapshot, and an entry per
// message too was three times the memory. A 100,000-message folder's
// first SELECT touched 27 MB of fresh memory, most of its time on a VM
// where a first touch of a page costs microseconds.
func (f *folder) load() error {
	var meta folderMeta
	var msgs []mailbox.Message
	found := false
	err := f.a.s.opts.DB.View(func(tx *bolt.Tx) error {
		m, ub, ok := f.buckets(tx)
		if !ok {
			return nil
		}
		// Stats counts the keys from each page's header, without
		// visiting them; the array is then sized once.
		msgs = index.Make(ub.Stats().KeyN)[:0]
		var e entry // reused: the load keeps only the messages
		bad := forEachRecord(ub, m, func(uid uint32, v []byte) (uint64, error) {
			e = entry{}
			if err := decodeEntryInto(&e, uid, v); err != nil {
				return 0, err
			}
			msgs = append(msgs, f.message(&e))
			return e.modSeq, nil
		})
		if bad != nil {
			f.a.s.log.Warn("mbox index inconsistent: rebuilding it from the file", "home", f.a.home, "folder", f.name, "err", bad)
			return nil
		}
		meta, found = m, true
		return nil
	})
	if err != nil {
		return fmt.Errorf("mbox: read index of %s: %w", f.name, err)
	}
	if !found {
		msgs = nil
		meta = folderMeta{uidNext: 1, modSeq: 1}
		if err := f.a.s.opts.DB.Update(func(tx *bolt.Tx) error {
			meta.uidValidity = tree.NextUIDValidity(tx, 0)
			if err := tree.NoteUIDValidity(tx, meta.uidValidity); err != nil {
				return err
			}
			return tree.ResetFolder(tx, f.a.home, f.name, meta.encode())
		}); err != nil {
			return fmt.Errorf("mbox: create index of %s: %w", f.name, err)
		}
	}
	f.uidValidity, f.uidNext, f.modSeq, f.file = meta.uidValidity, meta.uidNext, meta.modSeq, meta.file
	f.ents, f.lazy = nil, len(msgs) > 0
	f.loaded = true
	f.uv.Store(f.uidValidity)
	f.snap = f.snaps.Set(f.counters(), msgs)
	return nil
}

// need reads the folder's entries, which load left for later, from the
// index: every change of the index goes through the entries, so the
// records are still those the snapshot was made of (which need checks).
// The caller holds f.mu.
func (f *folder) need() error {
	if !f.lazy {
		return nil
	}
	var ents []*entry
	var bad error
	err := f.a.s.opts.DB.View(func(tx *bolt.Tx) error {
		m, ub, ok := f.buckets(tx)
		if !ok || m.counters() != f.counters() {
			bad = errors.New("the folder's record changed")
			return nil
		}
		ents = make([]*entry, 0, len(f.snap.Messages))
		// Entries are allocated 1024 at a time rather than one by one.
		var slab []entry
		bad = forEachRecord(ub, m, func(uid uint32, v []byte) (uint64, error) {
			if len(slab) == 0 {
				slab = make([]entry, 1024)
			}
			e := &slab[0]
			slab = slab[1:]
			ents = append(ents, e)
			err := decodeEntryInto(e, uid, v)
			return e.modSeq, err
		})
		return nil
	})
	if err == nil && bad == nil && !sameUIDs(ents, f.snap.Messages) {
		bad = errors.New("its messages differ from the snapshot's")
	}
	if err == nil {
		err = bad
	}
	if err != nil {
		// Read afresh at the next sync.
		f.loaded, f.lazy = false, false
		return fmt.Errorf("mbox: read index of %s: %w", f.name, err)
	}
	f.ents, f.lazy = ents, false
	return nil
}

// buckets returns the folder's meta and uids bucket in tx; ok is false if
// the folder has no index (or a meta record that cannot be read).
func (f *folder) buckets(tx *bolt.Tx) (meta folderMeta, ub *bolt.Bucket, ok bool) {
	fb := tree.Folder(tx, f.a.home, f.name)
	if fb == nil {
		return folderMeta{}, nil, false
	}
	meta, ok = decodeMeta(index.Meta(fb))
	ub = index.UIDs(fb)
	return meta, ub, ok && ub != nil
}

// forEachRecord hands every record of ub, in UID order, to decode, which
// returns its MODSEQ; it stops at the first record that decode refuses
// or that cannot belong to a folder with meta's counters, and says why.
// What decode kept of the records before is then to be dropped.
func forEachRecord(ub *bolt.Bucket, meta folderMeta, decode func(uid uint32, v []byte) (modSeq uint64, err error)) error {
	counters := meta.counters()
	c := ub.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 4 {
			return errBadRecord
		}
		uid := binary.BigEndian.Uint32(k)
		modSeq, err := decode(uid, v)
		if err == nil && !counters.Holds(uid, modSeq) {
			err = errBadRecord
		}
		if err != nil {
			return fmt.Errorf("uid %d: %w", uid, err)
		}
	}
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

// count is the number of messages in the folder.
func (f *folder) count() int {
	if f.lazy {
		return len(f.snap.Messages)
	}
	return len(f.ents)
}

// save writes the folder's meta and the given entries (put) and UIDs
// (deleted) in one transaction. The caller holds f.mu; on failure the
// folder is loaded again at the next sync.
func (f *folder) save(put []*entry, del []uint32) error {
	meta := folderMeta{f.uidValidity, f.uidNext, f.modSeq, f.file}
	err := f.a.s.opts.DB.Update(func(tx *bolt.Tx) error {
		fb, err := tree.MakeFolder(tx, f.a.home, f.name)
		if err != nil {
			return err
		}
		ub := index.UIDs(fb)
		for _, uid := range del {
			if err := ub.Delete(index.UIDKey(uid)); err != nil {
				return err
			}
		}
		for _, e := range put {
			if err := ub.Put(index.UIDKey(e.uid), e.encode()); err != nil {
				return err
			}
		}
		return index.PutMeta(fb, meta.encode())
	})
	if err != nil {
		f.loaded = false
		return fmt.Errorf("mbox: update index of %s: %w", f.name, err)
	}
	return nil
}

// publish makes a new immutable snapshot from the entries.
func (f *folder) publish() {
	msgs := index.Make(len(f.ents))
	for i, e := range f.ents {
		msgs[i] = f.message(e)
	}
	f.uv.Store(f.uidValidity)
	f.snap = f.snaps.Set(f.counters(), msgs)
}

// message is what a snapshot shows of e.
func (f *folder) message(e *entry) mailbox.Message {
	return mailbox.Message{UID: e.uid, Flags: f.snaps.Flags(e.flags, e.kws), InternalDate: time.Unix(e.date, 0), Size: e.served(), ModSeq: e.modSeq}
}

// counters are the folder's IMAP numbers.
func (f *folder) counters() index.Counters {
	return index.Counters{UIDValidity: f.uidValidity, UIDNext: f.uidNext, ModSeq: f.modSeq}
}

// find returns the entry of uid, or nil if there is none (or the entries
// cannot be read: need says why to those who ask it first).
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

// statFile returns the state of the folder's file, or ok false if there
// is none. A directory (a folder of folders) or anything else that is not
// a regular file is ErrNoFolder.
func (f *folder) statFile() (fileState, bool, error) {
	var fi os.FileInfo
	var err error
	if f.p.abs {
		fi, err = os.Lstat(f.p.String())
	} else {
		fi, err = f.a.s.root.Lstat(f.p.String())
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fileState{}, false, nil
	}
	if err != nil {
		return fileState{}, false, fmt.Errorf("mbox: stat %s: %w", f.p, err)
	}
	if !fi.Mode().IsRegular() {
		return fileState{}, false, fmt.Errorf("%w: %s", mailbox.ErrNoFolder, f.name)
	}
	return stateOf(fi), true, nil
}

func stateOf(fi os.FileInfo) fileState {
	st := fileState{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), uint64(sys.Ino)
	}
	return st
}

// sync loads the folder if needed and takes in changes to its file. The
// caller holds f.mu; locked, if not nil, is the file already held.
func (f *folder) sync(ctx context.Context, locked *held) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st, ok, err := f.statFile()
	if err != nil {
		return err
	}
	if !ok && f.name != inbox {
		f.loaded = false
		return fmt.Errorf("%w: %s", mailbox.ErrNoFolder, f.name)
	}
	if !f.loaded {
		if err := f.load(); err != nil {
			return err
		}
	}
	if !f.dirty.Swap(false) && (st.same(f.file) || !ok && f.file.size == 0 && f.count() == 0) {
		return nil
	}
	if !ok {
		// INBOX gone (removed by hand, or an empty spool file removed
		// by its reader): no messages.
		return f.merge(fileState{}, nil, 0)
	}
	if locked != nil {
		return f.rescan(locked.f)
	}
	// A stable view: read under the file's locks, so that no message is
	// seen half written.
	h, unlock, err := f.a.s.lock(ctx, f.p)
	if err != nil {
		return err
	}
	defer unlock()
	return f.rescan(h.f)
}

// rescan reads what changed in the file (open, locked) since the last
// sync: only what follows the last known message if the file grew with
// its old bytes in place, else all of it.
func (f *folder) rescan(file *os.File) error {
	fi, err := file.Stat()
	if err != nil {
		return fmt.Errorf("mbox: stat %s: %w", f.p, err)
	}
	st := stateOf(fi)
	st.tail = readTail(file, st.size)
	if st.same(f.file) {
		f.file = st
		return nil
	}
	if err := f.need(); err != nil {
		return err
	}
	old := f.file
	if len(f.ents) > 0 && st.dev == old.dev && st.ino == old.ino && st.size >= old.size &&
		bytes.Equal(readTailAt(file, old.size, len(old.tail)), old.tail) {
		last := f.ents[len(f.ents)-1]
		var spans []*Span
		_, err := Scan(file, last.off, st.size, func(s *Span) error {
			c := *s
			spans = append(spans, &c)
			return nil
		})
		if err != nil {
			return fmt.Errorf("mbox: read %s: %w", f.p, err)
		}
		if len(spans) > 0 && spans[0].Offset == last.off && spans[0].Hash == last.hash {
			st.junk = old.junk
			return f.merge(st, spans, len(f.ents)-1)
		}
	}
	var spans []*Span
	res, err := Scan(file, 0, st.size, func(s *Span) error {
		c := *s
		spans = append(spans, &c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("mbox: read %s: %w", f.p, err)
	}
	st.junk = res.Junk
	if res.Junk > 0 && old.junk != res.Junk {
		f.a.s.log.Warn("mbox: the file does not start with a From line: its first bytes are kept but not served", "mbox", f.p.String(), "bytes", res.Junk)
	}
	return f.merge(st, spans, 0)
}

func readTail(file *os.File, size int64) []byte { return readTailAt(file, size, tailLen) }

// readTailAt returns the n bytes (fewer near the start) before end.
func readTailAt(file *os.File, end int64, n int) []byte {
	n = int(min(int64(n), end))
	b := make([]byte, n)
	k, _ := file.ReadAt(b, end-int64(n))
	return b[:k]
}

// merge takes in the spans found from the folder's entry keep on (all
// of them for keep 0): entries whose fingerprint is found again, in
// order, keep their UIDs (and flags, unless another program changed the
// flag fields); others are gone; new spans get new UIDs and the flags
// their fields say.
func (f *folder) merge(st fileState, spans []*Span, keep int) error {
	if err := f.need(); err != nil {
		return err
	}
	byHash := map[[sha256.Size]byte][]*entry{}
	for _, e := range f.ents[keep:] {
		byHash[e.hash] = append(byHash[e.hash], e)
	}
	kept := append([]*entry(nil), f.ents[:keep]...)
	var lastUID uint32
	if keep > 0 {
		lastUID = kept[keep-1].uid
	}
	modSeq := f.modSeq + 1
	changed := false
	var put []*entry
	matched := map[*entry]bool{}
	takeOver := f.uidNext == 1 && len(f.ents) == 0 && len(spans) > 0 && f.takeDovecotUIDs(spans[0])
	for _, s := range spans {
		var e *entry
		for q := byHash[s.Hash]; len(q) > 0; q = q[1:] {
			if q[0].uid > lastUID {
				e = q[0]
				byHash[s.Hash] = q[1:]
				break
			}
		}
		if e != nil {
			matched[e] = true
			before := *e
			sig := e.sig
			e.setSpan(s)
			if e.sig != sig {
				// Another program changed the flags in the file.
				e.flags, e.kws = SpanFlags(s)
				e.modSeq, changed = modSeq, true
			}
			if e.off != before.off || e.end != before.end || e.sig != before.sig || e.hidden != before.hidden {
				put = append(put, e)
			}
			if e.served() != before.served() {
				changed = true
			}
		} else {
			e = &entry{uid: f.uidNext, modSeq: modSeq, date: fromDate(s.FromLine, st.mtime)}
			if u, err := strconv.ParseUint(string(s.XUID), 10, 32); takeOver && err == nil && uint32(u) > lastUID && uint32(u) < f.uidNext {
				e.uid = uint32(u) // Dovecot's UID, below its UIDNEXT
			} else {
				f.uidNext++
			}
			e.setSpan(s)
			e.flags, e.kws = SpanFlags(s)
			put = append(put, e)
			changed = true
		}
		lastUID = e.uid
		kept = append(kept, e)
	}
	var del []uint32
	for _, e := range f.ents[keep:] {
		if !matched[e] {
			del = append(del, e.uid)
			changed = true
		}
	}
	if changed {
		f.modSeq = modSeq
	}
	f.ents = kept
	return f.apply(st, put, del)
}

// takeDovecotUIDs starts an index that has handed out no UID under the
// UIDVALIDITY and UIDNEXT that Dovecot (or UW-IMAP) wrote into the
// file's first message (X-IMAPbase), so that the messages keep the UIDs
// of their X-UID fields and clients of the old server need not fetch
// everything again, as the Maildir index takes over a dovecot-uidlist.
func (f *folder) takeDovecotUIDs(first *Span) bool {
	fields := strings.Fields(string(first.XIMAPBase))
	if len(fields) < 2 {
		return false
	}
	v, err1 := strconv.ParseUint(fields[0], 10, 32)
	next, err2 := strconv.ParseUint(fields[1], 10, 32)
	if err1 != nil || err2 != nil || v == 0 || next < 2 {
		return false
	}
	f.uidValidity, f.uidNext = uint32(v), uint32(next)
	f.a.s.log.Info("taking over the UIDs in the mbox file", "home", f.a.home, "folder", f.name, "uidvalidity", v, "uidnext", next)
	return true
}

// apply records the folder's new file state and changed entries (already
// in f.ents), writes them, and publishes.
func (f *folder) apply(st fileState, put []*entry, del []uint32) error {
	f.file = st
	f.cache.drop(f.a.s, del)
	if err := f.save(put, del); err != nil {
		return err
	}
	f.publish()
	f.notify()
	return nil
}

// fromDate reads the date of a From line ("From sender Thu Nov 29
// 22:33:52 2007", in local time, perhaps with a zone after the year), or
// gives mtime (nanoseconds) for a line without a date it can read.
func fromDate(line []byte, mtime int64) int64 {
	rest, ok := bytes.CutPrefix(line, []byte(fromPrefix))
	if ok {
		if _, d, ok := bytes.Cut(rest, []byte(" ")); ok {
			d = bytes.TrimSpace(d)
			for _, layout := range []string{time.ANSIC, "Mon Jan _2 15:04:05 2006 -0700", "Mon Jan _2 15:04:05 MST 2006", "Mon Jan _2 15:04 2006"} {
				n := min(len(d), len(layout)+2)
				for k := n; k >= len(layout)-2 && k > 0; k-- {
					if t, err := time.ParseInLocation(layout, string(d[:k]), time.Local); err == nil {
						return t.Unix()
					}
				}
			}
		}
	}
	return time.Unix(0, mtime).Unix()
}

// openMessage opens the folder's file for reading one message, checking
// that a From line is still where the index says.
func (f *folder) openMessage(e *entry) (*os.File, error) {
	dir, err := f.a.s.openDir(f.p)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	file, err := dir.OpenFile(f.p.name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	var b [5]byte
	if _, err := file.ReadAt(b[:], e.off); err != nil || string(b[:]) != fromPrefix {
		file.Close()
		return nil, errMoved
	}
	return file, nil
}

var errMoved = errors.New("the file changed under the index")

// messageReader serves one message of an open file, seekable.
type messageReader struct {
	f       *os.File
	release func() // gives back a shared f (nil: f is the reader's own)
	s       *Span
	r       io.Reader
	pos     int64
	size    int64
}

func (m *messageReader) Read(p []byte) (int, error) {
	if m.r == nil {
		m.r = NewReader(m.f, m.s)
		if _, err := io.CopyN(io.Discard, m.r, m.pos); err != nil && m.pos < m.size {
			return 0, err
		}
	}
	n, err := m.r.Read(p)
	m.pos += int64(n)
	return n, err
}

func (m *messageReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += m.pos
	case io.SeekEnd:
		off += m.size
	}
	if off < 0 {
		return 0, errors.New("mbox: seek before the start of a message")
	}
	if off != m.pos {
		m.r, m.pos = nil, off
	}
	return off, nil
}

func (m *messageReader) Close() error {
	if release := m.release; release != nil {
		m.release, m.f = nil, nil
		release()
		return nil
	}
	if m.f == nil {
		return nil // closed before
	}
	return m.f.Close()
}
