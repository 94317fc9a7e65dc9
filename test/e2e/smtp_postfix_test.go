package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// startPostfixToMX starts a private Postfix (startPostfix) that sends mail
// for example.org over SMTP to mx ("127.0.0.1:port") as a real internet
// peer would reach an MX: the smtp transport, not lmtp, with opportunistic
// STARTTLS (smtp_tls_security_level = may) and TLS logging.
func startPostfixToMX(t *testing.T, mx string) *postfix {
	t.Helper()
	p := startPostfix(t, "smtp:["+strings.Replace(mx, ":", "]:", 1))
	appendFile(t, filepath.Join(p.etc, "main.cf"), "smtp_tls_security_level = may\nsmtp_tls_loglevel = 1\n")
	// Without tlsmgr (startPostfix's master.cf has no TLS) smtp(8) logs
	// "no entropy for TLS key generation: disabling TLS support".
	appendFile(t, filepath.Join(p.etc, "master.cf"), "tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n")
	// No smtp(8) process has run yet, but reload so that the master
	// starts tlsmgr and every daemon reads the new settings.
	if out, err := p.cmd("reload"); err != nil {
		t.Fatalf("postfix reload: %v\n%s\nlog:\n%s", err, out, p.Log())
	}
	return p
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestSMTPPostfixToMX puts a private Postfix in front of mailroom's MX
// listener, as the internet's MTAs are: a message for bob and for an
// unknown user arrives for bob over STARTTLS (Received: says ESMTPS) with
// its body intact, the unknown user is refused at RCPT and bounced by
// Postfix back to alice through the same MX, and a message over the
// announced SIZE is bounced by Postfix with 5.3.4 instead of retried.
func TestSMTPPostfixToMX(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	mailtest.NeedTool(t, "postfix")
	s := startSMTPServer(t, "", "alice@example.org", "bob@example.org")
	p := startPostfixToMX(t, s.MX)
	root := mailRoot(s.Server)
	start := time.Now()

	p.submit(t, crlf(postfixMessage), "alice@example.org", "bob@example.org", "nobody@example.org")
	got := waitDelivered(t, p, root, map[string]int{"example.org/bob": 1, "example.org/alice": 1}, nil)

	msg := splitTrace(t, got["example.org/bob"][0].Data)
	if msg.ReturnPath != "<alice@example.org>" || msg.DeliveredTo != "bob@example.org" {
		t.Errorf("Return-Path: %s, Delivered-To: %s", msg.ReturnPath, msg.DeliveredTo)
	}
	r := checkSMTPReceived(t, msg.Received, "ESMTPS", "bob@example.org", start)
	if r.Helo != "postfix.test" {
		t.Errorf("Received: from %s, want postfix.test (Postfix's EHLO)", r.Helo)
	}
	if !strings.HasPrefix(msg.Rest, "Received: from client.test (localhost [127.0.0.1])\n\tby postfix.test (Postfix) with ESMTP id ") {
		t.Errorf("Postfix's Received: does not follow mailroom's:\n%s", msg.Rest)
	}
	if !strings.Contains(msg.Rest, "\nSubject: through postfix\n") || !strings.HasSuffix(msg.Rest, "\n\n"+postfixBody) {
		t.Errorf("message changed on the way: got\n%q\nwant it to end with\n%q", msg.Rest, "\n\n"+postfixBody)
	}
	if !p.logged("TLS connection established to 127.0.0.1[127.0.0.1]:") {
		t.Errorf("Postfix's log does not show a TLS connection to mailroom")
	}
	if !p.logged("to=<bob@example.org>", "relay=127.0.0.1[127.0.0.1]:", "status=sent (250 ") {
		t.Errorf("Postfix's log does not show bob@example.org sent to mailroom")
	}

	bounces, others := splitBounce(t, got["example.org/alice"])
	if len(bounces) != 1 || len(others) != 0 {
		t.Fatalf("alice got %d bounces and %d other messages, want one bounce", len(bounces), len(others))
	}
	checkDSN(t, bounces[0], "nobody@example.org", "5.1.1")
	if !strings.Contains(bounces[0], "550 5.1.1") {
		t.Errorf("bounce does not quote mailroom's 550 5.1.1:\n%s", bounces[0])
	}
	checkSMTPReceived(t, splitTrace(t, bounces[0]).Received, "ESMTPS", "alice@example.org", start)
	if !p.logged("to=<nobody@example.org>", "relay=127.0.0.1[127.0.0.1]:", "dsn=5.1.1, status=bounced") {
		t.Errorf("Postfix's log does not show nobody@example.org refused by mailroom")
	}
	noHome(t, s.Server, "example.org/nobody")

	// Too big for mailroom, not for Postfix: Postfix learns the limit
	// from EHLO's SIZE and bounces it at once with 5.3.4 rather than
	// retrying for days.
	before := homes(t, s.Server, "example.org/alice", "example.org/bob")
	big := crlf("Subject: too big for mailroom\n\n" + strings.Repeat(strings.Repeat("z", 99)+"\n", maxMessageBytes/100+100))
	p.submit(t, big, "alice@example.org", "bob@example.org")
	got = waitDelivered(t, p, root, map[string]int{"example.org/alice": 1, "example.org/bob": 0}, before)
	bounces, _ = splitBounce(t, got["example.org/alice"])
	if len(bounces) != 1 {
		t.Fatalf("alice got no bounce for the over-size message")
	}
	checkDSN(t, bounces[0], "bob@example.org", "5.3.4")
	if !p.logged("to=<bob@example.org>", "dsn=5.3.4", "exceeds size limit 100001 of server 127.0.0.1[127.0.0.1]") {
		t.Errorf("Postfix's log does not show the message bounced for mailroom's SIZE")
	}
}
