package dkim_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/mailauth/dkim"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// message4K is a 4 KiB message as bench/smtp.sh sends.
func message4K() string {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: bench\r\nDate: Mon, 6 Jul 2026 10:00:00 +0000\r\nMessage-ID: <b@example.org>\r\n\r\n")
	for b.Len() < 4096 {
		b.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n")
	}
	return b.String()
}

// BenchmarkSign4K is the signing cost per submitted 4 KiB message
// (bench/smtp.sh AUTH=1 prints it): cpu-us/op is the process's CPU time.
func BenchmarkSign4K(b *testing.B) {
	r, e := testKeys(b)
	for _, c := range []struct {
		name string
		keys []dkim.Key
	}{
		{"rsa2048", []dkim.Key{{Domain: "example.org", Selector: "r", Signer: r}}},
		{"ed25519", []dkim.Key{{Domain: "example.org", Selector: "e", Signer: e}}},
		{"rsa2048+ed25519", []dkim.Key{{Domain: "example.org", Selector: "r", Signer: r}, {Domain: "example.org", Selector: "e", Signer: e}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := dkim.NewSigner(c.keys)
			if err != nil {
				b.Fatal(err)
			}
			msg := message4K()
			b.SetBytes(int64(len(msg)))
			start := cpuTime()
			for b.Loop() {
				if _, err := s.Sign(strings.NewReader(msg)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}
