package sieve

import (
	"strings"
	"time"
)

// command is a compiled command.
type command interface {
	exec(r *run) error
}

type (
	ifCmd struct {
		branches  []branch
		elseBlock block
		hasElse   bool
	}
	branch struct {
		test  test
		block block
	}
	stopCmd    struct{}
	returnCmd  struct{}
	discardCmd struct{}
	keepCmd    struct {
		flags *[]str // :flags (RFC 5232 §5), nil for the current flags
	}
	fileintoCmd struct {
		mailbox str
		copy    bool // RFC 3894
		create  bool // RFC 5490 §3.2
		flags   *[]str
		pos     Pos // of the command, for FileInto.At
	}
	redirectCmd struct {
		addr str
		copy bool
	}
	rejectCmd struct {
		reason   str
		extended bool // ereject
	}
	flagCmd struct {
		op    flagOp
		v     *varRef // nil: the internal variable
		flags []str
	}
	setCmd struct {
		v    varRef
		val  str
		mods []modifier
	}
	includeCmd struct {
		dep      Dep
		script   *Script
		once     bool
		optional bool
		pos      Pos // of the command, for Error.Via
	}
	vacationCmd struct {
		period    time.Duration
		subject   *str
		from      *str
		addresses []str
		mime      bool
		handle    *str
		reason    str
	}
)

type flagOp int

const (
	flagSet flagOp = iota
	flagAdd
	flagRemove
)

type modifier int

// The modifiers of set (RFC 5229 §4.1), in the order they apply
// (highest precedence first).
const (
	modLower modifier = iota
	modUpper
	modLowerFirst
	modUpperFirst
	modQuoteWildcard
	modQuoteRegex
	modLength
)

var modifiers = map[string]struct {
	m    modifier
	prec int
}{
	"lower": {modLower, 40}, "upper": {modUpper, 40},
	"lowerfirst": {modLowerFirst, 30}, "upperfirst": {modUpperFirst, 30},
	"quotewildcard": {modQuoteWildcard, 20}, "quoteregex": {modQuoteRegex, 20},
	"length": {modLength, 10},
}

// flagsTag reads the :flags argument of keep and fileinto.
func (c *compiler) flagsTag(s *argScanner, a arg) (*[]str, error) {
	if err := c.need(a.pos, "imap4flags", ":flags"); err != nil {
		return nil, err
	}
	if err := s.once(a, ":flags"); err != nil {
		return nil, err
	}
	p, err := s.param(a, argList)
	if err != nil {
		return nil, err
	}
	f, err := c.strs(p)
	return &f, err
}

func (c *compiler) keep(n *node) (command, error) {
	s := c.scan(n)
	var k keepCmd
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		if a.tag != "flags" {
			return nil, c.errorf(a.pos, "keep: unknown tag :%s", a.tag)
		}
		var err error
		if k.flags, err = c.flagsTag(s, a); err != nil {
			return nil, err
		}
	}
	_, err := s.positional()
	return k, err
}

func (c *compiler) fileinto(n *node) (command, error) {
	if err := c.need(n.pos, "fileinto", "fileinto"); err != nil {
		return nil, err
	}
	s := c.scan(n)
	f := fileintoCmd{pos: n.pos}
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		var err error
		switch a.tag {
		case "copy":
			err = c.need(a.pos, "copy", ":copy")
			f.copy = true
		case "create":
			err = c.need(a.pos, "mailbox", ":create")
			f.create = true
		case "flags":
			f.flags, err = c.flagsTag(s, a)
		default:
			err = c.errorf(a.pos, "fileinto: unknown tag :%s", a.tag)
		}
		if err != nil {
			return nil, err
		}
	}
	args, err := s.positional(argString)
	if err != nil {
		return nil, err
	}
	if f.mailbox, err = c.str(args[0].strs[0]); err != nil {
		return nil, err
	}
	if f.mailbox.constant() && f.mailbox.lit == "" {
		return nil, c.errorf(args[0].pos, "fileinto: empty mailbox name")
	}
	return f, nil
}

func (c *compiler) redirect(n *node) (command, error) {
	s := c.scan(n)
	var r redirectCmd
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		if a.tag != "copy" {
			return nil, c.errorf(a.pos, "redirect: unknown tag :%s", a.tag)
		}
		if err := c.need(a.pos, "copy", ":copy"); err != nil {
			return nil, err
		}
		r.copy = true
	}
	args, err := s.positional(argString)
	if err != nil {
		return nil, err
	}
	if r.addr, err = c.str(args[0].strs[0]); err != nil {
		return nil, err
	}
	// RFC 5228 §4.2: a syntactically invalid address is an error; a
	// constant one is checked now.
	if r.addr.constant() {
		if _, ok := parseRedirectAddress(r.addr.lit); !ok {
			return nil, c.errorf(args[0].pos, "redirect: invalid address %q", r.addr.lit)
		}
	}
	return r, nil
}

func (c *compiler) reject(n *node) (command, error) {
	if err := c.need(n.pos, n.name, n.name); err != nil {
		return nil, err
	}
	s := c.scan(n)
	if a, ok := s.tag(); ok {
		return nil, c.errorf(a.pos, "%s: unknown tag :%s", n.name, a.tag)
	}
	args, err := s.positional(argString)
	if err != nil {
		return nil, err
	}
	r := rejectCmd{extended: n.name == "ereject"}
	r.reason, err = c.str(args[0].strs[0])
	return r, err
}

// flagCmd compiles setflag, addflag and removeflag (RFC 5232 §3).
func (c *compiler) flagCmd(n *node) (command, error) {
	if err := c.need(n.pos, "imap4flags", n.name); err != nil {
		return nil, err
	}
	f := flagCmd{op: map[string]flagOp{"setflag": flagSet, "addflag": flagAdd, "removeflag": flagRemove}[n.name]}
	s := c.scan(n)
	if a, ok := s.tag(); ok {
		return nil, c.errorf(a.pos, "%s: unknown tag :%s", n.name, a.tag)
	}
	rest := n.args[s.i:]
	if len(rest) == 2 {
		if err := c.need(rest[0].pos, "variables", n.name+" with a variable name"); err != nil {
			return nil, err
		}
		if rest[0].kind != argString {
			return nil, c.errorf(rest[0].pos, "%s: the variable name must be a string", n.name)
		}
		v := rest[0].strs[0]
		if !validVarName(v.s) {
			return nil, c.errorf(v.pos, "invalid variable name %q", v.s)
		}
		ref, err := c.flagVar(v)
		if err != nil {
			return nil, err
		}
		f.v = &ref
		s.i++
	}
	args, err := s.positional(argList)
	if err != nil {
		return nil, err
	}
	f.flags, err = c.strs(args[0])
	return f, err
}

// set compiles set (RFC 5229 §4).
func (c *compiler) set(n *node) (command, error) {
	if err := c.need(n.pos, "variables", "set"); err != nil {
		return nil, err
	}
	s := c.scan(n)
	var cmd setCmd
	precs := map[int]bool{}
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		m, ok := modifiers[a.tag]
		if !ok {
			return nil, c.errorf(a.pos, "set: unknown modifier :%s", a.tag)
		}
		if m.m == modQuoteRegex {
			if err := c.need(a.pos, "regex", ":quoteregex"); err != nil {
				return nil, err
			}
		}
		if precs[m.prec] {
			return nil, c.errorf(a.pos, "set: two modifiers of the same precedence (RFC 5229 §4.1)")
		}
		precs[m.prec] = true
		cmd.mods = append(cmd.mods, m.m)
	}
	// Apply in order of precedence: higher first.
	order := func(m modifier) int { return modifiers[modName(m)].prec }
	for i := 1; i < len(cmd.mods); i++ {
		for j := i; j > 0 && order(cmd.mods[j]) > order(cmd.mods[j-1]); j-- {
			cmd.mods[j], cmd.mods[j-1] = cmd.mods[j-1], cmd.mods[j]
		}
	}
	args, err := s.positional(argString, argString)
	if err != nil {
		return nil, err
	}
	name := args[0].strs[0]
	if !validVarName(name.s) {
		if strings.Contains(name.s, ".") {
			return nil, c.errorf(name.pos, "set: variable namespaces are not supported (%q)", name.s)
		}
		return nil, c.errorf(name.pos, "set: invalid variable name %q", name.s)
	}
	if cmd.v, err = c.slot(name.pos, name.s); err != nil {
		return nil, err
	}
	cmd.val, err = c.str(args[1].strs[0])
	return cmd, err
}

func modName(m modifier) string {
	for k, v := range modifiers {
		if v.m == m {
			return k
		}
	}
	return ""
}

// The vacation periods (RFC 5230 §4.1, RFC 6131): Pigeonhole's defaults
// (sieve_vacation_default_period 7d, min_period 1d, max_period 60d).
// The minimum applies to :seconds too, so that a script cannot reply to
// every message of a sender.
const (
	defaultVacationPeriod = 7 * 24 * time.Hour
	minVacationPeriod     = 24 * time.Hour
	maxVacationPeriod     = 60 * 24 * time.Hour
)

// vacation compiles vacation (RFC 5230 §4, RFC 6131 :seconds).
func (c *compiler) vacation(n *node) (command, error) {
	if err := c.need(n.pos, "vacation", "vacation"); err != nil {
		return nil, err
	}
	s := c.scan(n)
	v := vacationCmd{period: defaultVacationPeriod}
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		switch a.tag {
		case "days", "seconds":
			if a.tag == "seconds" {
				if err := c.need(a.pos, "vacation-seconds", ":seconds"); err != nil {
					return nil, err
				}
			}
			if err := s.once(a, ":days or :seconds"); err != nil {
				return nil, err
			}
			p, err := s.param(a, argNumber)
			if err != nil {
				return nil, err
			}
			unit := 24 * time.Hour
			if a.tag == "seconds" {
				unit = time.Second
			}
			d := maxVacationPeriod
			if p.num < uint64(maxVacationPeriod/unit) {
				d = time.Duration(p.num) * unit
			}
			v.period = min(max(d, minVacationPeriod), maxVacationPeriod)
		case "subject", "from", "handle":
			if err := s.once(a, ":"+a.tag); err != nil {
				return nil, err
			}
			p, err := s.param(a, argString)
			if err != nil {
				return nil, err
			}
			x, err := c.str(p.strs[0])
			if err != nil {
				return nil, err
			}
			switch a.tag {
			case "subject":
				v.subject = &x
			case "from":
				v.from = &x
			case "handle":
				v.handle = &x
			}
		case "addresses":
			if err := s.once(a, ":addresses"); err != nil {
				return nil, err
			}
			p, err := s.param(a, argList)
			if err != nil {
				return nil, err
			}
			if v.addresses, err = c.strs(p); err != nil {
				return nil, err
			}
		case "mime":
			v.mime = true
		default:
			return nil, c.errorf(a.pos, "vacation: unknown tag :%s", a.tag)
		}
	}
	args, err := s.positional(argString)
	if err != nil {
		return nil, err
	}
	v.reason, err = c.str(args[0].strs[0])
	return v, err
}
