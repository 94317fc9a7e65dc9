package sieve

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func addCorpusScripts(f *testing.F) {
	for _, dir := range []string{"testdata/pigeonhole", "testdata/pigeonhole/bad"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sieve"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err == nil {
				f.Add(string(b))
			}
		}
	}
}

// FuzzCompile feeds the lexer, parser and compiler arbitrary scripts: no
// panic, and every error is an *Error with a place inside the script.
func FuzzCompile(f *testing.F) {
	addCorpusScripts(f)
	f.Add("require \"vacation\";\nvacation text:\n..x\n.\n;")
	f.Add(`require ["variables", "encoded-character"]; set "a" "${hex:41 42}${unicode:263a}${a}";`)
	f.Fuzz(func(t *testing.T, src string) {
		loader := mapLoader{"personal/a": `require "include"; include "a";`, "personal/b": "keep;"}
		_, err := Compile([]byte(src), Options{Name: "f", Loader: loader, Limits: Limits{MaxScriptSize: 1 << 16}})
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %v is not an *Error", err)
		}
		if e.Pos.Line > strings.Count(src, "\n")+1 || e.Pos.Line < 0 || e.Pos.Col < 0 {
			t.Fatalf("error place %s outside the script (%d lines)", e.Pos, strings.Count(src, "\n")+1)
		}
	})
}

// FuzzRun compiles and runs arbitrary scripts on a fixed message: no
// panic, a result always, and the implicit keep after any failure.
func FuzzRun(f *testing.F) {
	addCorpusScripts(f)
	msg, err := os.ReadFile("testdata/pigeonhole/multipart.eml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Compile([]byte(src), Options{Name: "f", Loader: dirLoader("testdata/pigeonhole/include"), Limits: Limits{MaxCost: 1e6}})
		if err != nil {
			return
		}
		m, err := ReadMessage(func() io.Reader { return strings.NewReader(string(msg)) }, int64(len(msg)))
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Run(context.Background(), m, RunOptions{Envelope: testEnvelope, Env: &fakeEnv{}})
		if res == nil {
			t.Fatal("nil result")
		}
		if err != nil {
			if len(res.Actions) != 1 {
				t.Fatalf("after %v: %d actions, want the implicit keep alone", err, len(res.Actions))
			}
			if k, ok := res.Actions[0].(Keep); !ok || !k.Implicit {
				t.Fatalf("after %v: %#v, want the implicit keep", err, res.Actions[0])
			}
		}
	})
}

// FuzzAddressList feeds the address-list parser arbitrary header values.
func FuzzAddressList(f *testing.F) {
	for _, s := range []string{
		`"Alice" <a@example.org>, b@example.net (Bob)`, "undisclosed-recipients:;", "grp: a@b.c, d@e.f;",
		"<@route,@x:a@b>", `"quoted\" local"@ex.com`, "a@[192.0.2.1]", "a@", "((nested) comment) x@y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addrs := parseAddressList(s)
		if len(addrs) == 0 {
			t.Fatal("no address at all, not even an invalid one")
		}
		for _, a := range addrs {
			for p := partAll; p <= partDetail; p++ {
				v, _ := a.part(p, "+")
				if len(v) > len(s) {
					t.Fatalf("part %d %q longer than the input %q", p, v, s)
				}
			}
		}
	})
}

// FuzzReadMessage feeds the header reader arbitrary messages.
func FuzzReadMessage(f *testing.F) {
	files, _ := filepath.Glob("testdata/pigeonhole/*.eml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, msg string) {
		m, err := ReadMessage(func() io.Reader { return strings.NewReader(msg) }, int64(len(msg)))
		if err != nil {
			t.Fatal(err)
		}
		if m.hdrLen > len(msg) {
			t.Fatalf("header of %d octets in a message of %d", m.hdrLen, len(msg))
		}
		for i := range m.fields {
			m.decoded(i)
		}
		m.rawBody(1 << 20)
		m.decodedParts(1 << 20)
	})
}

// FuzzGlob compares :matches with a regular expression built from the
// same pattern: both must agree on whether the text matches.
func FuzzGlob(f *testing.F) {
	f.Add("*a?b*", "xxaybzz", false)
	f.Add("\\**", "*x", true)
	f.Add("*.com", "coyote@ACME.Example.COM", true)
	f.Fuzz(func(t *testing.T, pattern, text string, fold bool) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(text) || len(pattern) > 64 || len(text) > 256 {
			return
		}
		items := parseGlob(pattern)
		var b strings.Builder
		b.WriteString("(?s)^")
		if fold {
			b.WriteString("(?i)")
		}
		for _, it := range items {
			switch it.kind {
			case '*':
				b.WriteString("(.*?)")
			case '?':
				b.WriteString("(.)")
			default:
				if fold && it.r > 0x7f {
					// i;ascii-casemap folds ASCII only.
					b.WriteString("(?-i:" + regexp.QuoteMeta(string(it.r)) + ")")
				} else {
					b.WriteString(regexp.QuoteMeta(string(it.r)))
				}
			}
		}
		b.WriteString("$")
		re := regexp.MustCompile(b.String())
		var caps []string
		var steps int64
		got := glob(items, text, fold, &caps, &steps)
		if want := re.MatchString(text); got != want {
			t.Fatalf("glob(%q, %q, fold=%v) = %v, regexp %s says %v", pattern, text, fold, got, b.String(), want)
		}
		if got && len(caps) != 1+strings.Count(b.String(), "(")-strings.Count(b.String(), "(?") {
			t.Fatalf("captures %q for %q", caps, pattern)
		}
		if steps > int64((len(items)+1)*(len(text)+1)+1) {
			t.Fatalf("%d steps for %d items on %d octets", steps, len(items), len(text))
		}
	})
}
