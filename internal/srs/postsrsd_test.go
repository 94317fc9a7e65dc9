package srs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// vector is one request to postsrsd and its answer: "200 ADDRESS" or
// "500 REASON", exactly as the daemon printed it (URL-decoded).
type vector struct{ when, dir, in, answer string }

// publishedVectors come from postsrsd's own test suite
// (run_postsrsd_tests.bats in github.com/roehling/postsrsd, 1.x), which runs
// the daemon under faketime "2020-01-01 00:01:00 UTC" with the secret
// "tops3cr3t" and -d example.com. Vectors that the suite only matches by
// prefix ("200 SRS1=") are left out.
var publishedVectors = []vector{
	{"2020-01-01 00:01:00 UTC", "forward", "test@example.com", "200 test@example.com"},
	{"2020-01-01 00:01:00 UTC", "forward", "test@otherdomain.com", "200 SRS0=vmyz=2W=otherdomain.com=test@example.com"},
	{"2020-01-01 00:01:00 UTC", "forward", "bla", "500 No at sign"},
	{"2020-01-01 00:01:00 UTC", "forward", "SRS0=XjO9=2V=otherdomain.com=test@example.com", "500 Already rewritten"},
	{"2020-01-01 00:01:00 UTC", "forward", "SRS1=X=thirddomain.com==opaque+string@otherdomain.com", "200 SRS1=JIBX=thirddomain.com==opaque+string@example.com"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=XjO9=2V=otherdomain.com=test@example.com", "200 test@otherdomain.com"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS1=JIBX=thirddomain.com==opaque+string@example.com", "200 SRS0=opaque+string@thirddomain.com"},
	{"2020-01-01 00:01:00 UTC", "reverse", "test@example.com", "500 Not an SRS address"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=te87=T7=otherdomain.com=test@example.com", "500 Time stamp out of date"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=VcIb=7N=otherdomain.com=test@example.com", "500 Time stamp out of date"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=FAKE=2V=otherdomain.com=test@example.com", "500 Hash invalid"},
	{"2020-01-01 00:01:00 UTC", "reverse", "srs0=xjo9=2v=otherdomain.com=test@example.com", "200 test@otherdomain.com"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=XJO9=2V=OTHERDOMAIN.COM=TEST@EXAMPLE.COM", "200 TEST@OTHERDOMAIN.COM"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=@example.com", "500 No hash"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=XjO9@example.com", "500 No time"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=XjO9=2V@example.com", "500 No host"},
	{"2020-01-01 00:01:00 UTC", "reverse", "SRS0=XjO9=2V=otherdomain.com@example.com", "500 No user"},
}

// postsrsdVectors were produced on 2026-11-25 with Debian bookworm's postsrsd
// 1.10 (which carries libsrs2's srs2.c) by testdata/postsrsd-vectors.sh:
// postsrsd -d fwd.example.net with the secret file
// "mailroom-vector-secret\nold-vector-secret" under faketime, asked over its
// Postfix tcp_table socket. The rows signed with the old secret alone were
// made with SECRETS=old-vector-secret, and the last row with
// SECRETS=another-secret. The tests do not need postsrsd.
var postsrsdVectors = []vector{
	{"2026-11-25 12:00:00 UTC", "forward", "alice@example.com", "200 SRS0=AXXM=JO=example.com=alice@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "Bob.Smith+tag@Example.ORG", "200 SRS0=mfOP=JO=Example.ORG=Bob.Smith+tag@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "user@fwd.example.net", "200 user@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "USER@FWD.EXAMPLE.NET", "200 USER@FWD.EXAMPLE.NET"},
	{"2026-11-25 12:00:00 UTC", "forward", "x=y@sub.example.co.uk", "200 SRS0=3K57=JO=sub.example.co.uk=x=y@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "jösé@exämple.de", "200 SRS0=fE/R=JO=exämple.de=jösé@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "a-b_c.d@[192.0.2.1]", "200 SRS0=m9l1=JO=[192.0.2.1]=a-b_c.d@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "SRS0=abcd=XY=origin.example=carol@other.example", "200 SRS1=2m4z=other.example==abcd=XY=origin.example=carol@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "srs0+opaque-thing@other.example", "200 SRS1=+AYe=other.example=+opaque-thing@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "SRS1=Zz9A=first.example==Hh1=AB=orig.example=dave@second.example", "200 SRS1=F3Lq=first.example==Hh1=AB=orig.example=dave@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "SRS1-q=first.example=-opaque@second.example", "200 SRS1=GPpk=first.example=-opaque@fwd.example.net"},
	{"2026-11-25 12:00:00 UTC", "forward", "nobody", "500 No at sign in sender address"},
	{"2026-11-25 12:00:00 UTC", "forward", "SRS1=X@second.example", "500 No host in SRS1 address."},
	{"2024-02-29 23:59:59 UTC", "forward", "alice@example.com", "200 SRS0=B5lp=KG=example.com=alice@fwd.example.net"},
	// SECRETS=old-vector-secret:
	{"2026-11-20 08:00:00 UTC", "forward", "alice@example.com", "200 SRS0=8paZ=JJ=example.com=alice@fwd.example.net"},
	{"2026-11-20 08:00:00 UTC", "forward", "srs0+opaque-thing@other.example", "200 SRS1=SAUC=other.example=+opaque-thing@fwd.example.net"},

	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=AXXM=JO=example.com=alice@fwd.example.net", "200 alice@example.com"},
	{"2026-11-25 12:00:00 UTC", "reverse", "srs0=axxm=jo=EXAMPLE.COM=alice@FWD.example.net", "200 alice@EXAMPLE.COM"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0+AXXM=JO=example.com=alice@fwd.example.net", "200 alice@example.com"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=mfOP=JO=Example.ORG=Bob.Smith+tag@fwd.example.net", "200 Bob.Smith+tag@Example.ORG"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=3K57=JO=sub.example.co.uk=x=y@fwd.example.net", "200 x=y@sub.example.co.uk"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=fE/R=JO=exämple.de=jösé@fwd.example.net", "200 jösé@exämple.de"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=m9l1=JO=[192.0.2.1]=a-b_c.d@fwd.example.net", "200 a-b_c.d@[192.0.2.1]"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS1=2m4z=other.example==abcd=XY=origin.example=carol@fwd.example.net", "200 SRS0=abcd=XY=origin.example=carol@other.example"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS1=+AYe=other.example=+opaque-thing@fwd.example.net", "200 SRS0+opaque-thing@other.example"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS1=F3Lq=first.example==Hh1=AB=orig.example=dave@fwd.example.net", "200 SRS0=Hh1=AB=orig.example=dave@first.example"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS1=GPpk=first.example=-opaque@fwd.example.net", "200 SRS0-opaque@first.example"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=8paZ=JJ=example.com=alice@fwd.example.net", "200 alice@example.com"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS1=SAUC=other.example=+opaque-thing@fwd.example.net", "200 SRS0+opaque-thing@other.example"},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=B5lp=KG=example.com=alice@fwd.example.net", "500 Time stamp out of date."},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=AXXN=JO=example.com=alice@fwd.example.net", "500 Hash invalid in SRS address."},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=AXXM=JO=example.com=alicf@fwd.example.net", "500 Hash invalid in SRS address."},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS1=2m4y=other.example==abcd=XY=origin.example=carol@fwd.example.net", "500 Hash invalid in SRS address."},
	{"2026-11-25 12:00:00 UTC", "reverse", "alice@fwd.example.net", "500 Not an SRS address."},
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS2=AXXM=JO=example.com=alice@fwd.example.net", "500 Not an SRS address."},
	// postsrsd cuts at the first @ and finds no host; we cut at the last
	// and find a bad timestamp: both refuse it as malformed.
	{"2026-11-25 12:00:00 UTC", "reverse", "SRS0=AXXM=J@=example.com=alice@fwd.example.net", "500 No host in SRS0 address."},
	{"2026-12-16 23:59:59 UTC", "reverse", "SRS0=AXXM=JO=example.com=alice@fwd.example.net", "200 alice@example.com"},
	{"2026-12-17 00:00:00 UTC", "reverse", "SRS0=AXXM=JO=example.com=alice@fwd.example.net", "500 Time stamp out of date."},
	{"2026-11-24 23:59:59 UTC", "reverse", "SRS0=AXXM=JO=example.com=alice@fwd.example.net", "500 Time stamp out of date."},
}

// postsrsdErrors maps the start of postsrsd's 500 answers to our errors.
var postsrsdErrors = []struct {
	prefix string
	err    error
}{
	// postsrsd declines an address already at its domain, so Postfix
	// keeps it; Forward returns it unchanged (nil error below).
	{"500 Already rewritten", nil},
	{"500 Not an SRS", ErrNotSRS},
	{"500 Time stamp out of date", ErrExpired},
	{"500 Hash invalid", ErrBadHash},
	{"500 No ", ErrMalformed},
}

func TestPublishedVectors(t *testing.T) {
	runVectors(t, publishedVectors, Options{Secret: "tops3cr3t", Domain: "example.com"})
}

func TestPostsrsdVectors(t *testing.T) {
	runVectors(t, postsrsdVectors, Options{
		Secret: "mailroom-vector-secret", OldSecrets: []string{"old-vector-secret"}, Domain: "fwd.example.net",
	})
	// The last row postsrsd answered with only "another-secret" configured.
	s := newAt(t, Options{Secret: "another-secret", Domain: "fwd.example.net"}, "2026-11-25 12:00:00 UTC")
	if _, err := s.Reverse("SRS0=AXXM=JO=example.com=alice@fwd.example.net"); !errors.Is(err, ErrBadHash) {
		t.Errorf("reverse with another secret: err = %v, want ErrBadHash", err)
	}
}

func runVectors(t *testing.T, vectors []vector, opts Options) {
	t.Helper()
	for _, v := range vectors {
		t.Run(v.dir+"/"+v.in+"@"+v.when, func(t *testing.T) {
			o := opts
			if v.dir == "forward" && v.when == "2026-11-20 08:00:00 UTC" {
				o.Secret = "old-vector-secret" // made with SECRETS=old-vector-secret
			}
			s := newAt(t, o, v.when)
			op := s.Forward
			if v.dir == "reverse" {
				op = s.Reverse
			}
			got, err := op(v.in)
			if want, ok := strings.CutPrefix(v.answer, "200 "); ok {
				if err != nil || got != want {
					t.Fatalf("%s(%q) = %q, %v; postsrsd said %q", v.dir, v.in, got, err, want)
				}
				return
			}
			for _, e := range postsrsdErrors {
				if strings.HasPrefix(v.answer, e.prefix) {
					if e.err == nil && (err != nil || got != v.in) {
						t.Fatalf("%s(%q) = %q, %v; postsrsd said %q, want it unchanged", v.dir, v.in, got, err, v.answer)
					}
					if !errors.Is(err, e.err) {
						t.Fatalf("%s(%q) = %q, %v; postsrsd said %q, want %v", v.dir, v.in, got, err, v.answer, e.err)
					}
					return
				}
			}
			t.Fatalf("no error mapping for postsrsd's %q", v.answer)
		})
	}
}

// newAt returns a rewriter whose clock is stuck at when
// ("2006-01-02 15:04:05 UTC").
func newAt(t testing.TB, opts Options, when string) *SRS {
	t.Helper()
	now, err := time.Parse("2006-01-02 15:04:05 MST", when)
	if err != nil {
		t.Fatal(err)
	}
	opts.Now = func() time.Time { return now }
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
