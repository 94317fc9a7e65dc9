package mailtest

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds and fails the test, naming what
// it waited for, if it does not within timeout. It is for states that
// nothing signals (another process's queue, a file a background writer
// fills, the end of a process that is not our child); where a channel or
// a callback exists, wait on that instead.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Poll is Eventually for a caller that has something to do when the wait
// fails (kill what did not stop): it reports whether cond held within
// timeout. The first polls come quickly, later ones every 20 ms, so a
// condition that is soon true costs no fixed sleep.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
		delay = min(2*delay, 20*time.Millisecond)
	}
	return true
}
