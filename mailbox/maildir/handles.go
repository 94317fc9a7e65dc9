package maildir

import (
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// A folder keeps its new/ and cur/ open between scans, so that neither a
// Sync (every IMAP command polls) nor an Open of a message opens a
// directory: the handles were opened confined to the Maildir (openDir),
// and a message is opened beneath them by its plain file name with
// O_NOFOLLOW. Before each scan they are checked against what the
// folder's path names now (device and inode, one fstatat each), so a
// folder removed, replaced or renamed by another program is noticed as
// before. hmu guards the handles: Open holds it shared for its openat,
// a scan that replaces them and forget hold it exclusively.

// dirHandles is one folder's open new/ and cur/.
type dirHandles struct {
	newD, curD     *os.File
	newDev, newIno uint64
	curDev, curIno uint64
}

// subDirs returns the folder's new/ and cur/, reused from the last scan
// while the folder's path still names them. The caller holds f.mu; the
// handles stay the folder's (never closed by the caller).
func (f *folder) subDirs() (newD, curD *os.File, err error) {
	if h := f.h; h != nil && f.handlesCurrent(h) {
		return h.newD, h.curD, nil
	}
	f.dropHandles()
	newD, curD, err = f.openSub()
	if err != nil {
		return nil, nil, err
	}
	h := &dirHandles{newD: newD, curD: curD}
	var st unix.Stat_t
	if unix.Fstat(int(newD.Fd()), &st) == nil {
		h.newDev, h.newIno = uint64(st.Dev), uint64(st.Ino)
	}
	if unix.Fstat(int(curD.Fd()), &st) == nil {
		h.curDev, h.curIno = uint64(st.Dev), uint64(st.Ino)
	}
	f.hmu.Lock()
	f.h = h
	f.hmu.Unlock()
	return newD, curD, nil
}

// handlesCurrent reports whether the folder's path, from the Maildir,
// still leads to h's directories. The stat is only compared, never used
// to open anything, so it needs no confinement.
func (f *folder) handlesCurrent(h *dirHandles) bool {
	_, md, err := f.a.handles()
	if err != nil {
		return false
	}
	rel := f.a.rel(f.dir)
	var st unix.Stat_t
	if unix.Fstatat(int(md.Fd()), path.Join(rel, "new"), &st, unix.AT_SYMLINK_NOFOLLOW) != nil ||
		uint64(st.Dev) != h.newDev || uint64(st.Ino) != h.newIno {
		return false
	}
	if unix.Fstatat(int(md.Fd()), path.Join(rel, "cur"), &st, unix.AT_SYMLINK_NOFOLLOW) != nil ||
		uint64(st.Dev) != h.curDev || uint64(st.Ino) != h.curIno {
		return false
	}
	return true
}

// dropHandles closes the folder's handles (once no Open is using them).
func (f *folder) dropHandles() {
	f.hmu.Lock()
	h := f.h
	f.h = nil
	f.hmu.Unlock()
	if h != nil {
		h.newD.Close()
		h.curD.Close()
	}
}

// openMessage opens the message file name in new/ or cur/ through the
// folder's handles, or (none yet) through the Maildir.
func (f *folder) openMessage(inNew bool, name string) (*os.File, error) {
	f.hmu.RLock()
	if h := f.h; h != nil {
		d := h.curD
		if inNew {
			d = h.newD
		}
		fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		f.hmu.RUnlock()
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path.Join(f.dir, subdirName(inNew), name), Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	f.hmu.RUnlock()
	return f.a.openIn(path.Join(f.dir, subdirName(inNew)), name)
}

func subdirName(inNew bool) string {
	if inNew {
		return "new"
	}
	return "cur"
}
