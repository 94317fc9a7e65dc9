package alias

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"mailroom/internal/address"
)

// dump renders a table compactly: one "name(line)=target;target" per alias,
// each target as kind:value[!](line), "!" marking NoExpand.
func dump(t *Table) string {
	var out []string
	for _, name := range t.Names() {
		ts, src, _ := t.Lookup(name)
		out = append(out, fmt.Sprintf("%s(%d)=%s", name, src.Line, dumpTargets(ts)))
	}
	return strings.Join(out, " ")
}

func dumpTargets(ts []Target) string {
	var parts []string
	for _, t := range ts {
		ne := ""
		if t.NoExpand {
			ne = "!"
		}
		parts = append(parts, fmt.Sprintf("%s:%s%s(%d)", t.Kind, t.Value, ne, t.Source.Line))
	}
	return strings.Join(parts, ";")
}

func TestParse(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"comments and blanks", "# a comment\n\n   \n\t# indented comment\n", ""},
		{"simple", "postmaster: root\n", "postmaster(1)=address:root(1)"},
		{"case folded", "PostMaster: Root\n", "postmaster(1)=address:Root(1)"},
		{"list", "team: alice, bob,carol ,  dave@example.org\n",
			"team(1)=address:alice(1);address:bob(1);address:carol(1);address:dave@example.org(1)"},
		{"no space after colon", "a:b\n", "a(1)=address:b(1)"},
		{"space before colon", "a : b\n", "a(1)=address:b(1)"},
		{"full address name", "Sales@Example.ORG: alice\n", "sales@example.org(1)=address:alice(1)"},
		{"catch-all", "@Example.org: alice\n", "@example.org(1)=address:alice(1)"},
		{"quoted name", "\"owner-list\": alice\n", "owner-list(1)=address:alice(1)"},
		{"remote domain case", "a: Bob@Example.NET\n", "a(1)=address:Bob@example.net(1)"},
		{"continuation", "team: alice,\n  bob,\n\tcarol\nnext: x\n",
			"next(4)=address:x(4) team(1)=address:alice(1);address:bob(2);address:carol(3)"},
		{"continuation across blank and comment", "team: alice,\n\n# c\n  bob\n",
			"team(1)=address:alice(1);address:bob(4)"},
		{"continuation without comma", "team: alice\n  bob\n", "team(1)=address:alice(1);address:bob(2)"},
		{"trailing comment", "a: b, c # the boss\n", "a(1)=address:b(1);address:c(1)"},
		{"comment after quoted", "a: \"/x y\" # c\n", "a(1)=file:/x y(1)"},
		{"hash inside quotes", "a: \"|/bin/echo #1, two\"\n", "a(1)=pipe:/bin/echo #1, two(1)"},
		{"hash inside a name", "a: b#c\n", "a(1)=address:b#c(1)"},
		{"file", "a: /var/mail/archive\n", "a(1)=file:/var/mail/archive(1)"},
		{"quoted file with space", "a: \"/var/mail/my archive\"\n", "a(1)=file:/var/mail/my archive(1)"},
		{"pipe", "a: |/usr/bin/procmail\n", "a(1)=pipe:/usr/bin/procmail(1)"},
		{"unquoted pipe with args", "a: |/usr/bin/vacation alice, bob\n", "a(1)=pipe:/usr/bin/vacation alice(1);address:bob(1)"},
		{"quoted pipe", "a: \"|/usr/bin/cmd -x, -y\"\n", "a(1)=pipe:/usr/bin/cmd -x, -y(1)"},
		{"quoted pipe escapes", `a: "|/bin/echo \"hi\" \\ there"` + "\n", `a(1)=pipe:/bin/echo "hi" \ there(1)`},
		{"include", "a: :include:/etc/mailroom/list\n", "a(1)=include:/etc/mailroom/list(1)"},
		{"include with space", "a: :include: /etc/list, :INCLUDE:/etc/l2\n", "a(1)=include:/etc/list(1);include:/etc/l2(1)"},
		{"no expand", "alice: \\alice, bob@example.net\n", "alice(1)=address:alice!(1);address:bob@example.net(1)"},
		{"quoted no expand", "alice: \"\\\\alice\"\n", "alice(1)=address:alice!(1)"},
		{"byte order mark", "\ufeffpostmaster: root\n", "postmaster(1)=address:root(1)"},
		{"crlf", "a: b\r\nc: d\r\n", "a(1)=address:b(1) c(2)=address:d(2)"},
		{"no final newline", "a: b", "a(1)=address:b(1)"},
		{"name and full address differ", "sales: a\nsales@example.org: b\n", "sales(1)=address:a(1) sales@example.org(2)=address:b(2)"},
		{"utf8", "jörg: jörg@bücher.example\n", "jörg(1)=address:jörg@bücher.example(1)"},
		{"empty elements", "a: b,, ,c,\n", "a(1)=address:b(1);address:c(1)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, err := Parse(strings.NewReader(c.in), "aliases")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := dump(tab); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := "a: " + strings.Repeat("b", 1<<20) + "\n"
	cases := []struct {
		name, in string
		want     []string // each a substring of the joined error, e.g. "aliases:3: missing ':'"
	}{
		{"missing colon", "ok: x\nalice bob\n", []string{"aliases:2: missing ':'", "name: target"}},
		{"empty name", ": bob\n", []string{"aliases:1: empty alias name"}},
		{"no targets", "a:\nb: c\n", []string{`aliases:1: alias "a" has no targets`}},
		{"no targets comment", "a: # nothing\n", []string{"aliases:1: alias \"a\" has no targets"}},
		{"bad name", "a/b: c\n", []string{"aliases:1: bad alias name", `'/'`}},
		{"dotdot name", "..: c\n", []string{"aliases:1: bad alias name"}},
		{"bad catch-all", "@: c\n", []string{"aliases:1: bad catch-all"}},
		{"bad address name", "a@b_c: d\n", []string{"aliases:1: bad alias name"}},
		{"duplicate", "a: b\n# x\nA: c\n", []string{`aliases:3: alias "a" is already defined at line 1; merge`}},
		{"relative path", "a: mail/archive\n", []string{"aliases:1:", "absolute path"}},
		{"dot path", "a: ./archive\n", []string{"aliases:1:", "absolute path"}},
		{"leading dot", "a: .x\n", []string{"aliases:1: bad target \".x\"", "dot"}},
		{"tilde path", "a: ~/archive\n", []string{"aliases:1:", "absolute path"}},
		{"dotdot path", "a: /var/mail/../../etc/passwd\n", []string{"aliases:1: file target", "'..' element"}},
		{"dotdot relative", "a: ../x\n", []string{"aliases:1:", "absolute path"}},
		{"unclean path", "a: /var//mail/./x\n", []string{"aliases:1: file target", "not a clean path", `"/var/mail/x"`}},
		{"directory", "a: /var/mail/\n", []string{"aliases:1: file target", "ends in '/'"}},
		{"root", "a: /\n", []string{"aliases:1: file target", "directory"}},
		{"include relative", "a: :include:list\n", []string{"aliases:1: include file", "absolute"}},
		{"include dotdot", "a: :include:/etc/../etc/list\n", []string{"aliases:1: include file", "'..'"}},
		{"include empty", "a: :include:\n", []string{"aliases:1: empty include file path"}},
		{"empty pipe", "a: |\n", []string{"aliases:1: empty command"}},
		{"empty noexpand", "a: \\\n", []string{"aliases:1: empty name after"}},
		{"domain target", "a: @example.org\n", []string{"aliases:1:", "not a whole domain"}},
		{"bad address target", "a: b@c..d\n", []string{"aliases:1: bad target"}},
		{"space in target", "a: bob carol\n", []string{"aliases:1: white space inside target", "commas"}},
		{"space in file", "a: /var/my file\n", []string{"aliases:1: white space in file target", "quote"}},
		{"unterminated quote", "a: \"|/bin/cmd\n  b\n", []string{"aliases:1: unterminated quote"}},
		{"unterminated quoted name", "\"a: b\n", []string{"aliases:1: unterminated quote in the alias name"}},
		{"text after quote", "a: \"/x\"y\n", []string{"aliases:1: unexpected text after the closing quote"}},
		{"quote in middle", "a: |\"/bin/cmd x\"\n", []string{"aliases:1: quote in the middle"}},
		{"empty quotes", "a: \"\"\n", []string{"aliases:1: empty quoted target"}},
		{"orphan continuation", "  bob\n", []string{"aliases:1: continuation line"}},
		{"one MiB line", "x: y\n" + long + "c: d\n", []string{"aliases:2: line longer than 65536 bytes"}},
		{"NUL", "a: b\x00c\n", []string{"aliases:1: line contains a NUL byte"}},
		{"invalid utf8", "a: b\xff\n", []string{"aliases:1: line is not valid UTF-8"}},
		{"control char", "a: b\x1bc\n", []string{"aliases:1: line contains the control character"}},
		{"error in continuation", "a: b\n  c/d\n", []string{"aliases:2:", "absolute path"}},
		{"several errors", "a b\nc: ../x\nd: ok\n", []string{"aliases:1: missing ':'", "aliases:2:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, err := Parse(strings.NewReader(c.in), "aliases")
			if err == nil {
				t.Fatalf("Parse succeeded: %s", dump(tab))
			}
			if tab != nil {
				t.Errorf("a table came back with the error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error %v is not a *ParseError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestParseOneMiBLineKeepsGoing: the rest of a file with a huge line is
// still parsed (the errors after it are found) and the line is not echoed.
func TestParseOneMiBLineKeepsGoing(t *testing.T) {
	in := "a: " + strings.Repeat("b", 1<<20) + "\nc: ../d\n"
	_, err := Parse(strings.NewReader(in), "f")
	if err == nil || !strings.Contains(err.Error(), "f:2:") || len(err.Error()) > 1000 {
		t.Fatalf("err = %.300v", err)
	}
}

func TestParseBinaryGarbage(t *testing.T) {
	var b strings.Builder
	for i := range 100000 {
		b.WriteByte(byte(i*7919 + i>>8))
	}
	_, err := Parse(strings.NewReader(b.String()), "f")
	if err == nil {
		t.Fatal("binary garbage parsed")
	}
	if n := strings.Count(err.Error(), "\n"); n > maxErrors+1 {
		t.Fatalf("%d error lines; want at most %d", n+1, maxErrors+1)
	}
	if !strings.Contains(err.Error(), "too many errors") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoad(t *testing.T) {
	tab, err := Load("")
	if err != nil || len(tab.Names()) != 0 {
		t.Fatalf("Load(\"\") = %v, %v", tab, err)
	}
	if _, err := Load(t.TempDir() + "/missing"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Load(missing) = %v", err)
	}
}

func TestDefines(t *testing.T) {
	tab, err := Parse(strings.NewReader("postmaster: root\nabuse@example.org: root\n@example.net: root\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"postmaster@example.org", true},
		{"PostMaster@example.com", true},
		{"abuse@example.org", true},
		{"abuse@example.com", false},
		{"anyone@example.net", false},
	} {
		a, _ := address.Parse(c.addr)
		if got := tab.Defines(a); got != c.want {
			t.Errorf("Defines(%s) = %v", c.addr, got)
		}
	}
}

func TestParseForward(t *testing.T) {
	cases := []struct {
		name, in, want, err string
	}{
		{"empty", "", "", ""},
		{"comments only", "# just a comment\n\n  # another\n", "", ""},
		{"keep a copy", "\\alice, bob@example.net\n", "address:alice!(1);address:bob@example.net(1)", ""},
		{"newlines", "bob@example.net\n\"|/usr/bin/procmail -f-\"\n/home/a/mbox\n",
			"address:bob@example.net(1);pipe:/usr/bin/procmail -f-(2);file:/home/a/mbox(3)", ""},
		{"indented", "  bob\n\tcarol # c\n", "address:bob(1);address:carol(2)", ""},
		{"include", ":include:/etc/list\n", "include:/etc/list(1)", ""},
		{"good and bad", "bob\n../x\ncarol\n", "address:bob(1);address:carol(3)", "fwd:2:"},
		{"no name syntax", "alice: bob\n", "", "fwd:1: white space"},
		{"colon", "alice:bob\n", "", "fwd:1: bad target \"alice:bob\": ':'"},
		{"binary", "\x00\x01\x02\n", "", "fwd:1: line contains a NUL byte"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts, err := ParseForward(strings.NewReader(c.in), "fwd")
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("err = %v; want %q", err, c.err)
			}
			if got := dumpTargets(ts); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestTargetStringRoundTrip(t *testing.T) {
	in := []Target{
		{Kind: Address, Value: "alice"},
		{Kind: Address, Value: "alice", NoExpand: true},
		{Kind: Address, Value: "bob@example.net"},
		{Kind: File, Value: "/var/mail/a b"},
		{Kind: Pipe, Value: `/bin/echo "x", #y \z`},
		{Kind: Include, Value: "/etc/list"},
	}
	var parts []string
	for _, t := range in {
		parts = append(parts, t.String())
	}
	got, err := ParseForward(strings.NewReader(strings.Join(parts, ", ")), "f")
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(parts, ", "), err)
	}
	for i := range in {
		in[i].Source = Source{File: "f", Line: 1}
	}
	if dumpTargets(got) != dumpTargets(in) {
		t.Fatalf("got  %s\nwant %s", dumpTargets(got), dumpTargets(in))
	}
}
