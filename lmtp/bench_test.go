package lmtp_test

import (
	"fmt"
	"net"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/mailtest/mailenv"
	"mailroom/lmtp"
)

// BenchmarkDeliver delivers 4 KiB messages over parallel LMTP sessions to
// an in-process server, for profiling (bench/lmtp.sh compares with
// Dovecot). go test -bench Deliver -cpuprofile cpu.out ./lmtp
func BenchmarkDeliver(b *testing.B) {
	users := make([]string, 16)
	for i := range users {
		users[i] = fmt.Sprintf("u%d@example.org", i)
	}
	env := mailenv.NewEnv(b, mailenv.EnvOptions{Users: users})
	_, addr, _ := mailenv.StartLMTP(b, env, lmtp.Options{})
	body := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4096/80)
	var n int
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		n++
		rcpt := users[n%len(users)]
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
