package outbound

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/queue"
)

func newTransport(t *testing.T, dns Resolver, port int, adjust func(*Options)) *Transport {
	o := Options{Hostname: "mailroom.test", Resolver: dns, Port: port,
		DialTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, DataTimeout: 2 * time.Second}
	if adjust != nil {
		adjust(&o)
	}
	tr := New(o)
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestMXPreferenceAndFallback(t *testing.T) {
	// mx1 (preference 10) refuses connections on both its addresses,
	// mx2 (20) takes the mail, mx3 (30) must not be reached.
	good := startMTA(t, "127.0.0.3", 0, nil)
	port := good.Port
	last := startMTA(t, "127.0.0.4", port, nil)
	dns := &fakeDNS{
		mx: map[string][]*net.MX{"example.net": {
			{Host: "mx3.example.net.", Pref: 30}, {Host: "mx1.example.net.", Pref: 10}, {Host: "mx2.example.net.", Pref: 20}}},
		ips: map[string][]string{
			"mx1.example.net": {"::1", "127.0.0.2"}, // nothing listens on this port there
			"mx2.example.net": {"127.0.0.3"},
			"mx3.example.net": {"127.0.0.4"},
		},
	}
	tr := newTransport(t, dns, port, nil)
	if err := tr.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := good.got(); len(got) != 1 || got[0].Helo != "mailroom.test" || got[0].From != "a@example.org" {
		t.Fatalf("mx2 got %+v", got)
	}
	if len(last.got()) != 0 {
		t.Errorf("mx3 was used although mx2 took the message")
	}
	if want := strings.ReplaceAll(body, "\n", "\r\n"); good.got()[0].Data != want {
		t.Errorf("data %q, want %q", good.got()[0].Data, want)
	}
}

func TestEqualPreferenceIsShuffled(t *testing.T) {
	a := startMTA(t, "127.0.0.5", 0, nil)
	b := startMTA(t, "127.0.0.6", a.Port, nil)
	dns := &fakeDNS{
		mx:  map[string][]*net.MX{"example.net": {{Host: "a.example.net", Pref: 5}, {Host: "b.example.net", Pref: 5}}},
		ips: map[string][]string{"a.example.net": {"127.0.0.5"}, "b.example.net": {"127.0.0.6"}},
	}
	tr := newTransport(t, dns, a.Port, nil)
	for range 40 {
		if err := tr.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body)); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.got()) == 0 || len(b.got()) == 0 {
		t.Errorf("equal-preference hosts got %d and %d of 40: not shuffled", len(a.got()), len(b.got()))
	}
}

func TestImplicitMXAndDNSFailures(t *testing.T) {
	m := startMTA(t, "127.0.0.7", 0, nil)
	dns := &fakeDNS{
		mx: map[string][]*net.MX{
			"nullmx.example":        {{Host: ".", Pref: 0}},
			"loop.example":          {{Host: "mailroom.test.", Pref: 5}, {Host: "backup.example.", Pref: 10}},
			"peer.example":          {{Host: "backup.example.", Pref: 5}, {Host: "mailroom.test.", Pref: 5}},
			"xn--bcker-gra.example": {{Host: "mx.nomx.example", Pref: 5}},
		},
		ips: map[string][]string{"nomx.example": {"127.0.0.7"}, "mx.nomx.example": {"127.0.0.7"}, "backup.example": {"127.0.0.7"}},
		fails: map[string]error{
			"slow.example": &net.DNSError{Err: "i/o timeout", Name: "slow.example", IsTimeout: true, IsTemporary: true},
		},
	}
	tr := newTransport(t, dns, m.Port, nil)
	if err := tr.Send(t.Context(), msg("", []string{"x@nomx.example"}, body)); err != nil {
		t.Fatalf("no MX, an A record: %v", err)
	}
	if got := m.got(); len(got) != 1 || got[0].From != "" {
		t.Errorf("implicit MX got %+v", got)
	}
	// A U-label domain is looked up by its A-label.
	if err := tr.Send(t.Context(), msg("a@example.org", []string{"x@bäcker.example"}, body)); err != nil {
		t.Fatalf("IDN domain: %v", err)
	}
	for _, c := range []struct {
		domain string
		perm   bool
		status string
	}{
		{"nullmx.example", true, "5.1.10"},
		{"nxdomain.example", true, "5.1.2"},
		{"slow.example", false, "4.4.3"},
		{"loop.example", true, "5.4.6"}, // we are its best MX: the backup must not be used
		{"peer.example", true, "5.4.6"}, // an equal-preference peer would hand it back
	} {
		err := tr.Send(t.Context(), msg("a@example.org", []string{"x@" + c.domain}, body))
		qe := asQueueError(t, err)
		if qe.Perm != c.perm || qe.Status != c.status {
			t.Errorf("%s: perm=%v status=%s (%v), want perm=%v %s", c.domain, qe.Perm, qe.Status, err, c.perm, c.status)
		}
	}
}

func TestAllHostsRefuseIsTemporary(t *testing.T) {
	dns := &fakeDNS{mx: map[string][]*net.MX{"example.net": {{Host: "mx.example.net", Pref: 1}}},
		ips: map[string][]string{"mx.example.net": {"127.0.0.2"}}}
	tr := newTransport(t, dns, 1, nil) // nothing listens on port 1
	qe := asQueueError(t, tr.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body)))
	if qe.Perm || qe.Status != "4.4.1" || qe.RemoteMTA != "mx.example.net" {
		t.Errorf("refused connection: %+v", qe)
	}
}

func TestPerRecipientReplies(t *testing.T) {
	m := startMTA(t, "127.0.0.8", 0, func(m *fakeMTA) {
		m.rcpt = func(to string) error {
			switch {
			case strings.HasPrefix(to, "gone@"):
				return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			case strings.HasPrefix(to, "full@"):
				return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
			}
			return nil
		}
	})
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.8"}}}
	tr := newTransport(t, dns, m.Port, nil)
	to := []string{"ok@example.net", "gone@example.net", "full@example.net"}
	err := tr.Send(t.Context(), msg("a@example.org", to, body))
	var res queue.RcptErrors
	if !errors.As(err, &res) || len(res) != 3 {
		t.Fatalf("Send: %v, want RcptErrors for 3", err)
	}
	if res[0] != nil {
		t.Errorf("ok@: %v", res[0])
	}
	gone, full := asQueueError(t, res[1]), asQueueError(t, res[2])
	if !gone.Perm || gone.Status != "5.1.1" || gone.Diag != "smtp; 550 5.1.1 no such user" || gone.RemoteMTA != "example.net" {
		t.Errorf("gone@: %+v", gone)
	}
	if full.Perm || full.Status != "4.2.2" {
		t.Errorf("full@: %+v", full)
	}
	if got := m.got(); len(got) != 1 || len(got[0].To) != 1 || got[0].To[0] != "ok@example.net" {
		t.Errorf("the MTA got %+v; want one transaction for ok@ only", got)
	}
}

func TestOpportunisticTLS(t *testing.T) {
	cert, _ := testCert(t)
	withTLS := startMTA(t, "127.0.0.9", 0, func(m *fakeMTA) {
		m.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	without := startMTA(t, "127.0.0.10", withTLS.Port, nil)
	dns := &fakeDNS{ips: map[string][]string{"tls.example": {"127.0.0.9"}, "clear.example": {"127.0.0.10"}}}
	tr := newTransport(t, dns, withTLS.Port, nil)
	for _, d := range []string{"tls.example", "clear.example"} {
		if err := tr.Send(t.Context(), msg("a@example.org", []string{"b@" + d}, body)); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	if got := withTLS.got(); len(got) != 1 || !got[0].TLS || got[0].Helo != "mailroom.test" {
		t.Errorf("peer offering STARTTLS: %+v, want the message over TLS after EHLO mailroom.test", got)
	}
	if got := without.got(); len(got) != 1 || got[0].TLS {
		t.Errorf("peer without STARTTLS: %+v, want the message in clear", got)
	}
}

func TestBrokenTLSFallsBackToClear(t *testing.T) {
	// A peer that offers STARTTLS and then fails the handshake (here: it
	// has no certificate).
	m := startMTA(t, "127.0.0.11", 0, func(m *fakeMTA) { m.srv.TLSConfig = &tls.Config{} })
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.11"}}}
	if err := newTransport(t, dns, m.Port, nil).Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := m.got(); len(got) != 1 || got[0].TLS {
		t.Errorf("got %+v, want one message in clear", got)
	}
}

// TestSmarthostTLSNeverDowngraded: a smarthost whose certificate does not
// verify gets nothing, rather than the message in clear text.
func TestSmarthostTLSNeverDowngraded(t *testing.T) {
	cert, _ := testCert(t)
	m := startMTA(t, "127.0.0.1", 0, func(m *fakeMTA) {
		m.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	tr := newTransport(t, &fakeDNS{}, 0, func(o *Options) {
		o.Smarthost = m.Addr
		o.TLSConfig = &tls.Config{} // system roots: the test certificate fails
	})
	err := tr.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body))
	if err == nil {
		t.Fatal("sent through a smarthost whose certificate does not verify")
	}
	if got := m.got(); len(got) != 0 {
		t.Fatalf("the smarthost got %d messages in clear text", len(got))
	}
}

func TestExtensions(t *testing.T) {
	m := startMTA(t, "127.0.0.12", 0, func(m *fakeMTA) { m.srv.MaxMessageBytes = 200 })
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.12"}, "bäcker.example": {"127.0.0.12"}}}
	tr := newTransport(t, dns, m.Port, nil)
	big := msg("a@example.org", []string{"b@example.net"}, body+strings.Repeat("x", 300)+"\n")
	qe := asQueueError(t, tr.Send(t.Context(), big))
	if !qe.Perm || qe.Status != "5.3.4" || !strings.Contains(qe.Diag, "limit of 200") {
		t.Errorf("too big: %+v", qe)
	}
	utf := msg("jöran@example.org", []string{"b@example.net"}, body)
	if err := tr.Send(t.Context(), utf); err != nil {
		t.Fatalf("UTF-8 sender to an SMTPUTF8 peer: %v", err)
	}
	got := m.got()
	if len(got) != 1 || !got[0].Opts.UTF8 || got[0].Opts.Size != utf.Size {
		t.Errorf("got %+v, want SMTPUTF8 and SIZE=%d", got, utf.Size)
	}
}

// scripted answers like an SMTP server with the given EHLO keywords,
// accepting everything, and calls onData with the connection after the
// 354 reply.
func scripted(ehlo []string, onData func(c net.Conn, r *bufio.Reader)) func(c net.Conn) {
	return func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		fmt.Fprintf(c, "220 scripted ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				fmt.Fprintf(c, "250-scripted\r\n")
				for _, e := range ehlo {
					fmt.Fprintf(c, "250-%s\r\n", e)
				}
				fmt.Fprintf(c, "250 HELP\r\n")
			case cmd == "DATA":
				fmt.Fprintf(c, "354 go ahead\r\n")
				if onData != nil {
					onData(c, r)
					return
				}
				for {
					l, err := r.ReadString('\n')
					if err != nil || l == ".\r\n" {
						break
					}
				}
				fmt.Fprintf(c, "250 2.0.0 ok\r\n")
			case cmd == "QUIT":
				fmt.Fprintf(c, "221 bye\r\n")
				return
			default:
				fmt.Fprintf(c, "250 ok\r\n")
			}
		}
	}
}

func TestPeerLacksNeededExtension(t *testing.T) {
	addr := rawServer(t, "127.0.0.13", 0, scripted(nil, nil)) // no 8BITMIME, no SMTPUTF8
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.13"}}}
	tr := newTransport(t, dns, p, nil)
	for _, c := range []struct {
		m      *queue.Message
		status string
		reason string
	}{
		{msg("a@example.org", []string{"b@example.net"}, "Subject: x\n\nd\xc3\xa9j\xc3\xa0\n"), "5.6.3", "8BITMIME"},
		{msg("a@example.org", []string{"jöran@example.net"}, body), "5.6.7", "SMTPUTF8"},
	} {
		qe := asQueueError(t, tr.Send(t.Context(), c.m))
		if !qe.Perm || qe.Status != c.status || !strings.Contains(qe.Error(), c.reason) {
			t.Errorf("want a permanent %s naming %s, got %+v (%v)", c.status, c.reason, qe, qe)
		}
	}
	// Plain ASCII goes through the same peer.
	if err := tr.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body)); err != nil {
		t.Errorf("ASCII message: %v", err)
	}
}

func TestBadPeers(t *testing.T) {
	cases := []struct {
		name   string
		handle func(c net.Conn)
	}{
		{"garbage greeting", func(c net.Conn) { fmt.Fprintf(c, "HELLO I am not SMTP\r\n"); io.Copy(io.Discard, c) }},
		{"5xx greeting", func(c net.Conn) { fmt.Fprintf(c, "554 go away\r\n"); io.Copy(io.Discard, c) }},
		{"greeting one byte a second", func(c net.Conn) {
			for _, b := range []byte("220 slow.example ESMTP\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}},
		{"reply that never ends", func(c net.Conn) {
			fmt.Fprintf(c, "220 x\r\n")
			bufio.NewReader(c).ReadString('\n')
			for {
				if _, err := fmt.Fprintf(c, "250-more\r\n"); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}},
		{"silence", func(c net.Conn) { io.Copy(io.Discard, c) }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ip := fmt.Sprintf("127.0.1.%d", i+1)
			addr := rawServer(t, ip, 0, c.handle)
			_, port, _ := net.SplitHostPort(addr)
			var p int
			fmt.Sscan(port, &p)
			dns := &fakeDNS{ips: map[string][]string{"example.net": {ip}}}
			tr := newTransport(t, dns, p, func(o *Options) { o.CommandTimeout = 500 * time.Millisecond })
			start := time.Now()
			err := tr.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body))
			qe := asQueueError(t, err)
			if qe.Perm {
				t.Errorf("permanent error from a broken peer: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v; the command timeout is 500ms", d)
			}
		})
	}
}

func TestDropDuringDataIsTemporaryForAll(t *testing.T) {
	addr := rawServer(t, "127.0.0.14", 0, scripted([]string{"8BITMIME"}, func(c net.Conn, r *bufio.Reader) {
		r.ReadString('\n') // one line of the message, then hang up
	}))
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.14"}}}
	err := newTransport(t, dns, p, nil).Send(t.Context(), msg("a@example.org", []string{"b@example.net", "c@example.net"}, body))
	var res queue.RcptErrors
	if !errors.As(err, &res) || len(res) != 2 {
		t.Fatalf("Send: %v", err)
	}
	for i, e := range res {
		if qe := asQueueError(t, e); qe.Perm {
			t.Errorf("recipient %d: permanent %v", i, e)
		}
	}
}

func TestSmarthostAuthOverTLS(t *testing.T) {
	cert, pool := testCert(t)
	m := startMTA(t, "127.0.0.1", 0, func(m *fakeMTA) {
		m.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		m.users = map[string]string{"mailroom": "s3cret"}
	})
	tr := newTransport(t, &fakeDNS{}, 0, func(o *Options) {
		o.Smarthost = m.Addr
		o.Username, o.Password = "mailroom", "s3cret"
		o.TLSConfig = &tls.Config{RootCAs: pool}
	})
	// Two domains, one smarthost.
	for _, to := range []string{"b@example.net", "c@elsewhere.example"} {
		if err := tr.Send(t.Context(), msg("a@example.org", []string{to}, body)); err != nil {
			t.Fatalf("Send to %s: %v", to, err)
		}
	}
	got := m.got()
	if len(got) != 2 || !got[0].TLS || got[0].User != "mailroom" {
		t.Fatalf("smarthost got %+v, want two messages over TLS from user mailroom", got)
	}

	bad := newTransport(t, &fakeDNS{}, 0, func(o *Options) {
		o.Smarthost = m.Addr
		o.Username, o.Password = "mailroom", "wrong"
		o.TLSConfig = &tls.Config{RootCAs: pool}
	})
	qe := asQueueError(t, bad.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body)))
	if qe.Perm {
		t.Errorf("a refused password bounces mail: %+v", qe)
	}
}

func TestSmarthostImplicitTLS(t *testing.T) {
	cert, pool := testCert(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMTA{}
	m.srv = gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		return &fakeSession{m: m, c: c}, nil
	}))
	go m.srv.Serve(l)
	t.Cleanup(func() { m.srv.Close() })
	tr := newTransport(t, &fakeDNS{}, 0, func(o *Options) {
		o.Smarthost = l.Addr().String()
		o.ImplicitTLS = true
		o.TLSConfig = &tls.Config{RootCAs: pool}
	})
	if err := tr.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body)); err != nil {
		t.Fatal(err)
	}
	if got := m.got(); len(got) != 1 || !got[0].TLS {
		t.Errorf("got %+v", got)
	}
}

func TestSessionsAreReused(t *testing.T) {
	var sessions atomic.Int32
	m := startMTA(t, "127.0.0.15", 0, nil)
	inner := m.srv.Backend
	m.srv.Backend = gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		sessions.Add(1)
		return inner.NewSession(c)
	})
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.15"}}}
	tr := newTransport(t, dns, m.Port, nil)
	for i := range 5 {
		if err := tr.Send(t.Context(), msg("a@example.org", []string{fmt.Sprintf("r%d@example.net", i)}, body)); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.got()) != 5 || sessions.Load() != 1 {
		t.Errorf("%d messages over %d sessions, want 5 over 1", len(m.got()), sessions.Load())
	}
}

func TestStaleCachedSessionIsReplaced(t *testing.T) {
	// The peer takes one message per session and then hangs up without
	// a word, as a server whose idle timeout struck would.
	var delivered atomic.Int32
	addr := rawServer(t, "127.0.0.16", 0, scripted([]string{"8BITMIME"}, func(c net.Conn, r *bufio.Reader) {
		for {
			l, err := r.ReadString('\n')
			if err != nil || l == ".\r\n" {
				break
			}
		}
		delivered.Add(1)
		fmt.Fprintf(c, "250 2.0.0 ok\r\n")
	}))
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	dns := &fakeDNS{ips: map[string][]string{"example.net": {"127.0.0.16"}}}
	tr := newTransport(t, dns, p, nil)
	for range 3 {
		if err := tr.Send(t.Context(), msg("a@example.org", []string{"b@example.net"}, body)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	if delivered.Load() != 3 {
		t.Errorf("delivered %d, want 3", delivered.Load())
	}
}
