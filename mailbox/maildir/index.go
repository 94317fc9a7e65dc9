package maildir

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path"
	"sync"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// IndexOptions configure an Index.
type IndexOptions struct {
	// Logger receives what the index notices on disk (duplicate files,
	// an index rebuilt). Nil discards.
	Logger *slog.Logger

	// commitChunk is the most additions one transaction writes
	// (default 8192); tests make it small.
	commitChunk int
	// writeHook, if set, runs in every index write's transaction before
	// its changes; an error fails the write. Tests hold writes back or
	// fail them with it.
	writeHook func() error
	// listHook, if set, is called after a scan has read a folder's new/
	// or cur/ (sub), under the folder's lock.
	listHook func(sub string)
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
	commits *committer   // index writes, grouped (committer.go)
	// commitChunk is IndexOptions.commitChunk or its default.
	commitChunk int
	listHook    func(sub string) // IndexOptions.listHook

	accts index.Shared[account] // by home
}

// listed tells the test hook, if any, that a scan read sub.
func (ix *Index) listed(sub string) {
	if ix.listHook != nil {
		ix.listHook(sub)
	}
}

// NewIndex returns an Index keeping its data in db (mailroom.db, under its
// own top-level bucket) for the Maildirs of store, and registers with
// store so that deliveries wake Watch.
func NewIndex(db *bolt.DB, store *Store, opts IndexOptions) (*Index, error) {
	if err := db.Update(tree.Create); err != nil {
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
	ix := &Index{db: db, store: store, log: log, cache: newCacheWriter(db), commitChunk: chunk, listHook: opts.listHook,
		commits: &committer{db: db, chunk: chunk, hook: opts.writeHook}}
	hook := ix.delivered
	ix.hook = &hook
	store.committed.Store(ix.hook)
	special := ix.specialFolder
	ix.special = &special
	store.special.Store(ix.special)
	return ix, nil
}

// Close stops listening to deliveries, waits for the index writes under
// way, writes the header cache entries still buffered and records what
// was seen of each folder's directories for a quick first SELECT in the
// next run (seen.go); call it before closing the database. Folders already open keep working, but cache no
// more header fields.
func (ix *Index) Close() error {
	ix.store.committed.CompareAndSwap(ix.hook, nil)
	ix.store.special.CompareAndSwap(ix.special, nil)
	ix.commits.flush()
	ix.cache.shutdown()
	if err := ix.saveSeen(); err != nil {
		ix.log.Warn("index: the next start reads every folder again", "err", err)
	}
	return nil
}

// delivered is called by Commit: it marks home's folder as changed and
// wakes its watchers. It takes only short, I/O-free locks.
func (ix *Index) delivered(home, folder string) {
	a := ix.accts.Lookup(home)
	if a == nil {
		return
	}
	if f := a.folders.Lookup(folder); f != nil {
		f.newDirty.Store(true)
		f.notify()
	}
}

// specialFolder names home's folder marked with special use use, or "".
func (ix *Index) specialFolder(home, use string) string {
	var name string
	ix.db.View(func(tx *bolt.Tx) error {
		name = tree.SpecialFolder(tx, home, use)
		return nil
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
	a := ix.accts.Get(home, func() *account { return &account{ix: ix, home: home, md: Maildir(home)} })
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

	folders index.Shared[folder] // by canonical IMAP name; made on first use
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
		known = tree.Home(tx, a.home) != nil
		return nil
	}); err != nil {
		return fmt.Errorf("maildir: read index of %s: %w", a.home, err)
	}
	if !known {
		for _, d := range index.DefaultFolders() {
			_, dir, _ := folderDir(d.Name)
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
			return tree.InitHome(tx, a.home, append(existing, inbox))
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
	return a.folders.Get(canon, func() *folder { return &folder{a: a, name: canon, dir: path.Join(a.md, dir)} }), nil
}

// forget drops the shared state of a folder that was deleted or renamed,
// and wakes its watchers so that their sessions notice. The caller holds
// a.mu exclusively.
func (a *account) forget(name string) {
	if f := a.folders.Drop(name); f != nil {
		f.mu.Lock()
		f.loaded = false
		f.mu.Unlock()
		f.dropHandles()
		f.notify()
	}
}

// Index has imap.Store's method set (asserted against imap.Store itself
// in contract_test.go, since this package may not import imap).
var _ interface {
	Open(context.Context, string) (mailbox.Folders, error)
} = (*Index)(nil)
