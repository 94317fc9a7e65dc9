package e2e

import (
	"os"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
)

// TestSIGHUPReloadsDomains adds a domain to the configuration of a running
// server and sends SIGHUP: `user add` then takes an account in it and an
// LMTP session opened before the reload delivers to it. A configuration
// with an error is refused, logged with its line, and the domains stay;
// removing the domain makes its mail refused again. The session is never
// dropped.
func TestSIGHUPReloadsDomains(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig, "alice@example.org")
	if out, code := s.Run(t, "secret\n", "user", "add", "bob@example.net"); code == 0 || !strings.Contains(out, "SIGHUP") {
		t.Fatalf("user add in a domain not configured: exit %d\n%s", code, out)
	}
	d := mailtest.Dial(t, "tcp", s.Addr(t, "lmtp", false))
	d.Send("LHLO client.test")
	d.Expect("250 ")

	original, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(s.Config, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	withNet := strings.Replace(string(original), `domains = ["example.org"]`, `domains = ["example.org", "example.net"]`, 1)
	if withNet == string(original) {
		t.Fatal("test precondition: the configuration's domains line changed form")
	}
	write(withNet)
	hup(t, s, "configuration reloaded")
	if !strings.Contains(s.Log(), `msg="domains reloaded"`) || !strings.Contains(s.Log(), "added=[example.net]") {
		t.Errorf("the reload was not logged with the added domain:\n%s", s.Log())
	}
	if out, code := s.Run(t, "secret\n", "user", "add", "bob@example.net"); code != 0 {
		t.Fatalf("user add after the reload: exit %d\n%s", code, out)
	}
	deliver := func(rcpt, want string) {
		t.Helper()
		d.Send("MAIL FROM:<sender@remote.example>")
		d.Expect("250 ")
		d.Send("RCPT TO:<" + rcpt + ">")
		if r := d.Reply(); !strings.HasPrefix(r[len(r)-1], want) {
			t.Fatalf("RCPT TO:<%s> on the session opened before the reload: %q, want %s", rcpt, r, want)
		}
		if want != "250" {
			d.Send("RSET")
			d.Expect("250 ")
			return
		}
		d.Send("DATA")
		d.Expect("354 ")
		d.SendRaw("Subject: after the reload\r\n\r\nhello\r\n.\r\n")
		d.Expect("250 ")
	}
	deliver("bob@example.net", "250")
	if n := len(mailtest.Messages(t, mailRoot(s), "example.net/bob")); n != 1 {
		t.Errorf("bob@example.net has %d messages, want 1", n)
	}

	// A broken file: refused, logged with its line, the domains kept.
	write(strings.Replace(withNet, "max_message_bytes = 100000", `max_message_bytes = "many"`, 1))
	hup(t, s, "configuration not reloaded")
	if !strings.Contains(s.Log(), "max_message_bytes: expected an integer") {
		t.Errorf("the refusal does not say what is wrong:\n%s", s.Log())
	}
	deliver("bob@example.net", "250")

	// A key that needs a restart is named as such.
	write(strings.Replace(withNet, "max_message_bytes = 100000", "max_message_bytes = 200000", 1))
	hup(t, s, "configuration reloaded")
	if !strings.Contains(s.Log(), "takes effect at the next start") || !strings.Contains(s.Log(), "keys=limits") {
		t.Errorf("a change that needs a restart was not logged as such:\n%s", s.Log())
	}

	// The domain removed: its mail is refused again; and limits are
	// back to what runs, so no restart is asked for.
	write(string(original))
	warnings := strings.Count(s.Log(), "takes effect at the next start")
	hup(t, s, "configuration reloaded") // logged last
	if !strings.Contains(s.Log(), "removed=[example.net]") {
		t.Errorf("the removed domain was not logged")
	}
	if strings.Count(s.Log(), "takes effect at the next start") != warnings {
		t.Errorf("a restart was asked for though the file is back to what runs")
	}
	deliver("bob@example.net", "5")
	deliver("alice@example.org", "250")
}
