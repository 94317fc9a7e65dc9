package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"mailroom/queue"
)

// Resolver is the part of DNS that delivery needs; *net.Resolver
// implements it, and tests substitute their own.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// NewResolver returns the resolver to use: the system's when server is "",
// otherwise Go's resolver asking only server ("host:port"), as [relay] dns
// asks for tests and unusual networks.
func NewResolver(server string) Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

// host is one place to try, with its addresses.
type host struct {
	name  string
	port  int
	addrs []string // IPs, in the order to try
}

// route finds where mail for domain goes (RFC 5321 §5.1): the MX hosts,
// lowest preference first and shuffled among equals, or the domain itself
// when it has no MX. A null MX (RFC 7505) and a domain that does not exist
// are permanent failures; any other DNS trouble is temporary.
func (t *Transport) route(ctx context.Context, domain string) ([]host, error) {
	if !isASCII(domain) {
		// An internationalized domain is looked up by its A-label
		// (RFC 5890); the U-label stays in the envelope (SMTPUTF8).
		a, err := idna.Lookup.ToASCII(domain)
		if err != nil {
			return nil, &queue.Error{Perm: true, Status: "5.1.2",
				Diag: "X-Mailroom; " + domain + " is not a valid domain name: " + err.Error(),
				Err:  fmt.Errorf("domain %s: %w", domain, err)}
		}
		domain = a
	}
	fqdn := strings.TrimSuffix(domain, ".") + "."
	mxs, err := t.res.LookupMX(ctx, fqdn)
	var names []string
	switch {
	case err == nil && len(mxs) > 0:
		if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
			return nil, &queue.Error{Perm: true, Status: "5.1.10",
				Diag: "X-Mailroom; " + domain + " does not accept mail (null MX, RFC 7505)",
				Err:  fmt.Errorf("%s does not accept mail (null MX)", domain)}
		}
		rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
		slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
		// RFC 5321 §5.1: if this host is an MX of the domain, only hosts
		// strictly more preferred may take the message, or it loops
		// (equal-preference peers would hand it back and forth).
		ownPref := -1
		for _, mx := range mxs {
			if t.opts.Hostname != "" && strings.EqualFold(strings.TrimSuffix(mx.Host, "."), t.opts.Hostname) {
				ownPref = int(mx.Pref)
				break
			}
		}
		for _, mx := range mxs {
			name := strings.TrimSuffix(mx.Host, ".")
			if ownPref >= 0 && int(mx.Pref) >= ownPref {
				break
			}
			if name != "" {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			return nil, &queue.Error{Perm: true, Status: "5.4.6",
				Diag: "X-Mailroom; mail for " + domain + " loops back to this host (" + t.opts.Hostname + " is its best MX)",
				Err:  fmt.Errorf("mail for %s loops back to myself: %s is its best MX", domain, t.opts.Hostname)}
		}
	case err == nil || isNotFound(err):
		// No MX: the domain itself is the host (implicit MX), if it has
		// an address at all.
		names = []string{strings.TrimSuffix(domain, ".")}
	default:
		return nil, dnsError(domain, "MX", err)
	}
	var hosts []host
	var lastErr error
	for _, n := range names {
		addrs, err := t.lookupHost(ctx, n)
		if err != nil {
			lastErr = err
			continue
		}
		hosts = append(hosts, host{name: n, port: t.opts.Port, addrs: addrs})
	}
	if len(hosts) == 0 {
		return nil, lastErr
	}
	return hosts, nil
}

// lookupHost returns the addresses of name, IPv6 and IPv4 alike, in the
// resolver's order (RFC 6724 for the system's).
func (t *Transport) lookupHost(ctx context.Context, name string) ([]string, error) {
	if ip := net.ParseIP(name); ip != nil {
		return []string{ip.String()}, nil
	}
	ips, err := t.res.LookupIPAddr(ctx, strings.TrimSuffix(name, ".")+".")
	if err != nil {
		return nil, dnsError(name, "address", err)
	}
	if len(ips) == 0 {
		return nil, dnsError(name, "address", &net.DNSError{Err: "no addresses", Name: name, IsNotFound: true})
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.IP.String()
	}
	return out, nil
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// dnsError classifies a failed lookup: a name that does not exist is
// permanent (5.1.2, bad destination system); a timeout or server failure
// is temporary (4.4.3, directory server failure).
func dnsError(name, what string, err error) error {
	if isNotFound(err) {
		return &queue.Error{Perm: true, Status: "5.1.2",
			Diag: fmt.Sprintf("X-Mailroom; no %s record for %s (domain does not exist)", what, name),
			Err:  fmt.Errorf("look up %s of %s: %w", what, name, err)}
	}
	return &queue.Error{Status: "4.4.3",
		Diag: fmt.Sprintf("X-Mailroom; DNS lookup of %s for %s failed: %v", what, name, err),
		Err:  fmt.Errorf("look up %s of %s: %w", what, name, err)}
}

// dnsTimeout bounds one lookup, so that a silent DNS server is a
// temporary failure rather than a stuck worker.
const dnsTimeout = 30 * time.Second
