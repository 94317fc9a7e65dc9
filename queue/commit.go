package queue

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// committer is a group commit for the queue's bbolt writes: a write that
// arrives while a commit is running joins the next one, and that commit
// starts as soon as the running one ends. Unlike bolt.DB.Batch it never
// waits for a timer, so a lone write commits at once and concurrent ones
// share one fsync. Each fn must be safe to run again: if one fails, the
// transaction is rolled back, that fn gets its error, and the others run
// again without it.
type committer struct {
	db      *bolt.DB
	mu      sync.Mutex
	running bool
	pending []*call
}

type call struct {
	fn   func(*bolt.Tx) error
	err  error
	done chan struct{}
}

// do runs fn in a read-write transaction and returns once that
// transaction is committed (or fn failed).
func (c *committer) do(fn func(*bolt.Tx) error) error {
	cl := &call{fn: fn, done: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, cl)
	lead := !c.running
	c.running = true
	c.mu.Unlock()
	if lead {
		c.run()
	}
	<-cl.done
	return cl.err
}

// run commits the round waiting now, then hands the next round, if one
// filled up meanwhile, to a new goroutine: the caller that led returns as
// soon as its own write is committed, never held for others' rounds.
func (c *committer) run() {
	c.mu.Lock()
	round := c.pending
	c.pending = nil
	c.mu.Unlock()
	c.commit(round)
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.running = false
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	go c.run()
}

// errFnFailed marks a rollback caused by one call's fn.
var errFnFailed = errors.New("queue: a write in the group failed")

func (c *committer) commit(round []*call) {
	for len(round) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bolt.Tx) error {
			for i, cl := range round {
				if cl.err = cl.fn(tx); cl.err != nil {
					failed = i
					return errFnFailed
				}
			}
			return nil
		})
		if failed >= 0 {
			close(round[failed].done)
			round = append(round[:failed:failed], round[failed+1:]...)
			continue
		}
		for _, cl := range round {
			cl.err = err
			close(cl.done)
		}
		return
	}
}
