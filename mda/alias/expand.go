package alias

import (
	"errors"
	"io"

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
	Account(a address.Address) (home string, ok bool, err error)
	// Forward returns the targets of the .forward file in home, each
	// with its Source (file and line). It returns nil when there is no
	// .forward, when forward files are off, or when the file is ignored
	// (a symlink, the wrong owner: the resolver logs that). err is for
	// temporary trouble (I/O), which defers the message.
	Forward(home string) ([]Target, error)
}

// Options control expansion.
type Options struct {
	// Delimiter is recipient_delimiter ("+"): alice+tag falls back to
	// alice. Several characters mean any of them; "" disables extensions.
	Delimiter string
	// MaxDepth bounds alias chains; deeper is ErrDepth. 0 means 10.
	MaxDepth int
	// AllowForwardCommands and AllowForwardFiles allow pipes and files in
	// .forward files (config allow_commands, allow_files).
	AllowForwardCommands, AllowForwardFiles bool
	// AllowForwardIncludes allows :include: in .forward files. Off by
	// default: the include is read with mailroom's rights, so a user
	// could otherwise make it read (and leak, through bounces) files that
	// are not theirs.
	AllowForwardIncludes bool
	// AllowIncludeCommands and AllowIncludeFiles allow pipes and files
	// reached through an :include: file, which may belong to someone else
	// than the administrator.
	AllowIncludeCommands, AllowIncludeFiles bool
	// ReadInclude opens an include file; nil means os.Open. mda and tests
	// use it to confine include files.
	ReadInclude func(path string) (io.ReadCloser, error)
}

// DefaultMaxDepth is the alias chain limit when Options.MaxDepth is 0.
const DefaultMaxDepth = 10

// Node is one step of an expansion: an address and the rule that
// expanded it, an include file, or a leaf (a delivery target). The tree is
// what `mailroom route` prints and what the delivery log summarises.
type Node struct {
	// Address is the address this node is about: the one expanded, or
	// the mailbox's or remote target's address. "" for file, pipe and
	// include nodes.
	Address string
	// Kind is Address for an inner address node, Include for an include
	// file, or the leaf kind.
	Kind Kind
	// Via says which rule applied: "alias", "catch-all", ".forward",
	// "include", "account" (plain mailbox), "self" (an alias or .forward
	// naming its own address), `\` (no expansion), "remote", "duplicate"
	// (expanded elsewhere in the tree; no children), or "" for a target
	// taken as written (file, pipe).
	Via string
	// Source is where the rule came from: the alias line, the .forward
	// file, or the target's own line for leaves.
	Source   Source
	Children []*Node
	// Err is a permanent failure of this branch: ErrNoSuchUser, ErrLoop,
	// ErrDepth, ErrNotAllowed, or a syntax error in an include file.
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
	// LOCAL, EXTENSION, DOMAIN); for a remote target the forwarding
	// address; for a failure the address that failed.
	Rcpt address.Address
	// Home is the mail home for a mailbox, and for a pipe or file from a
	// .forward the owner's mail home (HOME); "" otherwise.
	Home string
	// User is the local part of the account or alias that owns a pipe
	// or file (USER).
	User    string
	Path    string          // File: absolute path
	Command string          // Pipe: the command, for /bin/sh -c
	Remote  address.Address // Remote: where to forward
	Source  Source
	// Err is non-nil for a refused or failed piece: a permanent failure
	// for that piece only.
	Err error
}

// Expand expands addr. The error return is only for temporary trouble
// (the resolver's or an include file's I/O): the caller defers. Permanent
// problems are in the tree (Node.Err, Leaf.Err): an unknown address is a
// root whose Err wraps ErrNoSuchUser.
func Expand(t *Table, addr address.Address, r Resolver, opts Options) (*Node, error) {
	return nil, errors.New("alias: not implemented yet")
}

// Leaves returns the leaves in tree order, without duplicates: a mailbox
// reached twice is one leaf (the first), and so are a file, a command run
// for the same owner, and a remote address.
func (n *Node) Leaves() []Leaf {
	return nil
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

// Format writes the tree for `mailroom route`, one node per line, with
// where each rule came from.
func (n *Node) Format(w io.Writer) error {
	return errors.New("alias: not implemented yet")
}
