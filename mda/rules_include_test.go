package mda_test

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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
