package sieve

import (
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// comparator is one of the comparators of RFC 4790 that Sieve names
// (RFC 5228 §2.7.3).
type comparator int

const (
	cmpCasemap comparator = iota // i;ascii-casemap, the default
	cmpOctet                     // i;octet
	cmpNumeric                   // i;ascii-numeric (RFC 4790 §9.1)
)

type matchType int

const (
	mIs matchType = iota
	mContains
	mMatches
	mRegex
	mValue // RFC 5231 relational
	mCount
)

type relOp int

const (
	relEQ relOp = iota
	relNE
	relGT
	relGE
	relLT
	relLE
)

var relOps = map[string]relOp{"eq": relEQ, "ne": relNE, "gt": relGT, "ge": relGE, "lt": relLT, "le": relLE}

// matcher is a compiled match: type, comparator and keys.
type matcher struct {
	typ  matchType
	rel  relOp
	cmp  comparator
	keys []str
	// res holds the compiled regular expressions of constant keys;
	// keys with variables are compiled at run time.
	res []*compiledRegex
	// globs holds the parsed patterns of constant :matches keys.
	globs [][]globItem
}

// lowerASCII folds A-Z to a-z, and returns s itself when there is nothing
// to fold (the common case), so that no memory is allocated.
func lowerASCII(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			break
		}
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func lowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func upperByte(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// equal is the comparator's equality.
func (c comparator) equal(a, b string) bool {
	switch c {
	case cmpOctet:
		return a == b
	case cmpNumeric:
		return numericCompare(a, b) == 0
	}
	return asciiFoldEqual(a, b)
}

// asciiFoldEqual compares with A-Z folded only (strings.EqualFold also
// folds non-ASCII letters, which i;ascii-casemap must not).
func asciiFoldEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if upperByte(a[i]) != upperByte(b[i]) {
			return false
		}
	}
	return true
}

// order compares a and b in the comparator's order (RFC 5231 §4).
func (c comparator) order(a, b string) int {
	switch c {
	case cmpOctet:
		return strings.Compare(a, b)
	case cmpNumeric:
		return numericCompare(a, b)
	}
	// Folded to lower case, as Pigeonhole does (RFC 4790 §9.2 says
	// upper; the two differ only for [\]^_` against letters).
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		x, y := lowerByte(a[i]), lowerByte(b[i])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// numericCompare orders by the value of the leading digits; a string
// that starts with no digit is positive infinity (RFC 4790 §9.1.1).
// Numbers of any length compare correctly.
func numericCompare(a, b string) int {
	da, db := leadingDigits(a), leadingDigits(b)
	switch {
	case da == "" && db == "":
		return 0
	case da == "":
		return 1
	case db == "":
		return -1
	}
	da, db = strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
	if len(da) != len(db) {
		if len(da) < len(db) {
			return -1
		}
		return 1
	}
	return strings.Compare(da, db)
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

func (r relOp) holds(cmp int) bool {
	switch r {
	case relEQ:
		return cmp == 0
	case relNE:
		return cmp != 0
	case relGT:
		return cmp > 0
	case relGE:
		return cmp >= 0
	case relLT:
		return cmp < 0
	}
	return cmp <= 0
}

// contains is substring search under the comparator.
func (c comparator) contains(v, k string) bool {
	if c == cmpOctet {
		return strings.Contains(v, k)
	}
	return containsFold(v, k)
}

// containsFold is strings.Contains with A-Z folded. Short keys are
// compared in place, without copying; long ones are folded and searched
// with strings.Contains, whose time is linear however the texts repeat.
func containsFold(v, k string) bool {
	if k == "" {
		return true
	}
	if len(k) > 32 {
		return strings.Contains(lowerASCII(v), lowerASCII(k))
	}
	first, other := lowerByte(k[0]), upperByte(k[0])
	for i := 0; i+len(k) <= len(v); i++ {
		if c := v[i]; (c == first || c == other) && asciiFoldEqual(v[i:i+len(k)], k) {
			return true
		}
	}
	return false
}

// globItem is one element of a :matches pattern (RFC 5228 §2.7.1).
type globItem struct {
	kind byte // 'c' character, '?' one character, '*' any sequence
	r    rune
}

func parseGlob(p string) []globItem {
	items := make([]globItem, 0, len(p))
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRuneInString(p[i:])
		switch {
		case r == '\\' && i+n < len(p):
			r2, n2 := utf8.DecodeRuneInString(p[i+n:])
			items = append(items, globItem{kind: 'c', r: r2})
			i += n + n2
			continue
		case r == '*':
			// "**" is "*"; keeping both gives RFC 5229's empty match
			// value for the second.
			items = append(items, globItem{kind: '*'})
		case r == '?':
			items = append(items, globItem{kind: '?'})
		default:
			items = append(items, globItem{kind: 'c', r: r})
		}
		i += n
	}
	return items
}

func foldRune(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

// glob matches text against a :matches pattern. Each "*" takes the
// shortest text that lets the rest match, as RFC 5229 §3.2's examples
// show; caps, if not nil, receives what each wildcard took. The search
// only ever backtracks into the last "*" seen, so it takes at most
// len(pattern) * len(text) steps (counted in *steps).
func glob(items []globItem, text string, fold bool, caps *[]string, steps *int64) bool {
	type wild struct{ start, end int }
	var w []wild
	if caps != nil {
		w = make([]wild, 0, 4)
	}
	ti, pi := 0, 0
	starP, starT, starW := -1, 0, 0
	for {
		*steps++
		if pi < len(items) {
			it := items[pi]
			switch it.kind {
			case '*':
				starP, starT = pi, ti
				if w != nil {
					w = append(w, wild{ti, ti})
					starW = len(w) - 1
				}
				pi++
				continue
			case '?':
				if ti < len(text) {
					_, n := utf8.DecodeRuneInString(text[ti:])
					if w != nil {
						w = append(w, wild{ti, ti + n})
					}
					ti += n
					pi++
					continue
				}
			case 'c':
				if ti < len(text) {
					r, n := utf8.DecodeRuneInString(text[ti:])
					if r == it.r || fold && foldRune(r) == foldRune(it.r) {
						ti += n
						pi++
						continue
					}
				}
			}
		} else if ti == len(text) {
			break
		}
		// Mismatch: give the last "*" one more character.
		if starP < 0 || starT >= len(text) {
			return false
		}
		_, n := utf8.DecodeRuneInString(text[starT:])
		starT += n
		ti, pi = starT, starP+1
		if w != nil {
			w = w[:starW+1]
			w[starW].end = starT
		}
	}
	if caps != nil {
		*caps = append((*caps)[:0], text)
		for _, x := range w {
			*caps = append(*caps, text[x.start:x.end])
		}
	}
	return true
}

// maxRegexInsts bounds the program of one :regex key. Compiling takes
// time and memory that grow faster than the program (an 8 KiB pattern of
// bounded repeats, "[^a]{1000}" over and over, is 800,000 instructions
// and seconds to compile), so the size is estimated from the parsed
// pattern, cheaply, before anything is compiled. Real filters use a few
// dozen instructions.
const maxRegexInsts = 5000

// compileRegex compiles a :regex key as the POSIX extended regular
// expression that Pigeonhole takes (regcomp with REG_EXTENDED, and
// REG_ICASE for i;ascii-casemap): leftmost-longest, "." and bracket
// expressions also match a line end, "^" and "$" only at the ends.
// Go's engine runs in time linear in the text, so no pattern can take
// exponential time; a pattern whose program would be larger than
// maxRegexInsts is refused before it is compiled.
func compileRegex(pattern string, fold bool) (*compiledRegex, error) {
	const maxPattern = 8192
	if len(pattern) > maxPattern {
		return nil, &regexError{msg: "regular expression longer than " + strconv.Itoa(maxPattern) + " octets"}
	}
	flags := syntax.POSIX | syntax.OneLine | syntax.DotNL | syntax.ClassNL
	if fold {
		flags |= syntax.FoldCase
	}
	tree, err := syntax.Parse(pattern, flags)
	if err != nil {
		return nil, &regexError{msg: err.Error()}
	}
	if n := regexSize(tree); n > maxRegexInsts {
		return nil, &regexError{msg: "regular expression too complex (a program of about " + strconv.FormatInt(n, 10) + " instructions, more than " + strconv.Itoa(maxRegexInsts) + ")"}
	}
	re, err := regexp.Compile(tree.String())
	if err != nil {
		return nil, &regexError{msg: err.Error()}
	}
	re.Longest()
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil {
		return nil, &regexError{msg: err.Error()}
	}
	return &compiledRegex{re: re, insts: len(prog.Inst)}, nil
}

// regexSize estimates, from above, the instructions of the program
// syntax.Compile would make of re: bounded repeats copy their operand
// (Simplify). It saturates instead of overflowing.
func regexSize(re *syntax.Regexp) int64 {
	return regexNodeSize(re) + 3 // the program's fail, match and start
}

func regexNodeSize(re *syntax.Regexp) int64 {
	const huge = 1 << 40
	var sum int64
	for _, sub := range re.Sub {
		sum = min(sum+regexNodeSize(sub), huge)
	}
	switch re.Op {
	case syntax.OpLiteral:
		return int64(len(re.Rune))
	case syntax.OpConcat:
		return sum
	case syntax.OpAlternate:
		return sum + int64(len(re.Sub))
	case syntax.OpCapture:
		return sum + 2
	case syntax.OpRepeat:
		// {n} is n copies; {n,m} adds m-n optional ones, {n,} a star.
		n := int64(max(re.Min, re.Max))
		return min(n*(sum+1)+1, huge)
	}
	return sum + 1
}

// compiledRegex is a regular expression with the size of its program:
// matching costs about the text's length times that (Go's engines
// simulate every state at once instead of backtracking).
type compiledRegex struct {
	re    *regexp.Regexp
	insts int
}

type regexError struct{ msg string }

func (e *regexError) Error() string { return e.msg }
