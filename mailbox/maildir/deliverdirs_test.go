package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeptDirsFollowThePath: the tmp/ and new/ kept open between
// deliveries are given up when the Maildir at the path is no longer the
// one they belong to; the next delivery goes to the Maildir the path
// names, never into one moved away.
func TestKeptDirsFollowThePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(md string) error
	}{
		{"moved away", func(md string) error { return os.Rename(md, md+".old") }},
		{"replaced", func(md string) error {
			if err := os.Rename(md, md+".old"); err != nil {
				return err
			}
			for _, sub := range []string{"tmp", "new", "cur"} {
				if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
					return err
				}
			}
			return nil
		}},
		{"tmp removed", func(md string) error { return os.Remove(filepath.Join(md, "tmp")) }},
		{"removed", os.RemoveAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, root := newStore(t)
			ctx := context.Background()
			deliver := func(body string) {
				t.Helper()
				m, err := s.Stage(ctx, "d/u", strings.NewReader(body))
				if err == nil {
					err = m.Commit(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			deliver("first\n")
			md := filepath.Join(root, "d/u/Maildir")
			if err := tc.change(md); err != nil {
				t.Fatal(err)
			}
			deliver("second\n")
			names := listDir(t, filepath.Join(md, "new"))
			if len(names) == 0 {
				t.Fatalf("the second message is not in %s/new", md)
			}
			b, err := os.ReadFile(filepath.Join(md, "new", names[len(names)-1]))
			if err != nil || string(b) != "second\n" {
				t.Fatalf("newest in %s/new: %q, %v", md, b, err)
			}
			if old := listDir(t, filepath.Join(md+".old", "new")); len(old) > 1 {
				t.Fatalf("delivered into the Maildir moved away: %v", old)
			}
		})
	}
}

// TestKeptDirsBounded: no more Maildirs than the bound keep their
// directories open, those given up are closed, and Close closes the rest.
func TestKeptDirsBounded(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	s.dirCache.max = 3
	ctx := context.Background()
	var kept []*deliveryDirs
	for i := range 8 {
		home := fmt.Sprintf("d/u%d", i)
		m, err := s.Stage(ctx, home, strings.NewReader("x\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		s.dirCache.mu.Lock()
		if n := len(s.dirCache.dirs); n > 3 {
			t.Errorf("%d Maildirs kept open, bound 3", n)
		}
		kept = append(kept, s.dirCache.dirs[Maildir(home)])
		s.dirCache.mu.Unlock()
	}
	closed := func(d *deliveryDirs) bool { return d.tmp.Fd() == ^uintptr(0) && d.new.Fd() == ^uintptr(0) }
	open := 0
	for _, d := range kept {
		if !closed(d) {
			open++
		}
	}
	if open != 3 {
		t.Errorf("%d of 8 Maildirs' directories open, want the 3 kept", open)
	}
	s.Close()
	for i, d := range kept {
		if !closed(d) {
			t.Errorf("u%d's directories still open after Close", i)
		}
	}
}
