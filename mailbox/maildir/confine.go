package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"mailroom/internal/durable"
)

// Everything the index does in a mail home goes through handles on the
// account's Maildir: a folder name, a symlink planted in the Maildir or a
// file name can then not reach another account's mail, let alone leave
// the mail root (openat2 RESOLVE_BENEATH relative to the Maildir, or
// os.Root where openat2 is missing). The Maildir itself is found from the
// mail root, under the Store's own confinement.

// rel turns p, a path relative to the mail root at or below a.md, into one
// relative to the Maildir.
func (a *account) rel(p string) string {
	r := strings.TrimPrefix(strings.TrimPrefix(p, a.md), "/")
	if r == "" {
		return "."
	}
	return r
}

// handles returns the Maildir as an os.Root and an open directory,
// making the Maildir if it is missing and opening it again if it was
// removed (and perhaps made again by a delivery) since. Handles replaced
// are left to the garbage collector, since another goroutine may still be
// using them.
func (a *account) handles() (*os.Root, *os.File, error) {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	if a.mdDir != nil {
		var st unix.Stat_t
		if err := unix.Fstat(int(a.mdDir.Fd()), &st); err == nil && st.Nlink > 0 {
			return a.mdRoot, a.mdDir, nil
		}
		a.mdRoot, a.mdDir = nil, nil
	}
	s := a.ix.store
	d, err := s.openDir(a.md)
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.create(a.md); err != nil {
			return nil, nil, err
		}
		d, err = s.openDir(a.md)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("maildir: open %s: %w", a.md, err)
	}
	r, err := s.root.OpenRoot(a.md)
	if err != nil {
		d.Close()
		return nil, nil, fmt.Errorf("maildir: open %s: %w", a.md, err)
	}
	a.mdRoot, a.mdDir = r, d
	return r, d, nil
}

// root returns the Maildir as an os.Root.
func (a *account) root() (*os.Root, error) {
	r, _, err := a.handles()
	return r, err
}

// openDir opens the directory p (relative to the mail root, inside the
// Maildir) without leaving the Maildir.
func (a *account) openDir(p string) (*os.File, error) {
	root, md, err := a.handles()
	if err != nil {
		return nil, err
	}
	rel := a.rel(p)
	if s := a.ix.store; !s.noOpenat2.Load() {
		f, err := s.openat2Dir(md, rel)
		if !errors.Is(err, errNoOpenat2) {
			return f, err
		}
	}
	return root.Open(rel)
}

// openIn opens file (a plain name) in dir (relative to the mail root) for
// reading, refusing symlinks.
func (a *account) openIn(dir, file string) (*os.File, error) {
	d, err := a.openDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fd, err := unix.Openat(int(d.Fd()), file, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path.Join(dir, file), Err: err}
	}
	return os.NewFile(uintptr(fd), file), nil
}

// create makes the folder directory p (relative to the mail root, inside
// the Maildir) with tmp/, new/ and cur/, mode 0700, fsyncing each parent,
// so that the folder survives a crash.
func (a *account) create(p string) error {
	root, err := a.root()
	if err != nil {
		return err
	}
	rel := a.rel(p)
	var dirs []string
	if rel != "." {
		dirs = append(dirs, rel)
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		dirs = append(dirs, path.Join(rel, sub))
	}
	for _, dir := range dirs {
		if err := root.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("maildir: create %s: %w", path.Join(a.md, dir), err)
		}
		d, err := a.openDir(path.Join(a.md, path.Dir(dir)))
		if err == nil {
			err = d.Sync()
			d.Close()
		}
		if err != nil {
			return fmt.Errorf("maildir: sync %s: %w", path.Join(a.md, path.Dir(dir)), err)
		}
	}
	return nil
}

// hintFile, in each folder directory, holds the folder's current
// UIDVALIDITY, so that an index rebuilt after its loss can pick a larger
// one even within the same second (Dovecot keeps it in dovecot-uidlist).
const hintFile = "mailroom-uidvalidity"

// readHint returns the UIDVALIDITY recorded in the folder directory dir,
// or 0.
func (a *account) readHint(dir string) uint32 {
	f, err := a.openIn(dir, hintFile)
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, 16)
	n, _ := io.ReadFull(f, b)
	return parseUint32(strings.TrimSpace(string(b[:n])))
}

// writeHint records v in the folder directory dir, durably.
func (a *account) writeHint(dir string, v uint32) error {
	return a.writeIn(dir, hintFile, []byte(strconv.FormatUint(uint64(v), 10)+"\n"))
}

// writeIn replaces the file name (a plain name) in the folder directory
// dir by data, durably: a temporary file, fsynced, renamed over it, and
// the directory fsynced.
func (a *account) writeIn(dir, name string, data []byte) error {
	d, err := a.openDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	tmp := durable.TempPrefix + name
	fd, err := unix.Openat(int(d.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(int(d.Fd()), tmp, int(d.Fd()), name)
	}
	if err == nil {
		err = d.Sync()
	}
	if err != nil {
		unix.Unlinkat(int(d.Fd()), tmp, 0)
	}
	return err
}
