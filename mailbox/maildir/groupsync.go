package maildir

import "sync"

// groupSync coalesces directory fsyncs: callers that ask while a sync is
// running join the next round, and one fsync then covers all of them. This is
// the group commit that lets many concurrent deliveries into one Maildir pay
// for one fsync of new/ instead of one each, without weakening the promise:
// a round starts only after every member's rename, so its fsync covers them.
type groupSync struct {
	mu      sync.Mutex
	running bool
	next    *syncRound // the round new callers join; nil if none is waiting
}

type syncRound struct {
	done    chan struct{}
	err     error
	members int          // callers waiting on this round (for tests and debugging)
	fsync   func() error // the first member's: it stays valid while the member waits
}

// sync returns once an fsync that started after the call has finished.
// Every caller of one groupSync must pass an fsync of the same directory,
// valid until sync returns.
func (g *groupSync) sync(fsync func() error) error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &syncRound{done: make(chan struct{}), fsync: fsync}
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
func (g *groupSync) run(r *syncRound) {
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
