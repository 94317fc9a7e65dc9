package mda_test

import (
	"context"
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
			_, err := e.MDA.Resolve(context.Background(), addr)
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
	if _, err := e.MDA.Resolve(context.Background(), "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if s := log.String(); !strings.Contains(s, "ignoring .forward") || !strings.Contains(s, filepath.Join(dir, ".forward")) || !strings.Contains(s, "symbolic link") {
		t.Errorf("log does not say which .forward was ignored and why:\n%s", s)
	}
}

// TestForwardPipeAsNobody: when mailroom runs as root, commands run as
// nobody, who cannot enter the mail home (mode 0700, mailroom's); the
// command must still run rather than fail to start and be retried
// forever.
func TestForwardPipeAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		if mailtest.InCI() {
			t.Fatal("running a command as nobody needs root, which CI has")
		}
		t.Skip("SKIP: running a command as nobody needs root")
	}
	e := newRulesEnv(t, "", func(o *mda.Options) {
		o.AllowCommands = true
		o.CommandCredential = &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	})
	out, err := os.MkdirTemp("", "mda-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	if err := os.Chmod(out, 0o1777); err != nil { // t.TempDir's parent is 0700
		t.Fatal(err)
	}
	e.out = out
	e.forward(t, "alice", "\"|cat > $OUT/piped\"\n")
	if err := os.Chmod(filepath.Join(e.MailRoot, "example.org", "alice"), 0o700); err != nil {
		t.Fatal(err)
	}
	res := e.deliver(t, "sender@remote.example", plainMsg, "alice@example.org")
	if res[0] != nil {
		t.Fatalf("result %v, want the command run", res[0])
	}
	if b, err := os.ReadFile(filepath.Join(e.out, "piped")); err != nil || !strings.Contains(string(b), "Subject: rules") {
		t.Errorf("the command did not get the message: %q %v", b, err)
	}
}
