package mailauth

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"mailroom/internal/msghdr"
)

// Header is the Authentication-Results field (RFC 8601) for res, with
// authServID naming this server: spf, one dkim per signature (header.d,
// header.s, header.b) and dmarc. It is folded, one result a line, so that
// no line outgrows RFC 5322's 998 octets (a field longer than that would
// be refused by the next MTA, or by our own reading of the message): the
// values the sender chose are left out when no address or domain could be
// so long (RFC 5321 §4.5.3.1: 255 octets), rather than cut into something
// they were not.
func (res *Result) Header(authServID string) msghdr.Field {
	var results []authres.Result
	s := res.SPF
	sr := &authres.SPFResult{Value: authres.ResultValue(s.Result)}
	if s.Identity == "helo" {
		sr.Helo = bounded(s.Value)
	} else {
		sr.From = bounded(s.Value)
	}
	results = append(results, sr)
	if len(res.DKIM) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range res.DKIM {
		results = append(results, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(d.Result),
			Params: map[string]string{"header.d": bounded(d.Domain), "header.s": bounded(d.Selector), "header.b": d.B}})
	}
	dr := &authres.DMARCResult{Value: authres.ResultValue(res.DMARC.Result), From: bounded(res.DMARC.Domain)}
	if res.DMARC.Policy != "" {
		// As other receivers write it: the published policy and the
		// disposition applied, which is what this server did (a
		// policy of ours may only mark what the domain would have
		// refused; a refused or deferred message gets no field).
		dis := "NONE"
		if res.Action == Quarantine {
			dis = "QUARANTINE"
		}
		dr.Reason = "p=" + strings.ToUpper(res.DMARC.Policy) + " dis=" + dis
	}
	results = append(results, dr)
	return msghdr.New("Authentication-Results", fold(authres.Format(bounded(authServID), results)))
}

// maxValue is the longest property value written: an address or domain
// of RFC 5321 §4.5.3.1 (a path is 256 octets with its angle brackets).
const maxValue = 255

// bounded is v, or "" (which authres leaves out) when v is longer than
// any address or domain can be.
func bounded(v string) string {
	if len(v) > maxValue {
		return ""
	}
	return v
}

// foldAt is where fold breaks a result's line when it can (RFC 5322
// §2.1.1's 78 characters).
const foldAt = 78

// fold puts a line break (which msghdr.New makes CRLF and a tab) after
// each ";" that ends a result, and at a space between properties where a
// line would pass foldAt; never inside a quoted-string or a comment, whose
// spaces are part of the value. A space before a ";" goes.
func fold(v string) string {
	var b strings.Builder
	line := 0 // length of the line so far
	lastSpace := -1
	quoted, depth := false, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && (quoted || depth > 0) && i+1 < len(v):
			b.WriteByte(c)
			i++
			c = v[i]
		case c == '"' && depth == 0:
			quoted = !quoted
		case c == '(' && !quoted:
			depth++
		case c == ')' && !quoted && depth > 0:
			depth--
		case c == ' ' && !quoted && depth == 0:
			if i+1 < len(v) && v[i+1] == ';' {
				// authres writes "dkim=none ;" for a result without
				// properties.
				continue
			}
			if i > 0 && v[i-1] == ';' {
				b.WriteByte('\n')
				line, lastSpace = 0, -1
				continue
			}
			lastSpace = b.Len()
		}
		b.WriteByte(c)
		line++
		if line > foldAt && lastSpace >= 0 {
			// Break at the last space: what followed it moves to the
			// new line.
			out := []byte(b.String())
			out[lastSpace] = '\n'
			b.Reset()
			b.Write(out)
			line = len(out) - lastSpace - 1
			lastSpace = -1
		}
	}
	return b.String()
}

// AuthServID returns the authserv-id of an Authentication-Results field
// value (RFC 8601 §2.2: the first token, after any comments and white
// space, before a version or the first ";"), or "" if there is none.
func AuthServID(value string) string {
	s := skipCFWS(value)
	if strings.HasPrefix(s, `"`) {
		// A quoted-string (RFC 2045's value): "mx.example.org".
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(s[i])
			}
		}
		return ""
	}
	end := strings.IndexFunc(s, func(r rune) bool {
		return r == ';' || r == '(' || r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
	if end < 0 {
		end = len(s)
	}
	return s[:end]
}

// skipCFWS drops leading white space and (nested) comments.
func skipCFWS(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
	comment:
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					break comment
				}
			}
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
}

// StripForged removes the Authentication-Results fields that claim to
// come from authServID (RFC 8601 §5: a field from outside that names this
// server would be believed by its users' software). Fields of other
// servers are kept. It returns the header left and how many were removed.
func StripForged(h msghdr.Header, authServID string) (msghdr.Header, int) {
	out := make(msghdr.Header, 0, len(h))
	n := 0
	for _, f := range h {
		if f.Is("Authentication-Results") && strings.EqualFold(AuthServID(f.Value()), authServID) {
			n++
			continue
		}
		out = append(out, f)
	}
	return out, n
}
