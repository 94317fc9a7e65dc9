// Package mailauth checks mail as a domain's MX receives it: SPF (RFC
// 7208, blitiri.com.ar/go/spf), DKIM signatures (RFC 6376) and DMARC (RFC
// 7489, both with github.com/emersion/go-msgauth), and says what to do
// with the message (deliver and mark it, quarantine it, refuse it) and
// what the Authentication-Results field (RFC 8601) records. Every check
// is bounded: SPF by its lookup limits, DKIM by a number of signatures,
// and all of a message's DNS questions by one deadline, so that a hostile
// domain cannot hold a session.
//
// It knows nothing of SMTP sessions or delivery: the caller gives it the
// envelope and the message and acts on the Result.
package mailauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"blitiri.com.ar/go/spf"
	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailroom/internal/msghdr"
	"mailroom/internal/resolve"
	"mailroom/mailauth/dkim"
)

// Resolver is the DNS that the checks ask; *resolve.Resolver and
// *net.Resolver implement it.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

var (
	_ Resolver = (*resolve.Resolver)(nil)
	_ Resolver = (*net.Resolver)(nil)
)

// Action is what becomes of a message.
type Action int

// Actions, mildest first.
const (
	Mark       Action = iota // deliver, with Authentication-Results
	Quarantine               // deliver into the recipients' Junk folders
	Defer                    // refuse for now at the end of DATA (451 4.7.0): the sender tries again
	Reject                   // refuse at the end of DATA (550 5.7.1)
)

// String is the action's name in the configuration ("mark",
// "quarantine", "defer", "reject"), as ParseAction reads it and logs
// show it.
func (a Action) String() string {
	switch a {
	case Quarantine:
		return "quarantine"
	case Defer:
		return "defer"
	case Reject:
		return "reject"
	}
	return "mark"
}

// ParseAction reads "mark", "quarantine" or "reject".
func ParseAction(s string) (Action, error) {
	switch s {
	case "mark":
		return Mark, nil
	case "quarantine":
		return Quarantine, nil
	case "reject":
		return Reject, nil
	}
	return Mark, fmt.Errorf("%q: use \"reject\", \"quarantine\" or \"mark\"", s)
}

// ParseTempAction reads Policy.TempError's "defer", "quarantine" or
// "mark": a temporary failure never refuses mail for good.
func ParseTempAction(s string) (Action, error) {
	switch s {
	case "defer":
		return Defer, nil
	case "quarantine":
		return Quarantine, nil
	case "mark":
		return Mark, nil
	}
	return Defer, fmt.Errorf("%q: use \"defer\", \"quarantine\" or \"mark\"", s)
}

// Policy says what is done with messages that fail.
type Policy struct {
	// DMARCReject is for a message that fails DMARC where the From:
	// domain publishes p=reject. Default Reject.
	DMARCReject Action
	// DMARCQuarantine is for p=quarantine. Default Quarantine.
	DMARCQuarantine Action
	// SPFFail is for an SPF "fail" (-all) when the From: domain has no
	// DMARC record to say how much its SPF is to be trusted. Default
	// Mark: forwarding breaks SPF too often for more. It applies too
	// where DMARC could not be evaluated for want of a usable record
	// (permerror) or of a From: domain.
	SPFFail Action
	// BadFrom is for a message that names no author domain: no From:
	// field, or none with a domain in it. DMARC cannot be applied to it
	// (RFC 7489 §6.6.1 lets the receiver refuse it), and without this a
	// sender with p=reject would only need to leave From: out. Default
	// Reject (RFC 5322 §3.6 requires From:; large providers refuse such
	// mail too).
	BadFrom Action
	// TempError is for a message whose verdict waits on a temporary DNS
	// failure (SERVFAIL, the per-message timeout) that could make it a
	// refusal or a quarantine: the From: domain's DMARC record could not
	// be fetched and nothing aligned passed, or the record says reject
	// or quarantine and an SPF or DKIM check that could have aligned
	// failed temporarily, or SPF failed temporarily where SPFFail is
	// stricter than Mark. It is never Reject: our or the sender's DNS
	// trouble must not bounce mail (RFC 7489 §6.6.2, RFC 7208 §8.6).
	// Default Defer (451 4.7.0, the sender tries again later); Mark
	// delivers such mail as if it had passed, which lets a forger
	// through while the domain's DNS is unreachable.
	TempError Action
}

// DefaultPolicy follows each domain's published DMARC policy, refuses mail
// without an author domain, only marks SPF failures and defers what a
// temporary failure leaves undecided.
func DefaultPolicy() Policy {
	return Policy{DMARCReject: Reject, DMARCQuarantine: Quarantine, SPFFail: Mark, BadFrom: Reject, TempError: Defer}
}

// Options configure a Checker. Resolver and AuthServID are required.
type Options struct {
	Resolver Resolver
	// AuthServID names this server in Authentication-Results (RFC 8601
	// §2.5): normally its host name.
	AuthServID string
	Policy     Policy
	// Timeout bounds all DNS questions about one message. Default 20s.
	Timeout time.Duration
	// MaxSignatures is how many DKIM signatures are verified; the rest
	// are ignored. Default 5.
	MaxSignatures int
	// PublicSuffix returns a domain's organizational domain (RFC 7489
	// §3.2). Default: the Public Suffix List of golang.org/x/net.
	OrgDomain func(domain string) string
}

// Checker checks messages. It is safe for concurrent use; it logs
// nothing (the caller logs the Result).
type Checker struct {
	opts Options
}

// New returns a Checker.
func New(opts Options) *Checker {
	if opts.Timeout <= 0 {
		opts.Timeout = 20 * time.Second
	}
	if opts.MaxSignatures <= 0 {
		opts.MaxSignatures = 5
	}
	if opts.OrgDomain == nil {
		opts.OrgDomain = OrgDomain
	}
	return &Checker{opts: opts}
}

// Envelope is what the SMTP session knows of the message.
type Envelope struct {
	IP       net.IP // the client's address
	Helo     string
	MailFrom string // "" for the null sender
}

// Result is what the checks found and what to do.
type Result struct {
	SPF   SPFResult
	DKIM  []DKIMResult
	DMARC DMARCResult
	// Action is the strictest outcome the Policy gives; Reason says why
	// (for the log and a refusal's text).
	Action Action
	Reason string
	// Lookups is how many DNS questions were asked.
	Lookups int
	// Err is set when the message itself could not be read (the spool
	// on a failing disk): nothing was decided, and the caller answers
	// with a temporary failure.
	Err error
}

// SPFResult is the SPF check of the MAIL FROM identity (or HELO, for the
// null sender, RFC 7208 §2.4).
type SPFResult struct {
	Result   spf.Result
	Identity string // "mailfrom" or "helo"
	Domain   string // the domain checked
	Value    string // the address or name, as the A-R field shows it
	Err      error
}

// DKIMResult is one signature's verification.
type DKIMResult struct {
	Result   string // pass, fail, neutral, policy, temperror, permerror
	Domain   string // d=
	Selector string // s=
	B        string // the first characters of b= (RFC 6008)
	Err      error
}

// Check runs SPF, DKIM and DMARC on msg (the whole message, header and
// body, as received) for env. Its questions share one deadline (Timeout);
// a check that runs out of time is a temperror, which never refuses mail.
//
// SPF, the DKIM signatures and the From: domains' DMARC records are
// looked up at the same time, so that a domain whose DNS never answers
// (the envelope's, a signature's) cannot make the others' questions run
// out of time: a forger must not turn the From: domain's p=reject into a
// timeout.
func (c *Checker) Check(ctx context.Context, env Envelope, h msghdr.Header, msg io.Reader) *Result {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	dns := &counting{r: c.opts.Resolver}
	res := &Result{}
	var wg sync.WaitGroup
	wg.Go(func() { res.SPF = c.checkSPF(ctx, dns, env) })
	domains, malformed := h.AuthorDomains()
	var records []dmarcRecord
	var authorErr error
	wg.Go(func() { records, authorErr = c.lookupDMARC(ctx, dns, domains) })
	res.DKIM, res.Err = c.verifyDKIM(ctx, dns, h, msg)
	wg.Wait()
	res.Lookups = int(dns.n.Load())
	if res.Err != nil {
		return res
	}
	res.DMARC = c.evalDMARC(records, authorErr, res)
	res.DMARC.MalformedFrom = malformed
	c.decide(res)
	return res
}

func (c *Checker) checkSPF(ctx context.Context, dns Resolver, env Envelope) SPFResult {
	r := SPFResult{Identity: "mailfrom", Value: env.MailFrom}
	sender := env.MailFrom
	if at := strings.LastIndexByte(sender, '@'); at >= 0 {
		r.Domain = strings.ToLower(sender[at+1:])
	}
	if sender == "" || r.Domain == "" {
		// RFC 7208 §2.4: the null sender is checked as
		// postmaster@<HELO name>.
		r.Identity, r.Domain, r.Value = "helo", strings.ToLower(env.Helo), env.Helo
		sender = "postmaster@" + env.Helo
	}
	if env.IP == nil {
		r.Result, r.Err = spf.None, errors.New("no client address")
		return r
	}
	// RFC 7208 §4.6.4: at most 10 lookups that count and 2 void ones
	// (the library's defaults, which the RFC fixes).
	r.Result, r.Err = spf.CheckHostWithSender(env.IP, env.Helo, sender,
		spf.WithContext(ctx), spf.WithResolver(dns))
	if errors.Is(r.Err, spf.ErrNoResult) {
		r.Err = nil
	}
	return r
}

// readErr is the message as the verifier reads it: a failure to read it
// (the spool's, not the message's) is kept, so that it is not taken for
// a broken signature.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// verifyDKIM verifies the first MaxSignatures signatures of the message.
// An error is a failure to read msg.
func (c *Checker) verifyDKIM(ctx context.Context, dns Resolver, h msghdr.Header, msg io.Reader) ([]DKIMResult, error) {
	re := &readErr{r: msg}
	sigs := c.verifySignatures(ctx, dns, h, re)
	if re.err != nil {
		return nil, fmt.Errorf("read the message: %w", re.err)
	}
	return sigs, nil
}

func (c *Checker) verifySignatures(ctx context.Context, dns Resolver, h msghdr.Header, msg io.Reader) []DKIMResult {
	var sigs []DKIMResult
	for _, f := range h {
		if !f.Is("DKIM-Signature") {
			continue
		}
		tags, _ := dkim.ParseTags(f.Value())
		b := strings.Join(strings.Fields(tags["b"]), "")
		d := strings.Join(strings.Fields(tags["d"]), "")
		sigs = append(sigs, DKIMResult{Domain: strings.ToLower(d), Selector: tags["s"], B: b[:min(len(b), 8)]})
	}
	if len(sigs) == 0 {
		io.Copy(io.Discard, msg)
		return nil
	}
	sigs = sigs[:min(len(sigs), c.opts.MaxSignatures)]
	vs, err := msgdkim.VerifyWithOptions(msg, &msgdkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return dns.LookupTXT(ctx, name) },
		MaxVerifications: c.opts.MaxSignatures,
	})
	if err != nil && !errors.Is(err, msgdkim.ErrTooManySignatures) {
		for i := range sigs {
			sigs[i].Result, sigs[i].Err = "permerror", err
		}
		return sigs
	}
	// go-msgauth reports the signatures in header order and msghdr reads
	// the header as it does (to the empty line); it does not give the
	// selector, so that is taken from the field. Should the two readings
	// ever differ (count or d= at a place), no result is believed.
	if !paired(sigs, vs) {
		for i := range sigs {
			sigs[i].Result, sigs[i].Err = "permerror", errors.New("the header reads differently to the verifier")
		}
		return sigs
	}
	for i, v := range vs {
		if v.Domain != "" {
			sigs[i].Domain = strings.ToLower(v.Domain)
		}
		sigs[i].Err = v.Err
		switch {
		case v.Err == nil:
			sigs[i].Result = "pass"
		case msgdkim.IsTempFail(v.Err):
			sigs[i].Result = "temperror"
		case msgdkim.IsPermFail(v.Err):
			sigs[i].Result = "permerror"
		default:
			sigs[i].Result = "fail"
		}
	}
	return sigs
}

// paired reports whether go-msgauth's verifications are of our
// signature fields, in order: as many, and the same d= at each place
// where both read one.
func paired(sigs []DKIMResult, vs []*msgdkim.Verification) bool {
	if len(vs) != len(sigs) {
		return false
	}
	for i, v := range vs {
		if v.Domain != "" && sigs[i].Domain != "" && !strings.EqualFold(v.Domain, sigs[i].Domain) {
			return false
		}
	}
	return true
}

// decide applies the Policy: the strictest action any of its rules
// gives.
func (c *Checker) decide(res *Result) {
	p := c.opts.Policy
	d := res.DMARC
	consider := func(a Action, reason string) {
		if a > res.Action {
			res.Action, res.Reason = a, reason
		}
	}
	switch {
	case d.Result == "fail" && d.Applied == "reject":
		consider(p.DMARCReject, fmt.Sprintf("DMARC policy of %s is reject", d.Domain))
	case d.Result == "fail" && d.Applied == "quarantine":
		consider(p.DMARCQuarantine, fmt.Sprintf("DMARC policy of %s is quarantine", d.Domain))
	case d.Result == "temperror" && d.Unsettled:
		consider(min(p.TempError, Defer), fmt.Sprintf("temporary DNS failure checking DMARC for %s", d.Domain))
	}
	switch {
	case errors.Is(d.Err, errTooManyAuthors):
		consider(p.BadFrom, fmt.Sprintf("more than %d From: domains", maxAuthorDomains))
	case d.Domain == "":
		consider(p.BadFrom, "no From: address with a domain")
	}
	// Without a usable DMARC verdict, SPF's own (RFC 7208 §8.4) is all
	// there is.
	if d.Result == "none" || d.Result == "permerror" {
		switch res.SPF.Result {
		case spf.Fail:
			consider(p.SPFFail, fmt.Sprintf("SPF of %s fails for this host", res.SPF.Domain))
		case spf.TempError:
			if p.SPFFail > Mark {
				consider(min(p.TempError, Defer), fmt.Sprintf("temporary DNS failure checking SPF of %s", res.SPF.Domain))
			}
		}
	}
}

// counting is the Resolver that the libraries get for one message: it
// counts questions, and gives every failure as a *net.DNSError, since
// both libraries tell temporary from permanent failures by asserting that
// type (a context's end would otherwise be a permanent error, and an SPF
// permerror).
type counting struct {
	r Resolver
	n atomic.Int64
}

func dnsErr(ctx context.Context, name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if ctx.Err() != nil && !de.IsNotFound {
			de.IsTemporary, de.IsTimeout = true, true
		}
		return de
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true, IsTimeout: ctx.Err() != nil}
}

func (c *counting) LookupTXT(ctx context.Context, name string) ([]string, error) {
	c.n.Add(1)
	r, err := c.r.LookupTXT(ctx, name)
	return r, dnsErr(ctx, name, err)
}

func (c *counting) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	c.n.Add(1)
	r, err := c.r.LookupMX(ctx, name)
	return r, dnsErr(ctx, name, err)
}

func (c *counting) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	c.n.Add(1)
	r, err := c.r.LookupIPAddr(ctx, host)
	return r, dnsErr(ctx, host, err)
}

func (c *counting) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	c.n.Add(1)
	r, err := c.r.LookupAddr(ctx, addr)
	return r, dnsErr(ctx, addr, err)
}
