package index

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestSession(t *testing.T) {
	t.Parallel()
	var s Session
	ctx, cancel := context.WithCancel(t.Context())
	if s.Check(ctx) != nil || s.Closed() {
		t.Fatal("a new session is not open")
	}
	cancel()
	if !errors.Is(s.Check(ctx), context.Canceled) {
		t.Error("Check ignores the context")
	}
	s.Close()
	if !errors.Is(s.Check(t.Context()), ErrClosed) || !s.Closed() {
		t.Error("Check after Close")
	}
}

// LockTwo takes one folder given twice once, and two in name order
// whichever way round they are given: copies both ways at once finish.
func TestLockTwo(t *testing.T) {
	t.Parallel()
	var a, b sync.Mutex
	LockTwo(&a, "x", &a, "x")()
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			if i%2 == 0 {
				LockTwo(&a, "a", &b, "b")()
			} else {
				LockTwo(&b, "b", &a, "a")()
			}
		})
	}
	wg.Wait()
	if !a.TryLock() || !b.TryLock() {
		t.Error("left locked")
	}
}
