package e2e

import (
	"bufio"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// TestLoginThrottleSharedAcrossProtocols: one failed-login throttle per
// address serves IMAP and SMTP submission alike (they kept separate
// counts), so a guess that failed over IMAP holds back the next attempt
// over submission too, even with the right password, which is refused
// with a temporary error without being checked.
func TestLoginThrottleSharedAcrossProtocols(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "[submission]\nlisten = [\"127.0.0.1:0\"]\n", "alice@example.org")
	// Four failures over IMAP, each once the wait after the one before
	// is over (an attempt before then is refused, not counted; the first
	// failure costs no wait): the address then waits 4 s for alice, long
	// enough for the SMTP attempt to come inside it on a loaded machine
	// (where a login of the race-built server took 12 s at load 30).
	failures := 0
	login := func() string {
		c, err := net.Dial("tcp", s.IMAP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("IMAP greeting %q", l)
		}
		c.Write([]byte("a LOGIN alice@example.org " + smtpWrongPassword + "\r\n"))
		l, _ := br.ReadString('\n')
		return l
	}
	mailtest.Eventually(t, 2*time.Minute, "four counted IMAP failures", func() bool {
		switch l := login(); {
		case strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]"):
			failures++
		case !strings.HasPrefix(l, "a NO [UNAVAILABLE]"):
			t.Fatalf("IMAP LOGIN with a wrong password: %q", l)
		}
		return failures == 4
	})

	d := mailtest.Dial(t, "tcp", s.Addr(t, "submission", false))
	d.Send("EHLO client.test")
	d.Expect("250 ")
	d.Send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice@example.org\x00"+smtpPassword)))
	d.Expect("454 4.7.0")
	mailtest.Eventually(t, 10*time.Second, "the refusal in the log", func() bool {
		return strings.Contains(s.Log(), "event=auth_throttled")
	})
}
