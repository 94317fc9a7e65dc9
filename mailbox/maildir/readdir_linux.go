package maildir

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// readNames lists the directory d from its start; see readDirNames.
func readNames(d *os.File) ([]string, error) { return readDirNames(int(d.Fd())) }

// readDirNames lists the directory fd from its start (getdents64 into a
// pooled buffer), with one string allocation per buffer of names rather
// than one per name: a large cur/ is read at every change of its mtime.
// "." and ".." are left out. A directory removed meanwhile is empty.
func readDirNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	bp := direntPool.Get().(*[]byte)
	defer direntPool.Put(bp)
	buf := *bp
	var names []string
	type span struct{ start, end int }
	var spans []span
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.ENOENT) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		// struct linux_dirent64: ino (8), off (8), reclen (2), type
		// (1), name (NUL-terminated).
		arena := make([]byte, 0, n)
		spans = spans[:0]
		for off := 0; off+19 <= n; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			if reclen < 19 || off+reclen > n {
				return nil, errors.New("maildir: bad directory entry")
			}
			name := buf[off+19 : off+reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			off += reclen
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			spans = append(spans, span{len(arena), len(arena) + len(name)})
			arena = append(arena, name...)
		}
		all := string(arena)
		for _, sp := range spans {
			names = append(names, all[sp.start:sp.end])
		}
	}
}

var direntPool = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}
