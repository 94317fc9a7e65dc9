package sieve

import (
	"strings"
)

// mailAddr is one address of an address header field, split at its last
// "@" (RFC 5322 §3.4.1). What is not a valid address is kept whole
// (invalid), and an empty field is one empty address, as Pigeonhole
// treats them: the whole text is what :all compares, and there is no
// local part or domain.
type mailAddr struct {
	local, domain string
	invalid       bool // local holds the text as it was
	empty         bool
}

func (a mailAddr) all() string {
	switch {
	case a.empty:
		return ""
	case a.invalid:
		return a.local
	}
	return a.local + "@" + a.domain
}

// parseAddressList reads the addresses of an address-list (RFC 5322
// §3.4) leniently, as mail in the wild needs: display names, comments,
// groups and source routes are passed over, and each mailbox's
// addr-spec is kept. It never fails.
func parseAddressList(s string) []mailAddr {
	if strings.TrimSpace(s) == "" {
		return []mailAddr{{empty: true}}
	}
	var out []mailAddr
	start := 0
	angle := false
	item := func(end int) {
		if a, ok := parseMailbox(s[start:end]); ok {
			out = append(out, a)
		}
		start = end + 1
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			i = skipQuoted(s, i) - 1
		case '(':
			i = skipComment(s, i) - 1
		case '[':
			if j := strings.IndexByte(s[i:], ']'); j >= 0 {
				i += j
			}
		case '<':
			angle = true
		case '>':
			angle = false
		case ',':
			if !angle {
				item(i)
			}
		case ':':
			if !angle {
				// A group's display name ends here (RFC 5322 §3.4).
				start = i + 1
			}
		case ';':
			if !angle {
				item(i)
			}
		}
	}
	item(len(s))
	if len(out) == 0 {
		// Nothing but a group without members: the text as it is.
		out = append(out, mailAddr{local: strings.TrimSpace(s), invalid: true})
	}
	return out
}

// parseMailbox reads one mailbox: an addr-spec, or a display name and an
// addr-spec in angle brackets. ok is false for an empty item.
func parseMailbox(text string) (mailAddr, bool) {
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '"':
			j := skipQuoted(text, i)
			b.WriteString(text[i:j])
			i = j - 1
		case '(':
			i = skipComment(text, i) - 1
			b.WriteByte(' ')
		default:
			b.WriteByte(text[i])
		}
	}
	spec := strings.TrimSpace(b.String())
	if spec == "" {
		return mailAddr{}, false
	}
	if lt := indexUnquoted(spec, '<'); lt >= 0 {
		inner := spec[lt+1:]
		if gt := strings.IndexByte(inner, '>'); gt >= 0 {
			inner = inner[:gt]
		}
		inner = strings.TrimSpace(inner)
		// A source route (obs-route, RFC 5322 §4.4): <@a,@b:x@y>.
		if strings.HasPrefix(inner, "@") {
			if c := strings.LastIndexByte(inner, ':'); c >= 0 {
				inner = inner[c+1:]
			}
		}
		spec = strings.TrimSpace(inner)
	}
	a := splitAddrSpec(spec)
	if a.invalid || strings.ContainsAny(a.domain, " \t") || strings.ContainsAny(unquotedPart(a.local), " \t") {
		return mailAddr{local: strings.TrimSpace(text), invalid: true}, true
	}
	return a, true
}

// indexUnquoted is strings.IndexByte outside quoted strings.
func indexUnquoted(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			i = skipQuoted(s, i) - 1
		case c:
			return i
		}
	}
	return -1
}

// unquotedPart removes the quoted strings of s.
func unquotedPart(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			i = skipQuoted(s, i) - 1
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// skipQuoted returns the index after the quoted string starting at s[i].
func skipQuoted(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(s)
}

// skipComment returns the index after the (nested) comment at s[i].
func skipComment(s string, i int) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(s)
}

// splitAddrSpec splits at the last "@" outside quotes; without one, or
// with nothing on one side, the address is invalid.
func splitAddrSpec(spec string) mailAddr {
	at := -1
	for i := 0; i < len(spec); i++ {
		switch spec[i] {
		case '"':
			i = skipQuoted(spec, i) - 1
		case '@':
			at = i
		}
	}
	if at <= 0 || at == len(spec)-1 {
		return mailAddr{local: spec, invalid: true}
	}
	return mailAddr{local: spec[:at], domain: spec[at+1:]}
}

// unquoteLocal returns a quoted local part's content (RFC 5322 §3.2.4).
func unquoteLocal(l string) string {
	if len(l) < 2 || l[0] != '"' || l[len(l)-1] != '"' {
		return l
	}
	var b strings.Builder
	for i := 1; i < len(l)-1; i++ {
		if l[i] == '\\' && i+1 < len(l)-1 {
			i++
		}
		b.WriteByte(l[i])
	}
	return b.String()
}

// part returns the address part that a test compares (RFC 5228 §2.7.4,
// RFC 5233 §4); ok is false when the address has no such part (no
// detail without a separator).
func (a mailAddr) part(p addrPart, sep string) (string, bool) {
	if p == partAll {
		return a.all(), true
	}
	if a.empty {
		return "", true
	}
	if a.invalid {
		return "", false
	}
	local := unquoteLocal(a.local)
	switch p {
	case partLocal:
		return local, true
	case partDomain:
		return a.domain, true
	case partUser, partDetail:
		i := strings.Index(local, sep)
		if p == partUser {
			if i < 0 {
				return local, true
			}
			return local[:i], true
		}
		if i < 0 {
			return "", false
		}
		return local[i+len(sep):], true
	}
	return a.all(), true
}

// parseRedirectAddress checks a redirect target: one addr-spec with a
// local part and a domain (RFC 5228 §4.2), display name and angle
// brackets allowed around it.
func parseRedirectAddress(s string) (string, bool) {
	addrs := parseAddressList(s)
	if len(addrs) != 1 {
		return "", false
	}
	a := addrs[0]
	if a.invalid || a.empty || strings.ContainsAny(a.domain, "@\"") {
		return "", false
	}
	for _, c := range a.all() {
		if c < ' ' || c == 0x7f {
			return "", false
		}
	}
	return a.all(), true
}
