package lmtp_test

import (
	"log/slog"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/lmtp"
)

// FuzzSession feeds whole client sessions to the LMTP server: whatever
// arrives, no handler may panic (go-smtp would recover and log it) and
// every session is greeted and answered.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"LHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
		"LHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nBDAT 3\r\nabcBDAT 2 LAST\r\nde",
		"LHLO c\r\nMAIL FROM:<s@r>\r\nRCPT TO:<alice@example.org>\r\nBDAT 5\r\nabcdeRSET\r\nBDAT 1 LAST\r\nx",
		"MAIL FROM:<a@b>\r\nLHLO \x00\r\nRCPT TO:<../x@example.org>\r\nDATA\r\n",
	} {
		f.Add([]byte(s))
	}
	env := mailenv.NewEnv(f, mailenv.EnvOptions{Users: []string{"alice@example.org"}, MaxMessageBytes: 4096})
	var log mailtest.LockedBuffer
	srv := lmtp.New(lmtp.Options{Hostname: "mx.test", Deliverer: env.MDA, MaxMessageBytes: 4096,
		ReadTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(&log, nil)), Panics: mailtest.Panics})
	l := mailtest.NewPipeListener()
	go srv.Serve(l)
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, session []byte) {
		mailtest.RunSession(t, l, &log, session)
	})
}
