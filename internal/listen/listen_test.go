package listen

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnixSocketModeAndStaleRemoval(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ls")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")

	// A stale socket: its server died without removing it.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal("stale socket not left behind by the setup")
	}

	l, err := Listen("unix:"+path, UnixOptions{Mode: 0o640})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	// A live socket must not be stolen.
	if _, err := Listen("unix:"+path, UnixOptions{}); err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatal("socket file not removed on Close")
	}
	// A regular file in the way is not deleted.
	os.WriteFile(path, []byte("data"), 0o600)
	if _, err := Listen("unix:"+path, UnixOptions{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Fatal("regular file was clobbered")
	}
}

func TestUnixSocketGroup(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ls")
	t.Cleanup(func() { os.RemoveAll(dir) })
	if _, err := Listen("unix:"+filepath.Join(dir, "a.sock"), UnixOptions{Group: "no-such-group-xyz"}); err == nil {
		t.Fatal("unknown group accepted")
	}
	l, err := Listen("unix:"+filepath.Join(dir, "b.sock"), UnixOptions{Group: "0"})
	if os.Geteuid() == 0 && err != nil {
		t.Fatalf("group 0 as root: %v", err)
	}
	if l != nil {
		l.Close()
	}
}

func TestTCP(t *testing.T) {
	l, err := Listen("127.0.0.1:0", UnixOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := Listen("127.0.0.1:notaport", UnixOptions{}); err == nil {
		t.Fatal("bad address accepted")
	}
}
