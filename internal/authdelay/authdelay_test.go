package authdelay

import (
	"fmt"
	"testing"
	"time"
)

// clock is a fixed time that a test moves on.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestFailDoubles(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	th := New(time.Second, c.now)
	for i, want := range []time.Duration{0, 1, 2, 4, 8, 16, 32, 60, 60} {
		if got := th.Fail("192.0.2.1", "alice"); got != want*time.Second {
			t.Errorf("failure %d: wait %v, want %v", i+1, got, want*time.Second)
		}
	}
	if got := th.Fail("192.0.2.2", "alice"); got != 0 {
		t.Errorf("another address: %v, want 0 (its first failure)", got)
	}
	c.t = c.t.Add(16 * time.Minute)
	if got := th.Fail("192.0.2.1", "alice"); got != 0 {
		t.Errorf("after a quiet quarter hour: %v, want 0 (forgotten)", got)
	}
}

// TestAllow: who is held back after which failures, whatever password
// the next attempt would bring.
func TestAllow(t *testing.T) {
	type attempt struct {
		key, user string
		after     time.Duration // since the last failure
		ok        bool
	}
	for _, tc := range []struct {
		name     string
		failures [][2]string // key, user
		attempts []attempt
	}{
		{"one mistyped password is retried at once", [][2]string{{"192.0.2.1", "alice"}},
			[]attempt{{"192.0.2.1", "alice", 0, true}}},
		{"the user that failed again waits", [][2]string{{"192.0.2.1", "alice"}, {"192.0.2.1", "Alice"}, {"192.0.2.1", "alice"}},
			[]attempt{{"192.0.2.1", "alice", 0, false}, {"192.0.2.1", "ALICE", 1900 * time.Millisecond, false},
				{"192.0.2.1", "alice", 2 * time.Second, true}}},
		{"other users behind the address do not", [][2]string{{"192.0.2.1", "alice"}, {"192.0.2.1", "alice"}},
			[]attempt{{"192.0.2.1", "bob", 0, true}, {"192.0.2.1", "", 0, true}, {"192.0.2.9", "alice", 0, true}}},
		{"failures for several users hold the address back", [][2]string{{"192.0.2.1", "alice"}, {"192.0.2.1", "bob"}, {"192.0.2.1", "carol"}},
			[]attempt{{"192.0.2.1", "dave", 0, false}, {"192.0.2.1", "", 0, false}, {"192.0.2.1", "dave", time.Second, true},
				{"192.0.2.2", "dave", 0, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{time.Unix(1e9, 0)}
			th := New(time.Second, c.now)
			for _, f := range tc.failures {
				th.Fail(f[0], f[1])
			}
			start := c.t
			for _, a := range tc.attempts {
				c.t = start.Add(a.after)
				if wait, ok := th.Allow(a.key, a.user); ok != a.ok {
					t.Errorf("%s/%q after %v: allowed %v, want %v (wait %v)", a.key, a.user, a.after, ok, a.ok, wait)
				}
			}
		})
	}
	var none *Throttle
	if _, ok := none.Allow("x", "y"); !ok || none.Fail("x", "y") != 0 {
		t.Error("a nil Throttle throttles")
	}
}

// TestManyUserNames: a key that fails with endless user names is held
// back as a whole, and its record stays bounded.
func TestManyUserNames(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	th := New(time.Second, c.now)
	for i := range 1000 {
		th.Fail("192.0.2.1", fmt.Sprint("user", i))
	}
	if n := len(th.keys["192.0.2.1"].users); n > maxUsers {
		t.Errorf("%d user names remembered, want at most %d", n, maxUsers)
	}
	if wait, ok := th.Allow("192.0.2.1", "new"); ok || wait != Max {
		t.Errorf("after 1,000 failures: allowed %v, wait %v, want refused for %v", ok, wait, Max)
	}
}
