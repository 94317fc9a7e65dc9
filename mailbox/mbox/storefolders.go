package mbox

// The IMAP side of the store: mailbox.Folders over the mbox files of one
// account.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// Open returns one session's view of the account whose mail home is home.
// The first Open of an account the index does not know makes INBOX and
// the special-use folders where missing, and subscribes them with the
// folders already there.
func (s *Store) Open(ctx context.Context, home string) (mailbox.Folders, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.opts.DB == nil {
		return nil, errors.New("mbox: the store has no index database")
	}
	if err := checkHome(home); err != nil {
		return nil, err
	}
	if err := s.checkFormat(home); err != nil {
		return nil, err
	}
	a := s.accts.Get(home, func() *account { return &account{s: s, home: home} })
	if err := a.init(); err != nil {
		return nil, err
	}
	return &session{a: a}, nil
}

// init makes the account's default folders the first time the index
// sees it.
func (a *account) init() error {
	a.initMu.Lock()
	defer a.initMu.Unlock()
	if a.inited {
		return nil
	}
	db := a.s.opts.DB
	var known bool
	db.View(func(tx *bolt.Tx) error {
		known = tree.Home(tx, a.home) != nil
		return nil
	})
	if !known {
		names := []string{inbox}
		for _, d := range index.DefaultFolders() {
			names = append(names, d.Name)
		}
		for _, name := range names {
			if err := a.s.makeFile(a.s.place(a.home, name)); err != nil && !errors.Is(err, mailbox.ErrFolderExists) {
				return err
			}
		}
		existing, err := a.listNames()
		if err != nil {
			return err
		}
		subs := []string{inbox}
		for _, f := range existing {
			subs = append(subs, f.Name)
		}
		if err := db.Update(func(tx *bolt.Tx) error { return tree.InitHome(tx, a.home, subs) }); err != nil {
			return fmt.Errorf("mbox: create index of %s: %w", a.home, err)
		}
		a.s.log.Info("new account index", "home", a.home, "format", "mbox", "folders", len(existing)+1)
	}
	a.inited = true
	return nil
}

// makeFile makes an empty mbox at p (and the directories on its way),
// durably; ErrFolderExists if there is one.
func (s *Store) makeFile(p place) error {
	if !p.abs {
		if err := s.mkdirs(p.dir); err != nil {
			return err
		}
	}
	dir, err := s.openDir(p)
	if err != nil {
		return fmt.Errorf("mbox: open %s: %w", p.dir, err)
	}
	defer dir.Close()
	f, err := dir.OpenFile(p.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, p)
	}
	if err != nil {
		return fmt.Errorf("mbox: create %s: %w", p, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncRoot(dir)
	}
	if err != nil {
		return fmt.Errorf("mbox: create %s: %w", p, err)
	}
	return nil
}

// listNames returns the folders below <home>/mail (not INBOX), sorted:
// files, and directories as \Noselect folders.
func (a *account) listNames() ([]mailbox.Folder, error) {
	var out []mailbox.Folder
	base := path.Join(a.home, "mail")
	var walk func(rel string, depth int) error
	walk = func(rel string, depth int) error {
		d, err := a.s.root.Open(path.Join(base, rel))
		if errors.Is(err, fs.ErrNotExist) && rel == "" {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mbox: list %s: %w", path.Join(base, rel), err)
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return fmt.Errorf("mbox: list %s: %w", path.Join(base, rel), err)
		}
		for _, e := range ents {
			r := path.Join(rel, e.Name())
			name, ok := fileFolder(r)
			if !ok {
				continue
			}
			switch {
			case e.Type().IsRegular():
				out = append(out, mailbox.Folder{Name: name})
			case e.IsDir() && depth < 32:
				out = append(out, mailbox.Folder{Name: name, NoSelect: true})
				if err := walk(r, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk("", 0); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// session is one IMAP session's handle on an account.
type session struct {
	index.Session // Close
	a             *account
}

var _ mailbox.Folders = (*session)(nil)

// withFolder runs fn on the named folder, synced with its file, holding
// the account shared and the folder exclusively.
func (s *session) withFolder(ctx context.Context, name string, fn func(f *folder) error) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	s.a.mu.RLock()
	defer s.a.mu.RUnlock()
	f, err := s.a.folder(name)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.sync(ctx, nil); err != nil {
		if errors.Is(err, mailbox.ErrNoFolder) {
			s.a.folders.DropIf(f.name, f, func(f *folder) bool { return !f.loaded })
		}
		return err
	}
	return fn(f)
}

// Sync takes in the file's changes and returns the folder's snapshot.
func (s *session) Sync(ctx context.Context, name string) (*mailbox.Snapshot, error) {
	var snap *mailbox.Snapshot
	err := s.withFolder(ctx, name, func(f *folder) error {
		snap = f.snap
		return nil
	})
	return snap, err
}

// Watch returns a channel closed at the folder's next change made in
// this process.
func (s *session) Watch(name string) <-chan struct{} {
	f, err := s.a.folder(name)
	if err != nil {
		return nil
	}
	return f.watch()
}

// List returns INBOX and the folders below <home>/mail.
func (s *session) List(ctx context.Context) ([]mailbox.Folder, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	s.a.mu.RLock()
	names, err := s.a.listNames()
	s.a.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	out := append([]mailbox.Folder{{Name: inbox}}, names...)
	err = s.a.s.opts.DB.View(func(tx *bolt.Tx) error {
		tree.Describe(tx, s.a.home, out)
		return nil
	})
	return out, err
}

// Subscriptions returns every subscribed name, whether its folder exists
// or not.
func (s *session) Subscriptions(ctx context.Context) ([]string, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	var names []string
	err := s.a.s.opts.DB.View(func(tx *bolt.Tx) error {
		names = tree.Subscriptions(tx, s.a.home)
		return nil
	})
	return names, err
}

// SetSubscribed subscribes or unsubscribes a name.
func (s *session) SetSubscribed(ctx context.Context, name string, on bool) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	canon, _, err := canonical(name)
	if err != nil {
		return err
	}
	return s.a.s.opts.DB.Update(func(tx *bolt.Tx) error { return tree.SetSubscribed(tx, s.a.home, canon, on) })
}

// dropIndex deletes the index of a folder (and of those below it).
func (a *account) dropIndex(tx *bolt.Tx, canon string) error {
	hb, err := tree.MakeHome(tx, a.home)
	if err != nil {
		return err
	}
	fb := index.Folders(hb)
	var names [][]byte
	fb.ForEach(func(k, _ []byte) error {
		if n := string(k); n == canon || strings.HasPrefix(n, canon+"/") {
			names = append(names, append([]byte(nil), k...))
		}
		return nil
	})
	for _, n := range names {
		if err := fb.DeleteBucket(n); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
	}
	return nil
}

// Create makes an empty folder file and the directories above it. A
// folder below one that holds messages is ErrNotAllowed (see the layout).
func (s *session) Create(ctx context.Context, name string) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	canon, _, err := canonical(name)
	if err != nil {
		return err
	}
	if canon == inbox {
		return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, canon)
	}
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	p := s.a.s.place(s.a.home, canon)
	if _, err := s.a.s.root.Lstat(p.String()); err == nil {
		return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, canon)
	}
	if err := s.emptyParents(ctx, canon); err != nil {
		return err
	}
	if err := s.a.s.makeFile(p); err != nil {
		return err
	}
	s.a.forget(canon)
	return s.a.s.opts.DB.Update(func(tx *bolt.Tx) error { return s.a.dropIndex(tx, canon) })
}

// emptyParents turns the folders above canon that are empty files into
// directories, so that CREATE of a child of a folder just made (a client
// building a tree) works; a parent that holds messages stays, and the
// CREATE is refused. The caller holds a.mu exclusively.
func (s *session) emptyParents(ctx context.Context, canon string) error {
	levels := strings.Split(canon, "/")
	for i := 1; i < len(levels); i++ {
		parent := strings.Join(levels[:i], "/")
		if parent == inbox {
			continue
		}
		p := s.a.s.place(s.a.home, parent)
		fi, err := s.a.s.root.Lstat(p.String())
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			continue
		}
		_, unlock, err := s.a.s.lock(ctx, p)
		if err != nil {
			return err
		}
		if fi, err = s.a.s.root.Lstat(p.String()); err == nil && fi.Size() == 0 {
			err = s.a.s.root.Remove(p.String())
		}
		unlock()
		if err != nil {
			return fmt.Errorf("mbox: make %s a folder of folders: %w", parent, err)
		}
		s.a.forget(parent)
		if err := s.a.s.opts.DB.Update(func(tx *bolt.Tx) error { return s.a.dropIndex(tx, parent) }); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a folder's file and index; a directory (a folder of
// folders) only when it is empty.
func (s *session) Delete(ctx context.Context, name string) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	canon, _, err := canonical(name)
	if err != nil {
		return err
	}
	if canon == inbox {
		return fmt.Errorf("%w: cannot delete INBOX", mailbox.ErrNotAllowed)
	}
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	p := s.a.s.place(s.a.home, canon)
	fi, err := s.a.s.root.Lstat(p.String())
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", mailbox.ErrNoFolder, canon)
	}
	if err != nil {
		return fmt.Errorf("mbox: delete %s: %w", canon, err)
	}
	if err := s.a.s.root.Remove(p.String()); err != nil {
		if fi.IsDir() {
			return fmt.Errorf("%w: %s has folders below it", mailbox.ErrNotAllowed, canon)
		}
		return fmt.Errorf("mbox: delete %s: %w", canon, err)
	}
	if err := s.a.s.syncDir(p.dir); err != nil {
		return err
	}
	s.a.forget(canon)
	return s.a.s.opts.DB.Update(func(tx *bolt.Tx) error {
		if err := s.a.dropIndex(tx, canon); err != nil {
			return err
		}
		return tree.ClearSpecial(tx, s.a.home, canon)
	})
}

// Rename renames a folder's file (or directory, with the folders below
// it), with their indexes, subscriptions and special use. Renaming INBOX
// moves its messages to a new folder.
func (s *session) Rename(ctx context.Context, oldName, newName string) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	oldCanon, _, err := canonical(oldName)
	if err != nil {
		return err
	}
	newCanon, _, err := canonical(newName)
	if err != nil {
		return err
	}
	switch {
	case newCanon == inbox:
		return fmt.Errorf("%w: INBOX", mailbox.ErrFolderExists)
	case newCanon == oldCanon:
		return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, newCanon)
	case strings.HasPrefix(newCanon, oldCanon+"/"):
		return fmt.Errorf("%w: rename %s into itself", mailbox.ErrNotAllowed, oldCanon)
	}
	if oldCanon == inbox {
		return s.renameInbox(ctx, newCanon)
	}
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	root := s.a.s.root
	from, to := s.a.s.place(s.a.home, oldCanon), s.a.s.place(s.a.home, newCanon)
	fi, err := root.Lstat(from.String())
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", mailbox.ErrNoFolder, oldCanon)
	}
	if err != nil {
		return fmt.Errorf("mbox: rename %s: %w", oldCanon, err)
	}
	if _, err := root.Lstat(to.String()); err == nil {
		return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, newCanon)
	}
	if err := s.a.s.mkdirs(to.dir); err != nil {
		return err
	}
	if fi.IsDir() {
		err = root.Rename(from.String(), to.String())
	} else {
		// Writers of the old file (deliveries) hold its locks: wait
		// for them; those that come later append to the new name's
		// file, since they look for the file after taking the locks.
		var unlock func()
		if _, unlock, err = s.a.s.lock(ctx, from); err == nil {
			err = root.Rename(from.String(), to.String())
			unlock()
		}
	}
	if err != nil {
		return fmt.Errorf("mbox: rename %s to %s: %w", oldCanon, newCanon, err)
	}
	for _, d := range []string{from.dir, to.dir} {
		if err := s.a.s.syncDir(d); err != nil {
			return err
		}
	}
	s.a.forget(oldCanon)
	s.a.forget(newCanon)
	return s.a.s.opts.DB.Update(func(tx *bolt.Tx) error {
		hb, err := tree.MakeHome(tx, s.a.home)
		if err != nil {
			return err
		}
		for _, n := range index.NamesUnder(hb, oldCanon) {
			if err := index.MoveFolder(hb, n, newCanon+strings.TrimPrefix(n, oldCanon)); err != nil {
				return err
			}
		}
		return nil
	})
}

// renameInbox moves INBOX's messages into a new folder newCanon.
func (s *session) renameInbox(ctx context.Context, newCanon string) error {
	if err := s.Create(ctx, newCanon); err != nil {
		return err
	}
	snap, err := s.Sync(ctx, inbox)
	if err != nil {
		return err
	}
	uids := make([]uint32, len(snap.Messages))
	for i, m := range snap.Messages {
		uids[i] = m.UID
	}
	_, _, _, err = s.Move(ctx, inbox, uids, newCanon)
	return err
}

// Open returns a message as IMAP serves it.
func (s *session) Open(ctx context.Context, name string, uid uint32) (io.ReadSeekCloser, int64, error) {
	if r, size, ok := s.openUnchanged(ctx, name, uid); ok {
		return r, size, nil
	}
	for attempt := 0; ; attempt++ {
		var file *os.File
		var span *Span
		var size int64
		err := s.withFolder(ctx, name, func(f *folder) error {
			if err := f.need(); err != nil {
				return err
			}
			e := f.find(uid)
			if e == nil {
				return fmt.Errorf("%w: uid %d in %s", mailbox.ErrNoMessage, uid, name)
			}
			var err error
			if file, err = f.openMessage(e); err != nil {
				if errors.Is(err, errMoved) || errors.Is(err, io.EOF) {
					f.dirty.Store(true)
				}
				return err
			}
			span, size = e.span(), e.served()
			return nil
		})
		if err == nil {
			return &messageReader{f: file, s: span, size: size}, size, nil
		}
		if attempt > 0 || !(errors.Is(err, errMoved) || errors.Is(err, io.EOF)) {
			return nil, 0, err
		}
	}
}

// openUnchanged is Open's common case, without a sync: the folder is
// loaded and the folder's shared descriptor (acquire) shows the size,
// mtime and inode the index last saw, so that the message is where the
// index says. Anything else (false) is left to the full path.
func (s *session) openUnchanged(ctx context.Context, name string, uid uint32) (io.ReadSeekCloser, int64, bool) {
	if s.Check(ctx) != nil {
		return nil, 0, false
	}
	s.a.mu.RLock()
	defer s.a.mu.RUnlock()
	f, err := s.a.folder(name)
	if err != nil {
		return nil, 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.find(uid)
	if !f.loaded || f.dirty.Load() || e == nil {
		return nil, 0, false
	}
	file, release, ok := f.acquire()
	if !ok {
		return nil, 0, false
	}
	var b [5]byte
	if _, err := file.ReadAt(b[:], e.off); err != nil || string(b[:]) != fromPrefix {
		release()
		return nil, 0, false
	}
	return &messageReader{f: file, s: e.span(), size: e.served(), release: release}, e.served(), true
}

// pending is a message on its way into a folder.
type pending struct {
	out   outMessage
	flags index.Flags
	kws   []string
	date  int64
}

// appendTo appends messages to f (held by its caller, f.mu too) with one
// fsync, and indexes them with the flags and dates given.
func (f *folder) appendTo(ctx context.Context, msgs []pending) ([]uint32, error) {
	h, unlock, err := f.a.s.lock(ctx, f.p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Others' appends first, so that the file's end is where ours start.
	if err := f.sync(ctx, h); err != nil {
		return nil, err
	}
	if err := f.need(); err != nil {
		return nil, err
	}
	outs := make([]outMessage, len(msgs))
	for i, m := range msgs {
		outs[i] = m.out
		outs[i].extra = flagFields(m.flags, m.kws)
	}
	_, at, err := h.appendMany(ctx, outs)
	if err != nil {
		return nil, newError(f.p.String(), "write", err)
	}
	fi, err := h.f.Stat()
	if err != nil {
		return nil, err
	}
	st := stateOf(fi)
	st.tail, st.junk = readTail(h.f, st.size), f.file.junk
	var spans []*Span
	if _, err := Scan(h.f, at[0], st.size, func(s *Span) error {
		c := *s
		spans = append(spans, &c)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("mbox: read back %s: %w", f.p, err)
	}
	if len(spans) != len(msgs) {
		// Cannot happen with what writeMessage writes; a full scan sorts
		// it out.
		f.dirty.Store(true)
		return nil, fmt.Errorf("mbox: %s: %d messages written, %d read back", f.p, len(msgs), len(spans))
	}
	f.modSeq++
	uids := make([]uint32, len(msgs))
	var put []*entry
	for i, sp := range spans {
		e := &entry{uid: f.uidNext, modSeq: f.modSeq, date: msgs[i].date, flags: msgs[i].flags, kws: msgs[i].kws}
		f.uidNext++
		e.setSpan(sp)
		f.ents = append(f.ents, e)
		put = append(put, e)
		uids[i] = e.uid
	}
	return uids, f.apply(st, put, nil)
}

// Append stores a message (spooled first, without locks, so that a slow
// upload holds nobody up) and returns its UID.
func (s *session) Append(ctx context.Context, name string, r io.Reader, flags []string, date time.Time) (uidValidity, uid uint32, err error) {
	if err := s.withFolder(ctx, name, func(*folder) error { return nil }); err != nil {
		return 0, 0, err
	}
	msg, err := s.a.s.spool(ctx, s.a.home, r)
	if err != nil {
		return 0, 0, err
	}
	defer msg.close()
	if date.IsZero() {
		date = time.Now()
	}
	sys, kws := index.ParseFlags(flags)
	err = s.withFolder(ctx, name, func(f *folder) error {
		uids, err := f.appendTo(ctx, []pending{{out: outMessage{from: fromLine("", date.Local()), r: msg.reader()}, flags: sys, kws: kws, date: date.Unix()}})
		if err != nil {
			return err
		}
		uidValidity, uid = f.uidValidity, uids[0]
		return nil
	})
	return uidValidity, uid, err
}

// SetFlags changes flags in the index; they are written into the file
// when it is next rewritten (as Dovecot's lazy writes do).
func (s *session) SetFlags(ctx context.Context, name string, uids []uint32, op mailbox.FlagOp, flags []string) (*mailbox.Snapshot, error) {
	var snap *mailbox.Snapshot
	err := s.withFolder(ctx, name, func(f *folder) error {
		if err := f.need(); err != nil {
			return err
		}
		change := index.NewChange(op, flags)
		var put []*entry
		modSeq := f.modSeq + 1
		for _, uid := range index.Dedupe(uids) {
			e := f.find(uid)
			if e == nil {
				continue
			}
			nsys, nkw, changed := change.To(e.flags, e.kws)
			if !changed {
				continue
			}
			e.flags, e.kws, e.modSeq = nsys, nkw, modSeq
			put = append(put, e)
		}
		if len(put) > 0 {
			f.modSeq = modSeq
			if err := f.apply(f.file, put, nil); err != nil {
				return err
			}
		}
		snap = f.snap
		return nil
	})
	return snap, err
}

// Expunge rewrites the file without the messages (see rewrite).
func (s *session) Expunge(ctx context.Context, name string, uids []uint32) (*mailbox.Snapshot, error) {
	var snap *mailbox.Snapshot
	err := s.withFolder(ctx, name, func(f *folder) error {
		err := f.expunge(ctx, uids)
		snap = f.snap
		return err
	})
	return snap, err
}

// expunge removes uids from the file. The caller holds f.mu.
func (f *folder) expunge(ctx context.Context, uids []uint32) error {
	if err := f.need(); err != nil {
		return err
	}
	gone := map[uint32]bool{}
	for _, u := range uids {
		if f.find(u) != nil {
			gone[u] = true
		}
	}
	if len(gone) == 0 {
		return nil
	}
	h, unlock, err := f.a.s.lock(ctx, f.p)
	if err != nil {
		return err
	}
	defer unlock()
	if err := f.sync(ctx, h); err != nil {
		return err
	}
	return f.rewrite(h, gone)
}

// rewrite writes the file again without the messages in gone, every
// other message's flags written into its header, under the locks held
// in h: into a temporary file in the same directory, fsynced, read back
// and checked (each message's fingerprint where it should be), given the
// old file's mode and owner, renamed over the old file, the directory
// fsynced. A crash at any moment leaves the old file or the new one,
// never a mix; a delivery waiting for the locks appends to the new one.
func (f *folder) rewrite(h *held, gone map[uint32]bool) error {
	if err := f.need(); err != nil {
		return err
	}
	dir, err := f.a.s.openDir(f.p)
	if err != nil {
		return err
	}
	defer dir.Close()
	fi, err := h.f.Stat()
	if err != nil {
		return err
	}
	tmpName := "." + f.p.name + ".mailroom-rewrite"
	dir.Remove(tmpName) // left by a crash
	tmp, err := dir.OpenFile(tmpName, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
	}
	ok := false
	defer func() {
		tmp.Close()
		if !ok {
			dir.Remove(tmpName)
		}
	}()
	hook := f.a.s.rewriteHook
	if hook == nil {
		hook = func(string) {}
	}
	hook("created")
	var kept []*entry
	bw := bufio.NewWriterSize(tmp, 256<<10)
	if f.file.junk > 0 {
		if _, err := io.Copy(bw, io.NewSectionReader(h.f, 0, f.file.junk)); err != nil {
			return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
		}
	}
	for _, e := range f.ents {
		if gone[e.uid] {
			continue
		}
		kept = append(kept, e)
		if _, err := io.Copy(bw, io.NewSectionReader(h.f, e.off, e.start-e.off)); err != nil {
			return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
		}
		extra := ""
		if !e.truncated {
			extra = flagFields(e.flags, e.kws)
		}
		if len(kept) == 1 && !e.truncated {
			extra = imapBase(f.uidValidity, f.uidNext, f.ents, gone) + extra
		}
		if !e.truncated {
			extra += fmt.Sprintf("X-UID: %d\n", e.uid)
		}
		hf := &headerFilter{w: bw, extra: extra, keepLength: true}
		if _, err := io.Copy(hf, io.NewSectionReader(h.f, e.start, e.end-e.start)); err != nil {
			return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
		}
		if err := hf.Close(); err != nil {
			return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
		}
		bw.WriteString("\n")
		if len(kept) == 1 && f.a.s.rewriteHook != nil {
			bw.Flush()
			hook("partial")
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
	}
	hook("written")
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("mbox: rewrite %s: fsync: %w", f.p, err)
	}
	hook("synced")
	nfi, err := tmp.Stat()
	if err != nil {
		return err
	}
	var spans []*Span
	res, err := Scan(tmp, 0, nfi.Size(), func(s *Span) error {
		c := *s
		spans = append(spans, &c)
		return nil
	})
	if err == nil && (len(spans) != len(kept) || res.Junk != f.file.junk) {
		err = fmt.Errorf("%d messages read back, %d written", len(spans), len(kept))
	}
	for i := 0; err == nil && i < len(spans); i++ {
		if spans[i].Hash != kept[i].hash {
			err = fmt.Errorf("message %d of %d reads back differently", i+1, len(kept))
		}
	}
	if err != nil {
		return fmt.Errorf("mbox: rewrite %s: check: %w", f.p, err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
	}
	if st, isSys := fi.Sys().(*syscall.Stat_t); isSys && os.Geteuid() == 0 {
		if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
		}
	}
	hook("checked")
	if err := dir.Rename(tmpName, f.p.name); err != nil {
		return fmt.Errorf("mbox: rewrite %s: %w", f.p, err)
	}
	ok = true
	hook("renamed")
	if err := syncRoot(dir); err != nil {
		return fmt.Errorf("mbox: rewrite %s: sync the directory: %w", f.p, err)
	}
	hook("dir-synced")
	nfi, err = tmp.Stat()
	if err != nil {
		return err
	}
	st := stateOf(nfi)
	st.tail, st.junk = readTail(tmp, st.size), res.Junk
	var put []*entry
	var del []uint32
	for i, e := range kept {
		e.setSpan(spans[i])
		put = append(put, e)
	}
	for u := range gone {
		del = append(del, u)
	}
	f.ents = kept
	f.modSeq++
	return f.apply(st, put, del)
}

// imapBase is the X-IMAPbase field a rewrite puts in the first
// message, as Dovecot and UW-IMAP do: UIDVALIDITY, UIDNEXT and every
// keyword in the folder (Dovecot reads an X-Keywords: keyword only if it
// is listed here). With it and each message's X-UID:, Dovecot shows the
// messages under mailroom's UIDs.
func imapBase(uidValidity, uidNext uint32, ents []*entry, gone map[uint32]bool) string {
	seen := map[string]bool{}
	var kws []string
	for _, e := range ents {
		if gone[e.uid] {
			continue
		}
		for _, k := range e.kws {
			if !seen[k] {
				seen[k] = true
				kws = append(kws, k)
			}
		}
	}
	sort.Strings(kws)
	b := fmt.Sprintf("X-IMAPbase: %010d %010d", uidValidity, uidNext)
	if len(kws) > 0 {
		b += " " + strings.Join(kws, " ")
	}
	return b + "\n"
}

// twoFolders runs fn with both folders synced and locked, in name order.
func (s *session) twoFolders(ctx context.Context, src, dst string, fn func(sf, df *folder) error) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	s.a.mu.RLock()
	defer s.a.mu.RUnlock()
	sf, err := s.a.folder(src)
	if err != nil {
		return err
	}
	df, err := s.a.folder(dst)
	if err != nil {
		return err
	}
	defer index.LockTwo(&sf.mu, sf.name, &df.mu, df.name)()
	if err := sf.sync(ctx, nil); err != nil {
		return err
	}
	if df != sf {
		if err := df.sync(ctx, nil); err != nil {
			return err
		}
	}
	return fn(sf, df)
}

// copyLocked appends copies of the messages of uids in sf to df.
func copyLocked(ctx context.Context, sf, df *folder, uids []uint32) (src, dst []uint32, err error) {
	if err := sf.need(); err != nil {
		return nil, nil, err
	}
	var es []*entry
	for _, u := range index.Dedupe(uids) {
		if e := sf.find(u); e != nil {
			es = append(es, e)
		}
	}
	if len(es) == 0 {
		return nil, nil, nil
	}
	slices.SortFunc(es, func(a, b *entry) int { return int(a.uid) - int(b.uid) })
	file, err := sf.openMessage(es[0])
	if err != nil {
		sf.dirty.Store(true)
		return nil, nil, err
	}
	defer file.Close()
	msgs := make([]pending, len(es))
	for i, e := range es {
		from := make([]byte, e.start-e.off)
		if _, err := file.ReadAt(from, e.off); err != nil {
			return nil, nil, fmt.Errorf("mbox: read %s: %w", sf.p, err)
		}
		line := strings.TrimRight(string(from), "\r\n")
		if !strings.HasPrefix(line, fromPrefix) {
			sf.dirty.Store(true)
			return nil, nil, errMoved
		}
		msgs[i] = pending{out: outMessage{from: line, r: NewReader(file, e.span())}, flags: e.flags, kws: e.kws, date: e.date}
		src = append(src, e.uid)
	}
	dst, err = df.appendTo(ctx, msgs)
	if err != nil {
		return nil, nil, err
	}
	return src, dst, nil
}

// Copy appends copies to dest, keeping flags, keywords and internal dates.
func (s *session) Copy(ctx context.Context, name string, uids []uint32, dest string) (uidValidity uint32, src, dst []uint32, err error) {
	err = s.twoFolders(ctx, name, dest, func(sf, df *folder) error {
		uidValidity = df.uidValidity
		var err error
		src, dst, err = copyLocked(ctx, sf, df, uids)
		return err
	})
	return uidValidity, src, dst, err
}

// Move is Copy, then the source messages expunged.
func (s *session) Move(ctx context.Context, name string, uids []uint32, dest string) (uidValidity uint32, src, dst []uint32, err error) {
	err = s.twoFolders(ctx, name, dest, func(sf, df *folder) error {
		uidValidity = df.uidValidity
		var err error
		if src, dst, err = copyLocked(ctx, sf, df, uids); err != nil || len(src) == 0 {
			return err
		}
		return sf.expunge(ctx, src)
	})
	return uidValidity, src, dst, err
}
