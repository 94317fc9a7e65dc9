package mailauth

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"mailroom/internal/msghdr"
)

// Header is the Authentication-Results field (RFC 8601) for res, with
// authServID naming this server: spf, one dkim per signature (header.d,
// header.s, header.b) and dmarc.
func (res *Result) Header(authServID string) msghdr.Field {
	var results []authres.Result
	s := res.SPF
	sr := &authres.SPFResult{Value: authres.ResultValue(s.Result)}
	if s.Identity == "helo" {
		sr.Helo = s.Value
	} else {
		sr.From = s.Value
	}
	results = append(results, sr)
	if len(res.DKIM) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range res.DKIM {
		results = append(results, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(d.Result),
			Params: map[string]string{"header.d": d.Domain, "header.s": d.Selector, "header.b": d.B}})
	}
	dr := &authres.DMARCResult{Value: authres.ResultValue(res.DMARC.Result), From: res.DMARC.Domain}
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
	return msghdr.New("Authentication-Results", authres.Format(authServID, results))
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
