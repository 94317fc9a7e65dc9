package sievestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/sieve"
)

const home = "example.org/alice"

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := New(Options{MailRoot: root, MaxScripts: 3, MaxScriptSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, root
}

// TestStore covers the ManageSieve operations on the files (RFC 5804 §2).
func TestStore(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	if list, err := s.List(home); err != nil || len(list) != 0 {
		t.Fatalf("List of a new home: %v, %v", list, err)
	}
	if sc, err := s.Scripts(ctx, home); sc != nil || err != nil {
		t.Fatalf("Scripts without any: %v, %v", sc, err)
	}
	if err := s.Put(home, "a", []byte("keep;")); err != nil {
		t.Fatal(err)
	}
	err := s.Put(home, "bad", []byte("keep;\nfileinto \"x\";"))
	var se *sieve.Error
	if !errors.As(err, &se) || se.Pos.Line != 2 {
		t.Fatalf("a bad script: %v, want a compile error on line 2", err)
	}
	if _, err := s.Get(home, "bad"); !errors.Is(err, ErrNoScript) {
		t.Errorf("the refused script was stored: %v", err)
	}
	var qe *QuotaError
	if err := s.Put(home, "big", []byte(strings.Repeat("#", 201))); !errors.As(err, &qe) || qe.What != "MAXSIZE" {
		t.Errorf("too big: %v", err)
	}
	for _, n := range []string{"b", "c"} {
		if err := s.Put(home, n, []byte("discard;")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(home, "d", []byte("keep;")); !errors.As(err, &qe) || qe.What != "MAXSCRIPTS" {
		t.Errorf("a fourth script: %v", err)
	}
	if err := s.Put(home, "a", []byte("discard;")); err != nil {
		t.Errorf("replacing a script at the quota: %v", err)
	}
	for _, bad := range []string{"", ".hidden", "a/b", "x\x01", strings.Repeat("n", 129)} {
		if err := s.Put(home, bad, []byte("keep;")); !errors.Is(err, ErrBadName) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	if err := s.SetActive(home, "nope"); !errors.Is(err, ErrNoScript) {
		t.Errorf("activating a missing script: %v", err)
	}
	if err := s.SetActive(home, "a"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, home, "sieve", ".active")); err != nil || string(b) != "a\n" {
		t.Errorf(".active %q, %v", b, err)
	}
	if err := s.Delete(home, "a"); !errors.Is(err, ErrActive) {
		t.Errorf("deleting the active script: %v", err)
	}
	if err := s.Rename(home, "a", "b"); !errors.Is(err, ErrExists) {
		t.Errorf("renaming onto b: %v", err)
	}
	if err := s.Rename(home, "a", "main"); err != nil {
		t.Fatal(err)
	}
	if act, _ := s.Active(home); act != "main" {
		t.Errorf("after the rename the active script is %q", act)
	}
	if err := s.Delete(home, "b"); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(home)
	if err != nil || len(list) != 2 || list[0].Name != "c" || list[1].Name != "main" || !list[1].Active || list[0].Active {
		t.Errorf("List = %+v, %v", list, err)
	}
	if err := s.SetActive(home, ""); err != nil {
		t.Fatal(err)
	}
	if act, _ := s.Active(home); act != "" {
		t.Errorf("after deactivating: %q", act)
	}
	if _, err := s.List("../x"); err == nil {
		t.Error("a home outside the mail root")
	}
}

// TestScriptsCache checks that the compiled script is used again until
// the script, the active name or an included script changes.
func TestScriptsCache(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	if err := s.Put(home, "lib", []byte("require \"fileinto\"; fileinto \"A\";")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(home, "main", []byte("require \"include\"; include \"lib\";")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActive(home, "main"); err != nil {
		t.Fatal(err)
	}
	first, err := s.Scripts(ctx, home)
	if err != nil || first == nil {
		t.Fatal(first, err)
	}
	again, _ := s.Scripts(ctx, home)
	if again != first {
		t.Error("compiled again though nothing changed")
	}
	// An included script changed behind the store's back (a shell).
	if err := os.WriteFile(filepath.Join(root, home, "sieve", "lib.sieve"), []byte("require \"fileinto\"; fileinto \"B\"; "), 0o600); err != nil {
		t.Fatal(err)
	}
	third, _ := s.Scripts(ctx, home)
	if third == first {
		t.Error("an included script changed and the old compiled form was used")
	}
	// A broken script on disk gives its compile error to delivery.
	if err := os.WriteFile(filepath.Join(root, home, "sieve", "main.sieve"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scripts(ctx, home); err == nil {
		t.Error("a broken active script compiled")
	}
	// So does one too large to be a script, or a directory in its place,
	// rather than an error that would defer the mail for ever.
	var se *sieve.Error
	big := bytes.Repeat([]byte("keep;\n"), 1<<20)
	if err := os.WriteFile(filepath.Join(root, home, "sieve", "main.sieve"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scripts(ctx, home); !errors.As(err, &se) || se.Script != "main" {
		t.Errorf("a huge active script: %v, want a *sieve.Error naming it", err)
	}
	os.Remove(filepath.Join(root, home, "sieve", "main.sieve"))
	os.Mkdir(filepath.Join(root, home, "sieve", "main.sieve"), 0o700)
	if _, err := s.Scripts(ctx, home); !errors.As(err, &se) {
		t.Errorf("a directory as the active script: %v, want a *sieve.Error", err)
	}
	// A looping symbolic link as the active script: its error too.
	os.Remove(filepath.Join(root, home, "sieve", "main.sieve"))
	os.Symlink("main.sieve", filepath.Join(root, home, "sieve", "main.sieve"))
	if _, err := s.Scripts(ctx, home); !errors.As(err, &se) {
		t.Errorf("a symbolic link loop as the active script: %v, want a *sieve.Error", err)
	}
	// A .active that we did not write: no active script.
	os.WriteFile(filepath.Join(root, home, "sieve", ".active"), bytes.Repeat([]byte("x"), 4096), 0o600)
	if sc, err := s.Scripts(ctx, home); sc != nil || err != nil {
		t.Errorf("a huge .active: %v %v, want no script", sc, err)
	}
}

// TestIncludedScriptErrors: an included script that does not compile is
// the including script's error, and is compiled again once fixed; one
// that can never be read (a symbolic link loop, a directory) is the
// script's error too.
func TestIncludedScriptErrors(t *testing.T) {
	s, root := newStore(t)
	ctx := context.Background()
	dir := filepath.Join(root, home, "sieve")
	if err := s.Put(home, "lib", []byte("keep;")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(home, "main", []byte("require \"include\";\ninclude \"lib\";")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActive(home, "main"); err != nil {
		t.Fatal(err)
	}
	write := func(src string) {
		os.Remove(filepath.Join(dir, "lib.sieve"))
		if err := os.WriteFile(filepath.Join(dir, "lib.sieve"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var se *sieve.Error
	write("keep;\n  discard")
	if _, err := s.Scripts(ctx, home); !errors.As(err, &se) || se.Script != "lib" || se.Pos.Line != 2 || se.IncludedFrom() != "main:2:1" {
		t.Fatalf("broken lib: %v, want lib:2 included from main:2:1", err)
	}
	write("discard;")
	if sc, err := s.Scripts(ctx, home); sc == nil || err != nil {
		t.Fatalf("lib fixed: %v %v, want the script", sc, err)
	}
	os.Remove(filepath.Join(dir, "lib.sieve"))
	if err := os.Symlink("lib.sieve", filepath.Join(dir, "lib.sieve")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scripts(ctx, home); !errors.As(err, &se) || !strings.Contains(err.Error(), "cannot be used") {
		t.Fatalf("lib a symbolic link loop: %v, want a *sieve.Error (it lasts)", err)
	}
	write("keep;")
	if sc, err := s.Scripts(ctx, home); sc == nil || err != nil {
		t.Fatalf("lib readable again: %v %v, want the script", sc, err)
	}
	os.Remove(filepath.Join(dir, "lib.sieve"))
	os.Mkdir(filepath.Join(dir, "lib.sieve"), 0o700)
	if _, err := s.Scripts(ctx, home); !errors.As(err, &se) || !strings.Contains(err.Error(), "cannot be used") {
		t.Errorf("a directory as lib: %v, want a *sieve.Error", err)
	}
}

// TestAdminScriptGone: an administrator's script removed after start is
// skipped as one that does not compile (a *sieve.Error naming the file),
// and the user's script still runs; put back, it runs again.
func TestAdminScriptGone(t *testing.T) {
	root := t.TempDir()
	before := filepath.Join(t.TempDir(), "spam.sieve")
	if err := os.WriteFile(before, []byte("keep;"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{MailRoot: root, Before: []string{before}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(home, "main", []byte("keep;")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActive(home, "main"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if seq, err := s.Sequence(ctx, home); len(seq) != 2 || err != nil {
		t.Fatalf("with both: %d scripts, %v", len(seq), err)
	}
	os.Remove(before)
	seq, err := s.Sequence(ctx, home)
	var se *sieve.Error
	if len(seq) != 1 || !errors.As(err, &se) || se.Script != before {
		t.Errorf("before script gone: %d scripts, %v; want the user's and a *sieve.Error naming %s", len(seq), err, before)
	}
	os.WriteFile(before, []byte("keep;"), 0o600)
	if seq, err := s.Sequence(ctx, home); len(seq) != 2 || err != nil {
		t.Errorf("put back: %d scripts, %v", len(seq), err)
	}
}

// TestLoadError: only errors that may pass are trouble to try again;
// the others make the include the script's error.
func TestLoadError(t *testing.T) {
	pe := func(e error) error { return &fs.PathError{Op: "open", Path: "lib.sieve", Err: e} }
	cases := []struct {
		err                     error
		notFound, unusable, tmp bool
	}{
		{pe(syscall.ENOENT), true, false, false},
		{fmt.Errorf("%w: not a regular file", errTooLarge), false, true, false},
		{pe(syscall.ELOOP), false, true, false},
		{pe(syscall.EACCES), false, true, false},
		{errors.New("path escapes from parent"), false, true, false},
		{pe(syscall.EIO), false, false, true},
		{pe(syscall.EMFILE), false, false, true},
	}
	for _, c := range cases {
		got := loadError(c.err)
		if errors.Is(got, sieve.ErrNotFound) != c.notFound || errors.Is(got, sieve.ErrUnusable) != c.unusable || (got == c.err) != c.tmp {
			t.Errorf("loadError(%v) = %v", c.err, got)
		}
	}
}

func TestMemory(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := NewMemory(db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	m.now = func() time.Time { return now }
	ctx := context.Background()
	if err := m.Remember(ctx, home, Vacation, map[string]time.Duration{"k": time.Hour}); err != nil {
		t.Fatal(err)
	}
	check := func(h, kind, key string, want bool) {
		t.Helper()
		if got, err := m.Seen(ctx, h, kind, key); got != want || err != nil {
			t.Errorf("Seen(%s, %s, %s) = %v, %v; want %v", h, kind, key, got, err, want)
		}
	}
	check(home, Vacation, "k", true)
	check(home, Duplicate, "k", false)
	check("example.org/bob", Vacation, "k", false)
	now = now.Add(2 * time.Hour)
	check(home, Vacation, "k", false)
	if err := m.Remember(ctx, home, Duplicate, map[string]time.Duration{"x": time.Hour}); err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSieve).Get(memKey(home, Vacation, "k")) != nil {
			t.Error("the expired record was not swept")
		}
		return nil
	})
}
