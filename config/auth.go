package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"mailroom/internal/address"
	"mailroom/mailauth"
	"mailroom/mailauth/dkim"
	"mailroom/milter"
)

// DNS is the [dns] table: where every DNS question goes (the queue's MX
// lookups, SPF, DKIM and DMARC).
type DNS struct {
	// Server is "host:port" of the one DNS server to ask, e.g. a
	// validating resolver on this host ("127.0.0.1:53"); "" (default)
	// uses the system's resolvers (/etc/resolv.conf). DNSSEC: the AD bit
	// is believed only from a loopback server (or, with the system's, a
	// loopback nameserver and "options trust-ad").
	Server string `toml:"server"`
}

// DKIMKey is one [[dkim]] entry: a key that signs mail leaving through the
// queue whose From: is in Domain (or a subdomain of it). Two entries for
// one domain both sign (RSA and Ed25519, RFC 8463).
type DKIMKey struct {
	// Domain is the signing domain (d=); it must be one of domains.
	Domain string `toml:"domain"`
	// Selector names the key's DNS record, <selector>._domainkey.<domain>.
	Selector string `toml:"selector"`
	// Key is the PEM private key file. Default
	// <data_dir>/dkim/<domain>/<selector>.key, where `mailroom dkim
	// keygen` writes it.
	Key string `toml:"key"`
}

// Checks is the [checks] table: SPF, DKIM and DMARC on mail received on
// [smtp] (the MX). Submission (authenticated) and LMTP (behind an MTA
// that did its own checks) are never checked.
type Checks struct {
	// Enabled turns the checks on. Default true.
	Enabled *bool `toml:"enabled"`
	// AuthServID names this server in Authentication-Results (RFC 8601);
	// fields that claim it are removed from mail from outside and from
	// every submitted message. Default: hostname.
	AuthServID string `toml:"authserv_id"`
	// DMARCReject is what happens to a message that fails DMARC where
	// the From: domain publishes p=reject: "reject" (550 5.7.1 at the end
	// of DATA, the default), "quarantine" (the recipients' Junk folder)
	// or "mark" (delivered, with Authentication-Results only).
	DMARCReject string `toml:"dmarc_reject"`
	// DMARCQuarantine is the same for p=quarantine. Default "quarantine".
	DMARCQuarantine string `toml:"dmarc_quarantine"`
	// SPFFail is for an SPF fail (-all) from a domain without a DMARC
	// record. Default "mark": forwarding breaks SPF too often for more.
	SPFFail string `toml:"spf_fail"`
	// BadFrom is for a message that names no author: no From: field, or
	// none with a domain in it, so that DMARC cannot be applied (RFC
	// 7489 §6.6.1). Default "reject" (RFC 5322 §3.6 requires From:);
	// "quarantine" or "mark" take it. A From: that is malformed but
	// names domains is checked against each of them instead.
	BadFrom string `toml:"bad_from"`
	// TempError is for a message whose verdict waits on a temporary DNS
	// failure that could make it a refusal or a quarantine (the From:
	// domain's DMARC record unreachable, or an SPF or DKIM check that
	// could align failing temporarily under p=reject or p=quarantine):
	// "defer" (451 4.7.0, the sender tries again; the default),
	// "quarantine" or "mark". Never a refusal for good.
	TempError string `toml:"temperror"`
	// Timeout bounds all DNS lookups for one message; a check that runs
	// out is a temperror (see TempError), never a refusal. Default "20s".
	Timeout Duration `toml:"timeout"`
	// TrustedNetworks are client networks whose mail is taken unchecked
	// and unchanged (this host; a content filter that re-injects mail).
	// Default ["127.0.0.0/8", "::1/128"]; [] checks everybody.
	TrustedNetworks []string `toml:"trusted_networks"`
}

// ChecksSettings is [checks] with defaults applied and values parsed.
type ChecksSettings struct {
	Enabled    bool
	AuthServID string
	Policy     mailauth.Policy
	Timeout    time.Duration
	Trusted    []netip.Prefix
}

// DefaultTrustedNetworks is checks.trusted_networks' default.
func DefaultTrustedNetworks() []string { return []string{"127.0.0.0/8", "::1/128"} }

// ChecksSettings parses [checks]; Validate reports the same errors.
func (c *Config) ChecksSettings() (ChecksSettings, error) {
	s, errs := c.checksSettings()
	if len(errs) > 0 {
		return s, errs[0]
	}
	return s, nil
}

func (c *Config) checksSettings() (ChecksSettings, []error) {
	ch := c.Checks
	s := ChecksSettings{Enabled: ch.Enabled == nil || *ch.Enabled, AuthServID: ch.AuthServID,
		Policy: mailauth.DefaultPolicy(), Timeout: ch.Timeout.Duration}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", c.Path, key, fmt.Sprintf(format, args...)))
	}
	if s.AuthServID == "" {
		s.AuthServID = c.Hostname
	}
	if strings.ContainsAny(s.AuthServID, " \t;()\"\\") {
		bad("checks.authserv_id", "%q: use a host name, such as \"mx.example.org\"", s.AuthServID)
	}
	for _, a := range []struct {
		key, v string
		dst    *mailauth.Action
	}{{"checks.dmarc_reject", ch.DMARCReject, &s.Policy.DMARCReject},
		{"checks.dmarc_quarantine", ch.DMARCQuarantine, &s.Policy.DMARCQuarantine},
		{"checks.spf_fail", ch.SPFFail, &s.Policy.SPFFail},
		{"checks.bad_from", ch.BadFrom, &s.Policy.BadFrom}} {
		if a.v == "" {
			continue
		}
		act, err := mailauth.ParseAction(a.v)
		if err != nil {
			bad(a.key, "%v", err)
		}
		*a.dst = act
	}
	if ch.TempError != "" {
		act, err := mailauth.ParseTempAction(ch.TempError)
		if err != nil {
			bad("checks.temperror", "%v", err)
		}
		s.Policy.TempError = act
	}
	if s.Timeout == 0 {
		s.Timeout = 20 * time.Second
	}
	if s.Timeout < time.Second || s.Timeout > 5*time.Minute {
		bad("checks.timeout", "%v: write a duration from \"1s\" to \"5m\" (default \"20s\")", s.Timeout)
	}
	nets := ch.TrustedNetworks
	if nets == nil {
		nets = DefaultTrustedNetworks()
	}
	for i, n := range nets {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			if a, aerr := netip.ParseAddr(n); aerr == nil {
				p, err = a.Prefix(a.BitLen())
			}
		}
		if err != nil {
			bad(fmt.Sprintf("checks.trusted_networks[%d]", i), "%q: write a network such as \"192.0.2.0/24\" or an address", n)
			continue
		}
		s.Trusted = append(s.Trusted, p.Masked())
	}
	return s, errs
}

// Milters is a listener's milter settings with defaults applied.
type Milters struct {
	Addrs         []string
	DefaultAction milter.Action
	Timeout       time.Duration
}

// MilterSettings parses the milter keys of [smtp] or [submission] (key
// names the table in errors).
func MilterSettings(key string, l Listener) (Milters, error) {
	m := Milters{Addrs: l.Milters, DefaultAction: milter.TempFail, Timeout: l.MilterTimeout.Duration}
	for i, a := range l.Milters {
		if _, _, err := milter.ParseAddr(a); err != nil {
			return m, fmt.Errorf("%s.milters[%d]: %w", key, i, err)
		}
	}
	if l.MilterDefaultAction != "" {
		a, err := milter.ParseAction(l.MilterDefaultAction)
		if err != nil {
			return m, fmt.Errorf("%s.milter_default_action: %w", key, err)
		}
		m.DefaultAction = a
	}
	if m.Timeout == 0 {
		m.Timeout = 30 * time.Second
	}
	if m.Timeout < time.Second || m.Timeout > 10*time.Minute {
		return m, fmt.Errorf("%s.milter_timeout: %v: write a duration from \"1s\" to \"10m\" (default \"30s\")", key, m.Timeout)
	}
	return m, nil
}

// DKIMKeyPath is where the key of domain and selector lives by default.
func (c *Config) DKIMKeyPath(domain, selector string) string {
	return filepath.Join(c.DataDir, "dkim", domain, selector+".key")
}

// DNSServer is [dns] server, or the deprecated [relay] dns.
func (c *Config) DNSServer() string {
	if c.DNS.Server != "" {
		return c.DNS.Server
	}
	return c.Relay.DNS
}

// validateAuth checks [dns] and [[dkim]]; each error names the key and
// the fix. Relative key paths are made absolute (from the configuration
// file's directory) and missing ones get their default.
func (c *Config) validateAuth() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", c.Path, key, fmt.Sprintf(format, args...)))
	}
	if s := c.DNS.Server; s != "" {
		if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
			bad("dns.server", "%q: write \"host:port\", e.g. \"127.0.0.1:53\"", s)
		}
	}
	if c.DNS.Server != "" && c.Relay.DNS != "" {
		bad("relay.dns", "set [dns] server only (relay.dns is its old name)")
	}
	_, cerrs := c.checksSettings()
	errs = append(errs, cerrs...)
	for _, l := range []struct {
		key string
		l   Listener
	}{{"smtp", c.SMTP}, {"submission", c.Submission}} {
		if _, err := MilterSettings(l.key, l.l); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Path, err))
		}
	}
	if len(c.IMAP.Milters) > 0 || c.IMAP.MilterDefaultAction != "" || c.IMAP.MilterTimeout.Duration != 0 {
		bad("imap.milters", "milters filter SMTP only: move them to [smtp] or [submission]")
	}
	seen := map[string]bool{}
	for i := range c.DKIM {
		k := &c.DKIM[i]
		key := fmt.Sprintf("dkim[%d]", i)
		d, err := address.NormalizeDomain(k.Domain)
		switch {
		case k.Domain == "":
			bad(key+".domain", "empty: name the signing domain, one of domains")
		case err != nil:
			bad(key+".domain", "%q is not a valid domain: %v", k.Domain, err)
		case !containsFold(c.Domains, d):
			bad(key+".domain", "%q is not one of domains: mailroom signs only mail from its own domains", k.Domain)
		default:
			k.Domain = d
		}
		if err := dkim.CheckSelector(k.Selector); err != nil {
			bad(key+".selector", "%v", err)
			continue
		}
		id := k.Domain + "/" + strings.ToLower(k.Selector)
		if seen[id] {
			bad(key, "domain %q and selector %q are listed twice: remove one", k.Domain, k.Selector)
		}
		seen[id] = true
		switch {
		case k.Key == "":
			k.Key = c.DKIMKeyPath(k.Domain, k.Selector)
		case !filepath.IsAbs(k.Key) && c.Path != "":
			k.Key = filepath.Join(filepath.Dir(c.Path), k.Key)
		}
		if _, err := dkim.LoadKey(k.Key); err != nil {
			bad(key+".key", "%v (make one with: mailroom dkim keygen %s -selector %s)", err, k.Domain, k.Selector)
		}
	}
	return errs
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// authWarnings reports settings of [dns] and [[dkim]] that work but
// should change.
func (c *Config) authWarnings() []string {
	var w []string
	if c.Relay.DNS != "" && c.DNS.Server == "" {
		w = append(w, fmt.Sprintf("%s: relay.dns is the old name of [dns] server, which every DNS lookup uses: move it there", c.Path))
	}
	return w
}
