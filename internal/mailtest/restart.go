package mailtest

import (
	"os/exec"
	"testing"
	"time"
)

// StartServerConfig starts `mailroom serve` on an existing configuration
// file and data_dir and waits until it has logged that it started: for
// tests that prepare the data directory first (a queue left by a crash) or
// start a server again on the data of a stopped one. StartServer uses it
// for a fresh one.
func StartServerConfig(t testing.TB, cfgPath, dir string) *Server {
	t.Helper()
	s := &Server{Config: cfgPath, Dir: dir, bin: Binary(t), addrs: map[string][]string{},
		ready: make(chan struct{}), exit: make(chan struct{})}
	s.cmd = exec.Command(s.bin, "serve", "-config", cfgPath)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go s.readLog(stderr)
	t.Cleanup(func() {
		s.Stop(t)
		if loggedPanic(s.Log()) {
			t.Errorf("mailroom serve recovered a panic")
		}
		if t.Failed() {
			t.Logf("mailroom serve log:\n%s", s.Log())
		}
	})
	select {
	case <-s.ready:
	case <-s.exit:
		t.Fatalf("mailroom serve exited early: %v\n%s", s.cmd.ProcessState, s.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("mailroom serve did not start in 30s:\n%s", s.Log())
	}
	return s
}
