package sieve

import (
	"strings"
)

// argScanner walks a command's or test's arguments: tagged ones first,
// then positional ones (RFC 5228 §2.6).
type argScanner struct {
	c    *compiler
	n    *node
	i    int
	seen map[string]bool
}

func (c *compiler) scan(n *node) *argScanner {
	return &argScanner{c: c, n: n, seen: map[string]bool{}}
}

// tag returns the next tagged argument, if the next argument is one.
func (s *argScanner) tag() (arg, bool) {
	if s.i < len(s.n.args) && s.n.args[s.i].kind == argTag {
		s.i++
		return s.n.args[s.i-1], true
	}
	return arg{}, false
}

// once reports an error if the tag, or another of its group, came before.
func (s *argScanner) once(a arg, group string) error {
	if s.seen[group] {
		return s.c.errorf(a.pos, "%s: more than one %s", s.n.name, group)
	}
	s.seen[group] = true
	return nil
}

// param takes the argument after a tag, which must be of kind k (a
// string list also accepts a single string).
func (s *argScanner) param(a arg, k argKind) (arg, error) {
	if s.i >= len(s.n.args) {
		return arg{}, s.c.errorf(a.pos, "%s: :%s needs a %s after it", s.n.name, a.tag, k)
	}
	p := s.n.args[s.i]
	if p.kind != k && !(k == argList && p.kind == argString) {
		return arg{}, s.c.errorf(p.pos, "%s: :%s needs a %s, not a %s", s.n.name, a.tag, k, p.kind)
	}
	s.i++
	return p, nil
}

// positional returns the remaining arguments, checking that they are
// of the kinds given (argList also accepts a string) and that no tag is
// among them.
func (s *argScanner) positional(kinds ...argKind) ([]arg, error) {
	rest := s.n.args[s.i:]
	for _, a := range rest {
		if a.kind == argTag {
			return nil, s.c.errorf(a.pos, "%s: unknown or misplaced tag :%s", s.n.name, a.tag)
		}
	}
	if len(rest) != len(kinds) {
		if len(rest) > len(kinds) {
			return nil, s.c.errorf(rest[len(kinds)].pos, "%s: too many arguments", s.n.name)
		}
		return nil, s.c.errorf(s.n.pos, "%s: expected %d more argument(s): %s", s.n.name, len(kinds)-len(rest), kindList(kinds[len(rest):]))
	}
	for i, a := range rest {
		if a.kind != kinds[i] && !(kinds[i] == argList && a.kind == argString) {
			return nil, s.c.errorf(a.pos, "%s: argument %d must be a %s, not a %s", s.n.name, i+1, kinds[i], a.kind)
		}
	}
	return rest, nil
}

func kindList(ks []argKind) string {
	var out []string
	for _, k := range ks {
		out = append(out, k.String())
	}
	return strings.Join(out, ", ")
}

// matchTags gathers a test's comparator, match type and (when part is
// not nil) address part.
type matchTags struct {
	m       matcher
	part    addrPart
	cmpPos  Pos
	typePos Pos
	hasCmp  bool
}

// common handles the tags that many tests share: :comparator
// (RFC 5228 §2.7.3), :is/:contains/:matches (§2.7.1), :regex, :value and
// :count (RFC 5231), and the address parts (§2.7.4, RFC 5233). It
// reports whether a was one of them.
func (s *argScanner) common(a arg, t *matchTags, address bool) (bool, error) {
	c := s.c
	switch a.tag {
	case "comparator":
		if err := s.once(a, "comparator"); err != nil {
			return true, err
		}
		p, err := s.param(a, argString)
		if err != nil {
			return true, err
		}
		t.cmpPos, t.hasCmp = p.pos, true
		switch name := p.strs[0].s; name {
		case "i;ascii-casemap":
			t.m.cmp = cmpCasemap
		case "i;octet":
			t.m.cmp = cmpOctet
		case "i;ascii-numeric":
			if !c.caps["comparator-i;ascii-numeric"] {
				return true, c.errorf(p.pos, "comparator %q needs require \"comparator-i;ascii-numeric\"", name)
			}
			t.m.cmp = cmpNumeric
		default:
			return true, c.errorf(p.pos, "unknown comparator %q", name)
		}
		return true, nil
	case "is", "contains", "matches", "regex", "value", "count":
		if err := s.once(a, "match type"); err != nil {
			return true, err
		}
		t.typePos = a.pos
		switch a.tag {
		case "is":
			t.m.typ = mIs
		case "contains":
			t.m.typ = mContains
		case "matches":
			t.m.typ = mMatches
		case "regex":
			if err := c.need(a.pos, "regex", ":regex"); err != nil {
				return true, err
			}
			t.m.typ = mRegex
		case "value", "count":
			if err := c.need(a.pos, "relational", ":"+a.tag); err != nil {
				return true, err
			}
			t.m.typ = mValue
			if a.tag == "count" {
				t.m.typ = mCount
			}
			p, err := s.param(a, argString)
			if err != nil {
				return true, err
			}
			op, ok := relOps[strings.ToLower(p.strs[0].s)]
			if !ok {
				return true, c.errorf(p.pos, "unknown relational operator %q (eq, ne, gt, ge, lt or le)", p.strs[0].s)
			}
			t.m.rel = op
		}
		return true, nil
	case "all", "localpart", "domain", "user", "detail":
		if !address {
			return false, nil
		}
		if err := s.once(a, "address part"); err != nil {
			return true, err
		}
		switch a.tag {
		case "all":
			t.part = partAll
		case "localpart":
			t.part = partLocal
		case "domain":
			t.part = partDomain
		case "user", "detail":
			if err := c.need(a.pos, "subaddress", ":"+a.tag); err != nil {
				return true, err
			}
			t.part = partUser
			if a.tag == "detail" {
				t.part = partDetail
			}
		}
		return true, nil
	}
	return false, nil
}

// finish checks the comparator against the match type and compiles the
// keys.
func (s *argScanner) finish(t *matchTags, keys arg) (matcher, error) {
	c := s.c
	m := t.m
	if m.cmp == cmpNumeric && (m.typ == mContains || m.typ == mMatches || m.typ == mRegex) {
		return m, c.errorf(t.typePos, "comparator \"i;ascii-numeric\" cannot be used with :%s", []string{"is", "contains", "matches", "regex"}[m.typ])
	}
	var err error
	if m.keys, err = c.strs(keys); err != nil {
		return m, err
	}
	m.globs = make([][]globItem, len(m.keys))
	if m.typ == mMatches {
		for i, k := range m.keys {
			if k.constant() {
				m.globs[i] = parseGlob(k.lit)
			}
		}
	}
	m.res = make([]*compiledRegex, len(m.keys))
	if m.typ == mRegex {
		m.res = make([]*compiledRegex, len(m.keys))
		for i, k := range m.keys {
			if !k.constant() {
				continue
			}
			re, err := compileRegex(k.lit, m.cmp == cmpCasemap)
			if err != nil {
				return m, c.errorf(keys.strs[i].pos, "invalid regular expression %q: %v", k.lit, err)
			}
			// A script (with what it includes) is compiled once per
			// change, but each upload costs its regexes' compilation.
			c.u.regexInsts += re.insts
			if c.u.regexInsts > maxScriptRegexInsts {
				return m, c.errorf(keys.strs[i].pos, "the regular expressions of the script are too complex (more than %d instructions together)", maxScriptRegexInsts)
			}
			m.res[i] = re
		}
	}
	return m, nil
}

// headerNames compiles a list of header field names, checking the
// constant ones (RFC 5322 §3.6.8: printable ASCII without the colon).
func (c *compiler) headerNames(a arg) ([]str, error) {
	names, err := c.strs(a)
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		if n.constant() && !validFieldName(n.lit) {
			return nil, c.errorf(a.strs[i].pos, "invalid header field name %q", n.lit)
		}
		// Names are case-insensitive; folded now, the lookup does
		// not fold them on every run.
		names[i].lit = strings.ToLower(n.lit)
	}
	return names, nil
}

func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':' {
			return false
		}
	}
	return true
}
