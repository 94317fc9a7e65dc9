package index

import (
	"strings"
	"sync"
	"testing"
)

// Get makes a name's state once, whoever asks first; DropIf, Drop and
// Remove forget it.
func TestShared(t *testing.T) {
	t.Parallel()
	var s Shared[int]
	made := 0
	var wg sync.WaitGroup
	got := make([]*int, 8)
	var mu sync.Mutex
	for i := range got {
		wg.Go(func() {
			got[i] = s.Get("a", func() *int { mu.Lock(); made++; mu.Unlock(); return new(int) })
		})
	}
	wg.Wait()
	for _, v := range got {
		if v != got[0] {
			t.Fatal("two states for one name")
		}
	}
	if made != 1 || s.Lookup("a") != got[0] || s.Lookup("b") != nil {
		t.Fatalf("made %d", made)
	}
	s.DropIf("a", new(int), func(*int) bool { return true }) // not the same state
	s.DropIf("a", got[0], func(*int) bool { return false })  // still in use
	if s.Lookup("a") == nil {
		t.Fatal("DropIf dropped a state in use or another's")
	}
	s.DropIf("a", got[0], func(*int) bool { return true })
	if s.Lookup("a") != nil {
		t.Fatal("DropIf kept it")
	}
	for _, n := range []string{"x", "x/y", "xy"} {
		s.Get(n, func() *int { return new(int) })
	}
	if gone := s.Remove(func(n string) bool { return n == "x" || strings.HasPrefix(n, "x/") }); len(gone) != 2 || len(s.All()) != 1 {
		t.Fatalf("Remove took %d, left %d", len(gone), len(s.All()))
	}
	if s.Drop("xy") == nil || s.Drop("xy") != nil || len(s.All()) != 0 {
		t.Fatal("Drop")
	}
}
