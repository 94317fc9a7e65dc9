package authdelay

import (
	"testing"
	"time"
)

func TestAdd(t *testing.T) {
	now := time.Unix(1e9, 0)
	f := New(time.Second, func() time.Time { return now })
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		if got := f.Add("192.0.2.1"); got != want*time.Second {
			t.Errorf("failure %d: delay %v, want %v", i+1, got, want*time.Second)
		}
	}
	if got := f.Add("192.0.2.2"); got != time.Second {
		t.Errorf("another address: %v, want 1s", got)
	}
	now = now.Add(16 * time.Minute)
	if got := f.Add("192.0.2.1"); got != time.Second {
		t.Errorf("after a quiet quarter hour: %v, want 1s", got)
	}
}
