package srs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

// base is the day the table tests run on; its timestamp is "JO".
var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newTest(t testing.TB, opts Options) *SRS {
	t.Helper()
	if opts.Secret == "" {
		opts.Secret = "test-secret"
	}
	if opts.Domain == "" {
		opts.Domain = "fwd.example.net"
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return base }
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestForward(t *testing.T) {
	s := newTest(t, Options{})
	h := func(fields ...string) string { return s.hash(0, fields...) }
	tests := []struct {
		name, in, want string
	}{
		{"null sender", "", ""},
		{"plain", "alice@example.com", "SRS0=" + h("JO", "example.com", "alice") + "=JO=example.com=alice@fwd.example.net"},
		{"case kept, hash folded", "Alice@Example.COM", "SRS0=" + h("JO", "example.com", "alice") + "=JO=Example.COM=Alice@fwd.example.net"},
		{"our domain unchanged", "bob@fwd.example.net", "bob@fwd.example.net"},
		{"our domain any case", "bob@FWD.Example.NET", "bob@FWD.Example.NET"},
		{"our own SRS0 unchanged", "SRS0=abcd=JO=example.com=alice@fwd.example.net", "SRS0=abcd=JO=example.com=alice@fwd.example.net"},
		{"SRS0 from another forwarder", "SRS0=HHHH=TT=orig.example=carol@other.example",
			"SRS1=" + h("other.example", "=HHHH=TT=orig.example=carol") + "=other.example==HHHH=TT=orig.example=carol@fwd.example.net"},
		{"SRS0 with + separator, lower case", "srs0+opaque@other.example",
			"SRS1=" + h("other.example", "+opaque") + "=other.example=+opaque@fwd.example.net"},
		{"SRS1 keeps the first forwarder", "SRS1=XXXX=first.example==HHHH=TT=orig.example=dave@second.example",
			"SRS1=" + h("first.example", "=HHHH=TT=orig.example=dave") + "=first.example==HHHH=TT=orig.example=dave@fwd.example.net"},
		{"not quite SRS", "SRS0x@example.com", "SRS0=" + h("JO", "example.com", "SRS0x") + "=JO=example.com=SRS0x@fwd.example.net"},
		{"equals in local part", "a=b@example.com", "SRS0=" + h("JO", "example.com", "a=b") + "=JO=example.com=a=b@fwd.example.net"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Forward(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("Forward(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestForwardMalformed(t *testing.T) {
	s := newTest(t, Options{})
	for _, in := range []string{
		"alice",                  // no domain
		"@example.com",           // no local part
		"alice@",                 // empty domain
		`"john doe"@example.com`, // quoted local part
		"john doe@example.com",
		"a\x00b@example.com",
		"a@b@example.com",
		"alice@exa=mple.com", // '=' would split the SRS fields wrongly
		"alice@exa mple.com",
		"SRS1=XXXX@second.example",               // SRS1 without host
		"SRS1=XXXX=first.example@second.example", // SRS1 without user
		"SRS1=XXXX==rest@second.example",         // SRS1 with empty host
	} {
		if got, err := s.Forward(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("Forward(%q) = %q, %v; want ErrMalformed", in, got, err)
		}
	}
}

// TestRoundTrip forwards a sender and reverses the result the way a bounce
// comes back: the original sender for plain addresses, and for SRS input the
// SRS0 address of the first forwarder (which can reverse it in turn).
func TestRoundTrip(t *testing.T) {
	s := newTest(t, Options{})
	tests := []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{"Bob.Smith+tag@Example.ORG", "Bob.Smith+tag@Example.ORG"},
		{"x=y=z@sub.example.co.uk", "x=y=z@sub.example.co.uk"},
		{"jösé@exämple.de", "jösé@exämple.de"},
		{"u@[IPv6:2001:db8::1]", "u@[IPv6:2001:db8::1]"},
		{"SRS0=HHHH=TT=orig.example=carol@other.example", "SRS0=HHHH=TT=orig.example=carol@other.example"},
		{"srs0-opaque@other.example", "SRS0-opaque@other.example"},
		{"SRS1=XXXX=first.example==HHHH=TT=orig.example=dave@second.example", "SRS0=HHHH=TT=orig.example=dave@first.example"},
	}
	for _, tt := range tests {
		fwd, err := s.Forward(tt.in)
		if err != nil {
			t.Fatalf("Forward(%q): %v", tt.in, err)
		}
		if !strings.HasSuffix(fwd, "@fwd.example.net") || !IsSRS(fwd) {
			t.Errorf("Forward(%q) = %q, want an SRS address at fwd.example.net", tt.in, fwd)
		}
		got, err := s.Reverse(fwd)
		if err != nil || got != tt.want {
			t.Errorf("Reverse(Forward(%q) = %q) = %q, %v; want %q", tt.in, fwd, got, err, tt.want)
		}
	}
}

// TestReverseCase: some MTAs upper- or lower-case whole addresses; the hash,
// the tag and the timestamp are compared without case, as libsrs2 does.
func TestReverseCase(t *testing.T) {
	s := newTest(t, Options{})
	for _, in := range []string{"alice@example.com", "SRS0=HHHH=TT=orig.example=carol@other.example"} {
		fwd, err := s.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.Reverse(fwd)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{strings.ToLower(fwd), strings.ToUpper(fwd)} {
			got, err := s.Reverse(v)
			if err != nil || !strings.EqualFold(got, want) {
				t.Errorf("Reverse(%q) = %q, %v; want %q in any case", v, got, err, want)
			}
		}
	}
}

func TestReverseExpiry(t *testing.T) {
	fwd, err := newTest(t, Options{}).Forward("alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	startOfDay := base.Truncate(day)
	tests := []struct {
		name   string
		now    time.Time
		maxAge time.Duration
		ok     bool
	}{
		{"same day", base, 0, true},
		{"20 days", base.Add(20 * day), 0, true},
		{"last second of day 21", startOfDay.Add(22*day - time.Second), 0, true},
		{"day 22", startOfDay.Add(22 * day), 0, false},
		{"a year", base.Add(365 * day), 0, false},
		{"yesterday (future stamp)", startOfDay.Add(-time.Second), 0, false},
		{"custom 2 days, day 2", base.Add(2 * day), 2 * day, true},
		{"custom 2 days, day 3", base.Add(3 * day), 2 * day, false},
		{"partial days round down", base.Add(2 * day), 2*day + 23*time.Hour, true},
		// The stamp wraps every 1024 days: libsrs2 cannot tell these apart.
		{"1024 days later wraps", base.Add(1024 * day), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTest(t, Options{MaxAge: tt.maxAge, Now: func() time.Time { return tt.now }})
			got, err := s.Reverse(fwd)
			if tt.ok && (err != nil || got != "alice@example.com") {
				t.Errorf("Reverse(%q) at %v = %q, %v; want alice@example.com", fwd, tt.now, got, err)
			}
			if !tt.ok && !errors.Is(err, ErrExpired) {
				t.Errorf("Reverse(%q) at %v = %q, %v; want ErrExpired", fwd, tt.now, got, err)
			}
		})
	}
}

// TestReverseTampered changes every part of signed addresses in turn.
func TestReverseTampered(t *testing.T) {
	s := newTest(t, Options{})
	srs0, _ := s.Forward("alice@example.com")
	srs1, _ := s.Forward("SRS0=HHHH=TT=orig.example=carol@other.example")
	for _, good := range []string{srs0, srs1} {
		local := good[:strings.LastIndexByte(good, '@')]
		hash := local[5:9]
		var bad []string
		for i := range hashLength {
			for _, c := range []byte{'A', 'z', '0', '+', '/'} {
				if !strings.EqualFold(string(c), hash[i:i+1]) {
					bad = append(bad, local[:5+i]+string(c)+good[5+i+1:])
				}
			}
		}
		bad = append(bad,
			local[:5]+hash[:3]+local[9:]+"@x",              // hash too short
			local[:5]+hash+"A"+local[9:]+"@x",              // hash too long
			strings.Replace(good, "example", "exbmple", 1), // host changed
			local+"x@fwd.example.net",                      // user changed
		)
		if good == srs0 {
			bad = append(bad, strings.Replace(good, "=JO=", "=JP=", 1)) // stamp moved to tomorrow
		}
		for _, b := range bad {
			if got, err := s.Reverse(b); !errors.Is(err, ErrBadHash) {
				t.Errorf("Reverse(%q) = %q, %v; want ErrBadHash (from %q)", b, got, err, good)
			}
		}
	}
}

// TestReverseExpiredForgery: a forged address reports ErrBadHash whatever its
// timestamp, so "expired" is only ever said of addresses we made.
func TestReverseExpiredForgery(t *testing.T) {
	s := newTest(t, Options{})
	if _, err := s.Reverse("SRS0=AAAA=AA=example.com=alice@fwd.example.net"); !errors.Is(err, ErrBadHash) {
		t.Errorf("err = %v, want ErrBadHash", err)
	}
}

func TestRotation(t *testing.T) {
	old := newTest(t, Options{Secret: "old"})
	fwd0, _ := old.Forward("alice@example.com")
	fwd1, _ := old.Forward("SRS0=HHHH=TT=orig.example=carol@other.example")

	rotated := newTest(t, Options{Secret: "new", OldSecrets: []string{"older", "old"}})
	for _, f := range []string{fwd0, fwd1} {
		if _, err := rotated.Reverse(f); err != nil {
			t.Errorf("after rotation, Reverse(%q): %v", f, err)
		}
	}
	// New addresses are signed with the new secret only.
	fwdNew, _ := rotated.Forward("alice@example.com")
	if fwdNew == fwd0 {
		t.Errorf("Forward after rotation still signs with the old secret: %q", fwdNew)
	}
	if _, err := old.Reverse(fwdNew); !errors.Is(err, ErrBadHash) {
		t.Errorf("old secret accepts %q signed by the new one: %v", fwdNew, err)
	}
	dropped := newTest(t, Options{Secret: "new"})
	if _, err := dropped.Reverse(fwd0); !errors.Is(err, ErrBadHash) {
		t.Errorf("once the old secret is dropped, Reverse(%q): %v, want ErrBadHash", fwd0, err)
	}
}

func TestReverseErrors(t *testing.T) {
	s := newTest(t, Options{})
	tests := []struct {
		in   string
		want error
	}{
		{"", ErrNotSRS},
		{"alice@fwd.example.net", ErrNotSRS},
		{"alice", ErrNotSRS},
		{"SRS0@fwd.example.net", ErrNotSRS},
		{"SRS0", ErrNotSRS},
		{"SRS2=AAAA=JO=example.com=alice@fwd.example.net", ErrNotSRS},
		{"SRS0x=AAAA=JO=example.com=alice@fwd.example.net", ErrNotSRS},
		{"SRS0/AAAA=JO=example.com=alice@fwd.example.net", ErrNotSRS},
		{"SRS=@fwd.example.net", ErrNotSRS},
		{"SRS0=@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA@fwd.example.net", ErrMalformed},
		{"SRS0==JO=example.com=alice@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=JO@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=JO=example.com@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=JO=example.com=@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=JO==alice@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=J1=example.com=alice@fwd.example.net", ErrMalformed}, // 1 is not base32
		{"SRS0=AAAA=J=example.com=alice@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=JOO=example.com=alice@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA==example.com=alice@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=JO=exa mple.com=alice@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=JO=example.com=al<ice@fwd.example.net", ErrMalformed},
		{"SRS1=@fwd.example.net", ErrMalformed},
		{"SRS1=AAAA@fwd.example.net", ErrMalformed},
		{"SRS1=AAAA=first.example@fwd.example.net", ErrMalformed},
		{"SRS1=AAAA==rest@fwd.example.net", ErrMalformed},
		{"SRS1=AAAA=first.example=@fwd.example.net", ErrMalformed},
		{"SRS1==first.example==rest@fwd.example.net", ErrMalformed},
		{"SRS1=AAAA=first\x00.example==rest@fwd.example.net", ErrMalformed},
		{"SRS0=AAAA=JO=example.com=alice@fwd.example.net", ErrBadHash},
		{"SRS0=AAAAA=JO=example.com=alice@fwd.example.net", ErrBadHash},
		{"SRS1=AAAA=first.example==rest@fwd.example.net", ErrBadHash},
	}
	for _, tt := range tests {
		got, err := s.Reverse(tt.in)
		if !errors.Is(err, tt.want) || got != "" {
			t.Errorf("Reverse(%q) = %q, %v; want %v", tt.in, got, err, tt.want)
		}
		for _, other := range []error{ErrNotSRS, ErrMalformed, ErrBadHash, ErrExpired} {
			if other != tt.want && errors.Is(err, other) {
				t.Errorf("Reverse(%q): %v is also %v", tt.in, err, other)
			}
		}
	}
}

func TestIsSRS(t *testing.T) {
	for in, want := range map[string]bool{
		"SRS0=x": true, "SRS1=x": true, "srs0+": true, "Srs1-x": true, "SRS0=": true,
		"SRS0": false, "SRS2=x": false, "SRS0x": false, "SRS0/x": false, "SRS": false,
		"": false, "alice": false, "xSRS0=": false, "SRS0\x00": false,
	} {
		if got := IsSRS(in); got != want {
			t.Errorf("IsSRS(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestNew(t *testing.T) {
	ok := Options{Secret: "s", Domain: "fwd.example.net"}
	tests := []struct {
		name   string
		change func(*Options)
		errHas string // "" means New must succeed
	}{
		{"defaults", func(*Options) {}, ""},
		{"empty secret", func(o *Options) { o.Secret = "" }, "Secret"},
		{"empty old secret", func(o *Options) { o.OldSecrets = []string{"a", ""} }, "OldSecrets[1]"},
		{"no domain", func(o *Options) { o.Domain = "" }, "Domain"},
		{"domain with @", func(o *Options) { o.Domain = "a@fwd.example.net" }, "Domain"},
		{"domain with =", func(o *Options) { o.Domain = "fwd=example.net" }, "Domain"},
		{"max age below a day", func(o *Options) { o.MaxAge = time.Hour }, "MaxAge"},
		{"negative max age", func(o *Options) { o.MaxAge = -day }, "MaxAge"},
		{"max age wraps", func(o *Options) { o.MaxAge = 1024 * day }, "MaxAge"},
		{"longest max age", func(o *Options) { o.MaxAge = 1023 * day }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.change(&o)
			s, err := New(o)
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("New(%+v) = %v, %v; want an error naming %s", o, s, err, tt.errHas)
			}
		})
	}
	s, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if s.maxAgeDays != 21 || s.now == nil {
		t.Errorf("defaults: maxAgeDays = %d, now set = %v; want 21, true", s.maxAgeDays, s.now != nil)
	}
}

func TestTimestamp(t *testing.T) {
	for _, tt := range []struct {
		when time.Time
		want string
	}{
		{time.Unix(0, 0), "AA"},
		{time.Unix(86400-1, 0), "AA"},
		{time.Unix(86400, 0), "AB"},
		{time.Unix(31*86400, 0), "A7"},
		{time.Unix(32*86400, 0), "BA"},
		{time.Unix(1023*86400, 0), "77"},
		{time.Unix(1024*86400, 0), "AA"},
		{time.Unix(-1, 0), "77"},
		{base, "JO"},
	} {
		got := timestamp(tt.when)
		if got != tt.want {
			t.Errorf("timestamp(%v) = %q, want %q", tt.when.UTC(), got, tt.want)
		}
		if n, ok := parseTimestamp(strings.ToLower(got)); !ok || n != dayNumber(tt.when) {
			t.Errorf("parseTimestamp(%q) = %d, %v; want %d", strings.ToLower(got), n, ok, dayNumber(tt.when))
		}
	}
}
