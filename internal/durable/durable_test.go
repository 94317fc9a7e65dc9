package durable

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	sync := NewDirSyncer(dir)
	cases := []struct {
		name  string
		fill  func(io.Writer) error
		sync  *DirSyncer
		want  string // "" means the file must not exist
		fails bool
	}{
		{"written", func(w io.Writer) error { _, err := io.WriteString(w, "hello"); return err }, nil, "hello", false},
		{"replaced, shared sync", func(w io.Writer) error { _, err := io.WriteString(w, "again"); return err }, sync, "again", false},
		{"fill fails", func(w io.Writer) error { io.WriteString(w, "half"); return errors.New("disk on fire") }, sync, "again", true},
	}
	for _, c := range cases {
		err := WriteFile(dir, "f", 0o600, c.sync, c.fill)
		if (err != nil) != c.fails {
			t.Fatalf("%s: err %v", c.name, err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "f"))
		if string(b) != c.want {
			t.Errorf("%s: file holds %q, want %q", c.name, b, c.want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := WriteFile(filepath.Join(dir, "missing"), "f", 0o600, nil, func(io.Writer) error { return nil }); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestDirSyncerConcurrent(t *testing.T) {
	g := NewDirSyncer(t.TempDir())
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := g.Sync(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := NewDirSyncer(filepath.Join(t.TempDir(), "gone")).Sync(); err == nil {
		t.Error("sync of a missing directory succeeded")
	}
}
