package saslogin

import (
	"errors"
	"testing"
)

// TestServer plays the exchange with and without an initial response,
// with the check failing, and with a response too many.
func TestServer(t *testing.T) {
	refused := errors.New("refused")
	for _, c := range []struct {
		name      string
		responses []string // nil: no initial response
		wantCh    []string // the challenge after each response
		checkErr  error
	}{
		{"asked for both", []string{"", "alice", "pw"}, []string{"Username:", "Password:", ""}, nil},
		{"initial response", []string{"alice", "pw"}, []string{"Password:", ""}, nil},
		{"refused", []string{"", "alice", "pw"}, []string{"Username:", "Password:", ""}, refused},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got [2]string
			s := NewServer(func(u, p string) error { got = [2]string{u, p}; return c.checkErr })
			for i, r := range c.responses {
				ch, done, err := s.Next([]byte(r))
				last := i == len(c.responses)-1
				if string(ch) != c.wantCh[i] || done != last {
					t.Fatalf("step %d: challenge %q done %v, want %q %v", i, ch, done, c.wantCh[i], last)
				}
				if last && !errors.Is(err, c.checkErr) || !last && err != nil {
					t.Fatalf("step %d: err %v, want %v", i, err, c.checkErr)
				}
			}
			if got != [2]string{"alice", "pw"} {
				t.Errorf("checked %q, want alice and pw", got)
			}
			if _, _, err := s.Next([]byte("more")); err == nil {
				t.Error("a response after the end was accepted")
			}
		})
	}
}
