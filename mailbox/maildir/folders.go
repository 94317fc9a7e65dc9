package maildir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// session is one IMAP session's handle on an account; it implements
// mailbox.Folders. All state is in the shared account, so a session costs
// a few words of memory.
type session struct {
	index.Session // Close
	a             *account
}

var _ mailbox.Folders = (*session)(nil)

// withFolder runs fn on the named folder, synced with the disk, holding
// the account shared and the folder exclusively; then, with no lock held,
// it waits for the folder's index writes so far to be durable
// (committer.go), so that what fn saw or did may be told to the client.
func (s *session) withFolder(ctx context.Context, name string, fn func(f *folder) error) error {
	for attempt := 0; ; attempt++ {
		w, own, err := s.locked(ctx, name, fn)
		if err != nil {
			return err
		}
		if err := w.wait(); err == nil || own || attempt > 0 {
			return err
		}
		// Another session's write failed, so what fn saw is not on
		// disk: once more, on the folder read again.
	}
}

// locked runs fn as withFolder does, without the wait: it returns the
// folder's last index write, and whether fn (or the sync before it)
// made any.
func (s *session) locked(ctx context.Context, name string, fn func(f *folder) error) (last *indexWrite, own bool, err error) {
	if err := s.Check(ctx); err != nil {
		return nil, false, err
	}
	s.a.mu.RLock()
	defer s.a.mu.RUnlock()
	f, err := s.a.folder(name)
	if err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	before := f.last
	if err := f.sync(ctx); err != nil {
		if errors.Is(err, mailbox.ErrNoFolder) {
			// Keep no state for names that are not folders: a client
			// trying many names must not grow the map.
			s.a.folders.DropIf(f.name, f, func(f *folder) bool { return !f.loaded })
		}
		return nil, false, err
	}
	err = fn(f)
	return f.last, f.last != before, err
}

// Sync brings the folder's index up to date with the disk and returns its
// current snapshot, shared with every other session of the folder. While
// another session's change is being written, that is the snapshot before
// it: a session sees a change once it is durable.
func (s *session) Sync(ctx context.Context, name string) (*mailbox.Snapshot, error) {
	for attempt := 0; ; attempt++ {
		var snap *mailbox.Snapshot
		w, own, err := s.locked(ctx, name, func(f *folder) error {
			snap = f.snap
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !own && w.pending() {
			if durable := w.f.durable.Load(); durable != nil {
				return durable, nil
			}
		}
		if err := w.wait(); err == nil || own || attempt > 0 {
			return snap, err
		}
	}
}

// Watch returns a channel closed at the folder's next change made in this
// process (a delivery, a change by any session, the folder's deletion).
// An invalid name gets a channel that is never closed.
func (s *session) Watch(name string) <-chan struct{} {
	f, err := s.a.folder(name)
	if err != nil {
		return nil
	}
	return f.watch()
}

// List returns INBOX and every folder in the Maildir, sorted, with their
// subscription and special use.
func (s *session) List(ctx context.Context) ([]mailbox.Folder, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	s.a.mu.RLock()
	names, err := s.a.listDirs()
	s.a.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	names = append([]string{inbox}, names...)
	out := make([]mailbox.Folder, len(names))
	for i, n := range names {
		out[i].Name = n
	}
	err = s.a.ix.db.View(func(tx *bolt.Tx) error {
		tree.Describe(tx, s.a.home, out)
		return nil
	})
	return out, err
}

// Create makes a folder, and its missing parents, durably.
func (s *session) Create(ctx context.Context, name string) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	canon, _, err := folderDir(name)
	if err != nil {
		return err
	}
	if canon == inbox {
		return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, canon)
	}
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	s.a.ix.commits.flush() // no index write of the folder after its drop
	_, dir, _ := folderDir(canon)
	if s.a.dirExists(dir) {
		return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, canon)
	}
	if err := s.a.makeFolder(canon); err != nil {
		return err
	}
	// A stale index under this name (the folder was removed by hand)
	// must not give its UIDs to the new folder.
	s.a.forget(canon)
	return s.a.dropIndex(canon)
}

// makeFolder makes canon's directory and those of its missing parents.
// The caller holds a.mu exclusively.
func (a *account) makeFolder(canon string) error {
	levels := strings.Split(canon, "/")
	for i := range levels {
		n := strings.Join(levels[:i+1], "/")
		if n == inbox {
			continue
		}
		_, dir, err := folderDir(n)
		if err != nil {
			return err
		}
		if p := path.Join(a.md, dir); !a.exists(p) {
			if err := a.create(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// dirExists reports whether the Maildir has the folder directory dir.
func (a *account) dirExists(dir string) bool {
	root, err := a.root()
	if err != nil {
		return false
	}
	fi, err := root.Lstat(dir)
	return err == nil && fi.IsDir()
}

// dropIndex deletes a folder's index (not its subscription).
func (a *account) dropIndex(canon string) error {
	err := a.ix.db.Update(func(tx *bolt.Tx) error { return tree.DropFolder(tx, a.home, canon) })
	if err != nil {
		return fmt.Errorf("maildir: drop index of %s: %w", canon, err)
	}
	return nil
}

// Delete removes a folder with its messages and index; its children and
// its subscription stay (RFC 3501 §6.3.4).
func (s *session) Delete(ctx context.Context, name string) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	canon, dir, err := folderDir(name)
	if err != nil {
		return err
	}
	if canon == inbox {
		return fmt.Errorf("%w: cannot delete INBOX", mailbox.ErrNotAllowed)
	}
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	s.a.ix.commits.flush() // no index write of the folder after its deletion
	if !s.a.dirExists(dir) {
		return fmt.Errorf("%w: %s", mailbox.ErrNoFolder, canon)
	}
	root, err := s.a.root()
	if err != nil {
		return err
	}
	if err := root.RemoveAll(dir); err != nil {
		return fmt.Errorf("maildir: delete %s: %w", canon, err)
	}
	if err := s.a.syncMaildir(); err != nil {
		return err
	}
	s.a.forget(canon)
	err = s.a.ix.db.Update(func(tx *bolt.Tx) error {
		if err := tree.DropFolder(tx, s.a.home, canon); err != nil {
			return err
		}
		return tree.ClearSpecial(tx, s.a.home, canon)
	})
	if err != nil {
		return fmt.Errorf("maildir: delete index of %s: %w", canon, err)
	}
	return nil
}

// syncMaildir fsyncs the Maildir directory, where folder directories are
// made, removed and renamed.
func (a *account) syncMaildir() error {
	d, err := a.openDir(a.md)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("maildir: sync %s: %w", a.md, err)
	}
	return nil
}

// Rename renames a folder and its children, with their indexes (UIDs and
// UIDVALIDITY kept), subscriptions and special use. Renaming INBOX moves
// its messages into a new folder and leaves INBOX empty.
func (s *session) Rename(ctx context.Context, oldName, newName string) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	oldCanon, oldDir, err := folderDir(oldName)
	if err != nil {
		return err
	}
	newCanon, newDir, err := folderDir(newName)
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
	s.a.ix.commits.flush() // the folders' index writes before they move
	if !s.a.dirExists(oldDir) {
		return fmt.Errorf("%w: %s", mailbox.ErrNoFolder, oldCanon)
	}
	if s.a.dirExists(newDir) {
		return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, newCanon)
	}
	all, err := s.a.listDirs()
	if err != nil {
		return err
	}
	// The folder first, then its children (RFC 3501 §6.3.5).
	renames := [][2]string{{oldCanon, newCanon}}
	for _, n := range all {
		if rest, ok := strings.CutPrefix(n, oldCanon+"/"); ok {
			to := newCanon + "/" + rest
			if _, _, err := folderDir(to); err != nil {
				return err
			}
			if _, d, _ := folderDir(to); s.a.dirExists(d) {
				return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, to)
			}
			renames = append(renames, [2]string{n, to})
		}
	}
	if i := strings.LastIndexByte(newCanon, '/'); i > 0 {
		if err := s.a.makeFolder(newCanon[:i]); err != nil {
			return err
		}
	}
	root, err := s.a.root()
	if err != nil {
		return err
	}
	for _, r := range renames {
		_, from, _ := folderDir(r[0])
		_, to, _ := folderDir(r[1])
		if err := root.Rename(from, to); err != nil {
			return fmt.Errorf("maildir: rename %s to %s: %w", r[0], r[1], err)
		}
		s.a.forget(r[0])
		s.a.forget(r[1])
	}
	if err := s.a.syncMaildir(); err != nil {
		return err
	}
	err = s.a.ix.db.Update(func(tx *bolt.Tx) error {
		hb, err := tree.MakeHome(tx, s.a.home)
		if err != nil {
			return err
		}
		for _, r := range renames {
			if err := index.MoveFolder(hb, r[0], r[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("maildir: rename index of %s: %w", oldCanon, err)
	}
	return nil
}

// renameInbox moves INBOX's messages into a new folder newCanon.
func (s *session) renameInbox(ctx context.Context, newCanon string) error {
	if err := func() error {
		s.a.mu.Lock()
		defer s.a.mu.Unlock()
		s.a.ix.commits.flush()
		_, dir, _ := folderDir(newCanon)
		if s.a.dirExists(dir) {
			return fmt.Errorf("%w: %s", mailbox.ErrFolderExists, newCanon)
		}
		if err := s.a.makeFolder(newCanon); err != nil {
			return err
		}
		return s.a.dropIndex(newCanon)
	}(); err != nil {
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

// SetSubscribed subscribes or unsubscribes a folder name; the folder need
// not exist (RFC 3501 §6.3.6).
func (s *session) SetSubscribed(ctx context.Context, name string, on bool) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	canon, _, err := folderDir(name)
	if err != nil {
		return err
	}
	err = s.a.ix.db.Update(func(tx *bolt.Tx) error { return tree.SetSubscribed(tx, s.a.home, canon, on) })
	if err != nil {
		return fmt.Errorf("maildir: subscribe %s: %w", canon, err)
	}
	return nil
}

// Subscriptions returns every subscribed name, sorted, whether its
// folder exists or not: deleting a folder keeps its subscription (RFC
// 9051 §6.3.7), and IMAP's LIST (SUBSCRIBED) shows it as \NonExistent.
func (s *session) Subscriptions(ctx context.Context) ([]string, error) {
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	var names []string
	err := s.a.ix.db.View(func(tx *bolt.Tx) error {
		names = tree.Subscriptions(tx, s.a.home)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("maildir: list subscriptions: %w", err)
	}
	sortNames(names)
	return names, nil
}

// sortNames sorts IMAP names with INBOX and its children first.
func sortNames(names []string) {
	sort.Slice(names, func(i, j int) bool {
		ii, ij := isInboxName(names[i]), isInboxName(names[j])
		if ii != ij {
			return ii
		}
		return names[i] < names[j]
	})
}

func isInboxName(n string) bool { return n == inbox || strings.HasPrefix(n, inbox+"/") }

// sortByKey sorts by unique name, keeping the order found among equal
// ones (new/ is read before cur/; seq is that order).
func sortByKey(p []pendingFile) {
	slices.SortFunc(p, func(a, b pendingFile) int {
		if c := strings.Compare(a.fn.key, b.fn.key); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
}

// errNotExist reports whether err means a file is gone.
func errNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
