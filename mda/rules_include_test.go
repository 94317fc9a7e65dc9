package mda_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/mda"
)

// TestIncludeFileThatIsAFIFO: an include file is often kept by someone
// else than the administrator; if it is replaced by a FIFO (or a device),
// expansion must fail at once with a temporary error, not hang the
// session that is resolving the recipient.
func TestIncludeFileThatIsAFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "members")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newRulesEnv(t, "list: :include:"+fifo+"\nnull: :include:/dev/zero\n", nil)
	for _, addr := range []string{"list@example.org", "null@example.org"} {
		done := make(chan error, 1)
		go func() {
			_, err := e.MDA.Resolve(addr)
			done <- err
		}()
		select {
		case err := <-done:
			var tmp interface{ Temporary() bool }
			if err == nil {
				t.Errorf("%s resolved through a FIFO or device", addr)
			} else if errors.As(err, &tmp) && !tmp.Temporary() {
				t.Errorf("%s: %v is permanent; the administrator can fix the file", addr, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Resolve(%s) hangs on an include file that is not a regular file", addr)
		}
	}
}

// TestIgnoredForwardIsLogged: a .forward that is not honoured (here a
// symlink to /etc/passwd) is named in the log with the reason, so that
// the user's "my forward does not work" has an answer.
func TestIgnoredForwardIsLogged(t *testing.T) {
	var log mailtest.LockedBuffer
	e := newRulesEnv(t, "", func(o *mda.Options) { o.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
	dir := filepath.Join(e.MailRoot, "example.org", "alice")
	os.MkdirAll(dir, 0o700)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, ".forward")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.MDA.Resolve("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if s := log.String(); !strings.Contains(s, "ignoring .forward") || !strings.Contains(s, filepath.Join(dir, ".forward")) || !strings.Contains(s, "symbolic link") {
		t.Errorf("log does not say which .forward was ignored and why:\n%s", s)
	}
}
