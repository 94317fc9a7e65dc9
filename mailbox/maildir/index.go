package maildir

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"mailroom/mailbox"
)

// The index: what IMAP needs of each folder (UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ, and per UID the Maildir unique name, flags, internal
// date, size as served and modseq) kept in mailroom.db, so that UIDs stay
// the same across restarts. The Maildir stays the truth: Sync compares the
// index with the directories and takes in what other programs did (files
// added, removed, renamed for their flags). If the index is lost it is
// rebuilt from the Maildir under a new UIDVALIDITY.
//
// bbolt layout, all under the top-level bucket "imap":
//
//	meta/uidvalidity                last UIDVALIDITY handed out (uint32)
//	homes/<home>/subs/<name>        subscribed folders (IMAP names)
//	homes/<home>/special/<name>     SPECIAL-USE attribute of a folder
//	homes/<home>/folders/<name>/meta     UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ
//	homes/<home>/folders/<name>/uids/<uid>  one message (see entry.encode)
//	homes/<home>/folders/<name>/cache/<uid> its header fields (cache.go)
//
// Subscriptions live in bbolt rather than in Dovecot's "subscriptions" file:
// they change in the same transaction as the folders they name (RENAME,
// the first Open), and no other program we share the Maildir with writes
// them.

var (
	bucketIMAP    = []byte("imap")
	bucketMeta    = []byte("meta")
	bucketHomes   = []byte("homes")
	bucketSubs    = []byte("subs")
	bucketSpecial = []byte("special")
	bucketFolders = []byte("folders")
	bucketUIDs    = []byte("uids")
	keyMeta       = []byte("meta")
	keyUIDV       = []byte("uidvalidity")
)

// defaultFolders are made, subscribed, for a new account (with INBOX).
var defaultFolders = []struct{ name, use string }{
	{"Sent", `\Sent`}, {"Drafts", `\Drafts`}, {"Trash", `\Trash`}, {"Junk", `\Junk`}, {"Archive", `\Archive`},
}

// IndexOptions configure an Index.
type IndexOptions struct {
	// Logger receives what the index notices on disk (duplicate files,
	// an index rebuilt). Nil discards.
	Logger *slog.Logger

	// commitChunk is the most additions one transaction writes
	// (default 8192); tests make it small.
	commitChunk int
}

// Index serves the folders of the Maildirs below a Store's mail root to
// the IMAP server (it implements imap.Store). It keeps one shared, current
// snapshot per folder in memory for all sessions in the process, and is
// told of every delivery by the Store without the delivery waiting on it.
type Index struct {
	db      *bolt.DB
	store   *Store
	log     *slog.Logger
	hook    *func(home, folder string)
	special *func(home, use string) string
	cache   *cacheWriter // header cache write-behind (cache.go)
	// commitChunk is IndexOptions.commitChunk or its default.
	commitChunk int

	mu    sync.Mutex
	accts map[string]*account
}

// NewIndex returns an Index keeping its data in db (mailroom.db, under its
// own top-level bucket) for the Maildirs of store, and registers with
// store so that deliveries wake Watch.
func NewIndex(db *bolt.DB, store *Store, opts IndexOptions) (*Index, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketIMAP)
		if err == nil {
			_, err = b.CreateBucketIfNotExists(bucketHomes)
		}
		if err == nil {
			_, err = b.CreateBucketIfNotExists(bucketMeta)
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("maildir: create index bucket: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	chunk := opts.commitChunk
	if chunk <= 0 {
		chunk = defaultCommitChunk
	}
	ix := &Index{db: db, store: store, log: log, accts: map[string]*account{}, cache: newCacheWriter(db), commitChunk: chunk}
	hook := ix.delivered
	ix.hook = &hook
	store.committed.Store(ix.hook)
	special := ix.specialFolder
	ix.special = &special
	store.special.Store(ix.special)
	return ix, nil
}

// Close stops listening to deliveries, writes the header cache entries
// still buffered and records what was seen of each folder's directories
// for a quick first SELECT in the next run (seen.go); call it before
// closing the database. Folders already open keep working, but cache no
// more header fields.
func (ix *Index) Close() error {
	ix.store.committed.CompareAndSwap(ix.hook, nil)
	ix.store.special.CompareAndSwap(ix.special, nil)
	ix.cache.shutdown()
	if err := ix.saveSeen(); err != nil {
		ix.log.Warn("index: the next start reads every folder again", "err", err)
	}
	return nil
}

// delivered is called by Commit: it marks home's folder as changed and
// wakes its watchers. It takes only short, I/O-free locks.
func (ix *Index) delivered(home, folder string) {
	ix.mu.Lock()
	a := ix.accts[home]
	ix.mu.Unlock()
	if a == nil {
		return
	}
	a.fmu.Lock()
	f := a.folders[folder]
	a.fmu.Unlock()
	if f != nil {
		f.newDirty.Store(true)
		f.notify()
	}
}

// specialFolder names home's folder marked with special use use, or "".
func (ix *Index) specialFolder(home, use string) string {
	var name string
	ix.db.View(func(tx *bolt.Tx) error {
		hb := homeBucket(tx, home)
		if hb == nil {
			return nil
		}
		return hb.Bucket(bucketSpecial).ForEach(func(k, v []byte) error {
			if name == "" && strings.EqualFold(string(v), use) {
				name = string(k)
			}
			return nil
		})
	})
	return name
}

// Open returns one session's view of the account whose mail home is home
// (relative to the mail root, such as "example.org/alice"). The first Open
// of an account with no index makes the Maildir, INBOX and the special-use
// folders where missing, and subscribes them.
func (ix *Index) Open(ctx context.Context, home string) (mailbox.Folders, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkHome(home); err != nil {
		return nil, err
	}
	ix.mu.Lock()
	a := ix.accts[home]
	if a == nil {
		a = &account{ix: ix, home: home, md: Maildir(home), folders: map[string]*folder{}}
		ix.accts[home] = a
	}
	ix.mu.Unlock()
	if err := a.init(); err != nil {
		return nil, err
	}
	return &session{a: a}, nil
}

// account is the state shared by every session of one mail home.
type account struct {
	ix   *Index
	home string
	md   string // the Maildir, relative to the mail root

	// mu is held shared by operations on messages and exclusively by
	// those that change the set of folders (Create, Delete, Rename).
	mu sync.RWMutex

	initMu sync.Mutex
	inited bool

	dmu    sync.Mutex // guards the Maildir handles (confine.go)
	mdRoot *os.Root
	mdDir  *os.File

	fmu     sync.Mutex
	folders map[string]*folder // by canonical IMAP name; made on first use
}

// init makes sure the Maildir exists and, for an account the index has
// never seen, makes the default folders and subscribes them.
func (a *account) init() error {
	a.initMu.Lock()
	defer a.initMu.Unlock()
	if a.inited {
		return nil
	}
	if !a.exists(a.md) {
		if err := a.create(a.md); err != nil {
			return err
		}
	}
	var known bool
	if err := a.ix.db.View(func(tx *bolt.Tx) error {
		known = homeBucket(tx, a.home) != nil
		return nil
	}); err != nil {
		return fmt.Errorf("maildir: read index of %s: %w", a.home, err)
	}
	if !known {
		for _, d := range defaultFolders {
			_, dir, _ := folderDir(d.name)
			if p := path.Join(a.md, dir); !a.exists(p) {
				if err := a.create(p); err != nil {
					return err
				}
			}
		}
		// Folders already there (a Maildir copied from elsewhere) are
		// subscribed too: their subscriptions were not copied with them.
		existing, err := a.listDirs()
		if err != nil {
			return err
		}
		if err := a.ix.db.Update(func(tx *bolt.Tx) error {
			hb, err := makeHomeBucket(tx, a.home)
			if err != nil {
				return err
			}
			subs, special := hb.Bucket(bucketSubs), hb.Bucket(bucketSpecial)
			for _, d := range defaultFolders {
				if err := special.Put([]byte(d.name), []byte(d.use)); err != nil {
					return err
				}
			}
			for _, name := range append(existing, inbox) {
				if err := subs.Put([]byte(name), nil); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("maildir: create index of %s: %w", a.home, err)
		}
		a.ix.log.Info("new account index", "home", a.home, "folders", len(existing)+1)
	}
	a.inited = true
	return nil
}

// exists reports whether dir (relative to the mail root) is a directory
// with cur/, new/ and tmp/.
func (a *account) exists(dir string) bool {
	for _, sub := range []string{"cur", "new", "tmp"} {
		d, err := a.openDir(path.Join(dir, sub))
		if err != nil {
			return false
		}
		d.Close()
	}
	return true
}

// listDirs returns the IMAP names of the folders in the Maildir (not
// INBOX), sorted.
func (a *account) listDirs() ([]string, error) {
	d, err := a.openDir(a.md)
	if err != nil {
		return nil, fmt.Errorf("maildir: open %s: %w", a.md, err)
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("maildir: read %s: %w", a.md, err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if name, ok := dirFolder(e.Name()); ok {
			names = append(names, name)
		}
	}
	sortNames(names)
	return names, nil
}

// folder returns the shared state of a folder, made on first use (it is
// loaded from the index by the first sync).
func (a *account) folder(name string) (*folder, error) {
	canon, dir, err := folderDir(name)
	if err != nil {
		return nil, err
	}
	a.fmu.Lock()
	defer a.fmu.Unlock()
	f := a.folders[canon]
	if f == nil {
		f = &folder{a: a, name: canon, dir: path.Join(a.md, dir)}
		a.folders[canon] = f
	}
	return f, nil
}

// forget drops the shared state of a folder that was deleted or renamed,
// and wakes its watchers so that their sessions notice. The caller holds
// a.mu exclusively.
func (a *account) forget(name string) {
	a.fmu.Lock()
	f := a.folders[name]
	delete(a.folders, name)
	a.fmu.Unlock()
	if f != nil {
		f.mu.Lock()
		f.loaded = false
		f.mu.Unlock()
		f.dropHandles()
		f.notify()
	}
}

func homeBucket(tx *bolt.Tx, home string) *bolt.Bucket {
	return tx.Bucket(bucketIMAP).Bucket(bucketHomes).Bucket([]byte(home))
}

func makeHomeBucket(tx *bolt.Tx, home string) (*bolt.Bucket, error) {
	hb, err := tx.Bucket(bucketIMAP).Bucket(bucketHomes).CreateBucketIfNotExists([]byte(home))
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketSubs, bucketSpecial, bucketFolders} {
		if _, err := hb.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return hb, nil
}

// newUIDValidity picks the UIDVALIDITY of a new index for a folder: the
// time, as Dovecot does, but above the last one handed out in this
// database and above the last one this folder had (its hint file), so
// that a folder deleted and made again, or an index lost twice, within
// the same second still gets a new one.
func newUIDValidity(db *bolt.DB, hint uint32) (uint32, error) {
	v := uint32(time.Now().Unix())
	err := db.View(func(tx *bolt.Tx) error {
		if last := tx.Bucket(bucketIMAP).Bucket(bucketMeta).Get(keyUIDV); len(last) == 4 {
			v = max(v, binary.BigEndian.Uint32(last)+1)
		}
		return nil
	})
	v = max(v, hint+1, 1)
	return v, err
}

// noteUIDValidity records v as handed out.
func noteUIDValidity(tx *bolt.Tx, v uint32) error {
	mb := tx.Bucket(bucketIMAP).Bucket(bucketMeta)
	if last := mb.Get(keyUIDV); len(last) == 4 && binary.BigEndian.Uint32(last) >= v {
		return nil
	}
	return mb.Put(keyUIDV, binary.BigEndian.AppendUint32(nil, v))
}

// folder is the state of one folder shared by all sessions of the
// process: the index in memory and the current snapshot.
type folder struct {
	a    *account
	name string // canonical IMAP name
	dir  string // relative to the mail root

	mu          sync.Mutex // held for every read or change of what follows
	loaded      bool
	uidValidity uint32
	uidNext     uint32
	modSeq      uint64
	ents        []*entry          // ascending UID
	byKey       map[string]*entry // by Maildir unique name
	seenNew     dirSeen
	seenCur     dirSeen
	gen         uint32
	snap        *mailbox.Snapshot
	msgs        []mailbox.Message // snap.Messages, with room to append
	flagCache   map[string][]string
	imp         *dovecotImport // for the first scan of a new index

	// uv is uidValidity, readable without mu (by the header cache),
	// 0 until loaded.
	uv atomic.Uint32

	newDirty atomic.Bool // a delivery went into new/ since the last scan

	hmu sync.RWMutex
	h   *dirHandles // new/ and cur/, kept open (handles.go)

	wmu sync.Mutex
	wch chan struct{}
}

// dirSeen is what a scan saw of a directory: its mtime, and whether that
// mtime was old enough when seen that any later change must move it.
type dirSeen struct {
	valid    bool
	sure     bool
	mtime    unix.Timespec
	dev, ino uint64 // the directory itself, in case it was replaced
}

// entry is one message in the index.
type entry struct {
	uid    uint32
	inNew  bool
	flags  sysFlags
	mark   uint32 // scan generation that saw it
	date   int64  // internal date, Unix seconds
	size   int64  // bytes as served (CRLF)
	disk   int64  // bytes on disk
	modSeq uint64
	name   string   // file name in new/ or cur/
	kws    []string // keywords, sorted
}

func (e *entry) key() string {
	if i := strings.IndexByte(e.name, ':'); i >= 0 {
		return e.name[:i]
	}
	return e.name
}

// subdir is "new" or "cur".
func (e *entry) subdir() string {
	if e.inNew {
		return "new"
	}
	return "cur"
}

const entryVersion = 1

// encode is the index record of e: a version byte, then modseq, date,
// size, disk size, flags, in-new, keywords (count, then each with its
// length), and the file name to the end.
func (e *entry) encode() []byte { return e.appendTo(make([]byte, 0, 48+len(e.name))) }

// appendTo appends e's record to b.
func (e *entry) appendTo(b []byte) []byte {
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, e.modSeq)
	b = binary.AppendVarint(b, e.date)
	b = binary.AppendUvarint(b, uint64(e.size))
	b = binary.AppendUvarint(b, uint64(e.disk))
	b = append(b, byte(e.flags))
	if e.inNew {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(e.kws)))
	for _, k := range e.kws {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return append(b, e.name...)
}

var errBadRecord = errors.New("bad index record")

func decodeEntry(uid uint32, b []byte) (*entry, error) {
	e := &entry{uid: uid}
	name, err := e.decode(b)
	if err != nil {
		return nil, err
	}
	e.name = string(name)
	return e, nil
}

// decode fills e (but for uid and name) from its index record and
// returns the file name's bytes (in b), so that a caller decoding many
// can keep all names in one string.
func (e *entry) decode(b []byte) ([]byte, error) {
	if len(b) < 1 || b[0] != entryVersion {
		return nil, errBadRecord
	}
	b = b[1:]
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	e.modSeq = uv()
	d, n := binary.Varint(b)
	if n <= 0 {
		return nil, errBadRecord
	}
	e.date, b = d, b[n:]
	e.size = int64(uv())
	e.disk = int64(uv())
	if len(b) < 2 || e.size < 0 || e.disk < 0 || b[0] > 63 {
		return nil, errBadRecord
	}
	e.flags, e.inNew = sysFlags(b[0]), b[1] == 1
	b = b[2:]
	nk := uv()
	if nk > uint64(len(b)) {
		return nil, errBadRecord
	}
	for range nk {
		l := uv()
		if l > uint64(len(b)) {
			return nil, errBadRecord
		}
		e.kws = append(e.kws, string(b[:l]))
		b = b[l:]
	}
	if len(b) == 0 || b[0] == '.' || bytes.IndexByte(b, '/') >= 0 || bytes.IndexByte(b, 0) >= 0 {
		return nil, errBadRecord
	}
	return b, nil
}

type folderMeta struct {
	uidValidity, uidNext uint32
	modSeq               uint64
}

func (m folderMeta) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, m.uidValidity)
	b = binary.BigEndian.AppendUint32(b, m.uidNext)
	return binary.BigEndian.AppendUint64(b, m.modSeq)
}

func decodeMeta(b []byte) (folderMeta, bool) {
	if len(b) != 16 {
		return folderMeta{}, false
	}
	m := folderMeta{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint64(b[8:])}
	return m, m.uidValidity != 0 && m.uidNext != 0
}

func uidKey(uid uint32) []byte { return binary.BigEndian.AppendUint32(nil, uid) }

// folderBucket returns the folder's bucket, made if missing.
func (f *folder) bucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	hb, err := makeHomeBucket(tx, f.a.home)
	if err != nil {
		return nil, err
	}
	fb, err := hb.Bucket(bucketFolders).CreateBucketIfNotExists([]byte(f.name))
	if err != nil {
		return nil, err
	}
	if _, err := fb.CreateBucketIfNotExists(bucketUIDs); err != nil {
		return nil, err
	}
	return fb, nil
}

func (f *folder) meta() folderMeta { return folderMeta{f.uidValidity, f.uidNext, f.modSeq} }

// watch returns a channel closed at the folder's next change.
func (f *folder) watch() <-chan struct{} {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.wch == nil {
		f.wch = make(chan struct{})
	}
	return f.wch
}

// notify wakes the folder's watchers; it never blocks on them.
func (f *folder) notify() {
	f.wmu.Lock()
	if f.wch != nil {
		close(f.wch)
		f.wch = nil
	}
	f.wmu.Unlock()
}

// load reads the folder's index from bbolt, or starts a new one (new
// UIDVALIDITY, empty) if there is none or it is inconsistent; the scan
// that follows then indexes every file. The folder must exist on disk.
func (f *folder) load() error {
	var (
		meta             folderMeta
		ok               bool
		ents             []*entry
		bad              error
		seenNew, seenCur dirSeen
	)
	err := f.a.ix.db.View(func(tx *bolt.Tx) error {
		hb := homeBucket(tx, f.a.home)
		if hb == nil {
			return nil
		}
		fb := hb.Bucket(bucketFolders).Bucket([]byte(f.name))
		if fb == nil {
			return nil
		}
		if meta, ok = decodeMeta(fb.Get(keyMeta)); !ok {
			return nil
		}
		ub := fb.Bucket(bucketUIDs)
		if ub == nil {
			ok = false
			return nil
		}
		var hint loadHint
		seenNew, seenCur, hint = decodeSeen(fb.Get(keySeen))
		// Entries are allocated in slabs and their names kept in one
		// string: a large folder loads with a few hundred allocations
		// rather than two per message.
		var (
			slab  []entry
			names strings.Builder
			ends  = make([]int, 0, min(hint.n, 1<<24))
		)
		ents = make([]*entry, 0, min(hint.n, 1<<24))
		names.Grow(int(min(hint.nameBytes, 1<<30)))
		c := ub.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 4 {
				bad = errBadRecord
				return nil
			}
			uid := binary.BigEndian.Uint32(k)
			if len(slab) == cap(slab) {
				slab = make([]entry, 0, min(max(len(ents), 64), 4096))
			}
			slab = append(slab, entry{uid: uid})
			e := &slab[len(slab)-1]
			name, err := e.decode(v)
			if err == nil && (uid == 0 || uid >= meta.uidNext || e.modSeq > meta.modSeq) {
				err = errBadRecord
			}
			if err != nil {
				bad = fmt.Errorf("uid %d: %w", uid, err)
				return nil
			}
			names.Write(name)
			ends = append(ends, names.Len())
			ents = append(ents, e)
		}
		all, start := names.String(), 0
		for i, e := range ents {
			e.name, start = all[start:ends[i]], ends[i]
		}
		return nil
	})
	if err != nil && bad == nil {
		return fmt.Errorf("maildir: read index of %s: %w", f.dir, err)
	}
	f.byKey = make(map[string]*entry, len(ents))
	if ok && bad == nil {
		for _, e := range ents {
			f.byKey[e.key()] = e
		}
		if len(f.byKey) != len(ents) {
			for _, e := range ents {
				if f.byKey[e.key()] != e {
					bad = fmt.Errorf("unique name %s twice", e.key())
					break
				}
			}
		}
	}
	if !ok || bad != nil {
		if bad != nil {
			f.a.ix.log.Warn("index inconsistent: rebuilding it from the Maildir", "home", f.a.home, "folder", f.name, "err", bad)
		}
		// A Maildir from Dovecot: take over its UIDs (dovecot.go). The
		// uidlist is retired before the index is written, so that a
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
		uv, err := newUIDValidity(f.a.ix.db, f.a.readHint(f.dir))
		if err != nil {
			return fmt.Errorf("maildir: create index of %s: %w", f.dir, err)
		}
		if imp.list != nil {
			uv = imp.list.uidValidity
		}
		// The hint is on disk before any UID is handed out under uv.
		if err := f.a.writeHint(f.dir, uv); err != nil {
			f.a.ix.log.Warn("cannot record UIDVALIDITY in the Maildir", "home", f.a.home, "folder", f.name, "err", err)
		}
		if err := f.a.ix.db.Update(func(tx *bolt.Tx) error {
			hb, err := makeHomeBucket(tx, f.a.home)
			if err != nil {
				return err
			}
			if err := hb.Bucket(bucketFolders).DeleteBucket([]byte(f.name)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
			if err := noteUIDValidity(tx, uv); err != nil {
				return err
			}
			meta = folderMeta{uidValidity: uv, uidNext: 1, modSeq: 1}
			if imp.list != nil {
				meta.uidNext = imp.list.uidNext
			}
			fb, err := f.bucket(tx)
			if err != nil {
				return err
			}
			return fb.Put(keyMeta, meta.encode())
		}); err != nil {
			return fmt.Errorf("maildir: create index of %s: %w", f.dir, err)
		}
		ents = nil
		clear(f.byKey)
		seenNew, seenCur = dirSeen{}, dirSeen{}
	}
	f.uidValidity, f.uidNext, f.modSeq = meta.uidValidity, meta.uidNext, meta.modSeq
	f.uv.Store(meta.uidValidity)
	f.ents = ents
	// What the last run saw of new/ and cur/ (index unchanged since):
	// a first SELECT after a restart then reads neither if the folder
	// did not change meanwhile.
	f.seenNew, f.seenCur = seenNew, seenCur
	f.flagCache = map[string][]string{}
	f.loaded = true
	f.publish()
	return nil
}

// sync loads the folder if needed and takes in changes on disk. The
// caller holds f.mu.
func (f *folder) sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !f.loaded {
		if !f.a.exists(f.dir) {
			if f.name != inbox {
				return fmt.Errorf("%w: %s", mailbox.ErrNoFolder, f.name)
			}
			// INBOX removed by hand: make it again, as delivery would.
			if err := f.a.create(f.dir); err != nil {
				return err
			}
		}
		if err := f.load(); err != nil {
			return err
		}
	}
	return f.scan()
}

// dirWindow is how close to the scan a directory's mtime may be and still
// hide a later change: a change within the same timestamp tick leaves the
// mtime as it was. File systems with whole-second timestamps (nanoseconds
// zero) need two seconds, as Dovecot allows; others tick in milliseconds.
func dirWindow(mtime unix.Timespec) time.Duration {
	if mtime.Nsec == 0 {
		return 2 * time.Second
	}
	return 100 * time.Millisecond
}

func (s dirSeen) fresh(st *unix.Stat_t) bool {
	return s.valid && s.sure && s.mtime == st.Mtim && s.dev == uint64(st.Dev) && s.ino == uint64(st.Ino)
}

func seen(st *unix.Stat_t, now time.Time) dirSeen {
	age := now.Sub(time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
	return dirSeen{valid: true, sure: age > dirWindow(st.Mtim), mtime: st.Mtim, dev: uint64(st.Dev), ino: uint64(st.Ino)}
}

// openSub opens the folder's new/ and cur/, making them if the folder
// exists without them. A folder that is gone is ErrNoFolder.
func (f *folder) openSub() (newD, curD *os.File, err error) {
	s := f.a
	for attempt := 0; ; attempt++ {
		newD, err = s.openDir(path.Join(f.dir, "new"))
		if err == nil {
			curD, err = s.openDir(path.Join(f.dir, "cur"))
			if err == nil {
				return newD, curD, nil
			}
			newD.Close()
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt > 0 {
			return nil, nil, fmt.Errorf("maildir: open %s: %w", f.dir, err)
		}
		if f.name != inbox {
			if d, derr := s.openDir(f.dir); derr != nil {
				return nil, nil, fmt.Errorf("%w: %s", mailbox.ErrNoFolder, f.name)
			} else {
				d.Close()
			}
		}
		if err := s.create(f.dir); err != nil {
			return nil, nil, err
		}
	}
}

// pendingFile is a file a scan found that the index does not know.
type pendingFile struct {
	name  string
	inNew bool
	fn    fileName
	seq   int // order found
}

// scan compares new/ and cur/ with the index and records the difference.
// A directory whose mtime is what the last scan saw (and was old enough
// then) is not read again, so a scan of an unchanged folder is two fstats.
func (f *folder) scan() error {
	newD, curD, err := f.subDirs()
	if err != nil {
		if errors.Is(err, mailbox.ErrNoFolder) {
			f.loaded = false
		}
		return err
	}

	var (
		newNames, curNames []string
		readNew, readCur   bool
		stNew, stCur       unix.Stat_t
		now                time.Time
		unstable           bool
	)
	for attempt := 0; ; attempt++ {
		now = time.Now()
		if err := unix.Fstat(int(newD.Fd()), &stNew); err != nil {
			return fmt.Errorf("maildir: stat %s/new: %w", f.dir, err)
		}
		if err := unix.Fstat(int(curD.Fd()), &stCur); err != nil {
			return fmt.Errorf("maildir: stat %s/cur: %w", f.dir, err)
		}
		dirty := f.newDirty.Swap(false)
		readNew = attempt > 0 || dirty || !f.seenNew.fresh(&stNew)
		readCur = attempt > 0 || !f.seenCur.fresh(&stCur)
		if !readNew && !readCur {
			return nil
		}
		// new/ before cur/: a file moving from new/ to cur/ meanwhile is
		// then seen at least once. The handles are kept between scans:
		// each is read from its start.
		if readNew {
			if _, err := newD.Seek(0, 0); err != nil {
				return fmt.Errorf("maildir: read %s/new: %w", f.dir, err)
			}
			if newNames, err = readNames(newD); err != nil {
				return fmt.Errorf("maildir: read %s/new: %w", f.dir, err)
			}
		}
		if readCur {
			if _, err := curD.Seek(0, 0); err != nil {
				return fmt.Errorf("maildir: read %s/cur: %w", f.dir, err)
			}
			if curNames, err = readNames(curD); err != nil {
				return fmt.Errorf("maildir: read %s/cur: %w", f.dir, err)
			}
		}
		// A file moving from new/ to cur/ after the fstats above changes
		// cur/'s mtime (or cur/ was not sure and is read anyway), so a
		// directory that changed while it was read is read again.
		var after1, after2 unix.Stat_t
		unix.Fstat(int(newD.Fd()), &after1)
		unix.Fstat(int(curD.Fd()), &after2)
		if after1.Mtim == stNew.Mtim && after2.Mtim == stCur.Mtim {
			break
		}
		if attempt >= 2 {
			// Still changing: take in what was added, but remove
			// nothing on a listing that may have missed a rename.
			unstable = true
			break
		}
		// Changed while we read: read both again.
	}

	f.gen++
	gen := f.gen
	var (
		updates []entryUpdate
		adds    []pendingFile
	)
	if n := len(newNames) + len(curNames) - len(f.ents); n > 0 {
		adds = make([]pendingFile, 0, n) // a guess: at least that many new
	}
	take := func(names []string, inNew bool) {
		for _, n := range names {
			if n == "" || n[0] == '.' {
				continue
			}
			key := n
			if i := strings.IndexByte(n, ':'); i >= 0 {
				key = n[:i]
			}
			e := f.byKey[key]
			if e == nil {
				adds = append(adds, pendingFile{name: n, inNew: inNew, fn: parseFileName(n), seq: len(adds)})
				continue
			}
			if e.mark == gen {
				continue // the same unique name twice: the first wins
			}
			e.mark = gen
			if e.name == n && e.inNew == inNew {
				continue
			}
			u := *e
			u.name, u.inNew, u.flags = n, inNew, parseFileName(n).flags
			updates = append(updates, entryUpdate{e, u})
		}
	}
	take(newNames, true)
	take(curNames, false)
	var removed []*entry
	for _, e := range f.ents {
		if e.mark != gen && (e.inNew && readNew || !e.inNew && readCur) && !unstable {
			removed = append(removed, e)
		}
	}
	var added []*entry
	if len(adds) > 0 {
		added = f.statNew(adds, newD, curD)
	}
	if f.imp != nil {
		if f.imp.list != nil && len(f.ents) == 0 {
			for _, e := range added {
				e.uid = f.imp.list.uids[parseFileName(e.name).key]
			}
		}
		for _, e := range added {
			e.kws = f.imp.keywordsOf(parseFileName(e.name).other)
		}
		f.imp = nil
	}
	switch {
	case unstable:
		f.seenNew, f.seenCur = dirSeen{}, dirSeen{}
	default:
		if readNew {
			f.seenNew = seen(&stNew, now)
		}
		if readCur {
			f.seenCur = seen(&stCur, now)
		}
	}
	if len(updates) == 0 && len(removed) == 0 && len(added) == 0 {
		return nil
	}
	return f.commit(updates, added, removed)
}

// statNew learns what the index keeps of files it did not know: the
// internal date (mtime) from a stat, the size from W= in the name or, if
// absent, from reading the file. Files gone or not regular are skipped.
func (f *folder) statNew(adds []pendingFile, newD, curD *os.File) []*entry {
	// In unique-name order (the delivery order, for names that start
	// with the time); a unique name found twice (in new/ and cur/, as a
	// file moves) is taken once, the first seen.
	sortByKey(adds)
	uniq := adds[:0]
	for i, p := range adds {
		if i > 0 && adds[i-1].fn.key == p.fn.key {
			continue
		}
		uniq = append(uniq, p)
	}
	// One stat per file is most of the time of a first scan: spread
	// over the CPUs for many files. Entries come from one slab.
	slab := make([]entry, len(uniq))
	ok := make([]bool, len(uniq))
	work := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ok[i] = f.statOne(&uniq[i], &slab[i], newD, curD)
		}
	}
	if workers := min(runtime.GOMAXPROCS(0), 8, len(uniq)/1024); workers > 1 {
		var wg sync.WaitGroup
		per := (len(uniq) + workers - 1) / workers
		for lo := 0; lo < len(uniq); lo += per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				work(lo, min(lo+per, len(uniq)))
			}()
		}
		wg.Wait()
	} else {
		work(0, len(uniq))
	}
	out := make([]*entry, 0, len(uniq))
	for i := range slab {
		if ok[i] {
			out = append(out, &slab[i])
		}
	}
	return out
}

// statOne fills e for the file p and reports whether it is to be
// indexed (a regular file, readable).
func (f *folder) statOne(p *pendingFile, e *entry, newD, curD *os.File) bool {
	dfd := int(curD.Fd())
	if p.inNew {
		dfd = int(newD.Fd())
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, p.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	*e = entry{inNew: p.inNew, flags: p.fn.flags, date: st.Mtim.Sec, disk: st.Size, name: p.name, size: p.fn.sizeW}
	if e.size < 0 || (p.fn.sizeS >= 0 && p.fn.sizeS != st.Size) {
		fd, err := unix.Openat(dfd, p.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		file := os.NewFile(uintptr(fd), p.name)
		_, served, err := countServed(file)
		file.Close()
		if err != nil {
			f.a.ix.log.Warn("unreadable message file skipped", "home", f.a.home, "folder", f.name, "file", p.name, "err", err)
			return false
		}
		e.size = served
	}
	return true
}

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
		if u.u.flags != u.e.flags || !sameKeywords(u.u.kws, u.e.kws) {
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
	return mailbox.Message{
		UID:          e.uid,
		Flags:        f.flags(e),
		InternalDate: time.Unix(e.date, 0),
		Size:         e.size,
		ModSeq:       e.modSeq,
	}
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
		t[i] = flagList(sysFlags(i), nil)
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
		fl = flagList(e.flags, e.kws)
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

// Index has imap.Store's method set (asserted against imap.Store itself
// in contract_test.go, since this package may not import imap).
var _ interface {
	Open(context.Context, string) (mailbox.Folders, error)
} = (*Index)(nil)
