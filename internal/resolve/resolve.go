// Package resolve is the one DNS resolver of the server: the queue's MX
// lookups and the SPF, DKIM and DMARC checks all ask through it, so that
// the single setting [dns] server (or the system's resolvers) decides
// where every question goes.
//
// The ordinary lookups (TXT, MX, addresses, PTR) are Go's own resolver,
// either the system's (/etc/resolv.conf, /etc/hosts) or one that asks only
// the configured server. Query adds what Go's resolver does not report:
// whether an answer is DNSSEC-authenticated, which DANE and MTA-STS need.
//
// DNSSEC: mailroom validates nothing itself. It sets the AD bit in its
// questions (RFC 6840 §5.7) and believes the AD bit of an answer only
// from a resolver it can trust to have validated it over a path no one
// can tamper with: the configured server when it is on a loopback
// address, or, with the system's resolvers, a loopback nameserver with
// "options trust-ad" in resolv.conf (glibc's rule since 2.31). Every
// other answer counts as unsigned (Secure false), never as bogus.
package resolve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Options configure a Resolver.
type Options struct {
	// Server is "host:port" of the one DNS server to ask; "" means the
	// system's resolvers.
	Server string
	// Timeout bounds each lookup, whatever the caller's context allows.
	// Default 10s.
	Timeout time.Duration
	// ResolvConf is read by Query when Server is "" (default
	// /etc/resolv.conf); tests point it elsewhere.
	ResolvConf string
}

// Resolver answers DNS questions. It is safe for concurrent use. Its
// lookup methods have the signatures of *net.Resolver's, so that it
// satisfies the small interfaces of smtp/outbound and of the SPF library.
type Resolver struct {
	opts Options
	net  *net.Resolver
}

// New returns a Resolver.
func New(opts Options) *Resolver {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	r := &Resolver{opts: opts, net: net.DefaultResolver}
	if opts.Server != "" {
		server := opts.Server
		r.net = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, server)
			},
		}
	}
	return r
}

// Server is the configured server, "" for the system's resolvers.
func (r *Resolver) Server() string { return r.opts.Server }

func (r *Resolver) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.Timeout)
}

// LookupTXT returns the TXT records of name, each one's strings joined
// (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	return r.net.LookupTXT(ctx, absolute(name))
}

// LookupMX returns the MX records of name.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	return r.net.LookupMX(ctx, absolute(name))
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	if !strings.Contains(strings.TrimSuffix(host, "."), ".") {
		// A name of one label ("localhost") is one of /etc/hosts,
		// which the C library's resolver does not match with a final
		// dot.
		return r.net.LookupIPAddr(ctx, host)
	}
	return r.net.LookupIPAddr(ctx, absolute(host))
}

// LookupAddr returns the names of an address (PTR).
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	return r.net.LookupAddr(ctx, addr)
}

// absolute makes name a fully qualified one (a final dot), which Go's
// resolver asks as it is: without the dot, a name that does not exist
// would be asked again with each of resolv.conf's search domains
// appended, and _dmarc.nx.example could find _dmarc.nx.example.corp's
// policy. Every name we ask comes from mail or the configuration and is
// meant absolute (RFC 7208 §4.3, RFC 7489 §6.1, RFC 5321 §5.1).
// An address literal is left alone.
func absolute(name string) string {
	if _, err := netip.ParseAddr(name); err == nil || name == "" {
		return name
	}
	return dns.Fqdn(name)
}

// Answer is the result of Query.
type Answer struct {
	// Records are the answer section's records of the type asked (and
	// the CNAMEs leading to them).
	Records []dns.RR
	// Secure reports an answer that a trusted validating resolver marked
	// authenticated (the AD bit; see the package comment).
	Secure bool
	// NXDomain reports that the name does not exist.
	NXDomain bool
}

// ErrServFail is a server's failure to answer (SERVFAIL, REFUSED...):
// temporary, or bogus DNSSEC data at a validating resolver.
var ErrServFail = errors.New("DNS server failure")

// Query asks for records of type qtype (dns.TypeTLSA...) at name and
// reports whether the answer is DNSSEC-authenticated. It asks the
// configured server, or the nameservers of resolv.conf in turn.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (Answer, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	servers, trusted, err := r.servers()
	if err != nil {
		return Answer{}, err
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	// RFC 6840 §5.7: AD in a question asks for AD in the answer; DO
	// (RFC 3225) would also fetch signatures we have no use for.
	m.AuthenticatedData = true
	m.SetEdns0(1232, false)
	var lastErr error
	for _, srv := range servers {
		resp, err := exchange(ctx, m, srv)
		if err != nil {
			lastErr = err
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		default:
			lastErr = fmt.Errorf("query %s %s at %s: %w (%s)", name, dns.TypeToString[qtype], srv, ErrServFail, dns.RcodeToString[resp.Rcode])
			continue
		}
		a := Answer{NXDomain: resp.Rcode == dns.RcodeNameError,
			Secure: resp.AuthenticatedData && trusted(srv)}
		for _, rr := range resp.Answer {
			if t := rr.Header().Rrtype; t == qtype || t == dns.TypeCNAME {
				a.Records = append(a.Records, rr)
			}
		}
		return a, nil
	}
	return Answer{}, lastErr
}

// exchange sends m over UDP, and again over TCP if the answer was
// truncated.
func exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp"}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, fmt.Errorf("query %s at %s: %w", m.Question[0].Name, server, err)
	}
	return resp, nil
}

// servers lists where Query asks, and which of those are trusted to
// validate.
func (r *Resolver) servers() ([]string, func(string) bool, error) {
	if r.opts.Server != "" {
		return []string{r.opts.Server}, isLoopback, nil
	}
	conf, err := readResolvConf(r.opts.ResolvConf)
	if err != nil {
		return nil, nil, err
	}
	return conf.servers, func(s string) bool { return conf.trustAD && isLoopback(s) }, nil
}

func isLoopback(server string) bool {
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		host = server
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type resolvConf struct {
	servers []string // "host:53"
	trustAD bool
}

// readResolvConf reads the nameserver lines and the trust-ad option of
// resolv.conf(5).
func readResolvConf(path string) (resolvConf, error) {
	var c resolvConf
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("read resolver configuration: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], ";") {
			continue
		}
		switch fields[0] {
		case "nameserver":
			host, _, _ := strings.Cut(fields[1], "%") // a zone index has no place in a dial address
			if net.ParseIP(host) != nil {
				c.servers = append(c.servers, net.JoinHostPort(host, "53"))
			}
		case "options":
			if slices.Contains(fields[1:], "trust-ad") {
				c.trustAD = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("read %s: %w", path, err)
	}
	if len(c.servers) == 0 {
		// resolv.conf(5): with no nameserver line, the local host.
		c.servers = []string{"127.0.0.1:53", "[::1]:53"}
	}
	return c, nil
}

// IsNotFound reports whether err says that a name or record does not
// exist (NXDOMAIN or no records of the type), as opposed to a failure to
// find out.
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
