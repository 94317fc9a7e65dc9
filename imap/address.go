package imap

import (
	"strings"
	"sync"

	"mailroom/imap/internal/wire"
)

// Address lists of a header (RFC 5322 §3.4) for ENVELOPE and SEARCH, read
// leniently as Dovecot does: groups (kept as ENVELOPE's group markers,
// RFC 9051 §7.5.2), source routes (the ADL), comments (skipped; a
// comment is the display name of an address that has none, as in
// "user@domain (Real Name)"), and whatever else a header holds, never
// failing. net/mail flattens groups and drops routes, so it is not used.

// missingDomain and missingMailbox stand in for the parts of an address
// that are not there: an empty host would read as a group marker.
const (
	missingDomain  = "MISSING_DOMAIN"
	missingMailbox = "MISSING_MAILBOX"
)

type tokKind byte

const (
	tokWord    tokKind = iota // atom, or quoted string (val unquoted)
	tokComment                // (...) without its parentheses
	tokSpecial                // one of < > @ : ; , .
	tokLiteral                // [domain literal], brackets kept
)

type addrTok struct {
	kind  tokKind
	val   string
	space bool // white space or a comment came before it
	// off and end place val in the header value when it is a slice of
	// it (raw); a quoted string with escapes or a comment is not.
	off, end int
	raw      bool
}

// maxAddrToks bounds the work on one header (a 1 MB header of commas).
const maxAddrToks = 10000

// tokPool holds token slices: a parse's tokens are dropped at its end
// (the addresses keep only strings), and ENVELOPE parses several
// headers per message.
var tokPool = sync.Pool{New: func() any { return new([]addrTok) }}

// tokenize appends the tokens of s to toks.
func tokenize(toks []addrTok, s string) []addrTok {
	space := false
	add := func(kind tokKind, off, end int) {
		toks = append(toks, addrTok{kind: kind, val: s[off:end], space: space, off: off, end: end, raw: true})
	}
	for i := 0; i < len(s) && len(toks) < maxAddrToks; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			space = true
			i++
			continue
		case c == '(':
			j, plain := commentEnd(s, i)
			var val string
			if plain {
				val = strings.TrimSpace(s[i+1 : min(j, len(s))])
			} else {
				val = unescapeComment(s[i:min(j+1, len(s))])
			}
			toks = append(toks, addrTok{kind: tokComment, val: val, space: space})
			space = true
			i = j + 1
			continue
		case c == '"':
			j, plain := i+1, true
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
					plain = false
				}
			}
			if plain {
				add(tokWord, i+1, j)
			} else {
				var sb strings.Builder
				for k := i + 1; k < j; k++ {
					if s[k] == '\\' && k+1 < len(s) {
						k++
					}
					sb.WriteByte(s[k])
				}
				toks = append(toks, addrTok{kind: tokWord, val: sb.String(), space: space})
			}
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				j = len(s) - i - 1
			}
			add(tokLiteral, i, i+j+1)
			i += j + 1
		case strings.IndexByte("<>@:;,.", c) >= 0:
			add(tokSpecial, i, i+1)
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n()\"[<>@:;,.", s[j]) < 0 {
				j++
			}
			if j == i { // a stray "]" or ")"
				j++
			}
			add(tokWord, i, j)
			i = j
		}
		space = false
	}
	return toks
}

// commentEnd returns the index of the ")" that closes the comment at
// s[i] (len(s) if none), and whether the comment holds neither an
// escape nor a nested comment, so that its text is s[i+1:end].
func commentEnd(s string, i int) (int, bool) {
	depth, plain := 0, true
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '\\':
			plain = false
			j++
		case '(':
			depth++
			plain = plain && depth == 1
		case ')':
			if depth--; depth == 0 {
				return j, plain
			}
		}
	}
	return len(s), plain
}

// unescapeComment is the text of the comment c (from its "("): escapes
// undone, nested comments kept with their parentheses, trimmed.
func unescapeComment(c string) string {
	var sb strings.Builder
	depth := 0
	for j := 0; j < len(c); j++ {
		if c[j] == '\\' && j+1 < len(c) {
			j++
			sb.WriteByte(c[j])
			continue
		}
		if c[j] == '(' {
			if depth++; depth == 1 {
				continue
			}
		}
		if c[j] == ')' {
			if depth--; depth == 0 {
				break
			}
		}
		sb.WriteByte(c[j])
	}
	return strings.TrimSpace(sb.String())
}

// joined joins tokens into a string: a slice of the header value while
// the tokens lie in it as they are joined (the usual case, no copy),
// else built.
type joined struct {
	src        string
	start, end int
	sb         *strings.Builder // nil until the tokens stop lying in src
}

func (b *joined) len() int {
	if b.sb != nil {
		return b.sb.Len()
	}
	return b.end - b.start
}

// add appends t's text, after a space if sep and the span is not empty.
func (b *joined) add(t *addrTok, sep bool) {
	sep = sep && b.len() > 0
	if b.sb == nil {
		switch {
		case t.raw && b.len() == 0:
			b.start, b.end = t.off, t.end
			return
		case t.raw && !sep && t.off == b.end:
			b.end = t.end
			return
		case t.raw && sep && t.off == b.end+1 && b.src[b.end] == ' ':
			b.end = t.end
			return
		case !sep && t.val == "":
			return
		}
		b.sb = &strings.Builder{}
		b.sb.WriteString(b.src[b.start:b.end])
	}
	if sep {
		b.sb.WriteByte(' ')
	}
	b.sb.WriteString(t.val)
}

func (b *joined) String() string {
	if b.sb != nil {
		return b.sb.String()
	}
	return b.src[b.start:b.end]
}

type addrParser struct {
	src  string // the header value
	toks []addrTok
	i    int
}

func (p *addrParser) peek() *addrTok {
	if p.i < len(p.toks) {
		return &p.toks[p.i]
	}
	return nil
}

func (p *addrParser) is(special string) bool {
	t := p.peek()
	return t != nil && t.kind == tokSpecial && t.val == special
}

// phrase reads words and dots (a display name or a local part) and the
// comments among them: words joined with spaces where the header had
// them, and the last comment.
func (p *addrParser) phrase() (text, local, comment string) {
	sb, lb := joined{src: p.src}, joined{src: p.src}
	for t := p.peek(); t != nil; t = p.peek() {
		switch {
		case t.kind == tokComment:
			comment = t.val
		case t.kind == tokWord, t.kind == tokSpecial && t.val == ".":
			sb.add(t, t.space)
			lb.add(t, false)
		default:
			return sb.String(), lb.String(), comment
		}
		p.i++
	}
	return sb.String(), lb.String(), comment
}

// domain reads a domain: atoms, dots and domain literals, comments
// skipped; it returns the last comment too.
func (p *addrParser) domain() (string, string) {
	sb := joined{src: p.src}
	comment := ""
	for t := p.peek(); t != nil; t = p.peek() {
		switch {
		case t.kind == tokComment:
			comment = t.val
		case t.kind == tokWord || t.kind == tokLiteral || (t.kind == tokSpecial && t.val == "."):
			sb.add(t, false)
		default:
			return sb.String(), comment
		}
		p.i++
	}
	return sb.String(), comment
}

// addrSpec completes local "@" domain after the local part was read.
func (p *addrParser) addrSpec(local string) (wire.Address, string) {
	a := wire.Address{Mailbox: local, Host: missingDomain}
	comment := ""
	if p.is("@") {
		p.i++
		var host string
		host, comment = p.domain()
		if host != "" {
			a.Host = host
		}
	}
	if a.Mailbox == "" {
		a.Mailbox = missingMailbox
	}
	return a, comment
}

// angle reads "<" [route ":"] addr-spec ">" after its "<".
func (p *addrParser) angle(name string) wire.Address {
	route := joined{src: p.src}
	if p.is("@") {
		for t := p.peek(); t != nil && !(t.kind == tokSpecial && (t.val == ":" || t.val == ">")); t = p.peek() {
			if t.kind != tokComment {
				route.add(t, false)
			}
			p.i++
		}
		if p.is(":") {
			p.i++
		}
	}
	_, local, _ := p.phrase()
	a, _ := p.addrSpec(local)
	a.Name, a.ADL = name, route.String()
	for t := p.peek(); t != nil; t = p.peek() {
		p.i++
		if t.kind == tokSpecial && t.val == ">" {
			break
		}
	}
	return a
}

// parseAddressList reads an address list.
func parseAddressList(s string) []wire.Address {
	buf := tokPool.Get().(*[]addrTok)
	p := &addrParser{src: s, toks: tokenize((*buf)[:0], s)}
	defer func() {
		clear(p.toks) // no strings of s kept alive in the pool
		*buf = p.toks[:0]
		tokPool.Put(buf)
	}()
	var out []wire.Address
	inGroup := false
	for p.peek() != nil {
		text, local, comment := p.phrase()
		t := p.peek()
		switch {
		case t != nil && t.kind == tokSpecial && t.val == ":" && !inGroup:
			p.i++
			out = append(out, wire.Address{Mailbox: text})
			inGroup = true
			continue
		case t != nil && t.kind == tokSpecial && t.val == "<":
			p.i++
			a := p.angle(text)
			if a.Name == "" {
				a.Name = comment
			}
			out = append(out, a)
		case t != nil && t.kind == tokSpecial && t.val == "@":
			a, c := p.addrSpec(local)
			if c != "" {
				comment = c
			}
			if c2 := p.trailingComment(); c2 != "" {
				comment = c2
			}
			a.Name = comment
			out = append(out, a)
		case local != "":
			// A word alone: a mailbox without its domain.
			out = append(out, wire.Address{Name: comment, Mailbox: local, Host: missingDomain})
		}
		t = p.peek()
		switch {
		case t == nil:
		case t.kind == tokSpecial && t.val == ";":
			p.i++
			if inGroup {
				out = append(out, wire.Address{})
				inGroup = false
			}
		default:
			p.i++ // "," or anything out of place
		}
	}
	if inGroup {
		out = append(out, wire.Address{})
	}
	return out
}

func (p *addrParser) trailingComment() string {
	c := ""
	for t := p.peek(); t != nil && t.kind == tokComment; t = p.peek() {
		c = t.val
		p.i++
	}
	return c
}
