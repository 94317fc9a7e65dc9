package mailauth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
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
	// Unsettled marks a temperror that could have been a refusal or a
	// quarantine: the record could not be fetched and nothing passed
	// that would align under any record, or an identifier that could
	// align failed temporarily under p=reject or p=quarantine.
	// Policy.TempError decides it.
	Unsettled bool
	Err       error
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

// maxAuthorDomains bounds the From: domains whose DMARC records are
// looked up (two questions each). A message naming more is judged as one
// without an author (Policy.BadFrom): taking only the first ones would
// let a forger hide a domain behind them.
const maxAuthorDomains = 5

var errTooManyAuthors = fmt.Errorf("more than %d From: domains", maxAuthorDomains)

// dmarcRecord is the DMARC record that applies to one From: domain
// (RFC 7489 §6.6.3), or why there is none.
type dmarcRecord struct {
	domain string // the From: domain, as an A-label
	rec    *dmarc.Record
	sub    bool // rec is the organizational domain's, for a subdomain
	err    error
}

// lookupDMARC finds the DMARC records of the From: domains; an error is
// a message with no domain or too many (errNoAuthor, errTooManyAuthors).
func (c *Checker) lookupDMARC(ctx context.Context, dns Resolver, domains []string) ([]dmarcRecord, error) {
	switch {
	case len(domains) == 0:
		return nil, errNoAuthor
	case len(domains) > maxAuthorDomains:
		return nil, errTooManyAuthors
	}
	out := make([]dmarcRecord, len(domains))
	for i, d := range domains {
		// RFC 7489 §6.6.1: a U-label is looked up as its A-label
		// (and a full-width dot is a dot to readers as to IDNA).
		if a, err := idna.Lookup.ToASCII(d); err == nil && a != "" {
			d = a
		}
		r := dmarcRecord{domain: d}
		lookup := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return dns.LookupTXT(ctx, name) }}
		r.rec, r.err = dmarc.LookupWithOptions(d, lookup)
		if org := c.opts.OrgDomain(d); errors.Is(r.err, dmarc.ErrNoPolicy) && org != d {
			// RFC 7489 §6.6.3: no record at the From: domain, so the
			// organizational domain's, whose sp= covers its subdomains.
			r.rec, r.err = dmarc.LookupWithOptions(org, lookup)
			r.sub = true
		}
		out[i] = r
	}
	return out, nil
}

// evalDMARC evaluates DMARC for every distinct From: domain and keeps the
// worst outcome: a second From: address must not be a way around the
// first one's policy (RFC 7489 §6.6.1 leaves the choice to receivers),
// nor may a From: field net/mail cannot read (its domains are then taken
// from every "@" in it). A message without any Author Domain, or with too
// many, is a permerror with no Domain, which Policy.BadFrom decides.
func (c *Checker) evalDMARC(records []dmarcRecord, err error, res *Result) DMARCResult {
	if err != nil {
		return DMARCResult{Result: "permerror", Err: err}
	}
	var worst DMARCResult
	for i, rec := range records {
		r := c.dmarcFor(rec, res)
		if i == 0 || worse(r, worst) {
			worst = r
		}
	}
	return worst
}

// worse reports whether a is a stricter outcome than b, in the order of
// the actions they lead to: a failure under p=reject, a verdict a
// temporary failure left open, a failure under p=quarantine, one under
// p=none, a settled temporary failure, then errors (the domain's wishes
// unknown), then none, then pass.
func worse(a, b DMARCResult) bool {
	rank := func(r DMARCResult) int {
		switch r.Result {
		case "fail":
			return [...]int{30, 40, 50}[actionOf(r.Applied)]
		case "temperror":
			if r.Unsettled {
				return 45
			}
			return 25
		case "permerror":
			return 20
		case "none":
			return 10
		}
		return 0
	}
	return rank(a) > rank(b)
}

// actionOf ranks a DMARC disposition: 0 none, 1 quarantine, 2 reject.
func actionOf(disposition string) int {
	switch disposition {
	case "reject":
		return 2
	case "quarantine":
		return 1
	}
	return 0
}

// dmarcFor evaluates one From: domain's record against the SPF and DKIM
// results (RFC 7489 §6.6.2).
func (c *Checker) dmarcFor(rec dmarcRecord, res *Result) DMARCResult {
	domain := rec.domain
	r := DMARCResult{Domain: domain}
	// identical: an identifier that passed with the From: domain itself
	// is aligned whatever the record says.
	identical := (res.SPF.Result == spf.Pass && strings.EqualFold(strings.TrimSuffix(res.SPF.Domain, "."), domain)) ||
		slices.ContainsFunc(res.DKIM, func(d DKIMResult) bool { return d.Result == "pass" && strings.EqualFold(d.Domain, domain) })
	switch err := rec.err; {
	case errors.Is(err, dmarc.ErrNoPolicy):
		r.Result = "none"
		return r
	case dmarc.IsTempFail(err):
		// The domain's wishes are unknown: the message waits for them
		// unless it passes under any record.
		r.Result, r.Err, r.Unsettled = "temperror", err, !identical
		return r
	case err != nil:
		r.Result, r.Err = "permerror", err
		return r
	}
	r.Policy = string(rec.rec.Policy)
	if rec.sub && rec.rec.SubdomainPolicy != "" {
		r.Policy = string(rec.rec.SubdomainPolicy)
	}
	if r.Policy == "" {
		r.Policy = "none"
	}
	spfAligned := c.aligned(res.SPF.Domain, domain, rec.rec.SPFAlignment)
	spfOK := res.SPF.Result == spf.Pass && spfAligned
	dkimOK := slices.ContainsFunc(res.DKIM, func(d DKIMResult) bool {
		return d.Result == "pass" && c.aligned(d.Domain, domain, rec.rec.DKIMAlignment)
	})
	if spfOK || dkimOK {
		r.Result, r.Applied = "pass", "none"
		return r
	}
	// An identifier that could have aligned but could not be checked
	// for a temporary failure leaves the verdict open (RFC 7489 §6.6.2
	// wants temporary failures to be tried again, not to refuse).
	tempSPF := res.SPF.Result == spf.TempError && spfAligned
	tempDKIM := slices.ContainsFunc(res.DKIM, func(d DKIMResult) bool {
		return d.Result == "temperror" && c.aligned(d.Domain, domain, rec.rec.DKIMAlignment)
	})
	r.Result, r.Applied = "fail", r.Policy
	if tempSPF || tempDKIM {
		r.Result = "temperror"
	}
	// RFC 7489 §6.6.4: with pct=N, the policy applies to N% of failing
	// messages; the others get the next milder one.
	if rec.rec.Percent != nil && *rec.rec.Percent < 100 && rand.IntN(100) >= *rec.rec.Percent {
		switch r.Applied {
		case "reject":
			r.Applied = "quarantine"
		case "quarantine":
			r.Applied = "none"
		}
	}
	r.Unsettled = r.Result == "temperror" && r.Applied != "none"
	return r
}
