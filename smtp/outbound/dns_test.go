package outbound

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startDNS serves a small zone on 127.0.0.1 (UDP) through miekg/dns, so
// that the real resolver (NewResolver, as [relay] dns configures it) is
// tested without the internet. Names under slow.example are never
// answered; servfail.example fails.
func startDNS(t *testing.T, records ...string) string {
	t.Helper()
	zone := map[string][]dns.RR{}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		zone[strings.ToLower(rr.Header().Name)] = append(zone[strings.ToLower(rr.Header().Name)], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		if strings.HasSuffix(name, "slow.example.") {
			return
		}
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		if strings.HasSuffix(name, "servfail.example.") {
			m.Rcode = dns.RcodeServerFailure
			w.WriteMsg(m)
			return
		}
		rrs, exists := zone[name]
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestRealResolverAgainstTestDNS(t *testing.T) {
	m := startMTA(t, "127.0.0.20", 0, nil)
	server := startDNS(t,
		"example.net. 60 IN MX 10 mx1.example.net.",
		"example.net. 60 IN MX 20 mx2.example.net.",
		"mx1.example.net. 60 IN A 127.0.0.21", // nothing listens there
		"mx2.example.net. 60 IN A 127.0.0.20",
		"nomx.example. 60 IN A 127.0.0.20",
		"nullmx.example. 60 IN MX 0 .",
	)
	tr := newTransport(t, NewResolver(server), m.Port, nil)
	for _, to := range []string{"b@example.net", "c@nomx.example"} {
		if err := tr.Send(t.Context(), msg("a@example.org", []string{to}, body)); err != nil {
			t.Fatalf("Send to %s: %v", to, err)
		}
	}
	if n := len(m.got()); n != 2 {
		t.Fatalf("the MTA got %d messages, want 2", n)
	}
	for _, c := range []struct {
		domain string
		perm   bool
		status string
	}{
		{"nullmx.example", true, "5.1.10"},
		{"nxdomain.example", true, "5.1.2"},
		{"servfail.example", false, "4.4.3"},
		{"slow.example", false, "4.4.3"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := tr.Send(ctx, msg("a@example.org", []string{"x@" + c.domain}, body))
		cancel()
		qe := asQueueError(t, err)
		if qe.Perm != c.perm || qe.Status != c.status {
			t.Errorf("%s: perm=%v status=%s (%v), want perm=%v %s", c.domain, qe.Perm, qe.Status, err, c.perm, c.status)
		}
	}
}
