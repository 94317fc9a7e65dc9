package address

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in         string
		local, dom string
		bad        string // substring of the error, "" for success
	}{
		{in: "alice@example.org", local: "alice", dom: "example.org"},
		{in: "<Alice@Example.ORG>", local: "Alice", dom: "example.org"},
		{in: "a.b-c_d+e@example.org.", local: "a.b-c_d+e", dom: "example.org"},
		{in: "jösé@bücher.example", local: "jösé", dom: "bücher.example"},
		{in: "alice", bad: "missing @domain"},
		{in: "@example.org", bad: "empty local part"},
		{in: "alice@", bad: "empty domain"},
		{in: "../x@example.org", bad: "dot"},
		{in: "..@example.org", bad: "dot"},
		{in: ".@example.org", bad: "dot"},
		{in: "a/b@example.org", bad: `'/'`},
		{in: `a\b@example.org`, bad: `'\\'`},
		{in: "a\x00b@example.org", bad: "contains"},
		{in: "a\nb@example.org", bad: "contains"},
		{in: "a\x7fb@example.org", bad: "contains"},
		{in: "a b@example.org", bad: "contains"},
		{in: "\xff@example.org", bad: "UTF-8"},
		{in: strings.Repeat("a", 65) + "@example.org", bad: "longer than 64"},
		{in: "a@exa_mple.org", bad: "domain contains"},
		{in: "a@-example.org", bad: "hyphen"},
		{in: "a@example..org", bad: "empty"},
		{in: "a@[192.0.2.1]", bad: "domain contains"},
		{in: "a@" + strings.Repeat("a", 64) + ".org", bad: "over-long label"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			a, err := Parse(c.in)
			if c.bad != "" {
				if err == nil || !strings.Contains(err.Error(), c.bad) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q) = %v, %v; want error containing %q", c.in, a, err, c.bad)
				}
				return
			}
			if err != nil || a.Local != c.local || a.Domain != c.dom {
				t.Fatalf("Parse(%q) = %+v, %v; want %s@%s", c.in, a, err, c.local, c.dom)
			}
		})
	}
}

func TestKeyFoldsCase(t *testing.T) {
	a, _ := Parse("Alice.Smith@Example.org")
	if got := a.Key(); got != "alice.smith@example.org" {
		t.Fatalf("Key() = %q", got)
	}
	if got := a.String(); got != "Alice.Smith@example.org" {
		t.Fatalf("String() = %q; the local part's case must be kept", got)
	}
}

func TestStripExtension(t *testing.T) {
	cases := []struct{ local, delim, base, ext string }{
		{"alice+lists", "+", "alice", "lists"},
		{"alice+a+b", "+", "alice", "a+b"},
		{"alice-lists", "+-", "alice", "lists"},
		{"alice", "+", "alice", ""},
		{"+alice", "+", "+alice", ""},
		{"alice+", "+", "alice", ""},
		{"alice+x", "", "alice+x", ""},
	}
	for _, c := range cases {
		base, ext := StripExtension(c.local, c.delim)
		if base != c.base || ext != c.ext {
			t.Errorf("StripExtension(%q, %q) = %q, %q; want %q, %q", c.local, c.delim, base, ext, c.base, c.ext)
		}
	}
}

// FuzzParse checks that whatever Parse accepts is safe to use as a path
// element and survives a round trip.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"alice@example.org", "../x@y", "a/b@c", "<a@b>", "a@b@c", "\x00@x", "ü@ä.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		if a.Local == "." || a.Local == ".." || strings.ContainsAny(a.Local, "/\\\x00") {
			t.Fatalf("unsafe local part %q accepted", a.Local)
		}
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Fatalf("round trip of %q: %+v, %v", a, b, err)
		}
	})
}

func TestCheckSender(t *testing.T) {
	good := []string{"alice@example.org", "bounce@mail_host.example.com", `"john doe"@example.com`,
		"u@[192.0.2.1]", strings.Repeat("v", 70) + "@example.org", "jösé@bücher.example"}
	bad := []string{"", "alice", "@example.org", "alice@", "a\r\nb@example.org", "a b@example.org",
		"<a@b>", "a\x00@b", strings.Repeat("x", 250) + "@example.org"}
	for _, s := range good {
		if err := CheckSender(s); err != nil {
			t.Errorf("CheckSender(%q) = %v", s, err)
		}
	}
	for _, s := range bad {
		if err := CheckSender(s); err == nil {
			t.Errorf("CheckSender(%q) accepted", s)
		}
	}
}
