package sievestore

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/sieve"
)

// TestScriptsSeeChanges: every change on disk to what a home's script
// was compiled from is seen by the next delivery, whether the store
// checks the files through openat2 or through os.Root, and a script
// directory that leads out of the mail root is never used.
func TestScriptsSeeChanges(t *testing.T) {
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	tests := []struct {
		name   string
		change func(t *testing.T, root, dir string)
		want   string // the folder the script files into; "" for no script
	}{
		{"nothing changed", func(*testing.T, string, string) {}, "A"},
		{"script rewritten in place, same size", func(t *testing.T, _, dir string) {
			write(t, filepath.Join(dir, "main.sieve"), `require "fileinto"; fileinto "B";`)
			os.Chtimes(filepath.Join(dir, "main.sieve"), later, later)
		}, "B"},
		{"included script changed", func(t *testing.T, _, dir string) {
			write(t, filepath.Join(dir, "lib.sieve"), `require "fileinto"; fileinto "C";`)
			os.Chtimes(filepath.Join(dir, "lib.sieve"), later, later)
		}, "C"},
		{".active names another script", func(t *testing.T, _, dir string) {
			write(t, filepath.Join(dir, ".active"), "other\n")
		}, "D"},
		{".active removed", func(t *testing.T, _, dir string) {
			os.Remove(filepath.Join(dir, ".active"))
		}, ""},
		{"script directory moved away", func(t *testing.T, _, dir string) {
			os.Rename(dir, dir+".old")
		}, ""},
		{"script directory a link inside the mail root", func(t *testing.T, root, dir string) {
			os.Rename(dir, filepath.Join(root, "example.org", "elsewhere"))
			os.Symlink("../elsewhere", dir)
		}, "A"},
		{"script directory a link out of the mail root", func(t *testing.T, root, dir string) {
			out := t.TempDir()
			os.Rename(dir, filepath.Join(out, "sieve"))
			os.Symlink(filepath.Join(out, "sieve"), dir)
		}, ""},
		{".active a link out of the mail root", func(t *testing.T, root, dir string) {
			out := filepath.Join(t.TempDir(), "active")
			write(t, out, "other\n")
			os.Remove(filepath.Join(dir, ".active"))
			os.Symlink(out, filepath.Join(dir, ".active"))
		}, ""},
	}
	for _, viaRoot := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(tt.name+map[bool]string{false: "", true: " (os.Root)"}[viaRoot], func(t *testing.T) {
				s, root := newStore(t)
				s.noOpenat2.Store(viaRoot)
				for _, f := range [][2]string{
					{"lib", `require "fileinto"; fileinto "A";`},
					{"main", `require "include"; include "lib";`},
					{"other", `require "fileinto"; fileinto "D";`},
				} {
					if err := s.Put(home, f[0], []byte(f[1])); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.SetActive(home, "main"); err != nil {
					t.Fatal(err)
				}
				if got := folderOf(t, s, ctx); got != "A" {
					t.Fatalf("before the change: %q", got)
				}
				tt.change(t, root, filepath.Join(root, home, "sieve"))
				if got := folderOf(t, s, ctx); got != tt.want {
					t.Errorf("after the change the script files into %q, want %q", got, tt.want)
				}
			})
		}
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// folderOf runs home's script and returns the folder it files into, ""
// if home has no script.
func folderOf(t *testing.T, s *Store, ctx context.Context) string {
	t.Helper()
	sc, err := s.Scripts(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	if sc == nil {
		return ""
	}
	msg, err := sieve.ReadMessage(func() io.Reader { return strings.NewReader("Subject: x\r\n\r\nbody\r\n") }, 20)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sc.Run(ctx, msg, sieve.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Actions {
		if f, ok := a.(sieve.FileInto); ok {
			return f.Mailbox
		}
	}
	t.Fatalf("the script did no fileinto: %v", res.Actions)
	return ""
}
