// Package srs implements the Sender Rewriting Scheme (SRS), byte-compatible
// with libsrs2 and postsrsd (the SRS daemon usually paired with Postfix).
//
// When mailroom forwards a message to a remote address (an alias or a
// .forward target), keeping the original envelope sender would make the
// destination's SPF check fail, since mailroom is not an authorised sender
// for that domain. Forward rewrites the sender into an address at our own
// domain that encodes the original one:
//
//	alice@example.com → SRS0=HHHH=TT=example.com=alice@forwarder.example
//
// A bounce sent to that address arrives at our MX, and Reverse turns it back
// into alice@example.com after checking the hash (so nobody can use us as an
// open relay for bounces) and the timestamp (so old addresses die).
//
// The format, as libsrs2 writes it (Shevek, "Sender Rewriting Scheme", 2004):
//
//	SRS0=HHHH=TT=orighost=origuser@Domain
//	SRS1=HHHH=firsthost==HHHH=TT=orighost=origuser@Domain
//
// TT is the day number (unix time / 86400) modulo 1024 in two base32
// characters; HHHH is the first four characters of the standard base64 of
// HMAC-SHA1(secret, lowercase(TT + orighost + origuser)) for SRS0, and of
// HMAC-SHA1(secret, lowercase(firsthost + "=HHHH=TT=orighost=origuser")) for
// SRS1. An SRS0 address from another forwarder becomes SRS1 (so the bounce
// path does not grow with every hop), and an SRS1 address keeps its first
// forwarder and gets a new hash, so a bounce skips the middle forwarders.
// The first separator after SRS0/SRS1 may be '=', '+' or '-' (libsrs2
// accepts all three); the others are always '='. Hashes compare case-
// insensitively because some MTAs change the case of local parts.
//
// Given the same secret and domain, mailroom and postsrsd produce and accept
// the same addresses, so a site can move between them without breaking
// bounces in flight.
//
// The package knows nothing of SMTP, configuration or delivery: callers
// decide when to rewrite and what to answer when Reverse refuses.
package srs

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors from Reverse (and ErrMalformed from Forward). Callers test them with
// errors.Is: ErrNotSRS means "an ordinary address, route it normally"; the
// others mean "an SRS address we will not reverse" and are refused
// (550 5.1.1 or 5.7.1), never delivered.
var (
	// ErrNotSRS is a local part that does not start with SRS0/SRS1 and a
	// separator, so it is not an SRS address at all.
	ErrNotSRS = errors.New("not an SRS address")
	// ErrMalformed is an SRS address with missing or invalid fields, or (from
	// Forward) a sender that cannot be rewritten safely.
	ErrMalformed = errors.New("malformed SRS address")
	// ErrBadHash is a hash that matches neither the current nor an old secret:
	// the address was forged or made by another forwarder.
	ErrBadHash = errors.New("SRS hash invalid")
	// ErrExpired is a good hash with a timestamp older than MaxAge
	// (or lies in the future, which libsrs2 also treats as expired).
	ErrExpired = errors.New("SRS timestamp expired")
)

// DefaultMaxAge is libsrs2's and postsrsd's default: bounces to an SRS
// address are accepted for 21 days after the day it was made.
const DefaultMaxAge = 21 * 24 * time.Hour

// Options configures an SRS rewriter.
type Options struct {
	// Secret signs new addresses and verifies old ones ([relay] srs_secret).
	// Required. postsrsd's secret file holds it on its first line.
	Secret string
	// OldSecrets are still accepted by Reverse, so a secret can be rotated
	// without refusing bounces to addresses handed out before (postsrsd's
	// further lines). Empty strings are an error.
	OldSecrets []string
	// Domain is what follows the @ of rewritten addresses: our hostname or a
	// local domain whose MX is mailroom. Senders at this domain are not
	// rewritten.
	Domain string
	// MaxAge is how long Reverse accepts an address, counted in whole days
	// (the timestamp's resolution); 0 means DefaultMaxAge. It must be at
	// least one day and below 1024 days (the timestamp wraps then).
	MaxAge time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fixed time.
	Now func() time.Time
}

// SRS rewrites and reverses addresses. It holds no mutable state and is safe
// for concurrent use.
type SRS struct {
	secrets    [][]byte // secrets[0] signs; all verify
	domain     string
	maxAgeDays int
	now        func() time.Time
}

// New checks opts and returns a rewriter. Errors name the option to fix.
func New(opts Options) (*SRS, error) {
	if opts.Secret == "" {
		return nil, errors.New("srs: new: Secret (srs_secret) is empty; set it to a long random string")
	}
	s := &SRS{secrets: [][]byte{[]byte(opts.Secret)}, domain: opts.Domain, now: opts.Now}
	for i, old := range opts.OldSecrets {
		if old == "" {
			return nil, fmt.Errorf("srs: new: OldSecrets[%d] is empty; remove it", i)
		}
		s.secrets = append(s.secrets, []byte(old))
	}
	if !validDomain(opts.Domain) {
		return nil, fmt.Errorf("srs: new: Domain %q is not a domain name; set it to our hostname or a local domain", opts.Domain)
	}
	maxAge := opts.MaxAge
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	s.maxAgeDays = int(maxAge / (24 * time.Hour))
	if s.maxAgeDays < 1 || s.maxAgeDays >= timeSlots {
		return nil, fmt.Errorf("srs: new: MaxAge %v must be between 24h and %dh", opts.MaxAge, 24*(timeSlots-1))
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// IsSRS reports whether a local part starts with "SRS0" or "SRS1" (any case)
// followed by one of the separators '=', '+', '-': the test libsrs2 uses to
// decide that an address is meant to be an SRS address. A full address may be
// passed too; only its start is looked at.
func IsSRS(local string) bool {
	return len(local) >= 5 && strings.EqualFold(local[:3], "SRS") &&
		(local[3] == '0' || local[3] == '1') && isSeparator(local[4])
}

func isSeparator(c byte) bool { return c == '=' || c == '+' || c == '-' }

// Forward returns the envelope sender to use when forwarding a message from
// sender to a remote address:
//   - "" (the null sender of bounces) stays "";
//   - a sender at Domain (any case) is returned unchanged;
//   - an SRS0 address from another forwarder becomes SRS1, and an SRS1
//     address is re-signed keeping its first forwarder (libsrs2's "guarded"
//     scheme);
//   - anything else becomes SRS0=HHHH=TT=host=local@Domain.
//
// The only error is ErrMalformed, for a sender without a local part or
// domain, with a quoted local part, or with characters that cannot survive
// inside an SRS local part. A caller may then forward with the original
// sender, as Postfix does when postsrsd declines.
func (s *SRS) Forward(sender string) (string, error) {
	if sender == "" {
		return "", nil
	}
	at := strings.LastIndexByte(sender, '@')
	if at < 0 {
		return "", fmt.Errorf("srs: forward %q: no @domain: %w", sender, ErrMalformed)
	}
	local, host := sender[:at], sender[at+1:]
	if strings.EqualFold(host, s.domain) {
		return sender, nil
	}
	if !validLocal(local) || !validDomain(host) {
		return "", fmt.Errorf("srs: forward %q: not an address SRS can carry: %w", sender, ErrMalformed)
	}
	switch {
	case IsSRS(local) && local[3] == '1':
		// SRS1=<old hash>=firsthost=rest: keep firsthost and rest, re-sign.
		_, rest, ok := strings.Cut(local[5:], "=")
		if !ok {
			return "", fmt.Errorf("srs: forward %q: SRS1 address without host: %w", sender, ErrMalformed)
		}
		first, user, ok := strings.Cut(rest, "=")
		if !ok || !validDomain(first) || user == "" {
			return "", fmt.Errorf("srs: forward %q: SRS1 address without host or user: %w", sender, ErrMalformed)
		}
		return "SRS1=" + s.hash(0, first, user) + "=" + first + "=" + user + "@" + s.domain, nil
	case IsSRS(local):
		// SRS0<sep>rest@host → SRS1=HHHH=host=<sep>rest: the doubled
		// separator of the spec's "host==HHHH" is the SRS0 one, kept.
		user := local[4:]
		return "SRS1=" + s.hash(0, host, user) + "=" + host + "=" + user + "@" + s.domain, nil
	default:
		stamp := timestamp(s.now())
		return "SRS0=" + s.hash(0, stamp, host, local) + "=" + stamp + "=" + host + "=" + local + "@" + s.domain, nil
	}
}

// Reverse returns the address a bounce sent to addr must go to: the original
// sender for SRS0, and the first forwarder's SRS0 address
// ("SRS0=HHHH=TT=orighost=origuser@firsthost") for SRS1. Only the local part
// is read; the caller has already decided that addr's domain is ours.
//
// Errors wrap ErrNotSRS (an ordinary address: route it as usual),
// ErrMalformed, ErrBadHash or ErrExpired (refuse it). The hash is checked
// before the timestamp, so a forged address reports ErrBadHash whatever its
// timestamp says.
func (s *SRS) Reverse(addr string) (string, error) {
	local := addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local = addr[:at]
	}
	if !IsSRS(local) {
		return "", fmt.Errorf("srs: reverse %q: %w", addr, ErrNotSRS)
	}
	malformed := func(what string) (string, error) {
		return "", fmt.Errorf("srs: reverse %q: %s: %w", addr, what, ErrMalformed)
	}
	if local[3] == '1' {
		// SRS1<sep>HHHH=firsthost=<sep>HHHH=TT=orighost=origuser
		hash, rest, ok := strings.Cut(local[5:], "=")
		if hash == "" {
			return malformed("no hash")
		}
		if !ok {
			return malformed("no host")
		}
		first, user, ok := strings.Cut(rest, "=")
		if !ok {
			return malformed("no user")
		}
		if !validDomain(first) {
			return malformed("invalid host")
		}
		if !validLocal(user) {
			return malformed("invalid user")
		}
		if !s.checkHash(hash, first, user) {
			return "", fmt.Errorf("srs: reverse %q: %w", addr, ErrBadHash)
		}
		return "SRS0" + user + "@" + first, nil
	}
	// SRS0<sep>HHHH=TT=orighost=origuser
	hash, rest, ok := strings.Cut(local[5:], "=")
	if hash == "" {
		return malformed("no hash")
	}
	if !ok {
		return malformed("no timestamp")
	}
	stamp, rest, ok := strings.Cut(rest, "=")
	if !ok {
		return malformed("no host")
	}
	then, ok := parseTimestamp(stamp)
	if !ok {
		return malformed("timestamp is not two base32 characters")
	}
	host, user, ok := strings.Cut(rest, "=")
	if !ok {
		return malformed("no user")
	}
	if !validDomain(host) {
		return malformed("invalid host")
	}
	if !validLocal(user) {
		return malformed("invalid user")
	}
	if !s.checkHash(hash, stamp, host, user) {
		return "", fmt.Errorf("srs: reverse %q: %w", addr, ErrBadHash)
	}
	if !s.fresh(then) {
		return "", fmt.Errorf("srs: reverse %q: older than %d days: %w", addr, s.maxAgeDays, ErrExpired)
	}
	return user + "@" + host, nil
}

// validLocal accepts a non-empty unquoted local part: no white space,
// control characters or RFC 5322 specials, which would need quoting and
// cannot be nested inside an SRS local part. Non-ASCII (SMTPUTF8) passes.
func validLocal(l string) bool {
	if l == "" {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte(`"\@<>()[],;:`, c) >= 0 {
			return false
		}
	}
	return true
}

// validDomain accepts a non-empty domain or address literal made of letters,
// digits, "-._", "[]:" (for [IPv6:…]) and non-ASCII bytes (IDN). Above all it
// rejects '=', so the fields of an SRS local part split unambiguously.
func validDomain(d string) bool {
	if d == "" {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
		case strings.IndexByte("-._[]:", c) >= 0:
		default:
			return false
		}
	}
	return true
}
