package maildir

// Delivery keeps each Maildir's tmp/ and new/ open between deliveries, so
// that a delivery opens no directory: it checks with one fstatat that the
// Maildir is still the directory the handles were opened in (not removed,
// moved away or replaced), where opening both and closing them again cost
// six system calls. A directory removed from under its handle makes the
// create or the rename fail with ENOENT; the handles are then dropped and
// the Maildir is made again, as before.

import (
	"cmp"
	"errors"
	"os"
	"path"
	"sync"

	"golang.org/x/sys/unix"
)

// maxDeliveryDirs bounds the Maildirs whose directories are kept open
// (two descriptors each).
const maxDeliveryDirs = 512

// deliveryDirs are one Maildir's tmp/ and new/, shared by the deliveries
// into it.
type deliveryDirs struct {
	tmp, new *os.File
	dev, ino uint64 // the Maildir itself, when they were opened
	// refs counts the deliveries using them; dropped ones are closed by
	// the last. Both are guarded by dirCache.mu.
	refs    int
	dropped bool
}

// dirCache holds the Store's deliveryDirs by Maildir path.
type dirCache struct {
	mu   sync.Mutex
	dirs map[string]*deliveryDirs
	max  int // maxDeliveryDirs unless a test set it
}

// acquireDirs returns md's tmp/ and new/, opened now or earlier; release
// them when done.
func (s *Store) acquireDirs(md string) (*deliveryDirs, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(s.rootDir.Fd()), md, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		s.dropDirs(md, nil)
		return nil, &os.PathError{Op: "stat", Path: md, Err: err}
	}
	c := &s.dirCache
	c.mu.Lock()
	d := c.dirs[md]
	if d != nil && d.dev == uint64(st.Dev) && d.ino == st.Ino {
		d.refs++
		c.mu.Unlock()
		return d, nil
	}
	c.mu.Unlock()
	if d != nil {
		s.dropDirs(md, d) // moved away or replaced
	}
	d = &deliveryDirs{dev: uint64(st.Dev), ino: st.Ino, refs: 1}
	var err error
	if d.tmp, err = s.openDir(path.Join(md, "tmp")); err != nil {
		return nil, err
	}
	if d.new, err = s.openDir(path.Join(md, "new")); err != nil {
		d.tmp.Close()
		return nil, err
	}
	// Opened by path after the stat: a Maildir swapped in between is
	// caught by the next delivery's check.
	c.mu.Lock()
	if c.dirs == nil {
		c.dirs = map[string]*deliveryDirs{}
	}
	if old := c.dirs[md]; old != nil {
		c.dropLocked(md, old)
	}
	if len(c.dirs) >= cmp.Or(c.max, maxDeliveryDirs) {
		for k, v := range c.dirs { // any other one
			c.dropLocked(k, v)
			break
		}
	}
	c.dirs[md] = d
	d.refs++ // the cache's own
	c.mu.Unlock()
	return d, nil
}

// releaseDirs ends a delivery's use of d.
func (s *Store) releaseDirs(d *deliveryDirs) {
	c := &s.dirCache
	c.mu.Lock()
	d.refs--
	closeNow := d.refs == 0
	c.mu.Unlock()
	if closeNow {
		d.tmp.Close()
		d.new.Close()
	}
}

// dropDirs forgets md's directories (d, or whichever are kept if d is
// nil), after an ENOENT said that one was removed.
func (s *Store) dropDirs(md string, d *deliveryDirs) {
	c := &s.dirCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.dirs[md]; cur != nil && (d == nil || cur == d) {
		c.dropLocked(md, cur)
	}
}

// dropLocked removes d from the cache and gives up the cache's
// reference; the caller holds c.mu.
func (c *dirCache) dropLocked(md string, d *deliveryDirs) {
	delete(c.dirs, md)
	if d.dropped {
		return
	}
	d.dropped = true
	d.refs--
	if d.refs == 0 {
		// Closing under the lock is cheap: close(2) of a directory.
		d.tmp.Close()
		d.new.Close()
	}
}

// isNotExist reports whether err says that a directory is gone.
func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist)
}
