package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// Open returns a message's content with CRLF line endings, and its size
// as served. A file renamed or removed behind the index's back is found
// again by a sync; one that is gone is mailbox.ErrNoMessage.
func (s *session) Open(ctx context.Context, name string, uid uint32) (io.ReadSeekCloser, int64, error) {
	if err := s.Check(ctx); err != nil {
		return nil, 0, err
	}
	s.a.mu.RLock()
	defer s.a.mu.RUnlock()
	f, err := s.a.folder(name)
	if err != nil {
		return nil, 0, err
	}
	for attempt := 0; attempt < 2; attempt++ {
		f.mu.Lock()
		if attempt > 0 || !f.loaded {
			if err := f.sync(ctx); err != nil {
				f.mu.Unlock()
				return nil, 0, err
			}
		}
		e := f.find(uid)
		var inNew bool
		var file string
		var size int64
		if e != nil {
			inNew, file, size = e.inNew, e.name, e.size
		}
		f.mu.Unlock()
		if e == nil {
			break
		}
		fh, err := f.openMessage(inNew, file)
		if err == nil {
			return newCRLFReader(fh, size), size, nil
		}
		if !errNotExist(err) {
			return nil, 0, fmt.Errorf("maildir: open message %d in %s: %w", uid, f.name, err)
		}
		// Renamed by another program, or removed: a rescan tells.
		f.mu.Lock()
		f.seenNew, f.seenCur = dirSeen{}, dirSeen{}
		f.mu.Unlock()
	}
	return nil, 0, fmt.Errorf("%w: uid %d in %s", mailbox.ErrNoMessage, uid, name)
}

// Append stores a message in the folder: written to tmp/ (CRLF turned
// into LF) and fsynced, its mtime set to the internal date, renamed into
// cur/ with its flags in the name, cur/ fsynced; only then does it return
// the UID. No lock is held while the message is read from r, so a slow
// upload does not hold up the account's other sessions.
func (s *session) Append(ctx context.Context, name string, r io.Reader, flags []string, date time.Time) (uidValidity, uid uint32, err error) {
	// The folder must exist (TRYCREATE otherwise); no need to wait for
	// its index writes.
	if _, _, err := s.locked(ctx, name, func(*folder) error { return nil }); err != nil {
		return 0, 0, err
	}
	_, dir, _ := folderDir(name)
	fdir := path.Join(s.a.md, dir)
	st := s.a.ix.store
	tmp, err := s.a.openDir(path.Join(fdir, "tmp"))
	if err != nil {
		return 0, 0, fmt.Errorf("maildir: open %s/tmp: %w", fdir, err)
	}
	defer tmp.Close()
	if date.IsZero() {
		date = time.Now()
	}
	unique := st.uniqueName()
	lw, err := st.writeFileTimed(tmp, unique, r, true, date)
	if err != nil {
		return 0, 0, fmt.Errorf("maildir: append to %s: %w", name, err)
	}
	sys, kws := index.ParseFlags(flags)
	final := sizedName(unique, lw.n, lw.served()) + infoSuffix(sys, "")
	e := &entry{flags: sys, kws: kws, date: date.Unix(), size: lw.served(), disk: lw.n, name: final}

	var cur *os.File
	err = s.withFolder(ctx, name, func(f *folder) error {
		var err error
		if cur, err = s.a.openDir(path.Join(f.dir, "cur")); err != nil {
			return err
		}
		if err := unix.Renameat(int(tmp.Fd()), unique, int(cur.Fd()), final); err != nil {
			return err
		}
		f.ownChange(false, int(cur.Fd()))
		if err := f.commit(nil, []*entry{e}, nil, f.undoAdded([]string{final})); err != nil {
			return err
		}
		uidValidity = f.uidValidity
		return nil
	})
	if cur != nil {
		defer cur.Close()
	}
	if err != nil {
		unix.Unlinkat(int(tmp.Fd()), unique, 0)
		return 0, 0, fmt.Errorf("maildir: append to %s: %w", name, err)
	}
	if err := st.syncDir(path.Join(fdir, "cur"), cur); err != nil {
		return 0, 0, fmt.Errorf("maildir: sync %s/cur: %w", fdir, err)
	}
	return uidValidity, e.uid, nil
}

// dirs holds a folder's new/ and cur/ open for a batch of renames.
type dirs struct {
	a        *account
	st       *Store
	dir      string
	new, cur *os.File
	dirtyNew bool
	dirtyCur bool
}

func (d *dirs) get(inNew bool) (*os.File, error) {
	p := &d.cur
	sub := "cur"
	if inNew {
		p, sub = &d.new, "new"
	}
	if *p == nil {
		f, err := d.a.openDir(path.Join(d.dir, sub))
		if err != nil {
			return nil, fmt.Errorf("maildir: open %s/%s: %w", d.dir, sub, err)
		}
		*p = f
	}
	return *p, nil
}

func (d *dirs) fd(inNew bool) (int, error) {
	f, err := d.get(inNew)
	if err != nil {
		return -1, err
	}
	if inNew {
		d.dirtyNew = true
	} else {
		d.dirtyCur = true
	}
	return int(f.Fd()), nil
}

// owned tells f that its directories d changed were changed by f itself
// (folder.ownChange); the caller holds f.mu.
func (d *dirs) owned(f *folder) {
	if d.dirtyNew {
		f.ownChange(true, int(d.new.Fd()))
	}
	if d.dirtyCur {
		f.ownChange(false, int(d.cur.Fd()))
	}
}

// sync fsyncs the directories changed.
func (d *dirs) sync() error {
	if d.dirtyNew {
		if err := d.st.syncDir(path.Join(d.dir, "new"), d.new); err != nil {
			return fmt.Errorf("maildir: sync %s/new: %w", d.dir, err)
		}
	}
	if d.dirtyCur {
		if err := d.st.syncDir(path.Join(d.dir, "cur"), d.cur); err != nil {
			return fmt.Errorf("maildir: sync %s/cur: %w", d.dir, err)
		}
	}
	return nil
}

func (d *dirs) close() {
	if d.new != nil {
		d.new.Close()
	}
	if d.cur != nil {
		d.cur.Close()
	}
}

// SetFlags changes flags: Maildir flags by renaming each file (into cur/),
// keywords in the index only. Every changed message gets the folder's next
// modseq.
func (s *session) SetFlags(ctx context.Context, name string, uids []uint32, op mailbox.FlagOp, flags []string) (*mailbox.Snapshot, error) {
	var snap *mailbox.Snapshot
	d := &dirs{a: s.a, st: s.a.ix.store}
	defer d.close()
	err := s.changeFolder(ctx, name, d, func(f *folder) error {
		change := index.NewChange(op, flags)
		var updates []entryUpdate
		var err error
		for _, uid := range index.Dedupe(uids) {
			e := f.find(uid)
			if e == nil {
				continue
			}
			nsys, nkw, changed := change.To(e.flags, e.kws)
			if !changed {
				continue
			}
			u := *e
			u.flags, u.kws = nsys, nkw
			if nsys != e.flags {
				fn := parseFileName(e.name)
				u.name, u.inNew = fn.key+infoSuffix(nsys, fn.other), false
				var from, to int
				if from, err = d.fd(e.inNew); err != nil {
					break
				}
				if to, err = d.fd(false); err != nil {
					break
				}
				if err = unix.Renameat(from, e.name, to, u.name); err != nil {
					if errors.Is(err, unix.ENOENT) {
						// Renamed or removed behind our back; the
						// next sync tells which.
						f.seenNew, f.seenCur = dirSeen{}, dirSeen{}
						err = nil
						continue
					}
					err = fmt.Errorf("maildir: rename %s/%s/%s: %w", f.dir, e.subdir(), e.name, err)
					break
				}
			}
			updates = append(updates, entryUpdate{e, u})
		}
		d.owned(f)
		err = f.finish(err, updates, nil)
		snap = f.snap
		return err
	})
	return snap, err
}

// Expunge unlinks the messages' files, fsyncs their directories and drops
// them from the index.
func (s *session) Expunge(ctx context.Context, name string, uids []uint32) (*mailbox.Snapshot, error) {
	var snap *mailbox.Snapshot
	d := &dirs{a: s.a, st: s.a.ix.store}
	defer d.close()
	err := s.changeFolder(ctx, name, d, func(f *folder) error {
		removed, err := f.unlink(d, uids)
		d.owned(f)
		err = f.finish(err, nil, removed)
		snap = f.snap
		return err
	})
	return snap, err
}

// changeFolder runs fn as withFolder does, for a change to the files in
// d (whose dir it sets): the directories changed are fsynced after the
// folder's lock is released, while the index write is on its way.
func (s *session) changeFolder(ctx context.Context, name string, d *dirs, fn func(f *folder) error) error {
	w, _, err := s.locked(ctx, name, func(f *folder) error {
		d.dir = f.dir
		return fn(f)
	})
	if d.dir == "" {
		return err // the folder was not there
	}
	if serr := d.sync(); err == nil {
		err = serr
	}
	if werr := w.wait(); err == nil {
		err = werr
	}
	return err
}

// finish ends a change to the folder's files that may have stopped
// half-way with err: what was done (files renamed for updates, removed)
// is recorded in the index even so. It returns the first error of the
// two steps; the caller fsyncs the directories changed.
func (f *folder) finish(err error, updates []entryUpdate, removed []*entry) error {
	if len(updates) > 0 || len(removed) > 0 {
		if cerr := f.commit(updates, nil, removed, nil); err == nil {
			err = cerr
		}
	}
	return err
}

// undoAdded returns what takes back files just added to the folder's cur/
// when their index write fails (committer.go).
func (f *folder) undoAdded(names []string) func() {
	a, dir := f.a, path.Join(f.dir, "cur")
	return func() {
		cur, err := a.openDir(dir)
		if err != nil {
			return
		}
		defer cur.Close()
		for _, n := range names {
			unix.Unlinkat(int(cur.Fd()), n, 0)
		}
	}
}

// unlink removes the files of uids (a file already gone counts as
// removed) and returns their entries.
func (f *folder) unlink(d *dirs, uids []uint32) ([]*entry, error) {
	var removed []*entry
	for _, uid := range index.Dedupe(uids) {
		e := f.find(uid)
		if e == nil {
			continue
		}
		fd, err := d.fd(e.inNew)
		if err != nil {
			return removed, err
		}
		if err := unix.Unlinkat(fd, e.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return removed, fmt.Errorf("maildir: remove %s/%s/%s: %w", f.dir, e.subdir(), e.name, err)
		}
		removed = append(removed, e)
	}
	return removed, nil
}

// twoFolders runs fn with the source and destination folders synced and
// locked (in name order, so that two sessions copying in opposite
// directions cannot deadlock), then waits for their index writes, as
// withFolder does.
func (s *session) twoFolders(ctx context.Context, src, dst string, fn func(sf, df *folder) error) error {
	ws, err := s.lockedTwo(ctx, src, dst, fn)
	for _, w := range ws {
		if werr := w.wait(); err == nil {
			err = werr
		}
	}
	return err
}

// lockedTwo runs fn for twoFolders and returns the folders' last index
// writes.
func (s *session) lockedTwo(ctx context.Context, src, dst string, fn func(sf, df *folder) error) ([]*indexWrite, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	s.a.mu.RLock()
	defer s.a.mu.RUnlock()
	sf, err := s.a.folder(src)
	if err != nil {
		return nil, err
	}
	df, err := s.a.folder(dst)
	if err != nil {
		return nil, err
	}
	defer index.LockTwo(&sf.mu, sf.name, &df.mu, df.name)()
	if err := sf.sync(ctx); err != nil {
		return nil, err
	}
	if df != sf {
		if err := df.sync(ctx); err != nil {
			return nil, err
		}
	}
	err = fn(sf, df)
	return []*indexWrite{sf.last, df.last}, err
}

// Copy copies messages to dest, keeping flags, keywords and internal
// dates. A copy is a hard link under a new unique name (the content never
// changes, only names do), or a copied file where linking fails.
func (s *session) Copy(ctx context.Context, name string, uids []uint32, dest string) (uidValidity uint32, src, dst []uint32, err error) {
	err = s.twoFolders(ctx, name, dest, func(sf, df *folder) error {
		uidValidity = df.uidValidity
		var err error
		src, dst, err = s.copyLocked(sf, df, uids)
		return err
	})
	return uidValidity, src, dst, err
}

func (s *session) copyLocked(sf, df *folder, uids []uint32) (src, dst []uint32, err error) {
	st := s.a.ix.store
	sd := &dirs{a: s.a, st: st, dir: sf.dir}
	defer sd.close()
	dd := &dirs{a: s.a, st: st, dir: df.dir}
	defer dd.close()
	var added []*entry
	for _, uid := range index.Dedupe(uids) {
		e := sf.find(uid)
		if e == nil {
			continue
		}
		var from, to int
		if from, err = sd.fd(e.inNew); err != nil {
			break
		}
		sd.dirtyNew, sd.dirtyCur = false, false // only read
		if to, err = dd.fd(false); err != nil {
			break
		}
		unique := st.uniqueName()
		ne := &entry{flags: e.flags, kws: e.kws, date: e.date, size: e.size, disk: e.disk}
		ne.name = sizedName(unique, e.disk, e.size) + infoSuffix(e.flags, "")
		lerr := unix.Linkat(from, e.name, to, ne.name, 0)
		if errors.Is(lerr, unix.ENOENT) {
			sf.seenNew, sf.seenCur = dirSeen{}, dirSeen{}
			continue
		}
		if lerr != nil {
			if err = s.copyFile(sf, df, e, ne, unique); err != nil {
				if errNotExist(err) {
					err = nil
					continue
				}
				break
			}
		}
		added = append(added, ne)
		src = append(src, uid)
	}
	dd.owned(df)
	if len(added) > 0 {
		names := make([]string, len(added))
		for i, e := range added {
			names[i] = e.name
		}
		if cerr := df.commit(nil, added, nil, df.undoAdded(names)); cerr != nil {
			return nil, nil, cerr
		}
	}
	if serr := dd.sync(); err == nil {
		err = serr
	}
	for _, e := range added {
		dst = append(dst, e.uid)
	}
	return src, dst, err
}

// copyFile copies e's file from sf into df's cur/ as ne (through tmp/,
// fsynced), for when a hard link is not possible.
func (s *session) copyFile(sf, df *folder, e, ne *entry, unique string) error {
	st := s.a.ix.store
	in, err := s.a.openIn(path.Join(sf.dir, e.subdir()), e.name)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := s.a.openDir(path.Join(df.dir, "tmp"))
	if err != nil {
		return err
	}
	defer tmp.Close()
	cur, err := s.a.openDir(path.Join(df.dir, "cur"))
	if err != nil {
		return err
	}
	defer cur.Close()
	date := e.date
	if date == noDate {
		var fi unix.Stat_t
		if err := unix.Fstat(int(in.Fd()), &fi); err != nil {
			return fmt.Errorf("maildir: copy %s: %w", e.name, err)
		}
		date = fi.Mtim.Sec
	}
	lw, err := st.writeFileTimed(tmp, unique, in, false, time.Unix(date, 0))
	if err != nil {
		return fmt.Errorf("maildir: copy %s: %w", e.name, err)
	}
	ne.disk, ne.size = lw.n, lw.served()
	ne.name = sizedName(unique, lw.n, lw.served()) + infoSuffix(e.flags, "")
	if err := unix.Renameat(int(tmp.Fd()), unique, int(cur.Fd()), ne.name); err != nil {
		unix.Unlinkat(int(tmp.Fd()), unique, 0)
		return fmt.Errorf("maildir: copy %s: %w", e.name, err)
	}
	return nil
}

// Move moves messages to dest by renaming their files (keeping their
// unique names unless dest has one already), then drops them from the
// source. Within one folder it is a copy and an expunge.
func (s *session) Move(ctx context.Context, name string, uids []uint32, dest string) (uidValidity uint32, src, dst []uint32, err error) {
	err = s.twoFolders(ctx, name, dest, func(sf, df *folder) error {
		uidValidity = df.uidValidity
		var err error
		if sf == df {
			if src, dst, err = s.copyLocked(sf, df, uids); err != nil {
				return err
			}
			d := &dirs{a: s.a, st: s.a.ix.store, dir: sf.dir}
			defer d.close()
			removed, err := sf.unlink(d, src)
			d.owned(sf)
			err = sf.finish(err, nil, removed)
			if serr := d.sync(); err == nil {
				err = serr
			}
			return err
		}
		src, dst, err = s.moveLocked(sf, df, uids)
		return err
	})
	return uidValidity, src, dst, err
}

func (s *session) moveLocked(sf, df *folder, uids []uint32) (src, dst []uint32, err error) {
	st := s.a.ix.store
	sd := &dirs{a: s.a, st: st, dir: sf.dir}
	defer sd.close()
	dd := &dirs{a: s.a, st: st, dir: df.dir}
	defer dd.close()
	var added, removed []*entry
	for _, uid := range index.Dedupe(uids) {
		e := sf.find(uid)
		if e == nil {
			continue
		}
		var from, to int
		if from, err = sd.fd(e.inNew); err != nil {
			break
		}
		if to, err = dd.fd(false); err != nil {
			break
		}
		fn := parseFileName(e.name)
		key := fn.key
		// The name taken already (or the map unbuildable): a new one.
		if keys, kerr := df.keys(); kerr != nil || keys[key] != nil {
			key = sizedName(st.uniqueName(), e.disk, e.size)
		}
		ne := &entry{flags: e.flags, kws: e.kws, date: e.date, size: e.size, disk: e.disk, name: key + infoSuffix(e.flags, "")}
		if rerr := unix.Renameat(from, e.name, to, ne.name); rerr != nil {
			if errors.Is(rerr, unix.ENOENT) {
				sf.seenNew, sf.seenCur = dirSeen{}, dirSeen{}
				continue
			}
			err = fmt.Errorf("maildir: move %s/%s/%s to %s: %w", sf.dir, e.subdir(), e.name, df.name, rerr)
			break
		}
		added = append(added, ne)
		removed = append(removed, e)
		src = append(src, uid)
	}
	sd.owned(sf)
	dd.owned(df)
	// The destination first: a crash in between leaves the message in
	// both indexes, and the source's next sync drops it there.
	if len(added) > 0 {
		if cerr := df.commit(nil, added, nil, nil); cerr != nil {
			return nil, nil, cerr
		}
		if cerr := sf.commit(nil, nil, removed, nil); cerr != nil {
			return nil, nil, cerr
		}
	}
	if serr := dd.sync(); err == nil {
		err = serr
	}
	if serr := sd.sync(); err == nil {
		err = serr
	}
	for _, e := range added {
		dst = append(dst, e.uid)
	}
	return src, dst, err
}
