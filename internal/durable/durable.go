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

// DirSyncer coalesces fsyncs of one directory: callers that ask while a
// sync runs join the next round, and one fsync then covers all of them
// (group commit). A round starts only after each member's rename, so its
// fsync covers them; the promise is the same as SyncDir's.
type DirSyncer struct {
	dir     string
	mu      sync.Mutex
	running bool
	next    *round
}

type round struct {
	done chan struct{}
	err  error
}

// NewDirSyncer returns a DirSyncer for dir.
func NewDirSyncer(dir string) *DirSyncer { return &DirSyncer{dir: dir} }

// Sync returns once an fsync of the directory that started after the call
// has finished.
func (g *DirSyncer) Sync() error {
	if g == nil {
		return errors.New("durable: nil DirSyncer")
	}
	g.mu.Lock()
	if g.next == nil {
		g.next = &round{done: make(chan struct{})}
	}
	r := g.next
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

func (g *DirSyncer) run(r *round) {
	r.err = SyncDir(g.dir)
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
