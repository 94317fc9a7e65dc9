package alias

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"mailroom/internal/address"
)

// Resolver is what expansion needs to know about the local system. mda
// implements it over its domains, accounts and mail homes.
type Resolver interface {
	// IsLocalDomain reports whether mail for domain (lower case) is
	// delivered here.
	IsLocalDomain(domain string) bool
	// Account looks up a local account by address: the exact local part,
	// case-insensitive, no extension stripping (expansion does that).
	// home is the account's mail home ("example.org/alice"); ok is false
	// when there is no such account; err is for temporary trouble only.
	Account(ctx context.Context, a address.Address) (home string, ok bool, err error)
	// Forward returns the targets of the .forward file in home, each
	// with its Source (file and line), for instance from ParseForward.
	// It returns nil when there is no .forward, when forward files are
	// off, or when the file is ignored (a symlink, the wrong owner: the
	// resolver logs that). err is for temporary trouble (I/O), which
	// defers the message.
	Forward(ctx context.Context, home string) ([]Target, error)
}

// Options control expansion.
type Options struct {
	// Delimiter is recipient_delimiter ("+"): alice+tag falls back to
	// alice. Several characters mean any of them; "" disables extensions.
	Delimiter string
	// MaxDepth bounds alias chains; deeper is ErrDepth. 0 means
	// DefaultMaxDepth.
	MaxDepth int
	// AllowForwardCommands and AllowForwardFiles allow pipes and files in
	// .forward files (config allow_commands, allow_files): the mail home
	// may be writable by its user, so they are off unless the
	// administrator trusts the users.
	AllowForwardCommands, AllowForwardFiles bool
	// AllowForwardIncludes allows :include: in .forward files. Off by
	// default: the include file is read with mailroom's rights, so a
	// user could otherwise make it read (and leak, through bounces)
	// files that are not theirs.
	AllowForwardIncludes bool
	// AllowIncludeCommands and AllowIncludeFiles allow pipes and files
	// reached through an :include: file, which may belong to someone else
	// than the administrator.
	AllowIncludeCommands, AllowIncludeFiles bool
	// ReadInclude opens an include file; nil means os.Open. mda and tests
	// use it to confine include files. Any error it returns (a missing
	// file too) is temporary: the message waits for the administrator
	// to fix the file rather than bouncing a whole list.
	ReadInclude func(path string) (io.ReadCloser, error)
}

// DefaultMaxDepth is the alias chain limit when Options.MaxDepth is 0.
const DefaultMaxDepth = 10

// MaxIncludeSize bounds an include file; a larger one is an error in the
// tree, not a memory problem.
const MaxIncludeSize = 4 << 20

// Node is one step of an expansion: an address and the rule that
// expanded it, an include file, or a leaf (a delivery target). The tree is
// what `mailroom route` prints and what the delivery log summarises.
type Node struct {
	// Address is the address this node is about: the one expanded, or
	// the mailbox's or remote target's address. "" for file, pipe and
	// include nodes.
	Address string
	// Kind is Address for an inner address node, Include for an include
	// file, or the leaf kind (Mailbox, File, Pipe, Remote).
	Kind Kind
	// Value is the path of a File or Include node and the command of a
	// Pipe node.
	Value string
	// Via says which rule applied (see the Via constants).
	Via Via
	// Source is where the rule came from: the alias line for "alias" and
	// "catch-all", the .forward file for ".forward", and the line that
	// named the target for the others.
	Source   Source
	Children []*Node
	// Err is why this branch failed: it wraps ErrNoSuchUser, ErrLoop,
	// ErrDepth, ErrNotAllowed or an include file's *ParseError, and such
	// nodes have a Leaf carrying the same Err. A node may also carry the
	// temporary error that Expand returned; that one has no Leaf.
	Err error
	// Leaf is non-nil on nodes that Leaves reports: delivery targets and
	// failed branches.
	Leaf *Leaf
}

// Leaf is one thing to deliver to, or one failed piece to bounce.
type Leaf struct {
	Kind Kind
	// Rcpt is the address this leaf delivers for: for a mailbox the
	// address as reached, extension kept (Delivered-To); for a pipe or
	// file the address whose alias or .forward named it (RECIPIENT,
	// LOCAL, EXTENSION, DOMAIN); for a remote target the address that
	// forwards to it (the target itself when Expand was asked about a
	// remote address); for a failure the address that failed, or whose
	// rule named the failed target.
	Rcpt address.Address
	// Home is the mail home for a mailbox, and for a pipe or file from a
	// .forward the owner's mail home (HOME); "" otherwise.
	Home string
	// User is the local part (without extension) of the account or
	// alias that owns a pipe or file (USER).
	User    string
	Path    string          // File: absolute clean path
	Command string          // Pipe: the command, for /bin/sh -c
	Remote  address.Address // Remote: where to forward
	Source  Source
	// Err is non-nil for a refused or failed piece: a permanent failure
	// for that piece only. It wraps one of the package's errors.
	Err error
}

// origin is who wrote the rule a target came from; it decides which
// pipes and files are allowed.
type origin int

const (
	fromAliases origin = iota // the administrator
	fromForward               // a user's .forward
	fromInclude               // an :include: file
)

// frame is the context in which a list of targets is expanded.
type frame struct {
	addr   address.Address // whose rule named the targets (bare targets take its domain)
	origin origin
	user   bool   // a .forward was passed on the way here: the user chose this
	home   string // the .forward owner's mail home, for pipes and files
	owner  string // USER for pipes and files
	depth  int
	chain  []string // keys of the addresses (and "include:" paths) above
}

type expander struct {
	ctx  context.Context // the expansion's: for the Resolver's lookups
	t    *Table
	r    Resolver
	opts Options
	seen map[string]bool // addresses expanded so far
	err  error           // first temporary error
}

// Expand expands addr, which need not be local: a remote address gives a
// Remote leaf. The error return is only for temporary trouble (the
// resolver's or an include file's I/O): the caller defers. Permanent
// problems are in the tree (Node.Err, Leaf.Err): an unknown address is a
// root whose Err wraps ErrNoSuchUser.
//
// For an address in a local domain, the first of these applies:
//
//  1. an alias for the full local part: local@domain, then bare local;
//  2. an account with that exact local part (its .forward, if the
//     resolver returns targets, else its mailbox);
//  3. with recipient_delimiter, 1 and 2 again for the base (alice for
//     alice+tag; the mailbox leaf still delivers for alice+tag);
//  4. the catch-all @domain;
//  5. ErrNoSuchUser.
//
// Targets are expanded recursively. An address that appears twice in the
// tree is expanded once (the second is a "duplicate" node); an alias or
// .forward naming its own address delivers to that address's mailbox
// (an alias naming itself still goes through the account's .forward); an
// address that comes back to one of its ancestors is ErrLoop on that
// branch, so a loop between two .forward files ends in a bounce rather
// than silence; deeper than MaxDepth is ErrDepth.
func Expand(ctx context.Context, t *Table, addr address.Address, r Resolver, opts Options) (*Node, error) {
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	if opts.ReadInclude == nil {
		opts.ReadInclude = func(p string) (io.ReadCloser, error) { return os.Open(p) }
	}
	e := &expander{ctx: ctx, t: t, r: r, opts: opts, seen: map[string]bool{}}
	root := e.address(addr, nil, Source{})
	return root, e.err
}

// temporary records a temporary error on n.
func (e *expander) temporary(n *Node, err error) *Node {
	n.Err = err
	if e.err == nil {
		e.err = err
	}
	return n
}

// fail marks n as a permanent failure for rcpt.
func fail(n *Node, rcpt address.Address, err error) *Node {
	n.Err = err
	n.Leaf = &Leaf{Kind: n.Kind, Rcpt: rcpt, Source: n.Source, Err: err}
	return n
}

// locals returns the local parts to try for a: itself, then its base.
func (e *expander) locals(a address.Address) []string {
	base, _ := address.StripExtension(a.Local, e.opts.Delimiter)
	if base != a.Local {
		return []string{a.Local, base}
	}
	return []string{a.Local}
}

func (e *expander) baseKey(a address.Address) string {
	base, _ := address.StripExtension(a.Local, e.opts.Delimiter)
	return address.Address{Local: base, Domain: a.Domain}.Key()
}

// isSelf reports whether a target a names the address whose rule it is in.
func (e *expander) isSelf(a address.Address, f *frame) bool {
	return f != nil && (a.Key() == f.addr.Key() || a.Key() == e.baseKey(f.addr))
}

func (e *expander) lookup(name string) ([]Target, Source, bool) {
	return e.t.Lookup(name)
}

// chainString renders the path to a loop for the error message.
func chainString(chain []string, last string) string {
	return strings.Join(append(slices.Clone(chain), last), " -> ")
}

// address expands a, named by a target at src in frame f (nil at the root).
func (e *expander) address(a address.Address, f *frame, src Source) *Node {
	n := &Node{Address: a.String(), Kind: Address, Source: src}
	depth := 0
	var chain []string
	if f != nil {
		depth, chain = f.depth+1, f.chain
	}
	key := a.Key()
	if e.isSelf(a, f) {
		return e.self(n, f)
	}
	if slices.Contains(chain, key) {
		return fail(n, a, fmt.Errorf("%s: %w: %s", a, ErrLoop, chainString(chain, key)))
	}
	if depth > e.opts.MaxDepth {
		return fail(n, a, fmt.Errorf("%s: %w: more than %d levels", a, ErrDepth, e.opts.MaxDepth))
	}
	if !e.r.IsLocalDomain(a.Domain) {
		return e.remote(n, a, f)
	}
	if e.seen[key] {
		n.Via = ViaDuplicate
		return n
	}
	e.seen[key] = true
	next := &frame{addr: a, origin: fromAliases, depth: depth, chain: append(slices.Clone(chain), key)}
	for _, local := range e.locals(a) {
		la := address.Address{Local: local, Domain: a.Domain}
		ts, asrc, ok := e.lookup(la.Key())
		if !ok {
			ts, asrc, ok = e.lookup(local)
		}
		if ok {
			n.Via, n.Source = ViaAlias, asrc
			next.owner = local
			n.Children = e.targets(ts, next)
			return n
		}
		home, ok, err := e.r.Account(e.ctx, la)
		if err != nil {
			return e.temporary(n, fmt.Errorf("look up account %s: %w", la, err))
		}
		if ok {
			return e.account(n, a, local, home, next)
		}
	}
	if ts, csrc, ok := e.lookup("@" + a.Domain); ok {
		n.Via, n.Source = ViaCatchAll, csrc
		next.owner, _ = address.StripExtension(a.Local, e.opts.Delimiter)
		n.Children = e.targets(ts, next)
		return n
	}
	return fail(n, a, fmt.Errorf("%s: %w", a, ErrNoSuchUser))
}

// account delivers a (which resolved to the account local@a.Domain with
// the given home) through its .forward or to its mailbox. f is the frame
// of a's own expansion (its chain ends with a).
func (e *expander) account(n *Node, a address.Address, local, home string, f *frame) *Node {
	ts, err := e.r.Forward(e.ctx, home)
	if err != nil {
		return e.temporary(n, fmt.Errorf("read .forward of %s: %w", a, err))
	}
	if len(ts) == 0 {
		n.Kind, n.Via = Mailbox, ViaAccount
		n.Leaf = &Leaf{Kind: Mailbox, Rcpt: a, Home: home, Source: n.Source}
		return n
	}
	n.Via, n.Source = ViaForward, Source{File: ts[0].Source.File}
	fw := *f
	fw.origin, fw.user, fw.home, fw.owner = fromForward, true, home, local
	n.Children = e.targets(ts, &fw)
	return n
}

// self handles a target naming the address of its own rule (f.addr): from
// a .forward it is that account's mailbox; from an alias (or an include
// file it reads) it skips the aliases and goes to the account.
func (e *expander) self(n *Node, f *frame) *Node {
	a := f.addr
	n.Address = a.String()
	if f.user {
		// Inside a .forward (or an include file it names), f.addr is
		// the .forward's owner: "alice" there means her mailbox.
		if e.seen["self\x00"+f.home] {
			n.Via = ViaDuplicate
			return n
		}
		e.seen["self\x00"+f.home] = true
		n.Kind, n.Via = Mailbox, ViaSelf
		n.Leaf = &Leaf{Kind: Mailbox, Rcpt: a, Home: f.home, Source: n.Source}
		return n
	}
	if e.seen["self\x00"+a.Key()] {
		n.Via = ViaDuplicate
		return n
	}
	e.seen["self\x00"+a.Key()] = true
	for _, local := range e.locals(a) {
		la := address.Address{Local: local, Domain: a.Domain}
		home, ok, err := e.r.Account(e.ctx, la)
		if err != nil {
			return e.temporary(n, fmt.Errorf("look up account %s: %w", la, err))
		}
		if ok {
			next := &frame{addr: a, origin: fromAliases, depth: f.depth + 1, chain: f.chain}
			n = e.account(n, a, local, home, next)
			if n.Kind == Mailbox {
				n.Via = ViaSelf
			}
			return n
		}
	}
	return fail(n, a, fmt.Errorf("%s: %w (the alias names itself, but there is no account %s)", a, ErrNoSuchUser, a))
}

// remote makes a Remote leaf for a, forwarded on behalf of f.addr.
func (e *expander) remote(n *Node, a address.Address, f *frame) *Node {
	rcpt := a
	if f != nil {
		rcpt = f.addr
	}
	n.Kind, n.Via = Remote, ViaRemote
	n.Leaf = &Leaf{Kind: Remote, Rcpt: rcpt, Remote: a, Source: n.Source}
	return n
}

// noExpand delivers `\a` to a's own mailbox: no aliases, no .forward.
func (e *expander) noExpand(a address.Address, f *frame, src Source) *Node {
	n := &Node{Address: a.String(), Kind: Address, Via: ViaNoExpand, Source: src}
	if !e.r.IsLocalDomain(a.Domain) {
		n = e.remote(n, a, f)
		n.Via = ViaNoExpand
		return n
	}
	rcpt := a
	if e.isSelf(a, f) {
		rcpt = f.addr
		if f.user {
			n.Kind = Mailbox
			n.Leaf = &Leaf{Kind: Mailbox, Rcpt: rcpt, Home: f.home, Source: src}
			return n
		}
	}
	for _, local := range e.locals(a) {
		la := address.Address{Local: local, Domain: a.Domain}
		home, ok, err := e.r.Account(e.ctx, la)
		if err != nil {
			return e.temporary(n, fmt.Errorf("look up account %s: %w", la, err))
		}
		if ok {
			n.Kind = Mailbox
			n.Leaf = &Leaf{Kind: Mailbox, Rcpt: rcpt, Home: home, Source: src}
			return n
		}
	}
	return fail(n, a, fmt.Errorf("%s: %w (\\%s delivers to an account's mailbox, and there is none)", a, ErrNoSuchUser, a.Local))
}

// targets expands each target of a rule in frame f.
func (e *expander) targets(ts []Target, f *frame) []*Node {
	var out []*Node
	for _, t := range ts {
		out = append(out, e.target(t, f))
	}
	return out
}

func (e *expander) target(t Target, f *frame) *Node {
	switch t.Kind {
	case Address:
		var a address.Address
		if strings.Contains(t.Value, "@") {
			var err error
			if a, err = address.Parse(t.Value); err != nil {
				n := &Node{Address: t.Value, Kind: Address, Source: t.Source}
				return fail(n, f.addr, fmt.Errorf("bad target %q: %w", t.Value, err))
			}
		} else {
			if err := address.CheckLocal(t.Value); err != nil {
				n := &Node{Address: t.Value, Kind: Address, Source: t.Source}
				return fail(n, f.addr, fmt.Errorf("bad target %q: %w", t.Value, err))
			}
			a = address.Address{Local: t.Value, Domain: f.addr.Domain}
		}
		if t.NoExpand {
			return e.noExpand(a, f, t.Source)
		}
		return e.address(a, f, t.Source)
	case File, Pipe:
		n := &Node{Kind: t.Kind, Value: t.Value, Source: t.Source}
		l := &Leaf{Kind: t.Kind, Rcpt: f.addr, Home: f.home, User: f.owner, Source: t.Source}
		if t.Kind == File {
			l.Path = t.Value
		} else {
			l.Command = t.Value
		}
		if why := e.refuse(t.Kind, f); why != "" {
			// The refused leaf keeps its path or command for the log.
			l.Err = fmt.Errorf("%s: %w: %s", t, ErrNotAllowed, why)
			n.Err = l.Err
		}
		n.Leaf = l
		return n
	case Include:
		return e.include(t, f)
	}
	n := &Node{Kind: t.Kind, Value: t.Value, Source: t.Source}
	return fail(n, f.addr, fmt.Errorf("target of kind %v: %w", t.Kind, ErrNotAllowed))
}

// refuse says why policy refuses a pipe, file or include in frame f, or "".
func (e *expander) refuse(k Kind, f *frame) string {
	o := e.opts
	if f.user {
		switch {
		case k == Pipe && !o.AllowForwardCommands:
			return "commands in .forward files are turned off (allow_commands)"
		case k == File && !o.AllowForwardFiles:
			return "files in .forward files are turned off (allow_files)"
		case k == Include && !o.AllowForwardIncludes:
			return ":include: in .forward files is turned off"
		}
	}
	if f.origin == fromInclude {
		switch {
		case k == Pipe && !o.AllowIncludeCommands:
			return "commands in :include: files are turned off"
		case k == File && !o.AllowIncludeFiles:
			return "files in :include: files are turned off"
		}
	}
	return ""
}

// include reads an :include: file and expands its targets.
func (e *expander) include(t Target, f *frame) *Node {
	n := &Node{Kind: Include, Value: t.Value, Via: ViaInclude, Source: t.Source}
	if why := e.refuse(Include, f); why != "" {
		return fail(n, f.addr, fmt.Errorf("%s: %w: %s", t, ErrNotAllowed, why))
	}
	ikey := "include:" + t.Value
	if slices.Contains(f.chain, ikey) {
		return fail(n, f.addr, fmt.Errorf("%s: %w: include cycle: %s", t.Value, ErrLoop, chainString(f.chain, ikey)))
	}
	depth := f.depth + 1
	if depth > e.opts.MaxDepth {
		return fail(n, f.addr, fmt.Errorf("%s: %w: more than %d levels", t.Value, ErrDepth, e.opts.MaxDepth))
	}
	// A file named again in the same context (a list of lists naming
	// one list twice) is expanded once: its targets would all be
	// duplicates, and re-reading it at every mention makes nested
	// includes exponential.
	skey := fmt.Sprintf("include\x00%s\x00%s\x00%d\x00%t\x00%s", t.Value, f.addr.Key(), f.origin, f.user, f.home)
	if e.seen[skey] {
		n.Via = ViaDuplicate
		return n
	}
	e.seen[skey] = true
	rc, err := e.opts.ReadInclude(t.Value)
	if err != nil {
		return e.temporary(n, fmt.Errorf("open include file: %w", err))
	}
	data, err := io.ReadAll(io.LimitReader(rc, MaxIncludeSize+1))
	rc.Close()
	if err != nil {
		return e.temporary(n, fmt.Errorf("read include file %s: %w", t.Value, err))
	}
	if len(data) > MaxIncludeSize {
		return fail(n, f.addr, fmt.Errorf("include file %s is larger than %d bytes", t.Value, MaxIncludeSize))
	}
	ts, perr := ParseForward(bytes.NewReader(data), t.Value)
	if perr != nil {
		fail(n, f.addr, fmt.Errorf("include file %s: %w", t.Value, perr))
	}
	next := &frame{addr: f.addr, origin: fromInclude, user: f.user, home: f.home, owner: f.owner,
		depth: depth, chain: append(slices.Clone(f.chain), ikey)}
	n.Children = e.targets(ts, next)
	return n
}

// Leaves returns the leaves in tree order, without duplicates: a mailbox
// reached twice is one leaf (the first), and so are a file, a command run
// for the same owner, a remote address, and the same failure twice.
func (n *Node) Leaves() []Leaf {
	var out []Leaf
	seen := map[string]bool{}
	var walk func(*Node)
	walk = func(n *Node) {
		if l := n.Leaf; l != nil {
			var key string
			switch {
			case l.Err != nil:
				key = fmt.Sprintf("err\x00%v\x00%s\x00%s", l.Kind, l.Rcpt.Key(), l.Err)
			case l.Kind == Mailbox:
				key = "mailbox\x00" + l.Home
			case l.Kind == File:
				key = "file\x00" + l.Path
			case l.Kind == Pipe:
				key = "pipe\x00" + l.Command + "\x00" + l.User + "\x00" + l.Home
			case l.Kind == Remote:
				key = "remote\x00" + l.Remote.Key()
			}
			if !seen[key] {
				seen[key] = true
				out = append(out, *l)
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(n)
	return out
}

// Deliverable reports whether the expansion reaches at least one target
// without error; `mailroom route` exits non-zero when it does not.
func (n *Node) Deliverable() bool {
	for _, l := range n.Leaves() {
		if l.Err == nil {
			return true
		}
	}
	return false
}
