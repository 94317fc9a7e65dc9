package smtp_test

import (
	"strings"
	"testing"
	"time"

	"mailroom/account"
	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/internal/panics"
	"mailroom/smtp"
)

// TestMain fails the run on any panic that a server of these tests
// recovered (their sessions record into mailtest.Panics).
func TestMain(m *testing.M) { mailtest.Main(m) }

// panicking is an account store whose every login panics.
type panicking struct{}

func (panicking) Authenticate(addr, password string) (account.Account, error) {
	panic("account store bug")
}

// TestPanicIsRecorded: a panic in a session, which go-smtp recovers and
// reports through its ErrorLog, is counted and logged with its stack
// (this pins the library's "panic serving" wording that smtpconn
// recognises), and the client gets a 421 rather than a dead socket.
func TestPanicIsRecorded(t *testing.T) {
	env := newEnv(t)
	var rec panics.Recorder
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, Accounts: panicking{}, Panics: &rec})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO client.test")
	d.Expect("250 ")
	d.Send("AUTH PLAIN " + plainAuth("alice@example.org", "secret"))
	d.Expect("421 4.0.0")
	mailtest.Eventually(t, 10*time.Second, "the panic is recorded", func() bool { return rec.Count() == 1 })
	if first := rec.First(); len(first) != 1 || !strings.Contains(first[0], "account store bug") || !strings.Contains(first[0], "main_test.go") {
		t.Errorf("recorded %q, want the panic with its stack", first)
	}
}
