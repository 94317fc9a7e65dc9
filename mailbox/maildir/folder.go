package maildir

// A folder's shared state, its watchers, and how a sync decides whether
// new/ and cur/ must be read again.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

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
	ents        []*entry          // ascending UID; see lazy
	lazy        bool              // ents not read yet: load made snap alone (need)
	hint        loadHint          // from the seen record, for saveSeen while lazy
	byKey       map[string]*entry // by Maildir unique name; nil until needed (keys)
	seenNew     dirSeen
	seenCur     dirSeen
	gen         uint32
	snap        *mailbox.Snapshot
	snaps       index.Snapshots // makes snap
	imp         *dovecotImport  // for the first scan of a new index
	last        *indexWrite     // the last change handed to the committer
	loadedEpoch uint64          // epoch when loaded

	// epoch moves on when a write to the folder's index fails
	// (committer.go): memory is then ahead of the disk, and the next
	// sync loads the folder again.
	epoch atomic.Uint64
	// durable is the snapshot of the last change written to the index
	// (or of the load): what sessions that changed nothing are shown
	// while a change is on its way.
	durable atomic.Pointer[mailbox.Snapshot]

	// uv is uidValidity, readable without mu (by the header cache),
	// 0 until loaded.
	uv atomic.Uint32

	// newDirty: a delivery went into the folder (new/, or cur/ with
	// flags) since the last scan.
	newDirty atomic.Bool

	hmu sync.RWMutex
	h   *dirHandles // new/ and cur/, kept open (handles.go)

	watchers index.Watcher
}

// dirSeen is what a scan saw of a directory: its mtime, and whether that
// mtime was old enough when seen that any later change must move it.
type dirSeen struct {
	valid bool
	sure  bool
	// own: the mtime is the one the folder's own change left (a
	// rename, link or unlink made under its lock, after a scan), not
	// one a listing saw; it is trusted until ownTrust after listed.
	own      bool
	listed   time.Time // when the directory was last read
	mtime    unix.Timespec
	dev, ino uint64 // the directory itself, in case it was replaced
}

// ownTrust is how long after a directory was last read the mtimes its
// folder's own changes leave are believed without reading it again. A
// change another program makes to the directory between a session's scan
// and its own change (or in the same timestamp tick as it) hides behind
// the mtime of that change: it is seen at the latest when this much has
// passed since the listing. Without it, every session of a busy folder
// read all of cur/ at every command (its mtime never old enough): 17 %
// of the server's CPU under imaptest's stress, all of it under the
// folder's lock. Dovecot waits as long (MAILDIR_SYNC_SECS) to read a
// directory again whose mtime was too recent when it read it.
const ownTrust = time.Second

// watch returns a channel closed at the folder's next change.
func (f *folder) watch() <-chan struct{} { return f.watchers.Watch() }

// notify wakes the folder's watchers; it never blocks on them.
func (f *folder) notify() { f.watchers.Notify() }

// sync loads the folder if needed and takes in changes on disk. The
// caller holds f.mu.
func (f *folder) sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.loaded && f.epoch.Load() != f.loadedEpoch {
		f.loaded = false // a write failed: read the index again
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

// fresh says whether the directory, as st shows it at now, need not be
// read again.
func (s dirSeen) fresh(st *unix.Stat_t, now time.Time) bool {
	if !s.valid || s.mtime != st.Mtim || s.dev != uint64(st.Dev) || s.ino != uint64(st.Ino) {
		return false
	}
	return s.sure || s.own && now.Sub(s.listed) < ownTrust
}

func seen(st *unix.Stat_t, now time.Time) dirSeen {
	age := now.Sub(time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
	return dirSeen{valid: true, sure: age > dirWindow(st.Mtim), listed: now, mtime: st.Mtim, dev: uint64(st.Dev), ino: uint64(st.Ino)}
}

// ownChange records that the folder just changed its new/ (inNew) or cur/
// itself, through fd, under f.mu and after a scan: the index holds what
// the directory holds, as far as the last listing (or trusted change)
// knew it, so the directory's new mtime is taken as seen, for ownTrust
// after that listing (fresh). Nothing is trusted that was not before.
func (f *folder) ownChange(inNew bool, fd int) {
	p := &f.seenCur
	if inNew {
		p = &f.seenNew
	}
	if !p.valid {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || p.dev != uint64(st.Dev) || p.ino != uint64(st.Ino) {
		*p = dirSeen{}
		return
	}
	p.mtime, p.sure, p.own = st.Mtim, false, true
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
