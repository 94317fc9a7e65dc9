// Package address parses and checks mail addresses (RFC 5321 paths) the way
// mailroom stores them: a local part that is safe to use as a directory name
// and a lower-cased domain. It exists so that account, mda and the protocol
// packages agree on one definition of "the same mailbox" and one definition
// of "safe to put on disk".
package address

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every parse error, so callers can answer 501/553
// without looking at the text.
var ErrInvalid = errors.New("invalid address")

// MaxLocalLen and MaxDomainLen are the RFC 5321 §4.5.3.1.1/§4.5.3.1.2 limits.
const (
	MaxLocalLen  = 64
	MaxDomainLen = 255
)

// Address is a parsed mailbox address. Local keeps the case the sender used
// (for headers); Key gives the case-folded form used for lookups.
type Address struct {
	Local  string
	Domain string // lower case, no trailing dot
}

// String returns local@domain.
func (a Address) String() string { return a.Local + "@" + a.Domain }

// Key is the lookup form: local part and domain folded to lower case.
// RFC 5321 §2.4 lets the receiving host decide whether local parts are case
// sensitive; like Postfix and Dovecot we treat them as insensitive.
func (a Address) Key() string { return strings.ToLower(a.Local) + "@" + a.Domain }

// Parse parses "local@domain" (angle brackets allowed) and checks that the
// local part can safely name a directory: no "/", no NUL or control
// characters, not "." or "..", no leading dot. Quoted local parts are not
// accepted: a small domain has no use for them and they complicate on-disk
// names.
func Parse(s string) (Address, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Address{}, fmt.Errorf("%w %q: missing @domain", ErrInvalid, s)
	}
	local, domain := s[:at], s[at+1:]
	if err := CheckLocal(local); err != nil {
		return Address{}, fmt.Errorf("%w %q: %w", ErrInvalid, s, err)
	}
	d, err := NormalizeDomain(domain)
	if err != nil {
		return Address{}, fmt.Errorf("%w %q: %w", ErrInvalid, s, err)
	}
	return Address{Local: local, Domain: d}, nil
}

// CheckLocal reports why local cannot be a mailroom local part, or nil.
func CheckLocal(local string) error {
	switch {
	case local == "":
		return errors.New("empty local part")
	case len(local) > MaxLocalLen:
		return fmt.Errorf("local part longer than %d octets", MaxLocalLen)
	case !utf8.ValidString(local):
		return errors.New("local part is not valid UTF-8")
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return errors.New("local part starts or ends with a dot, or has two dots in a row")
	}
	for _, r := range local {
		if r == '/' || r == '\\' || r == '@' || r == '"' || r == '<' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("local part contains %q", r)
		}
	}
	return nil
}

// NormalizeDomain lower-cases a domain and checks it is a plausible host
// name (letters, digits, hyphens, dots; UTF-8 labels allowed for SMTPUTF8).
// Address literals ([192.0.2.1]) are refused: mailroom never hosts them.
func NormalizeDomain(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	switch {
	case d == "":
		return "", errors.New("empty domain")
	case len(d) > MaxDomainLen:
		return "", fmt.Errorf("domain longer than %d octets", MaxDomainLen)
	case !utf8.ValidString(d):
		return "", errors.New("domain is not valid UTF-8")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("domain has an empty or over-long label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", errors.New("domain label starts or ends with a hyphen")
		}
		for _, r := range label {
			if !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 0x7f && unicode.IsLetter(r) || r > 0x7f && unicode.IsDigit(r)) {
				return "", fmt.Errorf("domain contains %q", r)
			}
		}
	}
	return d, nil
}

// StripExtension removes a recipient_delimiter extension: with delim "+",
// "alice+lists" becomes "alice" and "lists". Any character of delim counts
// (Postfix allows several); a local part that starts with the delimiter is
// left alone so that "+x" does not become an empty name.
func StripExtension(local, delim string) (base, ext string) {
	if delim == "" {
		return local, ""
	}
	i := strings.IndexAny(local, delim)
	if i <= 0 {
		return local, ""
	}
	return local[:i], local[i+1:]
}

// MaxPathLen is the RFC 5321 §4.5.3.1.3 limit on a reverse-path.
const MaxPathLen = 256

// CheckSender checks an envelope sender leniently. Unlike a recipient, a
// sender never becomes a file name, and refusing a legal but unusual one
// (a quoted local part, an underscore in a host name, an address literal,
// a long VERP local part) would bounce real mail. It only refuses what
// cannot be written safely into a Return-Path: header: control characters,
// white space outside quotes, angle brackets, no "@", or over 256 octets.
func CheckSender(s string) error {
	at := strings.LastIndexByte(s, '@')
	switch {
	case len(s) > MaxPathLen:
		return fmt.Errorf("%w: sender longer than %d octets", ErrInvalid, MaxPathLen)
	case at <= 0 || at == len(s)-1:
		return fmt.Errorf("%w: sender %q is not local@domain", ErrInvalid, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: sender is not valid UTF-8", ErrInvalid)
	}
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case unicode.IsControl(r), r == '<', r == '>', !quoted && unicode.IsSpace(r):
			return fmt.Errorf("%w: sender contains %q", ErrInvalid, r)
		}
	}
	return nil
}
