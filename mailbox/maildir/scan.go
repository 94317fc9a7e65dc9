package maildir

// A scan: list new/ and cur/, compare with the index, and learn what is
// needed of the files it does not know.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"mailroom/mailbox"
)

// pendingFile is a file a scan found that the index does not know.
type pendingFile struct {
	name  string
	inNew bool
	fn    fileName
	seq   int // order found
}

// listing is what one scan read of new/ and cur/.
type listing struct {
	newNames, curNames []string // nil for a directory not read
	readNew, readCur   bool
	stNew, stCur       unix.Stat_t // the directories as they were read
	now                time.Time   // when
	// unstable: a directory kept changing while it was read, so the
	// listing may have missed a file being renamed; nothing is removed
	// on its word.
	unstable bool
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
	l, err := f.list(newD, curD)
	if err != nil || l == nil {
		return err
	}
	// The entries, before keys can take a failure to read them for a
	// damaged index.
	if err := f.need(); err != nil {
		return err
	}
	if _, bad := f.keys(); bad != nil {
		// Found only now: the index was loaded without the map. Every
		// file is indexed afresh from this listing.
		if err := f.startAfresh(bad); err != nil {
			return err
		}
	}
	f.gen++
	updates, adds, removed := f.diff(l)
	var added []*entry
	if len(adds) > 0 {
		added = f.statNew(adds, newD, curD)
	}
	f.takeImport(added)
	f.noteSeen(l)
	if len(updates) == 0 && len(removed) == 0 && len(added) == 0 {
		return nil
	}
	return f.commit(updates, added, removed, nil)
}

// list reads the directories that may have changed since the last scan,
// new/ before cur/, again while either changes under it (at most three
// times). It returns nil if neither needs reading.
func (f *folder) list(newD, curD *os.File) (*listing, error) {
	l := &listing{}
	for attempt := 0; ; attempt++ {
		l.now = time.Now()
		if err := unix.Fstat(int(newD.Fd()), &l.stNew); err != nil {
			return nil, fmt.Errorf("maildir: stat %s/new: %w", f.dir, err)
		}
		if err := unix.Fstat(int(curD.Fd()), &l.stCur); err != nil {
			return nil, fmt.Errorf("maildir: stat %s/cur: %w", f.dir, err)
		}
		dirty := f.newDirty.Swap(false)
		l.readNew = attempt > 0 || dirty || !f.seenNew.fresh(&l.stNew, l.now)
		// cur/ is read again only if it is not what the last scan saw:
		// a file moved into it while new/ was read moves its mtime. A
		// delivery into new/ during the read (mail arriving all the
		// time) must not make every watching session read a large cur/.
		// A delivery (into cur/, with flags) may hide behind the mtime
		// of the folder's own change, though: then it is read.
		l.readCur = !f.seenCur.fresh(&l.stCur, l.now) || dirty && f.seenCur.own
		if !l.readNew && !l.readCur {
			return nil, nil
		}
		// new/ before cur/: a file moving from new/ to cur/ meanwhile is
		// then seen at least once. The handles are kept between scans:
		// each is read from its start.
		var err error
		if l.readNew {
			if l.newNames, err = readFrom(newD); err != nil {
				return nil, fmt.Errorf("maildir: read %s/new: %w", f.dir, err)
			}
			f.a.ix.listed("new")
		}
		if l.readCur {
			if l.curNames, err = readFrom(curD); err != nil {
				return nil, fmt.Errorf("maildir: read %s/cur: %w", f.dir, err)
			}
			f.a.ix.listed("cur")
		} else {
			l.curNames = nil
		}
		// A file moving from new/ to cur/ after the fstats above changes
		// cur/'s mtime (or cur/ was not sure and is read anyway), so a
		// directory that changed while it was read is read again.
		var after1, after2 unix.Stat_t
		unix.Fstat(int(newD.Fd()), &after1)
		unix.Fstat(int(curD.Fd()), &after2)
		if after1.Mtim == l.stNew.Mtim && after2.Mtim == l.stCur.Mtim {
			return l, nil
		}
		if attempt >= 2 {
			// Still changing: take in what was added, but remove
			// nothing on a listing that may have missed a rename.
			l.unstable = true
			return l, nil
		}
		// Changed while we read: read both again.
	}
}

// readFrom lists a kept directory handle from its start.
func readFrom(d *os.File) ([]string, error) {
	if _, err := d.Seek(0, 0); err != nil {
		return nil, err
	}
	return readNames(d)
}

// diff compares a listing with the index (scan generation f.gen): entries
// whose file was renamed (their new name and flags), files the index does
// not know, and entries whose file is gone from a directory read.
func (f *folder) diff(l *listing) (updates []entryUpdate, adds []pendingFile, removed []*entry) {
	gen := f.gen
	if n := len(l.newNames) + len(l.curNames) - len(f.ents); n > 0 {
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
	take(l.newNames, true)
	take(l.curNames, false)
	if !l.unstable {
		for _, e := range f.ents {
			if e.mark != gen && (e.inNew && l.readNew || !e.inNew && l.readCur) {
				removed = append(removed, e)
			}
		}
	}
	return updates, adds, removed
}

// takeImport gives the files of the first scan after a rebuild what
// Dovecot had for them (load.go): their UIDs, if the index is empty, and
// their keywords. Later, files delivered with keywords (StageFolder, as
// Sieve's fileinto :flags) have them the same way: letters in the name,
// spelt out in dovecot-keywords.
func (f *folder) takeImport(added []*entry) {
	if f.imp == nil {
		var kw *dovecotImport
		for _, e := range added {
			if other := parseFileName(e.name).other; other != "" {
				if kw == nil {
					imp := f.a.readDovecot(f.dir)
					kw = &imp
				}
				e.kws = kw.keywordsOf(other)
			}
		}
		return
	}
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

// noteSeen records what the scan saw of the directories it read, so that
// the next scan can skip them while they stay as they were.
func (f *folder) noteSeen(l *listing) {
	switch {
	case l.unstable:
		f.seenNew, f.seenCur = dirSeen{}, dirSeen{}
	default:
		if l.readNew {
			f.seenNew = seen(&l.stNew, l.now)
		}
		if l.readCur {
			f.seenCur = seen(&l.stCur, l.now)
		}
	}
}

// statNew learns what the index keeps of files it did not know. A name
// with both of Dovecot's sizes (S= on disk, W= as served) is believed, as
// Dovecot does, and its file not even stat'ed: the internal date (the
// mtime) is read when asked for (dates.go), so that the first SELECT of
// a large folder is a directory listing. Other files get the date from a
// stat and the served size from W= or, absent, from reading the file;
// files gone or not regular are skipped.
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
	if p.fn.sizeS >= 0 && p.fn.sizeW >= 0 {
		*e = entry{inNew: p.inNew, flags: p.fn.flags, date: noDate, disk: p.fn.sizeS, name: p.name, size: p.fn.sizeW}
		return true
	}
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
