package maildir

import (
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// openTmpfile makes an unnamed file in dir (O_TMPFILE): it has no entry
// anywhere until linkTmpfile gives it its name, and vanishes with its
// descriptor if it never gets one. errNoTmpfile means the file system
// (or kernel) lacks O_TMPFILE; the caller then writes a named file.
func openTmpfile(dirfd int) (int, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) {
		// EISDIR: a kernel older than O_TMPFILE took it for O_DIRECTORY.
		return -1, errNoTmpfile
	}
	return fd, err
}

// linkTmpfile gives the file open as fd the name name in dirfd, failing
// if that name exists. It links through /proc/self/fd, as open(2)
// shows: AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH, which the server
// running as its own user does not have.
func linkTmpfile(fd, dirfd int, name string) error {
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
}
