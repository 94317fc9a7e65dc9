package durable

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func waitABit() { runtime.Gosched() }

// TestGroupSync checks the group commit's promise directly: a caller's
// sync returns only after an fsync that started after the call, and
// concurrent callers share fsyncs.
func TestGroupSync(t *testing.T) {
	var g Group
	var started, finished atomic.Int64 // fsync counters
	release := make(chan struct{})
	fsync := func() error {
		started.Add(1)
		<-release
		finished.Add(1)
		return nil
	}
	// The first caller starts an fsync that blocks.
	first := make(chan struct{})
	go func() { g.Do(fsync); close(first) }()
	for started.Load() == 0 {
		// wait until the first fsync is running
		waitABit()
	}
	// Callers arriving now must not be satisfied by the running fsync.
	const waiters = 10
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() {
			before := started.Load()
			g.Do(fsync)
			if finished.Load() <= before {
				t.Errorf("waiter %d returned without an fsync that started after it", i)
			}
		})
	}
	// Once all have joined the next round, let the blocked fsync and then
	// every later one finish.
	for {
		g.mu.Lock()
		joined := g.next != nil && g.next.members == waiters
		g.mu.Unlock()
		if joined {
			break
		}
		waitABit()
	}
	close(release)
	<-first
	wg.Wait()
	if n := started.Load(); n != 2 {
		t.Errorf("%d fsyncs for %d concurrent callers: want 2 (one running, one shared by the rest)", n, waiters+1)
	}
}
