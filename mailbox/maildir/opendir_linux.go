package maildir

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// openDir opens dir, a path relative to the mail root, as a directory,
// refusing any path that would leave the root (through "..", an absolute
// symlink or a symlink pointing outside). openat2 with RESOLVE_BENEATH does
// this in one system call; os.Root does the same check one component at a
// time, which costs a dozen system calls per delivery.
func (s *Store) openDir(dir string) (*os.File, error) {
	if !s.noOpenat2.Load() {
		fd, err := unix.Openat2(int(s.rootDir.Fd()), dir, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil {
			return os.NewFile(uintptr(fd), dir), nil
		}
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return nil, &os.PathError{Op: "openat2", Path: dir, Err: err}
		}
		s.noOpenat2.Store(true)
	}
	return s.root.Open(dir)
}

// errNoOpenat2 means openat2 is not available here; the caller falls back
// to os.Root.
var errNoOpenat2 = errors.New("openat2 unavailable")

// openat2Dir opens the directory rel beneath the directory d, refusing
// any path that would leave d.
func (s *Store) openat2Dir(d *os.File, rel string) (*os.File, error) {
	fd, err := unix.Openat2(int(d.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err == nil {
		return os.NewFile(uintptr(fd), rel), nil
	}
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		s.noOpenat2.Store(true)
		return nil, errNoOpenat2
	}
	return nil, &os.PathError{Op: "openat2", Path: rel, Err: err}
}
