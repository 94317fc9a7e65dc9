package durable

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// TestGroupGathers: a round that starts while another caller is expected
// (Expect, as a delivery writing its file) waits for it, so that one fsync
// covers both; a Leave ends the wait as well.
func TestGroupGathers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		arrive func(g *Group, fsync func() error)
	}{
		// Two callers, one fsync: the second's call came after the
		// first's, and both returned after it.
		{"the expected caller joins", func(g *Group, fsync func() error) { g.DoExpected(fsync) }},
		{"the expected caller leaves", func(g *Group, fsync func() error) { g.Leave() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g Group
			// A long last fsync and no bound: only the arrival ends the wait.
			g.last, g.maxWait = time.Hour, time.Hour
			var fsyncs atomic.Int64
			fsync := func() error { fsyncs.Add(1); return nil }
			g.Expect()
			first := make(chan struct{})
			go func() { g.Do(fsync); close(first) }()
			for {
				g.mu.Lock()
				waiting := g.arrived != nil
				g.mu.Unlock()
				if waiting {
					break
				}
				waitABit()
			}
			tc.arrive(&g, fsync)
			<-first
			if n := fsyncs.Load(); n != 1 {
				t.Errorf("%d fsyncs, want 1", n)
			}
		})
	}
}
