package index

import (
	"slices"
	"testing"
)

func TestDedupe(t *testing.T) {
	if got := Dedupe([]uint32{3, 1, 3, 2, 1}); !slices.Equal(got, []uint32{3, 1, 2}) {
		t.Errorf("Dedupe = %v", got)
	}
}

func TestCheckHome(t *testing.T) {
	for _, c := range []struct {
		home string
		ok   bool
	}{{"example.org/alice", true}, {"", false}, {"/abs", false}, {"a/../b", false}, {"../x", false}, {"a/.hidden", false}, {"a\\b", false}, {"a/b/", false}} {
		if err := CheckHome(c.home); (err == nil) != c.ok {
			t.Errorf("CheckHome(%q) = %v", c.home, err)
		}
	}
}

// A Watcher's channel is closed by the next Notify, and a new one is
// handed out after it.
func TestWatcher(t *testing.T) {
	var w Watcher
	c := w.Watch()
	if w.Watch() != c {
		t.Error("two channels before a change")
	}
	w.Notify()
	select {
	case <-c:
	default:
		t.Fatal("Notify did not close the channel")
	}
	if w.Watch() == c {
		t.Error("the closed channel handed out again")
	}
	w.Notify()
	w.Notify() // nobody watching: no panic
}

func TestDefaultFolders(t *testing.T) {
	if !IsDefaultFolder("Junk") || IsDefaultFolder("INBOX") || DefaultFolderOf(`\junk`) != "Junk" || DefaultFolderOf(`\Flagged`) != "" {
		t.Error("default folders")
	}
}
