// Package durable writes files that survive a crash once the call returns:
// the data is written to a temporary name, fsynced, renamed into place, and
// the directory fsynced (chasquid's safeio, mox's moxio/syncdir.go). A
// crash before the return leaves at most a temporary file, never a half
// file under the final name.
package durable

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
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
//
// Callers that will call Do soon (a delivery writing its file) say so
// with Expect; a round that finds such callers on its way waits for them,
// at most about as long as the last fsync took, so that one fsync covers
// them too rather than the next. The wait costs the waiting callers up to
// one fsync of latency and saves an fsync (a device flush) for every
// caller it gathers.
type Group struct {
	mu       sync.Mutex
	running  bool
	next     *round        // the round new callers join; nil if none is waiting
	expected int           // callers announced by Expect, not yet in Do or Leave
	arrived  chan struct{} // closed when expected falls to 0, while a round waits
	last     time.Duration // how long the last fsync took
	maxWait  time.Duration // maxGather unless a test set it
}

// maxGather bounds a round's wait for expected callers.
const maxGather = 5 * time.Millisecond

// Expect says that the caller will call Do (or Leave) soon.
func (g *Group) Expect() {
	g.mu.Lock()
	g.expected++
	g.mu.Unlock()
}

// Leave withdraws an Expect whose caller will not call Do.
func (g *Group) Leave() {
	g.mu.Lock()
	g.arriveLocked()
	g.mu.Unlock()
}

func (g *Group) arriveLocked() {
	if g.expected > 0 {
		g.expected--
	}
	if g.expected == 0 && g.arrived != nil {
		close(g.arrived)
		g.arrived = nil
	}
}

type round struct {
	done    chan struct{}
	err     error
	members int          // callers waiting on this round (for tests)
	fsync   func() error // the first member's: valid while it waits
}

// Do returns once an fsync that started after the call has finished.
// Every caller of one Group must pass an fsync of the same thing, valid
// until Do returns. A caller that said Expect calls DoExpected instead.
func (g *Group) Do(fsync func() error) error { return g.do(fsync, false) }

// DoExpected is Do for a caller that said Expect.
func (g *Group) DoExpected(fsync func() error) error { return g.do(fsync, true) }

func (g *Group) do(fsync func() error, expected bool) error {
	g.mu.Lock()
	if expected {
		g.arriveLocked()
	}
	if g.next == nil {
		g.next = &round{done: make(chan struct{}), fsync: fsync}
	}
	r := g.next
	r.members++
	if !g.running {
		// r stays g.next, open to callers, until run closes it.
		g.running = true
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
	g.gather()
	g.mu.Lock()
	g.next = nil // r is closed to new callers: they join the next round
	g.mu.Unlock()
	start := time.Now()
	r.err = r.fsync()
	took := time.Since(start)
	close(r.done)
	g.mu.Lock()
	g.last = took
	next := g.next // stays g.next, open to callers, until run(next) closes it
	if next == nil {
		g.running = false
	}
	g.mu.Unlock()
	if next != nil {
		go g.run(next)
	}
}

// gather waits, before a round's fsync, for the callers announced by
// Expect to join it, at most as long as the last fsync took (bounded by
// maxGather). Callers joining meanwhile join the round that waits, which
// is still g.next.
func (g *Group) gather() {
	g.mu.Lock()
	if g.expected == 0 || g.last == 0 {
		g.mu.Unlock()
		return
	}
	if g.arrived == nil {
		g.arrived = make(chan struct{})
	}
	arrived, wait := g.arrived, min(g.last, cmp.Or(g.maxWait, maxGather))
	g.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-arrived:
	case <-t.C:
	}
}
