package sieve

import (
	"fmt"
	"strings"
)

// Error is a script that cannot be compiled or run: it names the script
// and the place, so that the user (over ManageSieve) and the log can say
// which line to change.
type Error struct {
	Script string // the script's name, "" when not known
	Pos    Pos    // zero when the error is not tied to a place
	Msg    string
	// Via lists, for an error in an included script (RFC 6609), the
	// include commands that led to it, the outermost first; Script and
	// Pos are the place in the included script.
	Via []Origin
	err error // the cause of a run-time error, if any
}

// Unwrap gives errors.Is the cause of a run-time error (a cancelled
// context, an Environment's error).
func (e *Error) Unwrap() error { return e.err }

// Error is "script:line:col: message", with the includes that led to
// an included script's error.
func (e *Error) Error() string {
	s := e.Msg
	switch {
	case e.Script != "" && e.Pos.Line > 0:
		s = e.Script + ":" + e.Pos.String() + ": " + e.Msg
	case e.Script != "":
		s = e.Script + ": " + e.Msg
	case e.Pos.Line > 0:
		s = e.Pos.String() + ": " + e.Msg
	}
	if len(e.Via) > 0 {
		s += " (included from " + e.IncludedFrom() + ")"
	}
	return s
}

// IncludedFrom says where the script of an error in an included script
// was included, innermost first ("m:2:9, main:3:9"); "" for an error in
// the script that ran.
func (e *Error) IncludedFrom() string {
	var b strings.Builder
	for i := len(e.Via) - 1; i >= 0; i-- {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		o := e.Via[i]
		b.WriteString(o.Script + ":" + o.Pos.String())
	}
	return b.String()
}

// node is what the parser builds: a command or a test (RFC 5228 §8.2).
type node struct {
	pos   Pos
	name  string
	args  []arg
	tests []*node // a test, or a test list (parenthesised)
	// list marks tests written as a parenthesised test list.
	list  bool
	block []*node
	// hasBlock is set for a command followed by { }, even an empty one.
	hasBlock bool
}

type argKind int

const (
	argString argKind = iota // one string, quoted or text:
	argList                  // [ "a", "b" ]
	argNumber
	argTag
)

func (k argKind) String() string {
	return [...]string{"string", "string list", "number", "tag"}[k]
}

type arg struct {
	pos  Pos
	kind argKind
	strs []strLit // argString: one; argList: one or more
	num  uint64
	tag  string
}

// strLit is a string as written, with its place (for errors in
// variable references and encoded characters).
type strLit struct {
	pos       Pos
	s         string
	multiline bool
}

type parser struct {
	lex      *lexer
	tok      token
	maxDepth int
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errorf(pos Pos, format string, args ...any) error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// parse reads a whole script into its commands. maxDepth bounds the
// nesting of blocks and tests, so that a hostile script cannot exhaust
// the stack (the grammar is recursive).
func parse(src string, maxDepth int) ([]*node, error) {
	p := &parser{lex: newLexer(src), maxDepth: maxDepth}
	if err := p.advance(); err != nil {
		return nil, err
	}
	cmds, err := p.commands(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.errorf(p.tok.pos, "unexpected %s", p.tok.describe())
	}
	return cmds, nil
}

func (p *parser) commands(depth int) ([]*node, error) {
	var out []*node
	for p.tok.kind == tIdent {
		c, err := p.command(depth)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// command = identifier arguments (";" / block)
func (p *parser) command(depth int) (*node, error) {
	c := &node{pos: p.tok.pos, name: p.tok.text}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if err := p.arguments(c, 0); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tSemicolon:
		return c, p.advance()
	case tLBrace:
		if depth+1 > p.maxDepth {
			return nil, p.errorf(p.tok.pos, "blocks nested deeper than %d", p.maxDepth)
		}
		c.hasBlock = true
		if err := p.advance(); err != nil {
			return nil, err
		}
		block, err := p.commands(depth + 1)
		if err != nil {
			return nil, err
		}
		c.block = block
		if p.tok.kind != tRBrace {
			return nil, p.errorf(p.tok.pos, "expected a command or '}' but found %s", p.tok.describe())
		}
		return c, p.advance()
	}
	return nil, p.errorf(p.tok.pos, "expected ';' or '{' after command %s but found %s", c.name, p.tok.describe())
}

// arguments = *argument [ test / test-list ]; depth is how deeply the
// tests are nested so far.
func (p *parser) arguments(n *node, depth int) error {
	for {
		a := arg{pos: p.tok.pos}
		switch p.tok.kind {
		case tString:
			a.kind = argString
			a.strs = []strLit{{pos: p.tok.pos, s: p.tok.text, multiline: p.tok.multiline}}
		case tNumber:
			a.kind = argNumber
			a.num = p.tok.num
		case tTag:
			a.kind = argTag
			a.tag = p.tok.text
		case tLBracket:
			a.kind = argList
			if err := p.stringList(&a); err != nil {
				return err
			}
		default:
			return p.testArgs(n, depth)
		}
		n.args = append(n.args, a)
		if err := p.advance(); err != nil {
			return err
		}
	}
}

// stringList reads [ string *("," string) ] up to the closing bracket,
// leaving it as the current token.
func (p *parser) stringList(a *arg) error {
	for {
		if err := p.advance(); err != nil {
			return err
		}
		if p.tok.kind != tString {
			return p.errorf(p.tok.pos, "expected a string in the string list but found %s", p.tok.describe())
		}
		a.strs = append(a.strs, strLit{pos: p.tok.pos, s: p.tok.text, multiline: p.tok.multiline})
		if err := p.advance(); err != nil {
			return err
		}
		switch p.tok.kind {
		case tComma:
		case tRBracket:
			return nil
		default:
			return p.errorf(p.tok.pos, "expected ',' or ']' in the string list but found %s", p.tok.describe())
		}
	}
}

func (p *parser) testArgs(n *node, depth int) error {
	switch p.tok.kind {
	case tIdent:
		t, err := p.test(depth + 1)
		if err != nil {
			return err
		}
		n.tests = []*node{t}
	case tLParen:
		n.list = true
		if depth+1 > p.maxDepth {
			return p.errorf(p.tok.pos, "tests nested deeper than %d", p.maxDepth)
		}
		for {
			if err := p.advance(); err != nil {
				return err
			}
			if p.tok.kind != tIdent {
				return p.errorf(p.tok.pos, "expected a test but found %s", p.tok.describe())
			}
			t, err := p.test(depth + 1)
			if err != nil {
				return err
			}
			n.tests = append(n.tests, t)
			switch p.tok.kind {
			case tComma:
			case tRParen:
				return p.advance()
			default:
				return p.errorf(p.tok.pos, "expected ',' or ')' in the test list but found %s", p.tok.describe())
			}
		}
	}
	return nil
}

// test = identifier arguments
func (p *parser) test(depth int) (*node, error) {
	if depth > p.maxDepth {
		return nil, p.errorf(p.tok.pos, "tests nested deeper than %d", p.maxDepth)
	}
	t := &node{pos: p.tok.pos, name: p.tok.text}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return t, p.arguments(t, depth)
}
