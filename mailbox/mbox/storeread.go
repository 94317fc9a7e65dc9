package mbox

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Message reads share one descriptor of a folder's file: a FETCH of
// every message (ENVELOPE the first time, BODY[], a SEARCH of bodies)
// opens each message in turn, and opening the file through the mail
// root for each (a lookup of every directory level, a descriptor made
// and closed) was a quarter of such a FETCH's time. The shared
// descriptor is used while its fstat shows the size, mtime and inode
// that the index last saw (so that an in-place change by another
// program is noticed as before); reads are preads, so sessions share it.
// It is closed readIdle after its last reader is done, or once the file
// it reads is no longer the folder's, so that idle folders hold no
// descriptor.

// readIdle is how long a shared descriptor stays open unused.
const readIdle = 2 * time.Second

// readHandle is a folder's shared descriptor for reading messages.
type readHandle struct {
	f     *os.File
	st    fileState
	refs  int
	stale bool // no longer the folder's: closed when refs reaches 0
	idle  *time.Timer
}

// readers guards a folder's readHandle.
type readers struct {
	mu sync.Mutex
	h  *readHandle
}

// acquire returns a descriptor of f's file whose fstat matches the index
// (f.file), and the function that gives it back; ok is false if the
// file cannot be opened or is not as the index saw it. The caller holds
// f.mu.
func (f *folder) acquire() (file *os.File, release func(), ok bool) {
	rs := &f.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if h := rs.h; h != nil {
		if fi, err := h.f.Stat(); err == nil && h.st.same(f.file) && stateOf(fi).same(f.file) {
			h.refs++
			if h.idle != nil {
				h.idle.Stop()
			}
			return h.f, func() { f.release(h) }, true
		}
		rs.dropLocked()
	}
	var err error
	if f.p.abs {
		file, err = os.OpenFile(f.p.String(), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	} else {
		file, err = f.a.s.root.OpenFile(f.p.String(), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, nil, false
	}
	fi, err := file.Stat()
	if err != nil || !stateOf(fi).same(f.file) {
		file.Close()
		return nil, nil, false
	}
	h := &readHandle{f: file, st: f.file, refs: 1}
	rs.h = h
	return file, func() { f.release(h) }, true
}

// release gives back a descriptor from acquire.
func (f *folder) release(h *readHandle) {
	rs := &f.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	h.refs--
	if h.refs > 0 {
		return
	}
	if h.stale {
		h.f.Close()
		return
	}
	if h.idle == nil {
		h.idle = time.AfterFunc(readIdle, func() {
			rs.mu.Lock()
			defer rs.mu.Unlock()
			if rs.h == h && h.refs == 0 {
				rs.dropLocked()
			}
		})
	} else {
		h.idle.Reset(readIdle)
	}
}

// drop lets go of the shared descriptor (the folder is gone).
func (rs *readers) drop() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.dropLocked()
}

func (rs *readers) dropLocked() {
	h := rs.h
	if h == nil {
		return
	}
	rs.h = nil
	if h.idle != nil {
		h.idle.Stop()
	}
	h.stale = true
	if h.refs == 0 {
		h.f.Close()
	}
}
