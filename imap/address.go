package imap

import (
	"strings"

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
}

// maxAddrToks bounds the work on one header (a 1 MB header of commas).
const maxAddrToks = 10000

func tokenize(s string) []addrTok {
	var toks []addrTok
	space := false
	for i := 0; i < len(s) && len(toks) < maxAddrToks; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			space = true
			i++
			continue
		case c == '(':
			depth, j := 0, i
			var sb strings.Builder
			for ; j < len(s); j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
					sb.WriteByte(s[j])
					continue
				}
				if s[j] == '(' {
					depth++
					if depth == 1 {
						continue
					}
				}
				if s[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
				sb.WriteByte(s[j])
			}
			toks = append(toks, addrTok{kind: tokComment, val: strings.TrimSpace(sb.String()), space: space})
			space = true
			i = j + 1
			continue
		case c == '"':
			var sb strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				sb.WriteByte(s[j])
			}
			toks = append(toks, addrTok{kind: tokWord, val: sb.String(), space: space})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				j = len(s) - i - 1
			}
			toks = append(toks, addrTok{kind: tokLiteral, val: s[i : i+j+1], space: space})
			i += j + 1
		case strings.IndexByte("<>@:;,.", c) >= 0:
			toks = append(toks, addrTok{kind: tokSpecial, val: s[i : i+1], space: space})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n()\"[<>@:;,.", s[j]) < 0 {
				j++
			}
			if j == i { // a stray "]" or ")"
				j++
			}
			toks = append(toks, addrTok{kind: tokWord, val: s[i:j], space: space})
			i = j
		}
		space = false
	}
	return toks
}

type addrParser struct {
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
	var sb, lb strings.Builder
	for t := p.peek(); t != nil; t = p.peek() {
		switch {
		case t.kind == tokComment:
			comment = t.val
		case t.kind == tokWord, t.kind == tokSpecial && t.val == ".":
			if t.space && sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(t.val)
			lb.WriteString(t.val)
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
	var sb strings.Builder
	comment := ""
	for t := p.peek(); t != nil; t = p.peek() {
		switch {
		case t.kind == tokComment:
			comment = t.val
		case t.kind == tokWord || t.kind == tokLiteral || (t.kind == tokSpecial && t.val == "."):
			sb.WriteString(t.val)
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
	var route strings.Builder
	if p.is("@") {
		for t := p.peek(); t != nil && !(t.kind == tokSpecial && (t.val == ":" || t.val == ">")); t = p.peek() {
			if t.kind != tokComment {
				route.WriteString(t.val)
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
	p := &addrParser{toks: tokenize(s)}
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
