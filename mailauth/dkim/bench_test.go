package dkim_test

import (
	"bufio"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"syscall"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailroom/internal/msghdr"
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
// Next to each key set, the floors it is made of, measured in the same
// run: go-msgauth/ALGO is go-msgauth's Signer handed the whole message
// in one Write (what mailroom's layer adds is the difference), and
// crypto/ALGO the bare signature over a SHA-256 digest.
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
	msg := message4K()
	h, _, err := msghdr.Read(bufio.NewReader(strings.NewReader(msg)), 0)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		key  crypto.Signer
		hash crypto.Hash
	}{{"rsa2048", r, crypto.SHA256}, {"ed25519", e, 0}} {
		b.Run("go-msgauth/"+c.name, func(b *testing.B) {
			start := cpuTime()
			for b.Loop() {
				sg, err := msgdkim.NewSigner(&msgdkim.SignOptions{
					Domain: "example.org", Selector: "s", Signer: c.key, Hash: crypto.SHA256,
					HeaderCanonicalization: msgdkim.CanonicalizationRelaxed, BodyCanonicalization: msgdkim.CanonicalizationRelaxed,
					HeaderKeys: dkim.SignedHeaders(h),
				})
				if err != nil {
					b.Fatal(err)
				}
				sg.Write([]byte(msg))
				if err := sg.Close(); err != nil {
					b.Fatal(err)
				}
				_ = sg.Signature()
			}
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
		})
		b.Run("crypto/"+c.name, func(b *testing.B) {
			digest := sha256.Sum256([]byte(msg))
			start := cpuTime()
			for b.Loop() {
				if _, err := c.key.Sign(rand.Reader, digest[:], c.hash); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}
