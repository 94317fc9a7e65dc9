package resolve

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/fakedns"
)

func TestLookupsAskTheConfiguredServer(t *testing.T) {
	srv := fakedns.Start(t,
		"example.org. 60 IN MX 10 mx.example.org.",
		"mx.example.org. 60 IN A 192.0.2.25",
		"mx.example.org. 60 IN AAAA 2001:db8::25",
		`example.org. 60 IN TXT "v=spf1 " "mx -all"`,
		"25.2.0.192.in-addr.arpa. 60 IN PTR mx.example.org.",
	)
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("A", 400)
	srv.AddTXT("sel._domainkey.example.org", long)
	r := New(Options{Server: srv.Addr})
	ctx := t.Context()

	mx, err := r.LookupMX(ctx, "example.org.")
	if err != nil || len(mx) != 1 || mx[0].Host != "mx.example.org." {
		t.Errorf("LookupMX = %v, %v", mx, err)
	}
	ips, err := r.LookupIPAddr(ctx, "mx.example.org.")
	if err != nil || len(ips) != 2 {
		t.Errorf("LookupIPAddr = %v, %v", ips, err)
	}
	txt, err := r.LookupTXT(ctx, "example.org.")
	if err != nil || !slices.Equal(txt, []string{"v=spf1 mx -all"}) {
		t.Errorf("LookupTXT = %q, %v (strings of one record are joined)", txt, err)
	}
	txt, err = r.LookupTXT(ctx, "sel._domainkey.example.org.")
	if err != nil || !slices.Equal(txt, []string{long}) {
		t.Errorf("LookupTXT of a record longer than 255 octets = %d records, %v", len(txt), err)
	}
	names, err := r.LookupAddr(ctx, "192.0.2.25")
	if err != nil || !slices.Equal(names, []string{"mx.example.org."}) {
		t.Errorf("LookupAddr = %v, %v", names, err)
	}
	_, err = r.LookupTXT(ctx, "nxdomain.example.")
	if !IsNotFound(err) {
		t.Errorf("LookupTXT of a missing name: %v, want a not-found error", err)
	}
	if srv.Queries() == 0 {
		t.Fatal("the fake server was never asked")
	}
}

func TestTimeoutBoundsEveryLookup(t *testing.T) {
	srv := fakedns.Start(t)
	srv.Hang("slow.example")
	r := New(Options{Server: srv.Addr, Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := r.LookupTXT(context.Background(), "x.slow.example.")
	if err == nil || IsNotFound(err) {
		t.Fatalf("LookupTXT of an unanswered name: %v, want a temporary error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("an unanswered lookup took %v with a 200ms timeout", d)
	}
}

func TestQueryADTrust(t *testing.T) {
	srv := fakedns.Start(t, "_25._tcp.mx.example.org. 60 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	for _, c := range []struct {
		name   string
		ad     bool
		server string
		secure bool
	}{
		{"AD from a loopback server", true, srv.Addr, true},
		{"no AD", false, srv.Addr, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv.SetAD(c.ad)
			a, err := New(Options{Server: c.server}).Query(t.Context(), "_25._tcp.mx.example.org", dns.TypeTLSA)
			if err != nil {
				t.Fatal(err)
			}
			if a.Secure != c.secure || len(a.Records) != 1 || a.NXDomain {
				t.Errorf("Query = %+v, want Secure=%v and one record", a, c.secure)
			}
		})
	}
	srv.SetAD(true)
	a, err := New(Options{Server: srv.Addr}).Query(t.Context(), "nothing.example.org", dns.TypeTLSA)
	if err != nil || !a.NXDomain || len(a.Records) != 0 {
		t.Errorf("Query of a missing name = %+v, %v; want NXDomain", a, err)
	}
	srv.ServFail("bogus.example.org")
	if _, err := New(Options{Server: srv.Addr}).Query(t.Context(), "x.bogus.example.org", dns.TypeTLSA); err == nil {
		t.Error("SERVFAIL (what a validating resolver answers for bogus data) was not an error")
	}
}

func TestResolvConfTrust(t *testing.T) {
	for _, c := range []struct {
		name, conf string
		servers    []string
		trusted    map[string]bool
	}{
		{"loopback with trust-ad", "nameserver 127.0.0.53\noptions edns0 trust-ad\n",
			[]string{"127.0.0.53:53"}, map[string]bool{"127.0.0.53:53": true}},
		{"loopback without trust-ad", "nameserver 127.0.0.53\n",
			[]string{"127.0.0.53:53"}, map[string]bool{"127.0.0.53:53": false}},
		{"remote with trust-ad", "# a comment\nnameserver 192.0.2.53\nnameserver ::1\noptions trust-ad\n",
			[]string{"192.0.2.53:53", "[::1]:53"}, map[string]bool{"192.0.2.53:53": false, "[::1]:53": true}},
		{"no nameserver", "search example.org\n",
			[]string{"127.0.0.1:53", "[::1]:53"}, map[string]bool{"127.0.0.1:53": false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(c.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			servers, trusted, err := New(Options{ResolvConf: path}).servers()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(servers, c.servers) {
				t.Errorf("servers = %v, want %v", servers, c.servers)
			}
			for s, want := range c.trusted {
				if got := trusted(s); got != want {
					t.Errorf("trusted(%s) = %v, want %v", s, got, want)
				}
			}
		})
	}
	if _, err := New(Options{ResolvConf: filepath.Join(t.TempDir(), "missing")}).Query(t.Context(), "x.example", dns.TypeA); err == nil {
		t.Error("Query with an unreadable resolv.conf did not fail")
	}
}

// TestNamesAreAbsolute: every name asked is taken as absolute, never
// completed with resolv.conf's search domains (a missing
// _dmarc.nx.example must not find _dmarc.nx.example.corp.test's policy,
// nor an MX or an address under corp.test), whether [dns] server is set
// or the system's resolver (the resolv.conf's nameserver, a fake server on
// port 53 of an address of this process's own) is asked.
func TestNamesAreAbsolute(t *testing.T) {
	ip := fmt.Sprintf("127.0.%d.%d", os.Getpid()>>8&0xff, os.Getpid()&0xff)
	if !mailtest.WithResolvConf(t, "nameserver "+ip+"\nsearch corp.test\noptions ndots:5 attempts:1 timeout:2\n") {
		return
	}
	conf, err := readResolvConf("/etc/resolv.conf")
	if err != nil || len(conf.servers) != 1 {
		t.Fatalf("resolv.conf: %v %v", conf.servers, err)
	}
	system := fakedns.StartAt(t, conf.servers[0])
	own := fakedns.Start(t)
	for _, c := range []struct {
		name string
		srv  *fakedns.Server
		r    *Resolver
	}{
		{"[dns] server", own, New(Options{Server: own.Addr})},
		{"system resolver", system, New(Options{})},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.srv.Add(t, "nx.example.corp.test. 60 IN MX 10 mx.corp.test.", "mx.nx.example.corp.test. 60 IN A 192.0.2.1")
			c.srv.AddTXT("_dmarc.nx.example.corp.test", "v=DMARC1; p=reject")
			ctx := t.Context()
			if txt, err := c.r.LookupTXT(ctx, "_dmarc.nx.example"); !IsNotFound(err) {
				t.Errorf("LookupTXT(_dmarc.nx.example) = %q, %v; want not found", txt, err)
			}
			if mx, err := c.r.LookupMX(ctx, "nx.example"); !IsNotFound(err) {
				t.Errorf("LookupMX(nx.example) = %v, %v; want not found", mx, err)
			}
			if ips, err := c.r.LookupIPAddr(ctx, "mx.nx.example"); !IsNotFound(err) {
				t.Errorf("LookupIPAddr(mx.nx.example) = %v, %v; want not found", ips, err)
			}
			for _, name := range []string{"_dmarc.nx.example.corp.test", "nx.example.corp.test", "mx.nx.example.corp.test"} {
				if n := c.srv.QueriesFor(name); n != 0 {
					t.Errorf("asked %d times for %s: the search domain was appended", n, name)
				}
			}
			if c.srv.QueriesFor("_dmarc.nx.example") == 0 {
				t.Error("the fake server was never asked")
			}
		})
	}
}
