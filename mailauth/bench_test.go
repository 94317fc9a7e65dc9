package mailauth_test

import (
	"bufio"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest/fakedns"
	"mailroom/internal/msghdr"
	"mailroom/internal/resolve"
	"mailroom/mailauth"
	"mailroom/mailauth/dkim"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCheck4K is the cost of the MX's checks per 4 KiB message
// signed with RSA 2048 and Ed25519: SPF (one TXT), both signatures'
// key lookups and verifications, DMARC (one TXT), through the real
// resolver to a fake DNS server on loopback. cpu-us/op is the process's
// CPU time, the fake DNS server's share included, so it overstates
// mailroom's own cost.
func BenchmarkCheck4K(b *testing.B) {
	rk, err := dkim.Generate(dkim.RSA)
	if err != nil {
		b.Fatal(err)
	}
	ek, _ := dkim.Generate(dkim.Ed25519)
	srv := fakedns.Start(b,
		`sender.example. 60 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.sender.example. 60 IN TXT "v=DMARC1; p=reject"`)
	keys := []dkim.Key{{Domain: "sender.example", Selector: "r", Signer: rk}, {Domain: "sender.example", Selector: "e", Signer: ek}}
	for _, k := range keys {
		rec, _ := dkim.RecordFor(k.Signer.Public())
		srv.AddTXT(dkim.RecordName(k.Selector, k.Domain), rec)
	}
	signer, _ := dkim.NewSigner(keys)
	var body strings.Builder
	body.WriteString("From: <a@sender.example>\r\nTo: alice@example.org\r\nSubject: bench\r\nDate: Mon, 6 Jul 2026 10:00:00 +0000\r\n\r\n")
	for body.Len() < 4096 {
		body.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n")
	}
	sig, err := signer.Sign(strings.NewReader(body.String()))
	if err != nil {
		b.Fatal(err)
	}
	msg := sig + body.String()
	c := mailauth.New(mailauth.Options{Resolver: resolve.New(resolve.Options{Server: srv.Addr}), AuthServID: "mx.test"})
	env := mailauth.Envelope{IP: net.ParseIP("192.0.2.1"), Helo: "client.test", MailFrom: "a@sender.example"}
	b.SetBytes(int64(len(msg)))
	start := cpuTime()
	for b.Loop() {
		h, _, _ := msghdr.Read(bufio.NewReader(strings.NewReader(msg)), 0)
		r := c.Check(b.Context(), env, h, strings.NewReader(msg))
		if r.DMARC.Result != "pass" || len(r.DKIM) != 2 || r.DKIM[0].Result != "pass" {
			b.Fatalf("dmarc=%s dkim=%+v", r.DMARC.Result, r.DKIM)
		}
		r.Header("mx.test")
	}
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
}
