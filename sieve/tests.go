package sieve

import (
	"strings"
	"time"
)

// test is a compiled test.
type test interface {
	eval(r *run) (bool, error)
}

type addrPart int

const (
	partAll addrPart = iota
	partLocal
	partDomain
	partUser   // RFC 5233
	partDetail // RFC 5233
)

type (
	trueTest  struct{}
	falseTest struct{}
	notTest   struct{ t test }
	allofTest struct{ ts []test }
	anyofTest struct{ ts []test }
	sizeTest  struct {
		over  bool
		limit uint64
	}
	existsTest struct{ names []str }
	headerTest struct {
		names []str
		m     matcher
	}
	addressTest struct {
		names []str
		part  addrPart
		m     matcher
	}
	envelopeTest struct {
		parts []str
		part  addrPart
		m     matcher
	}
	stringTest struct {
		source []str
		m      matcher
	}
	bodyTest struct {
		transform bodyTransform
		types     []str // :content
		m         matcher
	}
	dateTest struct {
		header  str // "" for currentdate
		current bool
		zone    *str // :zone, nil for the default
		orig    bool // :originalzone
		part    str
		m       matcher
	}
	hasflagTest struct {
		vars []varRef // empty: the internal variable
		m    matcher
	}
	duplicateTest struct {
		handle   str
		header   *str
		uniqueID *str
		seconds  time.Duration
		last     bool
	}
	mailboxExistsTest struct{ names []str }
)

type bodyTransform int

const (
	bodyText bodyTransform = iota
	bodyRaw
	bodyContent
)

// test compiles a test (RFC 5228 §5 and the extensions').
func (c *compiler) test(n *node) (test, error) {
	if n.hasBlock {
		return nil, c.errorf(n.pos, "test %s cannot take a block", n.name)
	}
	switch n.name {
	case "true", "false":
		if len(n.args) > 0 || len(n.tests) > 0 {
			return nil, c.errorf(n.pos, "%s takes no arguments", n.name)
		}
		if n.name == "true" {
			return trueTest{}, nil
		}
		return falseTest{}, nil
	case "not":
		if len(n.args) > 0 || len(n.tests) != 1 || n.list {
			return nil, c.errorf(n.pos, "not takes one test")
		}
		t, err := c.test(n.tests[0])
		return notTest{t}, err
	case "allof", "anyof":
		if len(n.args) > 0 || !n.list || len(n.tests) == 0 {
			return nil, c.errorf(n.pos, "%s takes a list of tests in parentheses", n.name)
		}
		ts := make([]test, 0, len(n.tests))
		for _, sub := range n.tests {
			t, err := c.test(sub)
			if err != nil {
				return nil, err
			}
			ts = append(ts, t)
		}
		if n.name == "allof" {
			return allofTest{ts}, nil
		}
		return anyofTest{ts}, nil
	}
	if len(n.tests) > 0 {
		return nil, c.errorf(n.tests[0].pos, "test %s takes no tests as arguments", n.name)
	}
	switch n.name {
	case "size":
		return c.sizeTest(n)
	case "exists":
		s := c.scan(n)
		if a, ok := s.tag(); ok {
			return nil, c.errorf(a.pos, "exists: unknown tag :%s", a.tag)
		}
		args, err := s.positional(argList)
		if err != nil {
			return nil, err
		}
		names, err := c.headerNames(args[0])
		return existsTest{names}, err
	case "header", "address", "envelope", "string":
		return c.matchTest(n)
	case "body":
		return c.bodyTest(n)
	case "date", "currentdate":
		return c.dateTest(n)
	case "hasflag":
		return c.hasflagTest(n)
	case "duplicate":
		return c.duplicateTest(n)
	case "mailboxexists":
		if err := c.need(n.pos, "mailbox", "mailboxexists"); err != nil {
			return nil, err
		}
		s := c.scan(n)
		args, err := s.positional(argList)
		if err != nil {
			return nil, err
		}
		names, err := c.strs(args[0])
		return mailboxExistsTest{names}, err
	}
	return nil, c.errorf(n.pos, "unknown test %q", n.name)
}

func (c *compiler) sizeTest(n *node) (test, error) {
	s := c.scan(n)
	var t sizeTest
	a, ok := s.tag()
	if !ok || (a.tag != "over" && a.tag != "under") {
		return nil, c.errorf(n.pos, "size needs :over or :under")
	}
	t.over = a.tag == "over"
	args, err := s.positional(argNumber)
	if err != nil {
		return nil, err
	}
	t.limit = args[0].num
	return t, nil
}

// matchTest compiles header, address, envelope and string.
func (c *compiler) matchTest(n *node) (test, error) {
	switch n.name {
	case "envelope":
		if err := c.need(n.pos, "envelope", "envelope"); err != nil {
			return nil, err
		}
	case "string":
		if err := c.need(n.pos, "variables", "string"); err != nil {
			return nil, err
		}
	}
	s := c.scan(n)
	var t matchTags
	address := n.name == "address" || n.name == "envelope"
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		handled, err := s.common(a, &t, address)
		if err != nil {
			return nil, err
		}
		if !handled {
			return nil, c.errorf(a.pos, "%s: unknown tag :%s", n.name, a.tag)
		}
	}
	args, err := s.positional(argList, argList)
	if err != nil {
		return nil, err
	}
	m, err := s.finish(&t, args[1])
	if err != nil {
		return nil, err
	}
	switch n.name {
	case "header":
		names, err := c.headerNames(args[0])
		return headerTest{names: names, m: m}, err
	case "address":
		names, err := c.headerNames(args[0])
		return addressTest{names: names, part: t.part, m: m}, err
	case "envelope":
		parts, err := c.strs(args[0])
		if err != nil {
			return nil, err
		}
		for i, p := range parts {
			if p.constant() && !validEnvelopePart(p.lit) {
				return nil, c.errorf(args[0].strs[i].pos, "unknown envelope part %q (from or to)", p.lit)
			}
		}
		return envelopeTest{parts: parts, part: t.part, m: m}, nil
	}
	src, err := c.strs(args[0])
	return stringTest{source: src, m: m}, err
}

func validEnvelopePart(p string) bool {
	switch strings.ToLower(p) {
	case "from", "to":
		return true
	}
	return false
}

// bodyTest compiles body (RFC 5173 §4).
func (c *compiler) bodyTest(n *node) (test, error) {
	if err := c.need(n.pos, "body", "body"); err != nil {
		return nil, err
	}
	s := c.scan(n)
	var t matchTags
	bt := bodyTest{}
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		switch a.tag {
		case "raw", "text", "content":
			if err := s.once(a, "body transform"); err != nil {
				return nil, err
			}
			switch a.tag {
			case "raw":
				bt.transform = bodyRaw
			case "text":
				bt.transform = bodyText
			case "content":
				bt.transform = bodyContent
				p, err := s.param(a, argList)
				if err != nil {
					return nil, err
				}
				if bt.types, err = c.strs(p); err != nil {
					return nil, err
				}
			}
			continue
		}
		handled, err := s.common(a, &t, false)
		if err != nil {
			return nil, err
		}
		if !handled {
			return nil, c.errorf(a.pos, "body: unknown tag :%s", a.tag)
		}
	}
	args, err := s.positional(argList)
	if err != nil {
		return nil, err
	}
	bt.m, err = s.finish(&t, args[0])
	return bt, err
}

// dateTest compiles date and currentdate (RFC 5260 §4, §5).
func (c *compiler) dateTest(n *node) (test, error) {
	if err := c.need(n.pos, "date", n.name); err != nil {
		return nil, err
	}
	s := c.scan(n)
	var t matchTags
	dt := dateTest{current: n.name == "currentdate"}
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		switch {
		case a.tag == "zone" || (a.tag == "originalzone" && !dt.current):
			if err := s.once(a, "zone"); err != nil {
				return nil, err
			}
			if a.tag == "originalzone" {
				dt.orig = true
				continue
			}
			p, err := s.param(a, argString)
			if err != nil {
				return nil, err
			}
			z, err := c.str(p.strs[0])
			if err != nil {
				return nil, err
			}
			// An invalid zone is ignored (the local zone applies), as
			// Pigeonhole ignores it with a warning.
			dt.zone = &z
			continue
		}
		handled, err := s.common(a, &t, false)
		if err != nil {
			return nil, err
		}
		if !handled {
			return nil, c.errorf(a.pos, "%s: unknown tag :%s", n.name, a.tag)
		}
	}
	kinds := []argKind{argString, argString, argList}
	if dt.current {
		kinds = kinds[1:]
	}
	args, err := s.positional(kinds...)
	if err != nil {
		return nil, err
	}
	if !dt.current {
		if dt.header, err = c.str(args[0].strs[0]); err != nil {
			return nil, err
		}
		if dt.header.constant() && !validFieldName(dt.header.lit) {
			return nil, c.errorf(args[0].pos, "invalid header field name %q", dt.header.lit)
		}
		args = args[1:]
	}
	if dt.part, err = c.str(args[0].strs[0]); err != nil {
		return nil, err
	}
	// An unknown date part yields no value, so the test fails (as in
	// Pigeonhole, which only warns).
	dt.m, err = s.finish(&t, args[1])
	return dt, err
}

// hasflagTest compiles hasflag (RFC 5232 §4).
func (c *compiler) hasflagTest(n *node) (test, error) {
	if err := c.need(n.pos, "imap4flags", "hasflag"); err != nil {
		return nil, err
	}
	s := c.scan(n)
	var t matchTags
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		handled, err := s.common(a, &t, false)
		if err != nil {
			return nil, err
		}
		if !handled {
			return nil, c.errorf(a.pos, "hasflag: unknown tag :%s", a.tag)
		}
	}
	ht := hasflagTest{}
	rest := n.args[s.i:]
	if len(rest) == 2 && rest[0].kind != argTag {
		if err := c.need(rest[0].pos, "variables", "hasflag with a variable list"); err != nil {
			return nil, err
		}
		for _, v := range rest[0].strs {
			if !validVarName(v.s) {
				return nil, c.errorf(v.pos, "invalid variable name %q", v.s)
			}
			ref, err := c.flagVar(v)
			if err != nil {
				return nil, err
			}
			ht.vars = append(ht.vars, ref)
		}
		s.i++
	}
	args, err := s.positional(argList)
	if err != nil {
		return nil, err
	}
	ht.m, err = s.finish(&t, args[0])
	return ht, err
}

// flagVar resolves a variable named in imap4flags' variable lists: one
// never set is still a variable (empty), so it gets a slot.
func (c *compiler) flagVar(v strLit) (varRef, error) {
	name := strings.ToLower(v.s)
	c.declared[name] = true
	return c.slot(v.pos, name)
}

// duplicateTest compiles duplicate (RFC 7352 §3).
func (c *compiler) duplicateTest(n *node) (test, error) {
	if err := c.need(n.pos, "duplicate", "duplicate"); err != nil {
		return nil, err
	}
	s := c.scan(n)
	dt := duplicateTest{seconds: defaultDuplicatePeriod}
	for {
		a, ok := s.tag()
		if !ok {
			break
		}
		switch a.tag {
		case "handle":
			if err := s.once(a, ":handle"); err != nil {
				return nil, err
			}
			p, err := s.param(a, argString)
			if err != nil {
				return nil, err
			}
			if dt.handle, err = c.str(p.strs[0]); err != nil {
				return nil, err
			}
		case "header", "uniqueid":
			if err := s.once(a, ":header or :uniqueid"); err != nil {
				return nil, err
			}
			p, err := s.param(a, argString)
			if err != nil {
				return nil, err
			}
			v, err := c.str(p.strs[0])
			if err != nil {
				return nil, err
			}
			if a.tag == "header" {
				if v.constant() && !validFieldName(v.lit) {
					return nil, c.errorf(p.pos, "invalid header field name %q", v.lit)
				}
				dt.header = &v
			} else {
				dt.uniqueID = &v
			}
		case "seconds":
			if err := s.once(a, ":seconds"); err != nil {
				return nil, err
			}
			p, err := s.param(a, argNumber)
			if err != nil {
				return nil, err
			}
			dt.seconds = time.Duration(min(p.num, uint64(maxDuplicatePeriod/time.Second))) * time.Second
		case "last":
			dt.last = true
		default:
			return nil, c.errorf(a.pos, "duplicate: unknown tag :%s", a.tag)
		}
	}
	if _, err := s.positional(); err != nil {
		return nil, err
	}
	return dt, nil
}

// The duplicate test's default and longest periods (Pigeonhole's
// sieve_duplicate_default_period and _max_period).
const (
	defaultDuplicatePeriod = 14 * 24 * time.Hour
	maxDuplicatePeriod     = 7 * 24 * time.Hour * 4
)
