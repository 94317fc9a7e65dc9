package sieve

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

type refKind int

const (
	refLocal refKind = iota
	refGlobal
	refMatch
)

// varRef is a variable named in a string: a local slot, a global name, or
// a match variable ${0}..${9} (RFC 5229 §3.2).
type varRef struct {
	kind refKind
	idx  int
	name string
}

// str is a compiled string: a constant, or literal pieces and variable
// references to expand at run time (RFC 5229 §3).
type str struct {
	lit   string
	parts []strPart
}

type strPart struct {
	lit   string
	ref   varRef
	isRef bool
}

func (s str) constant() bool { return s.parts == nil }

// maxMatchIndex is the highest match variable: RFC 5229 §3.2 asks for at
// least ${9}; Pigeonhole goes to ${32}.
const maxMatchIndex = 32

// str compiles a string argument: encoded characters are decoded (RFC
// 5228 §2.4.2.4) when required, and variable references split out when
// variables are in use.
func (c *compiler) str(l strLit) (str, error) {
	s := l.s
	if c.caps["encoded-character"] {
		var err error
		if s, err = decodeEncoded(s); err != nil {
			return str{}, c.errorf(l.pos, "%v", err)
		}
	}
	if !c.caps["variables"] || !strings.Contains(s, "${") {
		return str{lit: s}, nil
	}
	return c.template(l.pos, s)
}

// strs compiles a string list.
func (c *compiler) strs(a arg) ([]str, error) {
	out := make([]str, 0, len(a.strs))
	for _, l := range a.strs {
		s, err := c.str(l)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// template splits s into literal text and variable references. Text that
// is not a valid reference ("${", "${ x}", "${1a}") stays literal.
func (c *compiler) template(p Pos, s string) (str, error) {
	var parts []strPart
	var lit strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			lit.WriteString(s)
			break
		}
		lit.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			lit.WriteString(s[i:])
			break
		}
		name := s[i+2 : i+2+end]
		ref, ok, err := c.reference(p, name)
		if err != nil {
			return str{}, err
		}
		if !ok {
			// Not a reference: keep "${" and look again after it, as
			// "${${x}}" holds the reference ${x}.
			lit.WriteString("${")
			s = s[i+2:]
			continue
		}
		if ref != nil {
			if lit.Len() > 0 {
				parts = append(parts, strPart{lit: lit.String()})
				lit.Reset()
			}
			parts = append(parts, strPart{ref: *ref, isRef: true})
		}
		s = s[i+2+end+1:]
	}
	if len(parts) == 0 {
		return str{lit: lit.String()}, nil
	}
	if lit.Len() > 0 {
		parts = append(parts, strPart{lit: lit.String()})
	}
	return str{parts: parts}, nil
}

// reference resolves the inside of "${...}": ok is false when it is not
// a reference at all, and ref nil when it names a variable that is never
// set (always empty).
func (c *compiler) reference(p Pos, name string) (*varRef, bool, error) {
	if name == "" {
		return nil, false, nil
	}
	if isDigits(name) {
		n, err := strconv.Atoi(name)
		if err != nil || n > maxMatchIndex {
			return nil, false, c.errorf(p, "match variable ${%s} is out of range (at most ${%d})", name, maxMatchIndex)
		}
		return &varRef{kind: refMatch, idx: n}, true, nil
	}
	for _, part := range strings.Split(name, ".") {
		if !validVarName(part) {
			return nil, false, nil
		}
	}
	if strings.Contains(name, ".") {
		// RFC 5229 §3: a namespace that no required extension defines
		// is an error.
		return nil, false, c.errorf(p, "variable namespace in ${%s} is not supported", name)
	}
	lower := strings.ToLower(name)
	if c.globals[lower] {
		return &varRef{kind: refGlobal, name: lower}, true, nil
	}
	if !c.declared[lower] {
		return nil, true, nil
	}
	r, err := c.slot(p, lower)
	if err != nil {
		return nil, false, err
	}
	return &r, true, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validVarName reports whether s is an identifier (RFC 5229 §3).
func validVarName(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return true
}

type encodeError string

func (e encodeError) Error() string { return string(e) }

// decodeEncoded replaces ${hex:..} and ${unicode:..} (RFC 5228
// §2.4.2.4). A sequence that does not follow the grammar is left as it
// is; one that does but names no character is an error.
func decodeEncoded(s string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		rest := s[i+2:]
		colon := strings.IndexByte(rest, ':')
		end := strings.IndexByte(rest, '}')
		if colon < 0 || end < 0 || colon > end {
			b.WriteString("${")
			s = rest
			continue
		}
		kind := strings.ToLower(rest[:colon])
		body := rest[colon+1 : end]
		var out string
		var ok bool
		var err error
		switch kind {
		case "hex":
			out, ok = decodeHex(body)
		case "unicode":
			out, ok, err = decodeUnicode(body)
		}
		if err != nil {
			return "", err
		}
		if !ok {
			b.WriteString("${")
			s = rest
			continue
		}
		b.WriteString(out)
		s = rest[end+1:]
	}
	out := b.String()
	if !utf8.ValidString(out) {
		return "", encodeError("encoded characters make the string invalid UTF-8")
	}
	return out, nil
}

func isBlank(c rune) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func hexFields(body string, maxDigits int) ([]uint64, bool) {
	f := strings.FieldsFunc(body, isBlank)
	if len(f) == 0 {
		return nil, false
	}
	var out []uint64
	for _, x := range f {
		if len(x) > maxDigits {
			return nil, false
		}
		n, err := strconv.ParseUint(x, 16, 32)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func decodeHex(body string) (string, bool) {
	vals, ok := hexFields(body, 2)
	if !ok {
		return "", false
	}
	b := make([]byte, len(vals))
	for i, v := range vals {
		b[i] = byte(v)
	}
	return string(b), true
}

func decodeUnicode(body string) (string, bool, error) {
	vals, ok := hexFields(body, 6)
	if !ok {
		return "", false, nil
	}
	var b strings.Builder
	for _, v := range vals {
		if v > utf8.MaxRune || (v >= 0xd800 && v <= 0xdfff) {
			return "", false, encodeError("${unicode:" + strings.TrimSpace(body) + "} names no Unicode character")
		}
		b.WriteRune(rune(v))
	}
	return b.String(), true, nil
}
