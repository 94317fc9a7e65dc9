package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"mailroom/internal/address"
	"mailroom/mailauth/dkim"
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
