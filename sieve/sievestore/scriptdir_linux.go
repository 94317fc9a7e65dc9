package sievestore

import (
	"errors"

	"golang.org/x/sys/unix"
)

// openScriptDir opens home's script directory for the signature checks
// of a delivery: one openat2 beneath the mail root (RESOLVE_BENEATH
// refuses any path that would leave it) where the kernel has it, so that
// each file is then one fstatat; os.Root walks the whole path again for
// every file (7 system calls each).
func (s *Store) openScriptDir(home string) scriptDir {
	d := scriptDir{s: s, home: home, fd: -1}
	if s.rootDir == nil || s.noOpenat2.Load() {
		return d
	}
	fd, err := unix.Openat2(int(s.rootDir.Fd()), home+"/"+dirName, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case err == nil:
		d.fd = fd
	case errors.Is(err, unix.ENOENT):
		d.missing = true // no scripts: the common case
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
		s.noOpenat2.Store(true)
	}
	// Other errors (a link leading out, not a directory) are left to
	// os.Root, which decides as it did before.
	return d
}

// sig is the signature of the file name in the directory.
func (d scriptDir) sig(name string) fileSig {
	if d.missing {
		return fileSig{}
	}
	if d.fd >= 0 {
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fileSig{}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return fileSig{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano()}
		}
		// A symbolic link: os.Root follows it if it stays inside.
	}
	return d.s.signature(scriptDirPath(d.home, name))
}

// close releases the directory.
func (d scriptDir) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
}
