// Package fakedns is a DNS server for tests: a small zone served on a
// loopback address (UDP and TCP, miekg/dns), so that SPF, DKIM, DMARC and
// MX lookups are tested through the real resolver without the internet
// and without the system's resolvers. It lives apart from mailtest so
// that packages below smtp can use it in their own tests without an
// import cycle.
package fakedns

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a running fake DNS server.
type Server struct {
	// Addr is "127.0.0.1:port", for [dns] server and resolve.Options.
	Addr string

	mu      sync.Mutex
	zone    map[string][]dns.RR // lower-case FQDN -> records
	hang    []string            // suffixes never answered
	fail    []string            // suffixes answered SERVFAIL
	delay   time.Duration
	ad      bool
	queries atomic.Int64
	names   map[string]int // lower-case FQDN -> queries for it
}

// Start serves records (zone-file lines such as "example.org. 60 IN MX
// 10 mx.example.org.") on 127.0.0.1 at a port of its own, until cleanup.
func Start(t testing.TB, records ...string) *Server {
	t.Helper()
	return StartAt(t, "127.0.0.1:0", records...)
}

// StartAt is Start on a given address: programs that can only ask port 53
// of the addresses in resolv.conf (libc's resolver, as opendkim-testmsg
// uses) need "127.x.y.z:53", which takes root.
func StartAt(t testing.TB, addr string, records ...string) *Server {
	t.Helper()
	s := &Server{zone: map[string][]dns.RR{}, names: map[string]int{}}
	s.Add(t, records...)
	var pc net.PacketConn
	var l net.Listener
	var err error
	// The same port for UDP and TCP: with port 0 the UDP port may be
	// taken for TCP by someone else, so try a few.
	for range 20 {
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			t.Fatalf("fakedns: %v", err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if !strings.HasSuffix(addr, ":0") {
			break
		}
	}
	if err != nil {
		t.Fatalf("fakedns: %v", err)
	}
	s.Addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)}
	tcp := &dns.Server{Listener: l, Handler: dns.HandlerFunc(s.serve)}
	var wg sync.WaitGroup
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { srv.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return s
}

// Add puts more records in the zone. A TXT value longer than 255 octets
// may be written as one quoted string: it is split as DNS requires.
func (s *Server) Add(t testing.TB, records ...string) {
	t.Helper()
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("fakedns: record %q: %v", r, err)
		}
		if txt, ok := rr.(*dns.TXT); ok {
			txt.Txt = splitTXT(txt.Txt)
		}
		s.addRR(rr)
	}
}

// AddTXT adds a TXT record for name whose value is txt, split into
// strings of at most 255 octets (as opendkim-genkey's output is).
func (s *Server) AddTXT(name, txt string) {
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
		Txt: splitTXT([]string{txt})}
	s.addRR(rr)
}

func (s *Server) addRR(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	s.zone[name] = append(s.zone[name], rr)
}

// Remove drops every record of name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zone, strings.ToLower(dns.Fqdn(name)))
}

func splitTXT(in []string) []string {
	var out []string
	for _, v := range in {
		for len(v) > 255 {
			out = append(out, v[:255])
			v = v[255:]
		}
		out = append(out, v)
	}
	return out
}

// Hang makes names ending in suffix go unanswered, like a dead server.
func (s *Server) Hang(suffix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = append(s.hang, strings.ToLower(dns.Fqdn(suffix)))
}

// ServFail makes names ending in suffix fail with SERVFAIL.
func (s *Server) ServFail(suffix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, strings.ToLower(dns.Fqdn(suffix)))
}

// Delay makes every answer wait d.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetAD sets the AD (authenticated data) bit in answers, as a validating
// resolver does for DNSSEC-signed zones.
func (s *Server) SetAD(ad bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ad = ad
}

// Queries is how many questions the server has been asked.
func (s *Server) Queries() int { return int(s.queries.Load()) }

// QueriesFor is how many questions about name the server has been asked.
func (s *Server) QueriesFor(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[strings.ToLower(dns.Fqdn(name))]
}

func hasSuffix(name string, suffixes []string) bool {
	for _, s := range suffixes {
		if name == s || strings.HasSuffix(name, "."+s) {
			return true
		}
	}
	return false
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.names[name]++
	hang, fail, delay, ad := hasSuffix(name, s.hang), hasSuffix(name, s.fail), s.delay, s.ad
	var answer []dns.RR
	rrs, exists := s.zone[name]
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
			answer = append(answer, dns.Copy(rr))
		}
	}
	// Follow one level of CNAME within the zone, as a recursive
	// resolver would.
	for _, rr := range answer {
		if c, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME {
			for _, t := range s.zone[strings.ToLower(c.Target)] {
				if t.Header().Rrtype == q.Qtype {
					answer = append(answer, dns.Copy(t))
				}
			}
		}
	}
	if !exists {
		// A name with records below it exists (RFC 8020): NODATA.
		for n := range s.zone {
			if strings.HasSuffix(n, "."+name) {
				exists = true
				break
			}
		}
	}
	s.mu.Unlock()
	if hang {
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.AuthenticatedData = ad
	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	case !exists:
		m.Rcode = dns.RcodeNameError
	default:
		m.Answer = answer
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
			m.SetEdns0(o.UDPSize(), false)
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}
