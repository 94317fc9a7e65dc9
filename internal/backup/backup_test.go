package backup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func maildir(t *testing.T, p string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(p, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCopyTreeAndVerify: a tree with Maildirs, an mbox and a .forward is
// copied without tmp/'s contents, and Verify (and sha256sum -c) accept
// the copy, then notice a changed, a missing and an extra file.
func TestCopyTreeAndVerify(t *testing.T) {
	src := t.TempDir()
	md := filepath.Join(src, "example.org/alice/Maildir")
	maildir(t, md)
	maildir(t, filepath.Join(md, ".Archive"))
	write(t, filepath.Join(md, "new/1.M1.mx"), "Subject: one\n\n1\n")
	write(t, filepath.Join(md, "cur/2.M2.mx:2,S"), "Subject: two\n\n2\n")
	write(t, filepath.Join(md, ".Archive/cur/3.M3.mx:2,"), "Subject: three\n\n3\n")
	write(t, filepath.Join(md, "tmp/4.M4.mx"), "half a mess")
	write(t, filepath.Join(src, "example.org/alice/.forward"), "\\alice\n")
	write(t, filepath.Join(src, "example.org/bob/mbox"), "From x  Mon Jan  1 00:00:00 2024\nSubject: b\n\nb\n")
	write(t, filepath.Join(src, "example.org/bob/.tmp-123"), "being written")

	dir := filepath.Join(t.TempDir(), "b")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := w.CopyTree(t.Context(), src, "mail", ".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Files != 5 || st.Messages != 3 {
		t.Errorf("stats %+v, want 5 files of which 3 messages", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "mail/example.org/alice/Maildir/tmp")); err != nil {
		t.Errorf("tmp/ must exist (empty) in the copy, or it is no Maildir: %v", err)
	}
	for _, left := range []string{"mail/example.org/alice/Maildir/tmp/4.M4.mx", "mail/example.org/bob/.tmp-123"} {
		if _, err := os.Stat(filepath.Join(dir, left)); err == nil {
			t.Errorf("%s was copied", left)
		}
	}
	if sum, err := Verify(dir); err != nil || sum.Files != 5 {
		t.Fatalf("Verify: %+v %v", sum, err)
	}
	// The manifest is sha256sum's format: the tool itself agrees.
	sha := mailtest.NeedTool(t, "sha256sum")
	cmd := exec.Command(sha, "--check", "--strict", "--quiet", ManifestName)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}

	if _, err := Create(dir); err == nil {
		t.Error("Create accepted a directory that is not empty")
	}
	for _, c := range []struct {
		name, want string
		damage     func()
	}{
		{"changed", "contents differ", func() { write(t, filepath.Join(dir, "mail/example.org/bob/mbox"), "other") }},
		{"missing", "no such file", func() { os.Remove(filepath.Join(dir, "mail/example.org/alice/.forward")) }},
		{"extra", "not in the manifest", func() { write(t, filepath.Join(dir, "mail/stray"), "x") }},
	} {
		c.damage()
		if _, err := Verify(dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Verify: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestCopyTreeWhileRenamed: messages renamed for their flags, moved from
// new/ to cur/ and between folders while the tree is copied are each in
// the copy exactly once.
func TestCopyTreeWhileRenamed(t *testing.T) {
	src := t.TempDir()
	md := filepath.Join(src, "example.org/alice/Maildir")
	maildir(t, md)
	maildir(t, filepath.Join(md, ".Archive"))
	const n = 400
	for i := range n {
		write(t, filepath.Join(md, "new", fmt.Sprintf("%d.M%d.mx", i, i)), fmt.Sprintf("Subject: %d\n\n", i))
	}
	// A mail client at work: every message goes to cur/ with a flag, and
	// every third one on to the archive, while the copy runs.
	var moved atomic.Int32
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(t.Context())
	wg.Go(func() {
		for i := range n {
			if ctx.Err() != nil {
				return
			}
			name := fmt.Sprintf("%d.M%d.mx", i, i)
			cur := filepath.Join(md, "cur", name+":2,S")
			os.Rename(filepath.Join(md, "new", name), cur)
			if i%3 == 0 {
				os.Rename(cur, filepath.Join(md, ".Archive/cur", name+":2,S"))
			}
			moved.Add(1)
		}
	})
	dir := filepath.Join(t.TempDir(), "b")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.CopyTree(t.Context(), src, "mail", ""); err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	filepath.WalkDir(filepath.Join(dir, "mail"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			u, _, _ := strings.Cut(d.Name(), ":")
			seen[u]++
		}
		return nil
	})
	for i := range n {
		if c := seen[fmt.Sprintf("%d.M%d.mx", i, i)]; c != 1 {
			t.Errorf("message %d is in the copy %d times, want once (%d renamed during the copy)", i, c, moved.Load())
		}
	}
	if _, err := Verify(dir); err != nil {
		t.Fatal(err)
	}
}

func TestManifestEscapes(t *testing.T) {
	for _, name := range []string{"plain", "back\\slash", "new\nline"} {
		sum := strings.Repeat("ab", 32)
		got, gotName, ok := parseManifestLine(strings.TrimSuffix(manifestLine(sum, name), "\n"))
		if !ok || got != sum || gotName != name {
			t.Errorf("%q: round trip gave %q %q %v", name, got, gotName, ok)
		}
	}
}

// TestCopyTreeKeepsMtime: a copied message keeps its modification time,
// which is its IMAP INTERNALDATE in a Maildir.
func TestCopyTreeKeepsMtime(t *testing.T) {
	src := t.TempDir()
	md := filepath.Join(src, "example.org/alice/Maildir")
	maildir(t, md)
	msg := filepath.Join(md, "cur/1.M1.mx:2,S")
	write(t, msg, "Subject: old\n\nold\n")
	old := time.Date(2019, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := os.Chtimes(msg, time.Time{}, old); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "b")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.CopyTree(t.Context(), src, "mail", ""); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "mail/example.org/alice/Maildir/cur/1.M1.mx:2,S"))
	if err != nil || !st.ModTime().Equal(old) {
		t.Fatalf("copy's mtime %v (%v), want %v", st.ModTime(), err, old)
	}
}
