package mbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoot: with Options.Root the mbox cannot be anywhere but inside the
// root, whatever the path or the symlinks on the way say.
func TestRoot(t *testing.T) {
	home := t.TempDir()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(home, "mail"), 0o700))
	must(os.Symlink(outside, filepath.Join(home, "out")))                        // a directory leading out
	must(os.Symlink(secret, filepath.Join(home, "mail", "abs")))                 // an absolute link out
	must(os.Symlink("../../"+filepath.Base(outside), filepath.Join(home, "up"))) // a relative link out
	must(os.WriteFile(filepath.Join(home, "mail", "real"), nil, 0o600))
	must(os.Symlink("real", filepath.Join(home, "mail", "link"))) // a link inside
	root, err := os.OpenRoot(home)
	must(err)
	defer root.Close()

	for _, c := range []struct {
		path string
		want error
	}{
		{"mail/archive", nil},
		{"top", nil},
		{"../" + filepath.Base(outside) + "/secret", ErrOutside},
		{secret, ErrOutside},
		{"out/secret", ErrOutside},
		{"out/new", ErrOutside},
		{"up/secret", ErrOutside},
		{"mail/abs", ErrSymlink},
		{"mail/link", ErrSymlink},
		{"mail/../../x", ErrOutside},
	} {
		t.Run(c.path, func(t *testing.T) {
			err := Append(context.Background(), c.path, "a@b", testDate, strings.NewReader("hello\n"), Options{Root: root})
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if msgs := split(t, filepath.Join(home, c.path)); len(msgs) != 1 {
					t.Fatalf("%d messages", len(msgs))
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Append(%q) = %v, want %v", c.path, err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Temporary() {
				t.Errorf("%v is temporary; retrying cannot help", err)
			}
		})
	}
	if b, _ := os.ReadFile(secret); string(b) != "keep\n" {
		t.Errorf("the file outside the root was changed: %q", b)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("files were created outside the root: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "mail", "real")); len(b) != 0 {
		t.Errorf("the target of a symlink inside the root was written: %q", b)
	}
}

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o700) }
