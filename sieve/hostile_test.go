package sieve

import (
	"context"
	"errors"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
)

// TestHostile runs scripts written to be slow or large. Each must end,
// within the cost limit, in the implicit keep with an error naming the
// limit; none may take the process down or run unbounded.
func TestHostile(t *testing.T) {
	bigHeader := "X-Big: " + strings.Repeat("a", 60000) + "\n"
	msg := bigHeader + "Subject: " + strings.Repeat("ab", 5000) + "\n\n" + strings.Repeat("line of body text\n", 50000)
	manyTests := func(test string, n int) string {
		var b strings.Builder
		b.WriteString(`require ["fileinto", "body", "regex", "variables"];` + "\n")
		for range n {
			b.WriteString("if " + test + " { discard; }\n")
		}
		return b.String()
	}
	cases := []struct {
		name, src string
		limits    Limits
		wantErr   string
	}{
		{"matches with many stars", manyTests(`header :matches "x-big" "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"`, 2000), Limits{MaxCost: 20e6}, "cost limit"},
		{"regex that backtracks elsewhere", manyTests(`header :regex "x-big" "(a*)*(a|aa)*b$"`, 200), Limits{MaxCost: 20e6}, "cost limit"},
		{"body over and over", manyTests(`body :contains "needle"`, 2000), Limits{}, "cost limit"},
		{"small budget", manyTests(`header :contains "subject" "zz"`, 100), Limits{MaxCost: 10000}, "cost limit"},
		{"variables doubling", `require "variables";` + strings.Repeat(`set "a" "${a}${a}x";`+"\n", 5000) +
			strings.Repeat(`set "b" "${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}";`+"\n", 2000), Limits{MaxCost: 20e6}, "cost limit"},
		{"huge regex from a variable", `require ["regex", "variables"]; set "p" "` + strings.Repeat("[^a]{1000}", 8) + `";` +
			`if header :regex "subject" "${p}" { discard; }`, Limits{}, "too complex"},
		// Each pattern is new, so each is compiled: the compilation is
		// what costs.
		{"many regexes compiled at run time", `require ["regex", "variables"];` + strings.Repeat(`set "p" "${p}x";`+
			`if string :regex "a" "`+strings.Repeat("[^a]{1000}", 2)+`${p}" { discard; }`+"\n", 200), Limits{}, "cost limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustCompile(t, c.src, Options{Name: "hostile", Limits: c.limits})
			m := readTestMessage(t, msg)
			res, err := s.Run(context.Background(), m, RunOptions{Envelope: testEnvelope})
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
			if got := canonical(res, nil); !slices.Equal(got, []string{"store INBOX flags="}) {
				t.Errorf("result %q, want the implicit keep", got)
			}
		})
	}
}

// TestHostileCompile checks the limits that apply before a script runs.
func TestHostileCompile(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"deep blocks", strings.Repeat("if true {", 1000) + strings.Repeat("}", 1000), "nested deeper"},
		{"deep tests", "if " + strings.Repeat("anyof(", 1000) + "true" + strings.Repeat(")", 1000) + " {}", "nested deeper"},
		{"many variables", `require "variables";` + func() string {
			var b strings.Builder
			for i := range 300 {
				b.WriteString(`set "v` + strings.Repeat("x", i) + `" "1";`)
			}
			return b.String()
		}(), "more than 255 variables"},
		{"huge regex", `require "regex"; if header :regex "a" "` + strings.Repeat("(a{1000}){1000}", 1) + `" {}`, "invalid regular expression"},
		{"regex over the size limit", `require "regex"; if header :regex "a" "` + strings.Repeat("[^a]{1000}", 8) + `" {}`, "too complex"},
		{"many large regexes", `require "regex";` + strings.Repeat(`if header :regex "a" "`+strings.Repeat("[^a]{1000}", 2)+`" {}`, 26), "too complex (more than 50000 instructions together)"},
		{"include loop", `require "include"; include "a";`, "loop"},
	}
	loader := mapLoader{"personal/a": `require "include"; include "b";`, "personal/b": `require "include"; include "a";`}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile([]byte(c.src), Options{Loader: loader})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestCancelledRun checks that a run notices its context.
func TestCancelledRun(t *testing.T) {
	var b strings.Builder
	for range 100000 {
		b.WriteString(`if header :contains "subject" "zz" { discard; }` + "\n")
	}
	s := mustCompile(t, b.String(), Options{Limits: Limits{MaxScriptSize: 10 << 20}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Run(ctx, readTestMessage(t, testMsg), RunOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestRegexSize checks that the estimate of a regex program, which
// refuses patterns before they are compiled, is never below the real
// size.
func TestRegexSize(t *testing.T) {
	for _, p := range []string{"a", "abc", "a|b|c", "(a|b)*c+d?", "[a-z]{1000}", "(ab){2,5}", "x{3,}", "^a.b$",
		"((a{10}){10}){10}", "(a|bc|def){7}", "", "[^a]{1000}[^b]{2}", "(a*)*(a|aa)*b$", "a{0}", "(a){0,1000}b"} {
		tree, err := syntax.Parse(p, syntax.POSIX|syntax.OneLine|syntax.DotNL|syntax.ClassNL)
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		prog, err := syntax.Compile(tree.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		if est := regexSize(tree); est < int64(len(prog.Inst)) {
			t.Errorf("%q: estimated %d instructions, has %d", p, est, len(prog.Inst))
		}
	}
}
