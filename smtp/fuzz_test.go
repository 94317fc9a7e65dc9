package smtp_test

import (
	"log/slog"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/smtp"
)

// FuzzSession feeds whole client sessions to the MX and submission
// servers: whatever arrives, no handler may panic (go-smtp would recover
// and log it) and the server must go on answering.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\r\nMAIL FROM:<alice@example.org> SIZE=10\r\nRCPT TO:<x@elsewhere.example>\r\nBDAT 5 LAST\r\nhello",
		"HELO \x00\r\nMAIL FROM:<>\r\nRCPT TO:<\"a b\"@example.org>\r\nRSET\r\nVRFY x\r\nAUTH LOGIN\r\n*\r\n",
		"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n\n.\n\r\n.\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	env := mailenv.NewEnv(f, mailenv.EnvOptions{Users: []string{"alice@example.org"}, MaxMessageBytes: 4096})
	var log mailtest.LockedBuffer
	servers := map[bool]*mailtest.PipeListener{}
	for _, submission := range []bool{false, true} {
		role := smtp.MX
		if submission {
			role = smtp.Submission
		}
		srv := smtp.New(smtp.Options{Role: role, Hostname: "mx.test", Deliverer: env.MDA, Accounts: env.Accounts,
			Queue: &fakeQueue{}, MaxMessageBytes: 4096, IdleTimeout: 2 * time.Second, AuthFailureDelay: -1,
			Logger: slog.New(slog.NewTextHandler(&log, nil)), Panics: mailtest.Panics})
		l := mailtest.NewPipeListener()
		go srv.Serve(l)
		f.Cleanup(func() { srv.Close() })
		servers[submission] = l
	}
	f.Fuzz(func(t *testing.T, session []byte, submission bool) {
		mailtest.RunSession(t, servers[submission], &log, session)
	})
}
