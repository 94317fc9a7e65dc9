package maildir

// Group commit: a change to a folder's index (a scan's findings, a flag
// change, an expunge, an append) is made in memory under the folder's
// lock and handed, encoded, to the Index's committer, which writes every
// change handed to it meanwhile in one bbolt transaction, in the order
// they were made. The folder's lock is not held over the transaction's
// fsyncs, so the folder's other sessions go on; each session waits for
// its folder's last write to be durable before it answers (withFolder),
// so that no client is told of a UID, a flag or an expunge that a crash
// could take back.
//
// If a transaction fails, memory is ahead of the disk: the folders it
// held count as failed (their epoch moves on), writes made after it on
// their state are refused, and their next sync reads the index again
// from bbolt and the Maildir (what the failed writes had done on disk,
// a rename or an unlink, is found by the scan; files they added are
// removed, as an APPEND that fails leaves nothing).

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

// errEarlierWrite is the error of a write made on a state that an
// earlier, failed write had changed.
var errEarlierWrite = errors.New("an earlier index write failed; the folder is read again")

// indexWrite is one commit's changes to a folder's index, encoded.
type indexWrite struct {
	f     *folder
	epoch uint64      // f's epoch when the write was made
	dels  [][]byte    // UID keys of records (and cache entries) to delete
	puts  [][2][]byte // UID key, record
	meta  []byte
	fill  bool              // many records appended in UID order
	undo  func()            // on failure: removes the files the change added
	snap  *mailbox.Snapshot // the folder's snapshot with the change (on its last write)

	done chan struct{} // closed when written (or failed)
	err  error
}

// size is how much the write holds, to bound a transaction.
func (w *indexWrite) size() int { return len(w.dels) + len(w.puts) + 1 }

// pending reports whether w is on its way.
func (w *indexWrite) pending() bool {
	if w == nil {
		return false
	}
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// wait returns once w is durable, or has failed; nil is durable.
func (w *indexWrite) wait() error {
	if w == nil {
		return nil
	}
	<-w.done
	return w.err
}

// committer writes the Index's pending index writes, many per
// transaction.
type committer struct {
	db    *bolt.DB
	chunk int          // the most records one transaction takes, unless one write has more
	hook  func() error // IndexOptions.writeHook

	mu      sync.Mutex
	queue   []*indexWrite
	last    *indexWrite
	running bool
}

// submit queues w and starts writing if nothing is being written. It
// never blocks on I/O: callers hold folder locks.
func (c *committer) submit(w *indexWrite) {
	w.done = make(chan struct{})
	c.mu.Lock()
	c.queue = append(c.queue, w)
	c.last = w
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start {
		go c.run()
	}
}

// flush returns once every write submitted so far is durable or has
// failed.
func (c *committer) flush() {
	c.mu.Lock()
	w := c.last
	c.mu.Unlock()
	w.wait()
}

// run writes batches until the queue is empty. The writes that arrive
// while one transaction is being synced make the next one.
func (c *committer) run() {
	for {
		c.mu.Lock()
		n, size := 0, 0
		for n < len(c.queue) && (n == 0 || size+c.queue[n].size() <= c.chunk) {
			size += c.queue[n].size()
			n++
		}
		if n == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		batch := c.queue[:n:n]
		c.queue = c.queue[n:]
		c.mu.Unlock()
		c.write(batch)
	}
}

// write stores a batch in one transaction, skipping writes made on a
// state that an earlier failure took back, and then wakes their waiters.
func (c *committer) write(batch []*indexWrite) {
	var stale []bool
	err := c.db.Update(func(tx *bolt.Tx) error {
		stale = make([]bool, len(batch))
		if c.hook != nil {
			if err := c.hook(); err != nil {
				return err
			}
		}
		for i, w := range batch {
			if w.epoch != w.f.epoch.Load() {
				stale[i] = true
				continue
			}
			if err := w.apply(tx); err != nil {
				return err
			}
		}
		return nil
	})
	for i, w := range batch {
		switch {
		case stale != nil && stale[i]:
			w.err = errEarlierWrite
		case err != nil:
			w.err = err
		default:
			continue
		}
		if w.epoch == w.f.epoch.Load() {
			w.f.epoch.Add(1)
		}
		if w.undo != nil {
			w.undo()
		}
	}
	for _, w := range batch {
		// The change may be shown now (or, failed, the folder is to
		// be read again): the folder's watchers are woken.
		wake := w.err != nil || w.snap != nil
		if w.err == nil && w.snap != nil {
			w.f.durable.Store(w.snap)
		}
		w.dels, w.puts, w.meta, w.snap = nil, nil, nil, nil // a folder keeps its last write
		// Watchers first: a session that waited for its change has
		// woken the others' IDLE by the time it answers.
		if wake {
			w.f.notify()
		}
		close(w.done)
	}
}

// apply makes the write's changes in tx.
func (w *indexWrite) apply(tx *bolt.Tx) error {
	fb, err := tree.MakeFolder(tx, w.f.a.home, w.f.name)
	if err != nil {
		return err
	}
	ub := index.UIDs(fb)
	if w.fill {
		ub.FillPercent = 0.9 // appended in UID order: fuller pages
	}
	cb := fb.Bucket(bucketCache)
	for _, k := range w.dels {
		if err := ub.Delete(k); err != nil {
			return err
		}
		if cb != nil {
			if err := cb.Delete(k); err != nil {
				return err
			}
		}
	}
	for _, kv := range w.puts {
		if err := ub.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return index.PutMeta(fb, w.meta)
}
