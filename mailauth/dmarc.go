package mailauth

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"mailroom/internal/msghdr"
)

// DMARCResult is the DMARC evaluation of the RFC5322.From domain.
type DMARCResult struct {
	// Result is pass, fail, none (no policy), temperror or permerror.
	Result string
	Domain string // the From: domain
	// Policy is the domain's published p= (or sp= for a subdomain),
	// Applied what is left of it after pct= sampling (RFC 7489 §6.6.4):
	// "none", "quarantine" or "reject".
	Policy, Applied string
	// MalformedFrom reports a From: field that could not be read as
	// RFC 5322 has it (its domains were taken leniently).
	MalformedFrom bool
	Err           error
}

// OrgDomain is the organizational domain (RFC 7489 §3.2): the public
// suffix plus one label. A name that is itself a public suffix is its own.
func OrgDomain(domain string) string {
	d, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return d
}

// aligned reports whether a and b are aligned: equal under strict mode,
// of the same organizational domain under relaxed (RFC 7489 §3.1).
func (c *Checker) aligned(a, b string, mode dmarc.AlignmentMode) bool {
	a, b = strings.ToLower(strings.TrimSuffix(a, ".")), strings.ToLower(strings.TrimSuffix(b, "."))
	if a == "" || b == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return a == b
	}
	return c.opts.OrgDomain(a) == c.opts.OrgDomain(b)
}

// errNoAuthor is a message without an Author Domain: no From: field, or
// none that names a domain.
var errNoAuthor = errors.New("no From: address with a domain (RFC 5322 §3.6.2)")

// checkDMARC evaluates DMARC for every distinct From: domain and keeps the
// worst outcome: a second From: address must not be a way around the
// first one's policy (RFC 7489 §6.6.1 leaves the choice to receivers),
// nor may a From: field net/mail cannot read (its domains are then taken
// from every "@" in it). A message without any Author Domain is a
// permerror with no Domain, which Policy.BadFrom decides.
func (c *Checker) checkDMARC(ctx context.Context, dns Resolver, h msghdr.Header, res *Result) DMARCResult {
	domains, malformed := h.AuthorDomains()
	if len(domains) == 0 {
		return DMARCResult{Result: "permerror", Err: errNoAuthor}
	}
	var worst DMARCResult
	for i, d := range domains {
		// RFC 7489 §6.6.1: a U-label is looked up as its A-label
		// (and a full-width dot is a dot to readers as to IDNA).
		if a, err := idna.Lookup.ToASCII(d); err == nil && a != "" {
			d = a
		}
		r := c.dmarcFor(ctx, dns, d, res)
		if i == 0 || worse(r, worst) {
			worst = r
		}
	}
	worst.MalformedFrom = malformed
	return worst
}

// worse reports whether a is a stricter outcome than b: a failure with a
// stricter policy first, then errors (the domain's wishes unknown), then
// none, then pass.
func worse(a, b DMARCResult) bool {
	rank := func(r DMARCResult) int {
		switch r.Result {
		case "fail":
			return 10 + actionOf(r.Applied)
		case "temperror":
			return 3
		case "permerror":
			return 2
		case "none":
			return 1
		}
		return 0
	}
	return rank(a) > rank(b)
}

// actionOf ranks a DMARC disposition as the Action of the same name.
func actionOf(disposition string) int {
	switch disposition {
	case "reject":
		return int(Reject)
	case "quarantine":
		return int(Quarantine)
	}
	return int(Mark)
}

func (c *Checker) dmarcFor(ctx context.Context, dns Resolver, domain string, res *Result) DMARCResult {
	r := DMARCResult{Domain: domain}
	lookup := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return dns.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(domain, lookup)
	org := c.opts.OrgDomain(domain)
	sub := false
	if errors.Is(err, dmarc.ErrNoPolicy) && org != domain {
		// RFC 7489 §6.6.3: no record at the From: domain, so the
		// organizational domain's, whose sp= covers its subdomains.
		rec, err = dmarc.LookupWithOptions(org, lookup)
		sub = true
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		r.Result = "none"
		return r
	case dmarc.IsTempFail(err):
		r.Result, r.Err = "temperror", err
		return r
	case err != nil:
		r.Result, r.Err = "permerror", err
		return r
	}
	r.Policy = string(rec.Policy)
	if sub && rec.SubdomainPolicy != "" {
		r.Policy = string(rec.SubdomainPolicy)
	}
	if r.Policy == "" {
		r.Policy = "none"
	}
	spfOK := res.SPF.Result == spf.Pass && c.aligned(res.SPF.Domain, domain, rec.SPFAlignment)
	dkimOK := slices.ContainsFunc(res.DKIM, func(d DKIMResult) bool {
		return d.Result == "pass" && c.aligned(d.Domain, domain, rec.DKIMAlignment)
	})
	if spfOK || dkimOK {
		r.Result, r.Applied = "pass", "none"
		return r
	}
	r.Result, r.Applied = "fail", r.Policy
	// RFC 7489 §6.6.4: with pct=N, the policy applies to N% of failing
	// messages; the others get the next milder one.
	if rec.Percent != nil && *rec.Percent < 100 && rand.IntN(100) >= *rec.Percent {
		switch r.Applied {
		case "reject":
			r.Applied = "quarantine"
		case "quarantine":
			r.Applied = "none"
		}
	}
	return r
}
