// Package alias is the rules engine of local delivery: it parses the
// aliases file (aliases(5) syntax) and .forward files, and expands a
// recipient address into a tree of targets (mailboxes, files, pipes,
// remote addresses) that package mda delivers and `mailroom route` prints.
//
// It decides where mail goes, never puts it anywhere: it opens no mailbox,
// runs no command and knows nothing of accounts beyond the Resolver that
// mda hands it. Policy (which pipes and files are allowed) is applied here,
// so that delivery and `mailroom route` always agree.
package alias

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors found while expanding. They appear in Node.Err and Leaf.Err
// (wrapped, with the address or target), never as Expand's error return,
// which is kept for temporary trouble.
var (
	// ErrNoSuchUser is a local address that is neither an alias, an
	// account nor covered by a catch-all (RFC 3463 5.1.1).
	ErrNoSuchUser = errors.New("no such user")
	// ErrLoop is an address that expands back into itself through a chain
	// of aliases or .forward files, or an include cycle (5.4.6).
	ErrLoop = errors.New("mail forwarding loop")
	// ErrDepth is an alias chain deeper than Options.MaxDepth. It wraps
	// ErrLoop, because a chain that deep is almost always a loop, and
	// RFC 3463 gives both 5.4.6.
	ErrDepth = fmt.Errorf("alias chain too deep: %w", ErrLoop)
	// ErrNotAllowed is a pipe, file or include that policy refuses where it
	// was found (a .forward or an include file without the permission).
	ErrNotAllowed = errors.New("target not allowed")
)

// Source says where a rule came from, so that errors and `mailroom route`
// can point the administrator at the line to change.
type Source struct {
	File string
	Line int // 0 when the whole file is meant
}

// String returns "file:line", "file" when Line is 0, or "" for no source.
func (s Source) String() string {
	if s.Line == 0 {
		return s.File
	}
	return s.File + ":" + strconv.Itoa(s.Line)
}

// Kind is what a target or tree node is.
type Kind int

// The kinds of targets and nodes. A parsed address target is Address;
// expansion turns it into Mailbox (local account) or Remote.
const (
	Address Kind = iota + 1 // an address still to expand (parsing), or an inner node
	Mailbox                 // a local account's mailbox
	File                    // append to a file, mbox format
	Pipe                    // run a command with the message on stdin
	Remote                  // forward to an address outside the local domains
	Include                 // :include:/path, targets read from a file
)

var kindNames = [...]string{Address: "address", Mailbox: "mailbox", File: "file", Pipe: "pipe", Remote: "remote", Include: "include"}

// String returns the lower-case name used in logs and `mailroom route`.
func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Via is the rule that made a tree node what it is: which rule expanded
// an address, or why it was not expanded further.
type Via int

// The rules of Node.Via. The zero value is a file or pipe target, taken
// as written.
const (
	ViaNone      Via = iota // a file or pipe, taken as written
	ViaAlias                // an entry of the aliases file
	ViaCatchAll             // the @domain entry, for an unknown user
	ViaForward              // the account's .forward file
	ViaInclude              // an :include: file
	ViaAccount              // a plain account: its mailbox
	ViaSelf                 // an alias or .forward naming its own address: the mailbox
	ViaNoExpand             // a \user target: the mailbox, without further expansion
	ViaRemote               // an address outside the local domains
	ViaDuplicate            // expanded elsewhere in the tree; no children
	ViaSRS                  // an SRS address of ours, reversed to the original sender
)

var viaNames = [...]string{ViaNone: "", ViaAlias: "alias", ViaCatchAll: "catch-all", ViaForward: ".forward",
	ViaInclude: "include", ViaAccount: "account", ViaSelf: "self", ViaNoExpand: `\`, ViaRemote: "remote",
	ViaDuplicate: "duplicate", ViaSRS: "srs"}

// String returns the word `mailroom route` prints for the rule ("" for
// ViaNone).
func (v Via) String() string {
	if v >= 0 && int(v) < len(viaNames) {
		return viaNames[v]
	}
	return "Via(" + strconv.Itoa(int(v)) + ")"
}

// Target is one parsed target of an alias or a .forward line.
type Target struct {
	Kind Kind // Address, File, Pipe or Include
	// Value is the address (a bare local part or local@domain), the
	// absolute clean path (File, Include) or the command without its
	// leading '|' (Pipe).
	Value string
	// NoExpand is `\alice`: deliver to alice's own mailbox, without
	// looking at aliases or her .forward ("keep a copy").
	NoExpand bool
	Source   Source
}

// String renders the target in the syntax Parse reads back, quoted when
// it has to be.
func (t Target) String() string {
	var s string
	switch t.Kind {
	case Pipe:
		s = "|" + t.Value
	case Include:
		s = ":include:" + t.Value
	case Address:
		s = t.Value
		if t.NoExpand {
			s = `\` + s
		}
	default:
		s = t.Value
	}
	if needsQuote(s) {
		return quote(s)
	}
	return s
}

// needsQuote reports whether s would not read back as one target unquoted.
func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for i, r := range s {
		switch {
		case r == ',', r == '"', r == '#', r == ' ', r == '\t':
			return true
		case r == '\\' && i > 0:
			return true
		}
	}
	return false
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// ParseError is a syntax error in an aliases, .forward or include file.
// Msg says what is wrong and how to fix it.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	return Source{File: e.File, Line: e.Line}.String() + ": " + e.Msg
}
