package alias

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"mailroom/internal/address"
)

// fakeResolver serves accounts and .forward files from maps.
type fakeResolver struct {
	domains  []string
	accounts []string          // "alice@example.org"; home is "example.org/alice"
	forwards map[string]string // home -> .forward text
	fail     string            // an account key or home whose lookup fails
}

var errDisk = errors.New("disk on fire")

func (r *fakeResolver) IsLocalDomain(d string) bool { return slices.Contains(r.domains, d) }

func (r *fakeResolver) Account(_ context.Context, a address.Address) (string, bool, error) {
	if a.Key() == r.fail {
		return "", false, errDisk
	}
	for _, acct := range r.accounts {
		if strings.EqualFold(acct, a.Key()) {
			return a.Domain + "/" + strings.ToLower(a.Local), true, nil
		}
	}
	return "", false, nil
}

func (r *fakeResolver) Forward(_ context.Context, home string) ([]Target, error) {
	if home == r.fail {
		return nil, errDisk
	}
	text, ok := r.forwards[home]
	if !ok {
		return nil, nil
	}
	// Like mda: bad lines are logged and skipped, the good ones apply.
	ts, _ := ParseForward(strings.NewReader(text), home+"/.forward")
	return ts, nil
}

func newResolver(forwards map[string]string) *fakeResolver {
	return &fakeResolver{
		domains:  []string{"example.org", "example.com"},
		accounts: []string{"alice@example.org", "bob@example.org", "carol@example.org", "alice@example.com", "root@example.org", "bob+x@example.org"},
		forwards: forwards,
	}
}

// fakeFiles serves include files.
func fakeFiles(files map[string]string) func(string) (io.ReadCloser, error) {
	return func(p string) (io.ReadCloser, error) {
		text, ok := files[p]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		}
		return io.NopCloser(strings.NewReader(text)), nil
	}
}

// leafString renders a leaf as kind:what[@rcpt][!err-sentinel].
func leafString(l Leaf) string {
	var s string
	switch l.Kind {
	case Mailbox:
		s = "mailbox:" + l.Home + "<" + l.Rcpt.String() + ">"
	case File:
		s = "file:" + l.Path + "<" + l.Rcpt.String() + "," + l.User + "," + l.Home + ">"
	case Pipe:
		s = "pipe:" + l.Command + "<" + l.Rcpt.String() + "," + l.User + "," + l.Home + ">"
	case Remote:
		s = "remote:" + l.Remote.String() + "<" + l.Rcpt.String() + ">"
	default:
		s = l.Kind.String() + "<" + l.Rcpt.String() + ">"
	}
	if l.Err != nil {
		for _, e := range []struct {
			err  error
			name string
		}{{ErrDepth, "depth"}, {ErrLoop, "loop"}, {ErrNoSuchUser, "nouser"}, {ErrNotAllowed, "notallowed"}} {
			if errors.Is(l.Err, e.err) {
				return s + "!" + e.name
			}
		}
		return s + "!" + l.Err.Error()
	}
	return s
}

func leavesString(n *Node) string {
	var out []string
	for _, l := range n.Leaves() {
		out = append(out, leafString(l))
	}
	return strings.Join(out, " ")
}

func mustParse(t *testing.T, text string) *Table {
	t.Helper()
	tab, err := Parse(strings.NewReader(text), "aliases")
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func mustAddr(t *testing.T, s string) address.Address {
	t.Helper()
	a, err := address.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestExpand(t *testing.T) {
	deep := ""
	for i := range 12 {
		deep += fmt.Sprintf("d%d: d%d\n", i, i+1)
	}
	cases := []struct {
		name     string
		aliases  string
		forwards map[string]string
		includes map[string]string
		opts     Options
		addr     string
		want     string
	}{
		{name: "account", addr: "Alice@Example.org", want: "mailbox:example.org/alice<Alice@example.org>"},
		{name: "unknown", addr: "dave@example.org", want: "address<dave@example.org>!nouser"},
		{name: "remote", addr: "x@example.net", want: "remote:x@example.net<x@example.net>"},
		{name: "alias to everything",
			aliases: "sales: alice, bob@example.org, carol@example.net, /var/mail/sales, \"|/bin/ticket sales\"\n",
			addr:    "sales@example.org",
			want:    "mailbox:example.org/alice<alice@example.org> mailbox:example.org/bob<bob@example.org> remote:carol@example.net<sales@example.org> file:/var/mail/sales<sales@example.org,sales,> pipe:/bin/ticket sales<sales@example.org,sales,>"},
		{name: "bare name in every local domain, bare target in the same domain",
			aliases: "postmaster: alice\n", addr: "postmaster@example.com",
			want: "mailbox:example.com/alice<alice@example.com>"},
		{name: "full address beats bare name",
			aliases: "sales: bob\nsales@example.org: alice\n", addr: "sales@example.org",
			want: "mailbox:example.org/alice<alice@example.org>"},
		{name: "full address applies to that domain only",
			aliases: "sales@example.org: alice\n", addr: "sales@example.com",
			want: "address<sales@example.com>!nouser"},
		{name: "alias beats account",
			aliases: "alice: bob\n", addr: "alice@example.org",
			want: "mailbox:example.org/bob<bob@example.org>"},
		{name: "recursion",
			aliases: "a: b\nb: c\nc: alice, d\nd: bob\n", addr: "a@example.org",
			want: "mailbox:example.org/alice<alice@example.org> mailbox:example.org/bob<bob@example.org>"},
		{name: "duplicates",
			aliases: "team: alice, ALICE@example.org, staff, staff\nstaff: alice, bob\n", addr: "team@example.org",
			want: "mailbox:example.org/alice<alice@example.org> mailbox:example.org/bob<bob@example.org>"},
		{name: "self reference",
			aliases: "alice: alice, bob\n", addr: "alice@example.org",
			want: "mailbox:example.org/alice<alice@example.org> mailbox:example.org/bob<bob@example.org>"},
		{name: "self reference goes through the .forward",
			aliases: "alice: alice, bob\n", forwards: map[string]string{"example.org/alice": "carol\n"},
			addr: "alice@example.org",
			want: "mailbox:example.org/carol<carol@example.org> mailbox:example.org/bob<bob@example.org>"},
		{name: "self reference without an account",
			aliases: "list: list, bob\n", addr: "list@example.org",
			want: "address<list@example.org>!nouser mailbox:example.org/bob<bob@example.org>"},
		{name: "alias loop",
			aliases: "a: b\nb: a\n", addr: "a@example.org",
			want: "address<a@example.org>!loop"},
		{name: "longer alias loop with a delivery",
			aliases: "a: b, alice\nb: c\nc: a\n", addr: "a@example.org",
			want: "address<a@example.org>!loop mailbox:example.org/alice<alice@example.org>"},
		{name: "depth limit", aliases: deep, addr: "d0@example.org",
			want: "address<d11@example.org>!depth"},
		{name: "depth limit raised", aliases: deep + "d12: alice\n", opts: Options{MaxDepth: 13}, addr: "d0@example.org",
			want: "mailbox:example.org/alice<alice@example.org>"},
		{name: "forward keeps a copy",
			forwards: map[string]string{"example.org/alice": "\\alice, alice@example.net\n"},
			addr:     "alice@example.org",
			want:     "mailbox:example.org/alice<alice@example.org> remote:alice@example.net<alice@example.org>"},
		{name: "forward naming its owner",
			forwards: map[string]string{"example.org/alice": "alice@example.org, bob\n"},
			addr:     "alice@example.org",
			want:     "mailbox:example.org/alice<alice@example.org> mailbox:example.org/bob<bob@example.org>"},
		{name: "comment-only forward is normal delivery",
			forwards: map[string]string{"example.org/alice": "# away\n"},
			addr:     "alice@example.org",
			want:     "mailbox:example.org/alice<alice@example.org>"},
		{name: "forward loop between two accounts",
			forwards: map[string]string{"example.org/alice": "bob\n", "example.org/bob": "alice\n"},
			addr:     "alice@example.org",
			want:     "address<alice@example.org>!loop"},
		{name: "forward to another's mailbox without expansion",
			forwards: map[string]string{"example.org/alice": "\\bob\n", "example.org/bob": "elsewhere@example.net\n"},
			addr:     "alice@example.org",
			want:     "mailbox:example.org/bob<bob@example.org>"},
		{name: "noexpand unknown",
			aliases: "a: \\nobody\n", addr: "a@example.org",
			want: "address<nobody@example.org>!nouser"},
		{name: "noexpand in aliases skips aliases",
			aliases: "alice: \\alice, bob\n", addr: "alice@example.org",
			want: "mailbox:example.org/alice<alice@example.org> mailbox:example.org/bob<bob@example.org>"},
		{name: "catch-all",
			aliases: "@example.org: alice\nsales: bob\n", addr: "whoever@example.org",
			want: "mailbox:example.org/alice<alice@example.org>"},
		{name: "catch-all after aliases and accounts",
			aliases: "@example.org: alice\nsales: bob\n", addr: "carol@example.org",
			want: "mailbox:example.org/carol<carol@example.org>"},
		{name: "catch-all of another domain",
			aliases: "@example.org: alice\n", addr: "whoever@example.com",
			want: "address<whoever@example.com>!nouser"},
		{name: "catch-all to a missing user",
			aliases: "@example.org: nobody\n", addr: "whoever@example.org",
			want: "address<nobody@example.org>!nouser"},
		{name: "extension to account",
			opts: Options{Delimiter: "+"}, addr: "alice+lists@example.org",
			want: "mailbox:example.org/alice<alice+lists@example.org>"},
		{name: "extension without delimiter",
			addr: "alice+lists@example.org", want: "address<alice+lists@example.org>!nouser"},
		{name: "extension to alias base",
			aliases: "sales: bob\n", opts: Options{Delimiter: "+"}, addr: "sales+web@example.org",
			want: "mailbox:example.org/bob<bob@example.org>"},
		{name: "exact alias with extension first",
			aliases: "sales: bob\nsales+web: carol\n", opts: Options{Delimiter: "+"}, addr: "sales+web@example.org",
			want: "mailbox:example.org/carol<carol@example.org>"},
		{name: "exact account beats base alias",
			aliases: "bob: carol\n", opts: Options{Delimiter: "+"}, addr: "bob+x@example.org",
			want: "mailbox:example.org/bob+x<bob+x@example.org>"},
		{name: "self with extension keeps it",
			aliases: "alice: alice, bob\n", opts: Options{Delimiter: "+"}, addr: "alice+tag@example.org",
			want: "mailbox:example.org/alice<alice+tag@example.org> mailbox:example.org/bob<bob@example.org>"},
		{name: "forward of base with extension",
			forwards: map[string]string{"example.org/alice": "\\alice, x@example.net\n"},
			opts:     Options{Delimiter: "+"}, addr: "alice+tag@example.org",
			want: "mailbox:example.org/alice<alice+tag@example.org> remote:x@example.net<alice+tag@example.org>"},
		{name: "forward pipe and file refused",
			forwards: map[string]string{"example.org/alice": "\\alice, \"|/bin/vacation\", /home/alice/mbox\n"},
			addr:     "alice@example.org",
			want:     "mailbox:example.org/alice<alice@example.org> pipe:/bin/vacation<alice@example.org,alice,example.org/alice>!notallowed file:/home/alice/mbox<alice@example.org,alice,example.org/alice>!notallowed"},
		{name: "forward pipe and file allowed",
			forwards: map[string]string{"example.org/alice": "\"|/bin/vacation\", /home/alice/mbox\n"},
			opts:     Options{AllowForwardCommands: true, AllowForwardFiles: true, Delimiter: "+"},
			addr:     "alice+x@example.org",
			want:     "pipe:/bin/vacation<alice+x@example.org,alice,example.org/alice> file:/home/alice/mbox<alice+x@example.org,alice,example.org/alice>"},
		{name: "alias pipe reached from a forward is the administrator's",
			aliases:  "ticket: \"|/bin/ticket\"\n",
			forwards: map[string]string{"example.org/alice": "ticket\n"},
			addr:     "alice@example.org",
			want:     "pipe:/bin/ticket<ticket@example.org,ticket,>"},
		{name: "include",
			aliases:  "list: :include:/lists/list, alice\n",
			includes: map[string]string{"/lists/list": "# members\nbob\ncarol, x@example.net\nalice\n"},
			addr:     "list@example.org",
			want:     "mailbox:example.org/bob<bob@example.org> mailbox:example.org/carol<carol@example.org> remote:x@example.net<list@example.org> mailbox:example.org/alice<alice@example.org>"},
		{name: "include pipe and file refused",
			aliases:  "list: :include:/lists/list\n",
			includes: map[string]string{"/lists/list": "bob, |/bin/x, /tmp/y\n"},
			addr:     "list@example.org",
			want:     "mailbox:example.org/bob<bob@example.org> pipe:/bin/x<list@example.org,list,>!notallowed file:/tmp/y<list@example.org,list,>!notallowed"},
		{name: "include pipe and file allowed",
			aliases:  "list: :include:/lists/list\n",
			includes: map[string]string{"/lists/list": "|/bin/x, /tmp/y\n"},
			opts:     Options{AllowIncludeCommands: true, AllowIncludeFiles: true},
			addr:     "list@example.org",
			want:     "pipe:/bin/x<list@example.org,list,> file:/tmp/y<list@example.org,list,>"},
		{name: "include cycle",
			aliases:  "list: :include:/l1\n",
			includes: map[string]string{"/l1": "bob, :include:/l2\n", "/l2": ":include:/l1, carol\n"},
			addr:     "list@example.org",
			want:     "mailbox:example.org/bob<bob@example.org> include<list@example.org>!loop mailbox:example.org/carol<carol@example.org>"},
		{name: "include naming the alias itself",
			aliases:  "alice: :include:/l1\n",
			includes: map[string]string{"/l1": "alice, bob\n"},
			addr:     "alice@example.org",
			want:     "mailbox:example.org/alice<alice@example.org> mailbox:example.org/bob<bob@example.org>"},
		{name: "include with a syntax error keeps the good targets",
			aliases:  "list: :include:/l1\n",
			includes: map[string]string{"/l1": "bob\n../x\n"},
			addr:     "list@example.org",
			want:     "include<list@example.org>!include file /l1: /l1:2: bad target \"../x\": a file target must be an absolute path (start with /) mailbox:example.org/bob<bob@example.org>"},
		{name: "include from forward refused",
			forwards: map[string]string{"example.org/alice": ":include:/etc/passwd\n"},
			addr:     "alice@example.org",
			want:     "include<alice@example.org>!notallowed"},
		{name: "include from forward allowed, its pipes need both permissions",
			forwards: map[string]string{"example.org/alice": ":include:/l1\n"},
			includes: map[string]string{"/l1": "bob, |/bin/x\n"},
			opts:     Options{AllowForwardIncludes: true, AllowIncludeCommands: true},
			addr:     "alice@example.org",
			want:     "mailbox:example.org/bob<bob@example.org> pipe:/bin/x<alice@example.org,alice,example.org/alice>!notallowed"},
		{name: "remote deduplicated, pipes per owner",
			aliases: "a: x@example.net, b, c, \"|/bin/p\"\nb: X@EXAMPLE.NET, \"|/bin/p\"\nc: \"|/bin/p\"\n",
			addr:    "a@example.org",
			want:    "remote:x@example.net<a@example.org> pipe:/bin/p<b@example.org,b,> pipe:/bin/p<c@example.org,c,> pipe:/bin/p<a@example.org,a,>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab := mustParse(t, c.aliases)
			opts := c.opts
			opts.ReadInclude = fakeFiles(c.includes)
			n, err := Expand(context.Background(), tab, mustAddr(t, c.addr), newResolver(c.forwards), opts)
			if err != nil {
				t.Fatalf("Expand: %v", err)
			}
			if got := leavesString(n); got != c.want {
				var b strings.Builder
				n.Format(&b)
				t.Fatalf("got  %s\nwant %s\ntree:\n%s", got, c.want, b.String())
			}
		})
	}
}

func TestExpandUnknownRoot(t *testing.T) {
	n, err := Expand(context.Background(), nil, mustAddr(t, "dave@example.org"), newResolver(nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(n.Err, ErrNoSuchUser) || n.Deliverable() {
		t.Fatalf("root err %v, deliverable %v", n.Err, n.Deliverable())
	}
	if !strings.Contains(n.Err.Error(), "dave@example.org") {
		t.Fatalf("error %q does not name the address", n.Err)
	}
}

func TestErrDepthIsLoop(t *testing.T) {
	if !errors.Is(ErrDepth, ErrLoop) {
		t.Fatal("ErrDepth must be a loop (5.4.6)")
	}
}

func TestExpandTemporary(t *testing.T) {
	tab := mustParse(t, "list: :include:/missing, bob\nteam: alice\n")
	cases := []struct {
		name, addr, fail string
	}{
		{"account lookup", "alice@example.org", "alice@example.org"},
		{"account lookup in an alias", "team@example.org", "alice@example.org"},
		{".forward", "alice@example.org", "example.org/alice"},
		{"include", "list@example.org", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newResolver(nil)
			r.fail = c.fail
			n, err := Expand(context.Background(), tab, mustAddr(t, c.addr), r, Options{ReadInclude: fakeFiles(nil)})
			if err == nil {
				t.Fatalf("no error; leaves %s", leavesString(n))
			}
			if errors.Is(err, ErrNoSuchUser) || errors.Is(err, ErrLoop) || errors.Is(err, ErrNotAllowed) {
				t.Fatalf("temporary error %v looks permanent", err)
			}
			if n == nil {
				t.Fatal("no tree with the error")
			}
		})
	}
}

func TestExpandIncludeTooLarge(t *testing.T) {
	tab := mustParse(t, "list: :include:/big\n")
	big := strings.Repeat("bob\n", MaxIncludeSize/4+1)
	n, err := Expand(context.Background(), tab, mustAddr(t, "list@example.org"), newResolver(nil), Options{ReadInclude: fakeFiles(map[string]string{"/big": big})})
	if err != nil {
		t.Fatal(err)
	}
	if got := leavesString(n); !strings.Contains(got, "larger than") {
		t.Fatalf("leaves %s", got)
	}
}

// TestExpandDiamond: a lattice of aliases that would expand to 2^20 paths
// without duplicate elimination finishes at once.
func TestExpandDiamond(t *testing.T) {
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, "l%d: l%da, l%db\nl%da: l%d\nl%db: l%d\n", i, i, i, i, i+1, i, i+1)
	}
	b.WriteString("l20: alice\n")
	n, err := Expand(context.Background(), mustParse(t, b.String()), mustAddr(t, "l0@example.org"), newResolver(nil), Options{MaxDepth: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := leavesString(n); got != "mailbox:example.org/alice<alice@example.org>" {
		t.Fatalf("leaves %s", got)
	}
}

func TestFormat(t *testing.T) {
	tab := mustParse(t, `# staff
sales: alice, \bob, carol@example.net,
    /var/mail/sales, "|/bin/ticket --queue sales",
    dave, :include:/lists/sales
`)
	r := newResolver(map[string]string{"example.org/alice": "\\alice\n\"|/bin/vacation\"\n"})
	n, err := Expand(context.Background(), tab, mustAddr(t, "sales@example.org"), r, Options{ReadInclude: fakeFiles(map[string]string{"/lists/sales": "alice\nroot\n"})})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := n.Format(&b); err != nil {
		t.Fatal(err)
	}
	want := `sales@example.org: alias (aliases:2)
├── alice@example.org: .forward (example.org/alice/.forward)
│   ├── alice@example.org: mailbox example.org/alice (no expansion, example.org/alice/.forward:1)
│   └── pipe |/bin/vacation (example.org/alice/.forward:2): error: |/bin/vacation: target not allowed: commands in .forward files are turned off (allow_commands)
├── bob@example.org: mailbox example.org/bob (no expansion, aliases:2)
├── carol@example.net: remote (aliases:2)
├── file /var/mail/sales (aliases:3)
├── pipe "|/bin/ticket --queue sales" (aliases:3)
├── error: dave@example.org: no such user (aliases:4)
└── include /lists/sales (aliases:4)
    ├── alice@example.org: duplicate, expanded above (/lists/sales:1)
    └── root@example.org: mailbox example.org/root (account, /lists/sales:2)
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}
