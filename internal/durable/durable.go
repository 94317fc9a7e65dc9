// Package durable writes files that survive a crash once the call returns:
// the data is written to a temporary name, fsynced, renamed into place, and
// the directory fsynced (chasquid's safeio, mox's moxio/syncdir.go). A
// crash before the return leaves at most a temporary file, never a half
// file under the final name.
package durable

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// TempPrefix starts the names of files being written; a directory scan
// after a crash may remove files with it.
const TempPrefix = ".tmp-"

// WriteFile creates dir/name durably with what fill writes. An existing
// file of that name is replaced; if fill or any step fails, nothing is
// left behind. If sync is not nil it does the directory fsync (a DirSyncer
// shares one fsync between concurrent callers).
func WriteFile(dir, name string, perm os.FileMode, sync *DirSyncer, fill func(w io.Writer) error) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, TempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	if sync == nil {
		return SyncDir(dir)
	}
	return sync.Sync()
}

// SyncDir fsyncs a directory, so that renames and creations in it are on
// disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// DirSyncer coalesces fsyncs of one directory (see Group). A round starts
// only after each member's rename, so its fsync covers them; the promise is
// the same as SyncDir's.
type DirSyncer struct {
	dir string
	g   Group
}

// NewDirSyncer returns a DirSyncer for dir.
func NewDirSyncer(dir string) *DirSyncer { return &DirSyncer{dir: dir} }

// Sync returns once an fsync of the directory that started after the call
// has finished.
func (d *DirSyncer) Sync() error {
	if d == nil {
		return errors.New("durable: nil DirSyncer")
	}
	return d.g.Do(func() error { return SyncDir(d.dir) })
}

// Group coalesces fsyncs: callers that ask while one runs join the next
// round, and one fsync then covers all of them. This is the group commit
// that lets many concurrent writers into one directory pay for one fsync
// instead of one each, without weakening the promise: a caller returns only
// after an fsync that started after its call. The zero value is ready.
type Group struct {
	mu      sync.Mutex
	running bool
	next    *round // the round new callers join; nil if none is waiting
}

type round struct {
	done    chan struct{}
	err     error
	members int          // callers waiting on this round (for tests)
	fsync   func() error // the first member's: valid while it waits
}

// Do returns once an fsync that started after the call has finished.
// Every caller of one Group must pass an fsync of the same thing, valid
// until Do returns.
func (g *Group) Do(fsync func() error) error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &round{done: make(chan struct{}), fsync: fsync}
	}
	r := g.next
	r.members++
	if !g.running {
		g.running = true
		g.next = nil
		g.mu.Unlock()
		g.run(r)
	} else {
		g.mu.Unlock()
	}
	<-r.done
	return r.err
}

// run syncs round r, then starts the round that filled up meanwhile in a
// new goroutine, so that no caller waits for rounds after its own.
func (g *Group) run(r *round) {
	r.err = r.fsync()
	close(r.done)
	g.mu.Lock()
	next := g.next
	g.next = nil
	if next == nil {
		g.running = false
	}
	g.mu.Unlock()
	if next != nil {
		go g.run(next)
	}
}
