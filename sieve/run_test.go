package sieve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const testMsg = "From: Alice <alice@example.org>\n" +
	"To: me+tag@example.com\n" +
	"Subject: Hello there\n" +
	"Message-ID: <id-1@example.org>\n" +
	"Date: Sun, 10 Mar 2024 13:45:30 +0100\n" +
	"\n" +
	"Body text.\n"

// fakeEnv is an Environment with fixed folders and remembered ids.
type fakeEnv struct {
	folders []string
	seen    map[string]bool
	err     error
}

func (e *fakeEnv) MailboxExists(_ context.Context, name string) (bool, error) {
	return slices.Contains(e.folders, name), e.err
}

func (e *fakeEnv) Duplicate(_ context.Context, key string) (bool, error) {
	return e.seen[key], e.err
}

// TestRun covers what the differential test cannot: extensions sieve-test
// lacks or runs differently (ereject, duplicate, mailboxexists,
// currentdate), and the rules for combining actions.
func TestRun(t *testing.T) {
	env := &fakeEnv{folders: []string{"Junk", "Lists/go"}}
	cases := []struct {
		name, src string
		want      []string
	}{
		{"empty script keeps", "", []string{"store INBOX flags="}},
		{"explicit keep", "keep;", []string{"store INBOX flags="}},
		{"discard", "discard;", []string{"discard"}},
		{"discard then keep", "discard; keep;", []string{"store INBOX flags="}},
		{"stop keeps", "stop; discard;", []string{"store INBOX flags="}},
		{"fileinto cancels keep", `require "fileinto"; fileinto "A";`, []string{"store A flags="}},
		{"fileinto twice is one", `require "fileinto"; fileinto "A"; fileinto "A";`, []string{"store A flags="}},
		{"fileinto inbox and keep are one", `require "fileinto"; fileinto "inbox"; keep;`, []string{"store INBOX flags="}},
		{"copy keeps", `require ["fileinto", "copy"]; fileinto :copy "A";`, []string{"store A flags=", "store INBOX flags="}},
		{"create", `require ["fileinto", "mailbox"]; fileinto :create "New";`, []string{"store New flags="}},
		{"redirect", `redirect "a@example.net";`, []string{"redirect a@example.net"}},
		{"redirect twice is one", `redirect "a@example.net"; redirect "A@example.net";`, []string{"redirect a@example.net"}},
		{"redirect copy", `require "copy"; redirect :copy "a@example.net";`, []string{"redirect a@example.net", "store INBOX flags="}},
		{"redirect display name", `redirect "Bob <b@example.net>";`, []string{"redirect b@example.net"}},
		{"too many redirects", `redirect "a@x.example"; redirect "b@x.example"; redirect "c@x.example"; redirect "d@x.example"; redirect "e@x.example";`,
			[]string{"error", "store INBOX flags="}},
		{"ereject", `require "ereject"; ereject "no thanks";`, []string{"reject no thanks"}},
		{"reject then keep conflicts", `require "reject"; reject "x"; keep;`, []string{"error", "store INBOX flags="}},
		{"vacation twice", `require "vacation"; vacation "a"; vacation "b";`, []string{"error", "store INBOX flags="}},
		{"mailboxexists", `require ["mailbox", "fileinto"]; if mailboxexists ["Junk", "Lists/go"] { fileinto "yes"; }`, []string{"store yes flags="}},
		{"mailboxexists missing", `require ["mailbox", "fileinto"]; if mailboxexists ["Junk", "Nope"] { fileinto "yes"; }`, []string{"store INBOX flags="}},
		{"currentdate", `require ["date", "fileinto"]; if currentdate :zone "+0000" "date" "2024-03-10" { fileinto "today"; }`, []string{"store today flags="}},
		{"currentdate zone", `require ["date", "fileinto", "variables"]; if currentdate :zone "+0530" :matches "time" "*" { fileinto "${1}"; }`, []string{"store 18:00:00 flags="}},
		{"implicit keep flags", `require "imap4flags"; addflag ["\\Seen", "x"]; addflag "\\seen";`, []string{"store INBOX flags=\\seen x"}},
		{"invalid flags dropped", `require "imap4flags"; addflag ["\\Recent", "a(b", "ok"];`, []string{"store INBOX flags=ok"}},
		{"fileinto flags merge", `require ["fileinto", "imap4flags"]; fileinto :flags "a" "F"; fileinto :flags "b" "F";`, []string{"store F flags=a b"}},
		{"too many actions", `require ["fileinto", "copy"];` + strings.Repeat(` fileinto :copy "${hex:41}";`, 1) +
			func() string {
				var b strings.Builder
				for i := range 40 {
					b.WriteString(` fileinto :copy "f` + string(rune('A'+i%26)) + string(rune('a'+i/26)) + `";`)
				}
				return b.String()
			}(), []string{"error", "store INBOX flags="}},
		{"subaddress envelope", `require ["envelope", "subaddress", "fileinto", "variables"]; if envelope :detail :matches "to" "*" { fileinto "d-${1}"; }`, []string{"store d-tag flags="}},
		{"set truncates", `require ["variables", "fileinto"]; set "a" "0123456789"; set "a" "${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}"; set "a" "${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}";
set "a" "${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}"; set :length "n" "${a}"; fileinto "${n}";`, []string{"store 4096 flags="}},
		{"include once", `require ["include", "fileinto"]; include :optional "nothing"; fileinto "ok";`, []string{"store ok flags="}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.src
			if strings.Contains(src, "${hex:") {
				src = `require "encoded-character";` + src
			}
			s, err := Compile([]byte(src), Options{Name: "t", Loader: mapLoader{}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Run(context.Background(), readTestMessage(t, testMsg), RunOptions{
				Envelope: testEnvelope, Env: env,
				Now: time.Date(2024, 3, 10, 12, 30, 0, 0, time.UTC), Location: time.UTC,
			})
			got := canonical(res, err)
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q (err %v)", got, c.want, err)
			}
		})
	}
}

type mapLoader map[string]string

func (m mapLoader) Load(loc Location, name string) ([]byte, error) {
	s, ok := m[loc.String()+"/"+name]
	if !ok {
		return nil, ErrNotFound
	}
	return []byte(s), nil
}

// TestDuplicate checks RFC 7352: an id seen before makes the test true,
// and a new one is recorded only through the result.
func TestDuplicate(t *testing.T) {
	src := `require ["duplicate", "fileinto"];
if duplicate { fileinto "dup"; }
if duplicate :uniqueid "x" :handle "h" :seconds 60 { fileinto "dup2"; }
if duplicate :uniqueid "x" :handle "h" { fileinto "dup3"; }`
	s := mustCompile(t, src, Options{})
	env := &fakeEnv{seen: map[string]bool{}}
	run := func() *Result {
		res, err := s.Run(context.Background(), readTestMessage(t, testMsg), RunOptions{Envelope: testEnvelope, Env: env})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := run()
	if got := canonical(res, nil); !slices.Equal(got, []string{"store dup3 flags="}) {
		t.Errorf("first run: %q (within one run the second test of an id sees the first)", got)
	}
	if len(res.Duplicates) != 2 || res.Duplicates[1].Period != time.Minute {
		t.Fatalf("marks %+v", res.Duplicates)
	}
	for _, m := range res.Duplicates {
		env.seen[m.Key] = true
	}
	if got := canonical(run(), nil); !slices.Equal(got, []string{"store dup flags=", "store dup2 flags=", "store dup3 flags="}) {
		t.Errorf("second run: %q", got)
	}
	// A long id (a header of 60 KiB) is remembered by a key of fixed
	// size, which any store takes; another id differs.
	long := mustCompile(t, `require "duplicate"; if duplicate :header "x-long" { discard; }`, Options{})
	var keys []string
	for _, v := range []string{"a", "b"} {
		msg := "X-Long: " + strings.Repeat("x", 60000) + v + "\n" + testMsg
		res, err := long.Run(context.Background(), readTestMessage(t, msg), RunOptions{Envelope: testEnvelope, Env: env})
		if err != nil || len(res.Duplicates) != 1 {
			t.Fatalf("long id: %v %+v", err, res)
		}
		keys = append(keys, res.Duplicates[0].Key)
	}
	if len(keys[0]) != 64 || keys[0] == keys[1] {
		t.Errorf("keys of long ids: %.80q, %.80q (want 64 characters, distinct)", keys[0], keys[1])
	}
	env.err = errors.New("database down")
	res, err := s.Run(context.Background(), readTestMessage(t, testMsg), RunOptions{Envelope: testEnvelope, Env: env})
	if err == nil || !errors.Is(err, env.err) {
		t.Errorf("err = %v, want the environment's", err)
	}
	if got := canonical(res, nil); !slices.Equal(got, []string{"store INBOX flags="}) {
		t.Errorf("after an error: %q, want the implicit keep", got)
	}
}

// TestRunSequence checks before, user and after scripts: each runs only
// while the implicit keep is in force, and a failure keeps what earlier
// scripts did plus the implicit keep.
func TestRunSequence(t *testing.T) {
	c := func(src string) *Script { return mustCompile(t, src, Options{Name: "x"}) }
	spam := c(`require "fileinto"; if header :contains "subject" "Hello" { fileinto "Junk"; }`)
	archive := c(`require ["fileinto", "copy"]; fileinto :copy "Archive";`)
	user := c(`require "fileinto"; fileinto "User";`)
	failing := c(`redirect "a@x.example"; redirect "b@x.example"; redirect "c@x.example"; redirect "d@x.example"; redirect "e@x.example";`)
	cases := []struct {
		name    string
		scripts []*Script
		want    []string
	}{
		{"before files", []*Script{spam, user}, []string{"store Junk flags="}},
		{"before copies", []*Script{archive, user}, []string{"store Archive flags=", "store User flags="}},
		{"user then after", []*Script{archive, c("keep;"), user}, []string{"store Archive flags=", "store INBOX flags="}},
		{"failing user", []*Script{archive, failing, user}, []string{"error", "store Archive flags=", "store INBOX flags="}},
	}
	for _, tc := range cases {
		res, err := RunSequence(context.Background(), tc.scripts, readTestMessage(t, testMsg), RunOptions{Envelope: testEnvelope})
		if got := canonical(res, err); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestRuntimeErrorPlace checks that a failure at run time names the
// script, line and column of the command.
func TestRuntimeErrorPlace(t *testing.T) {
	src := "require \"reject\";\nkeep;\n  reject \"no\";\n"
	s := mustCompile(t, src, Options{Name: "user.sieve"})
	_, err := s.Run(context.Background(), readTestMessage(t, testMsg), RunOptions{})
	var e *Error
	if !errors.As(err, &e) || e.Script != "user.sieve" || e.Pos != (Pos{3, 3}) {
		t.Fatalf("err = %v, want user.sieve:3:3", err)
	}
}

// TestIncludeErrorPlace checks that an error in an included script, at
// compile time or run time, names the included script, line and column,
// and the includes that led to it.
func TestIncludeErrorPlace(t *testing.T) {
	loader := mapLoader{
		"personal/a":   "keep;\n  fileinto \"x\";",
		"personal/m":   "require \"include\";\ninclude \"a\";",
		"personal/red": "redirect \"a@b.example\";\nredirect \"b@b.example\";\n redirect \"c@b.example\";",
	}
	cases := []struct {
		name, src, script string
		pos               Pos
		via, msg          string
		run               bool
	}{
		{"compile error", "require \"include\";\n\ninclude \"a\";", "a", Pos{2, 3}, "main:3:1",
			`a:2:3: fileinto needs require "fileinto" (included from main:3:1)`, false},
		{"through two includes", "require \"include\";\ninclude \"m\";", "a", Pos{2, 3}, "m:2:1, main:2:1",
			`a:2:3: fileinto needs require "fileinto" (included from m:2:1, main:2:1)`, false},
		{"run-time error", "require \"include\";\nkeep;\n include \"red\";", "red", Pos{3, 2}, "main:3:2",
			"red:3:2: redirect: more than 2 redirects (included from main:3:2)", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := Options{Name: "main", Loader: loader, Limits: Limits{MaxRedirects: 2}}
			s, err := Compile([]byte(c.src), opts)
			if c.run {
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.Run(context.Background(), readTestMessage(t, testMsg), RunOptions{Envelope: testEnvelope})
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if e.Script != c.script || e.Pos != c.pos || e.IncludedFrom() != c.via || e.Error() != c.msg {
				t.Errorf("got %s:%s via %q: %q\nwant %s:%s via %q: %q", e.Script, e.Pos, e.IncludedFrom(), e.Error(), c.script, c.pos, c.via, c.msg)
			}
		})
	}
}

// TestBodyManyParts: a message of very many empty parts gives the body
// test a bounded list of parts (MaxBodySize counts each part), not one
// entry per part.
func TestBodyManyParts(t *testing.T) {
	var b strings.Builder
	b.WriteString("From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n")
	for range 20000 {
		b.WriteString("--b\n\n\n")
	}
	b.WriteString("--b\nContent-Type: text/plain\n\nneedle\n--b--\n")
	m := readTestMessage(t, b.String())
	parts := m.decodedParts(64 << 10)
	if len(parts) > (64<<10)/partOverhead {
		t.Errorf("%d parts kept, want at most %d", len(parts), (64<<10)/partOverhead)
	}
	// A needle in an early part is still found.
	s := mustCompile(t, `require ["body", "fileinto"]; if body :text :contains "early" { fileinto "found"; }`, Options{})
	early := strings.Replace(b.String(), "--b\n\n\n", "--b\n\nearly\n", 1)
	res, err := s.Run(context.Background(), readTestMessage(t, early), RunOptions{Envelope: testEnvelope})
	if err != nil || !slices.Contains(canonical(res, nil), "store found flags=") {
		t.Errorf("early part: %v %q", err, canonical(res, nil))
	}
}

// errLoader fails every Load with err.
type errLoader struct{ err error }

func (l errLoader) Load(Location, string) ([]byte, error) { return nil, l.err }

// TestIncludeLoadErrors: a script that cannot be read now is no *Error
// (the caller tries again later), even through another include; a
// missing or unusable one is the script's *Error.
func TestIncludeLoadErrors(t *testing.T) {
	disk := errors.New("input/output error")
	cases := []struct {
		err     error
		isError bool
	}{
		{disk, false},
		{ErrNotFound, true},
		{fmt.Errorf("%w: a directory", ErrUnusable), true},
	}
	for _, c := range cases {
		_, err := Compile([]byte("require \"include\";\ninclude \"lib\";"), Options{Name: "main", Loader: errLoader{c.err}})
		var e *Error
		if errors.As(err, &e) != c.isError || !c.isError && !errors.Is(err, disk) {
			t.Errorf("loader error %v: Compile = %v (want *Error: %v)", c.err, err, c.isError)
		}
	}
	// Through a script that includes the unreadable one.
	loader := chainLoader{mapLoader{"personal/m": "require \"include\";\ninclude \"deep\";"}, disk}
	_, err := Compile([]byte("require \"include\";\ninclude \"m\";"), Options{Name: "main", Loader: loader})
	var e *Error
	if errors.As(err, &e) || !errors.Is(err, disk) {
		t.Errorf("nested: %v, want the disk error, no *Error", err)
	}
}

// chainLoader serves m and fails the rest with err.
type chainLoader struct {
	m   mapLoader
	err error
}

func (l chainLoader) Load(loc Location, name string) ([]byte, error) {
	if b, err := l.m.Load(loc, name); err == nil {
		return b, nil
	}
	return nil, l.err
}
