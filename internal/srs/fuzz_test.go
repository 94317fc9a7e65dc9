package srs

import (
	"errors"
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	"", "alice@example.com", "alice", "@", "SRS0=", "SRS1=", "srs0+x@y",
	"SRS0=AXXM=JO=example.com=alice@fwd.example.net",
	"SRS1=2m4z=other.example==abcd=XY=origin.example=carol@fwd.example.net",
	"SRS1=X=thirddomain.com==opaque+string@otherdomain.com",
	"SRS0=HHHH=TT=orig.example=carol@other.example",
	"SRS0=AXXM=J@=example.com=alice@fwd.example.net",
	"SRS1=AAAA==@x", "SRS0====@", "jösé@exämple.de", "a=b@[IPv6:2001:db8::1]",
	"SRS0=\xff\xfe=JO=e=a@x",
}

// FuzzReverse: Reverse never panics, every error is exactly one of the four
// sentinels, and whatever it accepts is a usable address.
func FuzzReverse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	s := newTest(f, Options{Secret: "mailroom-vector-secret", Domain: "fwd.example.net"})
	f.Fuzz(func(t *testing.T, addr string) {
		got, err := s.Reverse(addr)
		if err != nil {
			n := 0
			for _, e := range []error{ErrNotSRS, ErrMalformed, ErrBadHash, ErrExpired} {
				if errors.Is(err, e) {
					n++
				}
			}
			if n != 1 || got != "" {
				t.Fatalf("Reverse(%q) = %q, %v: want \"\" and exactly one sentinel", addr, got, err)
			}
			return
		}
		at := strings.LastIndexByte(got, '@')
		if at < 0 || !validLocal(got[:at]) || !validDomain(got[at+1:]) {
			t.Fatalf("Reverse(%q) = %q: not a valid address", addr, got)
		}
	})
}

// FuzzForward: Forward never panics, and anything it rewrites, Reverse turns
// back into the original sender (for SRS input: the first forwarder's SRS0
// address, with the tag in upper case).
func FuzzForward(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	s := newTest(f, Options{Secret: "mailroom-vector-secret", Domain: "fwd.example.net"})
	f.Fuzz(func(t *testing.T, sender string) {
		fwd, err := s.Forward(sender)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || fwd != "" {
				t.Fatalf("Forward(%q) = %q, %v: want \"\" and ErrMalformed", sender, fwd, err)
			}
			return
		}
		if fwd == sender {
			return // null sender or our own domain
		}
		got, err := s.Reverse(fwd)
		if err != nil {
			t.Fatalf("Reverse(Forward(%q) = %q): %v", sender, fwd, err)
		}
		at := strings.LastIndexByte(sender, '@')
		local, host := sender[:at], sender[at+1:]
		want := sender
		switch {
		case IsSRS(local) && local[3] == '1':
			_, rest, _ := strings.Cut(local[5:], "=")
			first, user, _ := strings.Cut(rest, "=")
			want = "SRS0" + user + "@" + first
		case IsSRS(local):
			want = "SRS0" + local[4:] + "@" + host
		}
		if got != want {
			t.Fatalf("Reverse(Forward(%q) = %q) = %q, want %q", sender, fwd, got, want)
		}
	})
}
