package sieve

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Extensions lists the capabilities this implementation offers to
// require, as ManageSieve's SIEVE capability announces them.
func Extensions() []string {
	return []string{
		"body", "comparator-i;ascii-numeric", "comparator-i;ascii-casemap", "comparator-i;octet",
		"copy", "date", "duplicate", "encoded-character", "envelope", "ereject", "fileinto",
		"imap4flags", "include", "mailbox", "regex", "reject", "relational", "subaddress",
		"vacation", "vacation-seconds", "variables",
	}
}

// Location says where an included script lives (RFC 6609 §3.2).
type Location int

const (
	// Personal scripts are the user's own (:personal, the default).
	Personal Location = iota
	// Global scripts are the administrator's (:global).
	Global
)

// String names the location as include's tags do: "personal" or
// "global".
func (l Location) String() string {
	if l == Global {
		return "global"
	}
	return "personal"
}

// ErrNotFound is a script that does not exist; a Loader returns it (or
// wraps it) so that include :optional can skip the script.
var ErrNotFound = errors.New("script not found")

// ErrUnusable is a script that exists but can never be included (too
// large, not a file); a Loader wraps it, and the including script does
// not compile.
var ErrUnusable = errors.New("script cannot be used")

// Loader reads the scripts that include names. Names are as written in
// the script; the Loader decides what is a valid name. A script that
// does not exist, or cannot by its name, is an error wrapping
// ErrNotFound, one that can never be read ErrUnusable, and the including
// script does not compile; any other error is trouble reading it, and
// Compile returns it wrapped, not as an *Error, so that the script is
// not taken for broken.
type Loader interface {
	Load(loc Location, name string) ([]byte, error)
}

// Options configure Compile.
type Options struct {
	// Name names the script in errors and logs.
	Name string
	// Self is where the script itself lives, so that including itself
	// is refused as a loop (RFC 6609 §3.2); SelfLocation likewise.
	Self         string
	SelfLocation Location
	// Loader reads included scripts; nil makes include a compile
	// error (the script cannot be resolved).
	Loader Loader
	// Limits bound the script; zero fields take their defaults.
	Limits Limits
	// Separator is the subaddress separator (RFC 5233), "+" by default.
	Separator string
}

// Dep is a script that a compiled script includes, so that a cache can
// tell when the compiled form is stale.
type Dep struct {
	Location Location
	Name     string
}

// Script is a compiled script: parsed, checked and ready to run any
// number of times, from any number of goroutines at once (it is never
// changed after Compile).
type Script struct {
	name    string
	cmds    block
	nlocals int
	limits  Limits
	sep     string
	deps    []Dep
	// vars says whether the variables extension is in use, so that
	// matches record their match variables.
	vars bool
}

// Name is the name given in Options.
func (s *Script) Name() string { return s.name }

// Deps lists the scripts included, directly or not.
func (s *Script) Deps() []Dep { return s.deps }

// Compile parses and checks a script. A script that cannot run gets an
// *Error naming the line and column of the problem.
func Compile(src []byte, opts Options) (*Script, error) {
	opts.Limits = opts.Limits.withDefaults()
	if opts.Separator == "" {
		opts.Separator = "+"
	}
	u := &unitCompiler{opts: opts, done: map[Dep]*Script{}, deps: map[Dep]bool{}}
	s, err := u.compile(string(src), opts.Name, Dep{opts.SelfLocation, opts.Self}, 0)
	if err != nil {
		return nil, err
	}
	for d := range u.deps {
		s.deps = append(s.deps, d)
	}
	sort.Slice(s.deps, func(i, j int) bool {
		a, b := s.deps[i], s.deps[j]
		return a.Location < b.Location || a.Location == b.Location && a.Name < b.Name
	})
	return s, nil
}

// unitCompiler compiles a script and the scripts it includes, each once.
type unitCompiler struct {
	opts  Options
	done  map[Dep]*Script
	stack []Dep
	// deps is every script named by an include, found or not (an
	// optional one may appear later).
	deps map[Dep]bool
	// regexInsts adds up the programs of the constant :regex keys
	// (maxScriptRegexInsts).
	regexInsts int
}

// maxScriptRegexInsts bounds the regex programs of a script and the
// scripts it includes together: ten of the largest one allows (about half a second of compilation).
const maxScriptRegexInsts = 10 * maxRegexInsts

func (u *unitCompiler) compile(src, name string, self Dep, depth int) (*Script, error) {
	if len(src) > u.opts.Limits.MaxScriptSize {
		return nil, &Error{Script: name, Msg: fmt.Sprintf("script is %d octets, more than the limit of %d", len(src), u.opts.Limits.MaxScriptSize)}
	}
	nodes, err := parse(src, u.opts.Limits.MaxNesting)
	if err != nil {
		return nil, withScript(err, name)
	}
	c := &compiler{u: u, name: name, self: self, depth: depth, caps: map[string]bool{},
		locals: map[string]int{}, globals: map[string]bool{}, declared: map[string]bool{}}
	u.stack = append(u.stack, self)
	defer func() { u.stack = u.stack[:len(u.stack)-1] }()
	u.done[self] = nil // being compiled: a loop if included again
	c.collectNames(nodes)
	cmds, err := c.commands(nodes, true)
	if err != nil {
		return nil, withScript(err, name)
	}
	s := &Script{name: name, cmds: cmds, nlocals: len(c.locals), limits: u.opts.Limits, sep: u.opts.Separator, vars: c.caps["variables"]}
	u.done[self] = s
	return s, nil
}

func withScript(err error, name string) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	if len(e.Via) > 0 && e.Via[0].Script == "" {
		e.Via[0].Script = name
	} else if e.Script == "" {
		e.Script = name
	}
	return err
}

// compiler checks one script.
type compiler struct {
	u     *unitCompiler
	name  string
	self  Dep
	depth int
	caps  map[string]bool
	// locals maps the names of the variables the script sets to slots;
	// globals the names declared global; declared is every name set.
	locals   map[string]int
	globals  map[string]bool
	declared map[string]bool
	// requireDone is set at the first command that is not require.
	requireDone bool
}

func (c *compiler) errorf(p Pos, format string, args ...any) error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// need reports an error unless the extension was required.
func (c *compiler) need(p Pos, ext, what string) error {
	if c.caps[ext] {
		return nil
	}
	return c.errorf(p, "%s needs require %q", what, ext)
}

// collectNames finds every variable the script sets or declares global,
// so that a reference to any other name is known to be empty (RFC 5229
// §3: a variable never set expands to the empty string).
func (c *compiler) collectNames(nodes []*node) {
	for _, n := range nodes {
		switch n.name {
		case "set":
			// The name is the first positional argument.
			for _, a := range n.args {
				if a.kind == argString {
					c.declared[strings.ToLower(a.strs[0].s)] = true
					break
				}
			}
		case "global":
			for _, a := range n.args {
				if a.kind == argString || a.kind == argList {
					for _, s := range a.strs {
						c.declared[strings.ToLower(s.s)] = true
					}
				}
			}
		case "setflag", "addflag", "removeflag":
			// A variable-list first argument, with other strings after it.
			var strs []arg
			for _, a := range n.args {
				if a.kind == argString || a.kind == argList {
					strs = append(strs, a)
				}
			}
			if len(strs) == 2 {
				c.declared[strings.ToLower(strs[0].strs[0].s)] = true
			}
		}
		c.collectNames(n.block)
	}
}

// slot returns the local slot of a variable that is set.
func (c *compiler) slot(p Pos, name string) (varRef, error) {
	name = strings.ToLower(name)
	if c.globals[name] {
		return varRef{kind: refGlobal, name: name}, nil
	}
	if i, ok := c.locals[name]; ok {
		return varRef{kind: refLocal, idx: i}, nil
	}
	if len(c.locals) >= c.u.opts.Limits.MaxVariables {
		return varRef{}, c.errorf(p, "more than %d variables", c.u.opts.Limits.MaxVariables)
	}
	c.locals[name] = len(c.locals)
	return varRef{kind: refLocal, idx: c.locals[name]}, nil
}

var supported = func() map[string]bool {
	m := map[string]bool{}
	for _, e := range Extensions() {
		m[e] = true
	}
	return m
}

func (c *compiler) require(n *node) error {
	if c.requireDone {
		return c.errorf(n.pos, "require must come before every other command (RFC 5228 §3.2)")
	}
	if len(n.args) != 1 || (n.args[0].kind != argString && n.args[0].kind != argList) || len(n.tests) > 0 || n.hasBlock {
		return c.errorf(n.pos, "require takes one string list of capabilities")
	}
	ok := supported()
	for _, s := range n.args[0].strs {
		if !ok[s.s] {
			return c.errorf(s.pos, "unsupported extension %q", s.s)
		}
		c.caps[s.s] = true
	}
	// RFC 5230 §4: vacation-seconds implies vacation; RFC 5429 §2.2
	// ereject is its own capability.
	if c.caps["vacation-seconds"] {
		c.caps["vacation"] = true
	}
	return nil
}

// block is a sequence of commands, each with its place for run-time
// errors.
type block []stmt

type stmt struct {
	pos Pos
	cmd command
}

// commands compiles a block; top says whether require may appear.
func (c *compiler) commands(nodes []*node, top bool) (block, error) {
	var out block
	for i := 0; i < len(nodes); i++ {
		n := nodes[i]
		if n.name == "require" {
			if !top {
				return nil, c.errorf(n.pos, "require is only allowed at the top of the script (RFC 5228 §3.2)")
			}
			if err := c.require(n); err != nil {
				return nil, err
			}
			continue
		}
		c.requireDone = true
		if n.name == "elsif" || n.name == "else" {
			return nil, c.errorf(n.pos, "%s without a preceding if", n.name)
		}
		if n.name == "if" {
			cmd, next, err := c.ifChain(nodes, i)
			if err != nil {
				return nil, err
			}
			out = append(out, stmt{n.pos, cmd})
			i = next - 1
			continue
		}
		cmd, err := c.command(n)
		if err != nil {
			return nil, err
		}
		if cmd != nil {
			out = append(out, stmt{n.pos, cmd})
		}
	}
	return out, nil
}

// ifChain compiles if, its elsifs and else (RFC 5228 §3.1), and returns
// the index of the node after them.
func (c *compiler) ifChain(nodes []*node, i int) (command, int, error) {
	cmd := &ifCmd{}
	for ; i < len(nodes); i++ {
		n := nodes[i]
		if i > 0 && len(cmd.branches) > 0 && n.name != "elsif" && n.name != "else" {
			break
		}
		if n.name == "else" {
			if len(n.args) > 0 || len(n.tests) > 0 {
				return nil, 0, c.errorf(n.pos, "else takes no arguments")
			}
			if !n.hasBlock {
				return nil, 0, c.errorf(n.pos, "else needs a block")
			}
			block, err := c.commands(n.block, false)
			if err != nil {
				return nil, 0, err
			}
			cmd.elseBlock = block
			cmd.hasElse = true
			return cmd, i + 1, nil
		}
		if len(n.args) > 0 {
			return nil, 0, c.errorf(n.args[0].pos, "%s takes a test, not a %s", n.name, n.args[0].kind)
		}
		if len(n.tests) != 1 || n.list {
			return nil, 0, c.errorf(n.pos, "%s needs exactly one test", n.name)
		}
		if !n.hasBlock {
			return nil, 0, c.errorf(n.pos, "%s needs a block", n.name)
		}
		t, err := c.test(n.tests[0])
		if err != nil {
			return nil, 0, err
		}
		block, err := c.commands(n.block, false)
		if err != nil {
			return nil, 0, err
		}
		cmd.branches = append(cmd.branches, branch{test: t, block: block})
	}
	return cmd, i, nil
}

// command compiles one command other than require and if.
func (c *compiler) command(n *node) (command, error) {
	if n.hasBlock {
		return nil, c.errorf(n.pos, "command %s takes no block", n.name)
	}
	if len(n.tests) > 0 {
		return nil, c.errorf(n.tests[0].pos, "command %s takes no test", n.name)
	}
	switch n.name {
	case "stop":
		return stopCmd{}, c.noArgs(n)
	case "keep":
		return c.keep(n)
	case "discard":
		return discardCmd{}, c.noArgs(n)
	case "fileinto":
		return c.fileinto(n)
	case "redirect":
		return c.redirect(n)
	case "reject", "ereject":
		return c.reject(n)
	case "setflag", "addflag", "removeflag":
		return c.flagCmd(n)
	case "vacation":
		return c.vacation(n)
	case "set":
		return c.set(n)
	case "include":
		return c.include(n)
	case "return":
		if err := c.need(n.pos, "include", "return"); err != nil {
			return nil, err
		}
		return returnCmd{}, c.noArgs(n)
	case "global":
		return nil, c.global(n)
	}
	return nil, c.errorf(n.pos, "unknown command %q", n.name)
}

func (c *compiler) noArgs(n *node) error {
	if len(n.args) > 0 {
		return c.errorf(n.args[0].pos, "%s takes no arguments", n.name)
	}
	return nil
}

// global declares variables shared with including and included scripts
// (RFC 6609 §3.3).
func (c *compiler) global(n *node) error {
	if err := c.need(n.pos, "include", "global"); err != nil {
		return err
	}
	if err := c.need(n.pos, "variables", "global"); err != nil {
		return err
	}
	if len(n.args) != 1 || (n.args[0].kind != argString && n.args[0].kind != argList) {
		return c.errorf(n.pos, "global takes one string list of variable names")
	}
	for _, s := range n.args[0].strs {
		if !validVarName(s.s) {
			return c.errorf(s.pos, "invalid variable name %q", s.s)
		}
		name := strings.ToLower(s.s)
		if _, ok := c.locals[name]; ok {
			return c.errorf(s.pos, "variable %q is declared global after its use as a local variable", s.s)
		}
		c.globals[name] = true
	}
	return nil
}

// include compiles the included script now (RFC 6609 §3.2): the name is
// a constant, so nothing about it waits for run time.
func (c *compiler) include(n *node) (command, error) {
	if err := c.need(n.pos, "include", "include"); err != nil {
		return nil, err
	}
	cmd := &includeCmd{pos: n.pos}
	loc := Personal
	var seenLoc bool
	var nameArg *arg
	for i := range n.args {
		a := &n.args[i]
		switch {
		case a.kind == argTag && (a.tag == "personal" || a.tag == "global"):
			if seenLoc {
				return nil, c.errorf(a.pos, "include takes only one of :personal and :global")
			}
			seenLoc = true
			if a.tag == "global" {
				loc = Global
			}
		case a.kind == argTag && a.tag == "once":
			cmd.once = true
		case a.kind == argTag && a.tag == "optional":
			cmd.optional = true
		case a.kind == argTag:
			return nil, c.errorf(a.pos, "unknown tag :%s for include", a.tag)
		case a.kind == argString && nameArg == nil:
			nameArg = a
		default:
			return nil, c.errorf(a.pos, "include takes one script name")
		}
	}
	if nameArg == nil {
		return nil, c.errorf(n.pos, "include needs a script name")
	}
	name := nameArg.strs[0].s
	if strings.Contains(name, "${") && c.caps["variables"] {
		return nil, c.errorf(nameArg.pos, "the name of an included script must be a constant")
	}
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return nil, c.errorf(nameArg.pos, "invalid script name %q", name)
	}
	dep := Dep{loc, name}
	cmd.dep = dep
	c.u.deps[dep] = true
	if slices.Contains(c.u.stack, dep) {
		return nil, c.errorf(nameArg.pos, "include of %s script %q is a loop", loc, name)
	}
	if s, ok := c.u.done[dep]; ok && s != nil {
		cmd.script = s
		return cmd, nil
	}
	if c.depth+1 > c.u.opts.Limits.MaxIncludeDepth {
		return nil, c.errorf(nameArg.pos, "includes nested deeper than %d", c.u.opts.Limits.MaxIncludeDepth)
	}
	if len(c.u.done) > c.u.opts.Limits.MaxIncludes {
		return nil, c.errorf(nameArg.pos, "more than %d included scripts", c.u.opts.Limits.MaxIncludes)
	}
	if c.u.opts.Loader == nil {
		return nil, c.errorf(nameArg.pos, "include of %s script %q: no scripts can be included here", loc, name)
	}
	src, err := c.u.opts.Loader.Load(loc, name)
	switch {
	case errors.Is(err, ErrNotFound) && cmd.optional:
		return nil, nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnusable):
		return nil, c.errorf(nameArg.pos, "include of %s script %q: %v", loc, name, err)
	case err != nil:
		// Not the script's fault (a disk error): the caller must not
		// take the script for broken, so this is no *Error.
		return nil, fmt.Errorf("%s:%s: include of %s script %q: %w", c.name, nameArg.pos, loc, name, err)
	}
	s, err := c.u.compile(string(src), name, dep, c.depth+1)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return nil, err // trouble reading a script it includes
		}
		// The error's place is in the included script; this include
		// is how it was reached (withScript names this script).
		e.Via = append([]Origin{{Pos: n.pos}}, e.Via...)
		return nil, e
	}
	cmd.script = s
	return cmd, nil
}
