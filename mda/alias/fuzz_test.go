package alias

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"mailroom/internal/address"
)

var fuzzSeeds = []string{
	"postmaster: root\n",
	"team: alice, bob,\n  \"|/usr/bin/cmd a, b\", /var/mail/x\n\t:include:/etc/l\n",
	"@example.org: \\catch, x@example.net # c\n",
	"\"q n\": a\n",
	"a: \"unterminated\n",
	"a: /x/../y\n",
	"\x00\xff\n",
	"a: \"\\\\b\"\n",
	"  orphan\n",
	"a\r\n:b",
}

// checkTargets asserts what every parsed target promises: paths are
// absolute and clean, commands non-empty, and the target reads back the
// same from its String form.
func checkTargets(t *testing.T, ts []Target) {
	t.Helper()
	for _, tg := range ts {
		switch tg.Kind {
		case File, Include:
			if checkPath(tg.Value, "path") != "" {
				t.Fatalf("accepted unsafe path %q", tg.Value)
			}
		case Pipe:
			if strings.TrimSpace(tg.Value) != tg.Value || tg.Value == "" {
				t.Fatalf("bad command %q", tg.Value)
			}
		case Address:
			if strings.ContainsAny(tg.Value, "/ \t\"") || tg.Value == "" {
				t.Fatalf("bad address %q", tg.Value)
			}
		default:
			t.Fatalf("parsed kind %v", tg.Kind)
		}
		back, err := ParseForward(strings.NewReader(tg.String()), "re")
		if err != nil || len(back) != 1 {
			t.Fatalf("target %+v: String %q reparses as %v, %v", tg, tg.String(), back, err)
		}
		got, want := back[0], tg
		got.Source, want.Source = Source{}, Source{}
		if got != want {
			t.Fatalf("round trip of %q: got %+v, want %+v", tg.String(), got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tab, err := Parse(strings.NewReader(s), "fuzz")
		if err != nil {
			if tab != nil {
				t.Fatal("table and error")
			}
			return
		}
		for _, name := range tab.Names() {
			ts, _, ok := tab.Lookup(name)
			if !ok || len(ts) == 0 {
				t.Fatalf("alias %q: ok=%v with %d targets", name, ok, len(ts))
			}
			checkTargets(t, ts)
		}
	})
}

func FuzzParseForward(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, _ := ParseForward(strings.NewReader(s), "fuzz")
		checkTargets(t, ts)
	})
}

// FuzzExpand expands an address through a fuzzed aliases file that is
// also every .forward and include file: expansion must end, never panic,
// and deliver only to what the policy allows.
func FuzzExpand(f *testing.F) {
	f.Add("a: b, a, :include:/inc, \\alice\nb: a, x@example.net\n@example.org: a\n", "a+x")
	f.Add("alice: |/bin/x, /tmp/y\n", "alice")
	f.Add("bob: bob\n", "zed")
	f.Fuzz(func(t *testing.T, text, local string) {
		tab, err := Parse(strings.NewReader(text), "fuzz")
		if err != nil {
			return
		}
		a, err := address.Parse(local + "@example.org")
		if err != nil {
			return
		}
		r := newResolver(nil)
		r.forwards = map[string]string{"example.org/alice": text, "example.org/bob": text}
		opts := Options{Delimiter: "+-", ReadInclude: fakeFiles(map[string]string{"/inc": text})}
		n, err := Expand(context.Background(), tab, a, r, opts)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("temporary error from fakes that only miss files: %v", err)
		}
		for _, l := range n.Leaves() {
			if l.Err != nil {
				continue
			}
			if (l.Kind == Pipe || l.Kind == File) && l.Home != "" {
				t.Fatalf("a .forward pipe or file got through: %+v", l)
			}
			if l.Kind == File && checkPath(l.Path, "file") != "" {
				t.Fatalf("unsafe path %q", l.Path)
			}
		}
		if err := n.Format(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}
