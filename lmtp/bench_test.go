package lmtp_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/mailtest/mailenv"
	"mailroom/lmtp"
	"mailroom/mda"
	"mailroom/sieve/sievestore"
)

// BenchmarkDeliver delivers 4 KiB messages over parallel LMTP sessions to
// an in-process server, for profiling (bench/lmtp.sh compares with
// Dovecot). go test -bench Deliver -cpuprofile cpu.out ./lmtp
func BenchmarkDeliver(b *testing.B) {
	users := benchUsers()
	env := mailenv.NewEnv(b, mailenv.EnvOptions{Users: users})
	_, addr, _ := mailenv.StartLMTP(b, env, lmtp.Options{})
	benchDeliver(b, addr, users, "Subject: bench\r\n\r\n")
}

// BenchmarkDeliverSieve is BenchmarkDeliver with the Sieve store on, as
// bench/sieve.sh runs it: every home without a script ("none"), with
// rules50.sieve stored but not active ("inactive"), or active. For
// profiling what the script path costs per delivery:
// go test -bench DeliverSieve/script=active -cpuprofile cpu.out ./lmtp
func BenchmarkDeliverSieve(b *testing.B) {
	src, err := os.ReadFile("../sieve/testdata/bench/rules50.sieve")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"none", "inactive", "active"} {
		b.Run("script="+mode, func(b *testing.B) {
			users := benchUsers()
			var st *sievestore.Store
			env := mailenv.NewEnv(b, mailenv.EnvOptions{Users: users, Adjust: func(o *mda.Options) {
				var err error
				if st, err = sievestore.New(sievestore.Options{MailRoot: o.MailRoot}); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				o.Sieve = mda.SieveOptions{Scripts: st}
			}})
			for i := range users {
				home := fmt.Sprintf("example.org/u%d", i)
				if mode == "none" {
					break
				}
				if err := st.Put(home, "main", src); err != nil {
					b.Fatal(err)
				}
				if mode == "active" {
					if err := st.SetActive(home, "main"); err != nil {
						b.Fatal(err)
					}
				}
			}
			_, addr, _ := mailenv.StartLMTP(b, env, lmtp.Options{})
			// As bench/lmtpbench writes them: no rule of the script matches.
			benchDeliver(b, addr, users, "From: <s@remote.example>\r\nTo: <u@example.org>\r\nSubject: lmtpbench\r\n"+
				"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <lmtpbench@bench.test>\r\n\r\n")
		})
	}
}

func benchUsers() []string {
	users := make([]string, 16)
	for i := range users {
		users[i] = fmt.Sprintf("u%d@example.org", i)
	}
	return users
}

// benchDeliver sends b.N messages of header hdr and a 4 KiB body over 8
// sessions per CPU, each session to one of users.
func benchDeliver(b *testing.B, addr string, users []string, hdr string) {
	body := hdr + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4096/80)
	var n atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		rcpt := users[n.Add(1)%int64(len(users))]
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		cl := gosmtp.NewClientLMTP(c)
		defer cl.Close()
		if err := cl.Hello("bench"); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if err := cl.SendMail("s@remote.example", []string{rcpt}, strings.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
