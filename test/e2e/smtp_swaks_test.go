package e2e

import (
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// dotMessage has lines that swaks must dot-stuff on the wire and mailroom
// must unstuff, 8-bit text, and a line longer than 1000 octets (RFC 5321's
// limit; mailroom takes up to 2000).
var dotMessage = "From: Carol <carol@remote.example>\n" +
	"To: Alice <alice@example.org>\n" +
	"Subject: dots\n" +
	"Message-ID: <dots-1@remote.example>\n" +
	"Date: Wed, 25 Nov 2026 08:00:00 +0000\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	".\n" +
	"..\n" +
	".leading dot\n" +
	"...three\n" +
	" . space then dot\n" +
	"Grüße\n" +
	strings.Repeat("0123456789", 150) + "\n" +
	"last line\n"

// utf8Message goes to jösé@example.org: an SMTPUTF8 address in the
// envelope and the header, and 8-bit UTF-8 in the header and body.
var utf8Message = "From: René <rené@remote.example>\n" +
	"To: José <jösé@example.org>\n" +
	"Subject: Grüße, 世界\n" +
	"Message-ID: <utf8-1@remote.example>\n" +
	"Date: Wed, 25 Nov 2026 08:00:00 +0000\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"Grüße aus Köln, 世界, ¡olé! 🙂\n" +
	"last line\n"

// TestSMTPSwaksMX talks to mailroom's MX listener ([smtp]) the way a
// sending MTA would, with swaks: the greeting and EHLO keywords, local
// delivery byte for byte, and each refusal an MX owes the internet.
func TestSMTPSwaksMX(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	s := startSMTPServer(t, "", "alice@example.org", "bob@example.org", "jösé@example.org")
	const alice, bob, jose = "example.org/alice", "example.org/bob", "example.org/jösé"
	mx := func(msg string, args ...string) (string, transcript) {
		t.Helper()
		return smtpSwaks(t, msg, append([]string{"--server", s.MX, "--helo", "client.test"}, args...)...)
	}

	t.Run("greeting and EHLO keywords", func(t *testing.T) {
		out, tr := mx(crlf("Subject: x\n\ny\n"), "--from", "carol@remote.example", "--to", "alice@example.org", "--quit-after", "EHLO")
		if len(tr) == 0 || tr[0].client || !strings.HasPrefix(tr[0].text, "220 mx.test ESMTP") {
			t.Errorf("greeting %q, want \"220 mx.test ESMTP...\"\n%s", tr[0].text, out)
		}
		ehlo, _ := tr.replies("EHLO client.test")
		keywords := map[string]bool{}
		for _, l := range ehlo {
			if len(l) > 4 {
				keywords[l[4:]] = true
			}
		}
		// SIZE is max_message_bytes+1: the documented go-smtp workaround
		// (smtp/server.go); exactly max_message_bytes is accepted (below).
		for _, k := range []string{"PIPELINING", "SIZE 100001", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "STARTTLS"} {
			if !keywords[k] {
				t.Errorf("EHLO lacks %s:\n%s", k, out)
			}
		}
		for k := range keywords {
			if strings.HasPrefix(k, "AUTH") {
				t.Errorf("the MX offers %s:\n%s", k, out)
			}
		}
	})

	t.Run("dot-stuffed lines stored byte for byte", func(t *testing.T) {
		before := maildirNew(t, mailRoot(s.Server), alice)
		start := time.Now()
		out, tr := mx(crlf(dotMessage), "--from", "carol@remote.example", "--to", "alice@example.org")
		// swaks dot-stuffs: the wire has "..", "...", "....three".
		if !strings.Contains(out, "\n -> ..\n -> ...\n -> ..leading dot\n -> ....three\n") {
			t.Errorf("swaks did not dot-stuff the message:\n%s", out)
		}
		wantDataReply(t, tr, out, "250 ")
		got := oneNew(t, s.Server, alice, before)
		if got.ReturnPath != "<carol@remote.example>" || got.DeliveredTo != "alice@example.org" {
			t.Errorf("Return-Path %s, Delivered-To %s", got.ReturnPath, got.DeliveredTo)
		}
		r := checkSMTPReceived(t, got.Received, "ESMTP", "alice@example.org", start)
		if r.Helo != "client.test" {
			t.Errorf("Received: from %s, want client.test", r.Helo)
		}
		if got.Rest != dotMessage {
			t.Errorf("stored message differs\n got: %q\nwant: %q", got.Rest, dotMessage)
		}
	})

	t.Run("STARTTLS on the MX gives ESMTPS", func(t *testing.T) {
		before := maildirNew(t, mailRoot(s.Server), alice)
		start := time.Now()
		out, tr := mx(crlf(dotMessage), "-tls", "--from", "carol@remote.example", "--to", "alice@example.org")
		wantReply(t, tr, out, "STARTTLS", "220 ")
		if ehlo := tr.lastReplies("EHLO client.test"); strings.Contains(strings.Join(ehlo, "\n"), "STARTTLS") || strings.Contains(strings.Join(ehlo, "\n"), "AUTH") {
			t.Errorf("EHLO after STARTTLS offers STARTTLS or AUTH: %q", ehlo)
		}
		wantDataReply(t, tr, out, "250 ")
		got := oneNew(t, s.Server, alice, before)
		checkSMTPReceived(t, got.Received, "ESMTPS", "alice@example.org", start)
		if got.Rest != dotMessage {
			t.Errorf("stored message differs\n got: %q\nwant: %q", got.Rest, dotMessage)
		}
	})

	t.Run("unknown user 550 5.1.1", func(t *testing.T) {
		out, tr := mx(crlf("Subject: x\n\ny\n"), "--from", "carol@remote.example", "--to", "nobody@example.org")
		wantReply(t, tr, out, "RCPT TO:<nobody@example.org>", "550 5.1.1")
		if _, sent := tr.replies("DATA"); sent {
			t.Errorf("swaks sent DATA with no recipient accepted:\n%s", out)
		}
		noHome(t, s.Server, "example.org/nobody")
	})

	t.Run("relay denied 554 5.7.1", func(t *testing.T) {
		// Whatever the client claims to be: HELO and MAIL FROM in the
		// local domain change nothing without AUTH (and the MX has none).
		out, tr := smtpSwaks(t, crlf("Subject: x\n\ny\n"), "--server", s.MX, "--helo", "example.org",
			"--from", "alice@example.org", "--to", "victim@elsewhere.example")
		wantReply(t, tr, out, "RCPT TO:<victim@elsewhere.example>", "554 5.7.1")
		if _, sent := tr.replies("DATA"); sent {
			t.Errorf("swaks sent DATA with no recipient accepted:\n%s", out)
		}
		if !strings.Contains(s.Log(), "rcpt=victim@elsewhere.example") {
			t.Errorf("the relay attempt is not logged:\n%s", s.Log())
		}
	})

	t.Run("message size limit", func(t *testing.T) {
		before := maildirNew(t, mailRoot(s.Server), alice)
		// Exactly max_message_bytes is accepted...
		exact := sizedMessage(maxMessageBytes, "size")
		out, tr := mx(exact, "--from", "carol@remote.example", "--to", "alice@example.org")
		wantDataReply(t, tr, out, "250 ")
		got := oneNew(t, s.Server, alice, before)
		if got.Rest != lf(exact) {
			t.Errorf("the message of exactly %d octets was not stored intact", maxMessageBytes)
		}
		// ...one octet more is refused, permanently, and nothing is kept.
		before = maildirNew(t, mailRoot(s.Server), alice)
		out, tr = mx(sizedMessage(maxMessageBytes+1, "size"), "--from", "carol@remote.example", "--to", "alice@example.org")
		r := tr.dataReplies()
		if len(r) != 1 || !strings.HasPrefix(r[0], "552 5.3.4") {
			// Abbreviate: the transcript holds the whole message.
			t.Errorf("reply to a message one octet over the limit: %q, want 552 5.3.4\n%s", r, tail(out, 600))
		}
		noNew(t, s.Server, alice, before)
		if n := mailtest.TmpFiles(t, mailRoot(s.Server), alice); n != 0 {
			t.Errorf("%d files left in tmp/", n)
		}
	})

	t.Run("pipelining", func(t *testing.T) {
		b := homes(t, s.Server, alice, bob)
		out, tr := mx(crlf(dotMessage), "--pipeline", "--from", "carol@remote.example", "--to", "alice@example.org,bob@example.org")
		// swaks sends MAIL, both RCPTs and DATA in one go, then reads
		// the four replies.
		var i int
		for i = range tr {
			if tr[i].client && strings.HasPrefix(tr[i].text, "MAIL FROM:") {
				break
			}
		}
		if i+4 >= len(tr) || !tr[i+1].client || !tr[i+2].client || tr[i+3].text != "DATA" {
			t.Fatalf("swaks did not pipeline MAIL, RCPT, RCPT, DATA:\n%s", out)
		}
		for j, want := range []string{"250 ", "250 ", "250 ", "354 "} {
			if l := tr[i+4+j]; l.client || !strings.HasPrefix(l.text, want) {
				t.Errorf("pipelined reply %d: %q, want %q", j, l.text, want)
			}
		}
		wantDataReply(t, tr, out, "250 ")
		for _, h := range []string{alice, bob} {
			if got := oneNew(t, s.Server, h, b[h]); got.Rest != dotMessage {
				t.Errorf("%s: stored message differs\n got: %q\nwant: %q", h, got.Rest, dotMessage)
			}
		}
	})

	t.Run("SMTPUTF8 address and 8-bit body", func(t *testing.T) {
		before := maildirNew(t, mailRoot(s.Server), jose)
		start := time.Now()
		out, tr := mx(crlf(utf8Message), "--from", "rené@remote.example", "--to", "jösé@example.org")
		wantReply(t, tr, out, "RCPT TO:<jösé@example.org>", "250 ")
		wantDataReply(t, tr, out, "250 ")
		got := oneNew(t, s.Server, jose, before)
		if got.ReturnPath != "<rené@remote.example>" || got.DeliveredTo != "jösé@example.org" {
			t.Errorf("Return-Path %s, Delivered-To %s", got.ReturnPath, got.DeliveredTo)
		}
		checkSMTPReceived(t, got.Received, "ESMTP", "jösé@example.org", start)
		if got.Rest != utf8Message {
			t.Errorf("stored message differs\n got: %q\nwant: %q", got.Rest, utf8Message)
		}

		// swaks does not send the SMTPUTF8 parameter; a client that
		// does (RFC 6531 §3.4), with BODY=8BITMIME, is served the same.
		before = maildirNew(t, mailRoot(s.Server), jose)
		d := mailtest.Dial(t, "tcp", s.MX)
		d.Send("EHLO client.test")
		d.Expect("250 ")
		d.Send("MAIL FROM:<rené@remote.example> SMTPUTF8 BODY=8BITMIME")
		d.Expect("250 ")
		d.Send("RCPT TO:<jösé@example.org>")
		d.Expect("250 ")
		d.Send("DATA")
		d.Expect("354 ")
		d.SendRaw(crlf(utf8Message) + ".\r\n")
		d.Expect("250 ")
		d.Send("QUIT")
		d.Expect("221 ")
		if got := oneNew(t, s.Server, jose, before); got.Rest != utf8Message {
			t.Errorf("stored message differs\n got: %q\nwant: %q", got.Rest, utf8Message)
		}
	})

	t.Run("mixed valid and invalid recipients", func(t *testing.T) {
		b := homes(t, s.Server, alice, bob)
		out, tr := mx(crlf(dotMessage), "--from", "carol@remote.example",
			"--to", "alice@example.org,nobody@example.org,victim@elsewhere.example,../bob@example.org,bob@example.org")
		wantReply(t, tr, out, "RCPT TO:<alice@example.org>", "250 ")
		wantReply(t, tr, out, "RCPT TO:<nobody@example.org>", "550 5.1.1")
		wantReply(t, tr, out, "RCPT TO:<victim@elsewhere.example>", "554 5.7.1")
		wantReply(t, tr, out, "RCPT TO:<../bob@example.org>", "501 5.1.3")
		wantReply(t, tr, out, "RCPT TO:<bob@example.org>", "250 ")
		wantDataReply(t, tr, out, "250 ")
		// One copy for each accepted recipient, none for the others.
		for _, h := range []string{alice, bob} {
			got := oneNew(t, s.Server, h, b[h])
			if got.Rest != dotMessage {
				t.Errorf("%s: stored message differs", h)
			}
		}
		noHome(t, s.Server, "example.org/nobody")
	})

	t.Run("RSET", func(t *testing.T) {
		// swaks has no way to send RSET, so this is a raw dialog: a
		// transaction reset after RCPT delivers nothing, and the next
		// one on the same connection works.
		b := homes(t, s.Server, alice, bob)
		d := mailtest.Dial(t, "tcp", s.MX)
		d.Send("EHLO client.test")
		d.Expect("250 ")
		d.Send("MAIL FROM:<carol@remote.example>")
		d.Expect("250 ")
		d.Send("RCPT TO:<alice@example.org>")
		d.Expect("250 ")
		d.Send("RSET")
		d.Expect("250 2.0.0")
		d.Send("RCPT TO:<bob@example.org>") // no transaction any more
		d.Expect("503 ")
		d.Send("DATA")
		d.Expect("503 ")
		d.Send("MAIL FROM:<carol@remote.example>")
		d.Expect("250 ")
		d.Send("RCPT TO:<bob@example.org>")
		d.Expect("250 ")
		d.Send("DATA")
		d.Expect("354 ")
		d.SendRaw(crlf("Subject: after RSET\n\nbody\n") + ".\r\n")
		d.Expect("250 ")
		d.Send("RSET") // between transactions too
		d.Expect("250 ")
		d.Send("QUIT")
		d.Expect("221 ")
		noNew(t, s.Server, alice, b[alice])
		if got := oneNew(t, s.Server, bob, b[bob]); got.Rest != "Subject: after RSET\n\nbody\n" {
			t.Errorf("bob got %q", got.Rest)
		}
	})
}

// TestSMTPSwaksSubmission sends as an authenticated user through the
// submission listeners: STARTTLS then AUTH PLAIN and LOGIN, implicit TLS,
// and the refusals (no AUTH, wrong password, someone else's address).
func TestSMTPSwaksSubmission(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	s := startSMTPServer(t, "", "alice@example.org", "bob@example.org")
	const bob = "example.org/bob"
	// A submitted message without Message-ID and Date: mailroom adds them
	// (RFC 6409 §8.2, §8.3).
	bare := "From: Alice <alice@example.org>\nTo: Bob <bob@example.org>\nSubject: submitted\n\nhello Bob\n.\nbye\n"
	auth := func(mech string) []string {
		return []string{"-a", mech, "-au", "alice@example.org", "-ap", smtpPassword}
	}

	checkSubmitted := func(t *testing.T, got trace, proto string, start time.Time) {
		t.Helper()
		if got.ReturnPath != "<alice@example.org>" || got.DeliveredTo != "bob@example.org" {
			t.Errorf("Return-Path %s, Delivered-To %s", got.ReturnPath, got.DeliveredTo)
		}
		checkSMTPReceived(t, got.Received, proto, "bob@example.org", start)
		checkAddedIDAndDate(t, got.Rest, bare, start)
	}

	for _, tc := range []struct {
		name  string
		args  []string
		proto string
	}{
		{"STARTTLS then AUTH PLAIN", append([]string{"--server", s.Sub, "-tls"}, auth("PLAIN")...), "ESMTPSA"},
		{"STARTTLS then AUTH LOGIN", append([]string{"--server", s.Sub, "-tls"}, auth("LOGIN")...), "ESMTPSA"},
		{"implicit TLS, AUTH PLAIN", append([]string{"--server", s.Subs, "-tlsc"}, auth("PLAIN")...), "ESMTPSA"},
		{"implicit TLS, AUTH LOGIN", append([]string{"--server", s.Subs, "-tlsc"}, auth("LOGIN")...), "ESMTPSA"},
		// Loopback: AUTH without TLS is allowed by design.
		{"no TLS on loopback, AUTH PLAIN", append([]string{"--server", s.Sub}, auth("PLAIN")...), "ESMTPA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := maildirNew(t, mailRoot(s.Server), bob)
			start := time.Now()
			out, tr := smtpSwaks(t, crlf(bare), append(tc.args, "--helo", "client.test", "--from", "alice@example.org", "--to", "bob@example.org")...)
			if !strings.Contains(out, "<~  235 2.0.0") && !strings.Contains(out, "<-  235 2.0.0") {
				t.Fatalf("AUTH failed:\n%s", out)
			}
			wantDataReply(t, tr, out, "250 ")
			checkSubmitted(t, oneNew(t, s.Server, bob, before), tc.proto, start)
		})
	}

	t.Run("AUTH offered on loopback without TLS", func(t *testing.T) {
		// The rule "no AUTH without TLS except on loopback or with
		// allow_insecure_auth" has its non-loopback half in a unit test
		// (smtp.TestAuthOnlyOverTLSOrLoopback): these tests may only use
		// loopback, where AUTH before STARTTLS is offered by design.
		out, tr := smtpSwaks(t, crlf(bare), "--server", s.Sub, "--helo", "client.test", "--quit-after", "EHLO")
		ehlo, _ := tr.replies("EHLO client.test")
		if !containsLine(ehlo, "250-AUTH PLAIN LOGIN") && !containsLine(ehlo, "250 AUTH PLAIN LOGIN") {
			t.Errorf("EHLO on loopback without TLS does not offer AUTH PLAIN LOGIN:\n%s", out)
		}
		if !containsLine(ehlo, "250-STARTTLS") && !containsLine(ehlo, "250 STARTTLS") {
			t.Errorf("submission does not offer STARTTLS:\n%s", out)
		}
	})

	t.Run("MAIL without AUTH 530 5.7.0", func(t *testing.T) {
		out, tr := smtpSwaks(t, crlf(bare), "--server", s.Sub, "-tls", "--helo", "client.test", "--from", "alice@example.org", "--to", "bob@example.org")
		wantReply(t, tr, out, "MAIL FROM:<alice@example.org>", "530 5.7.0")
	})

	t.Run("wrong password 535 5.7.8", func(t *testing.T) {
		out, _ := smtpSwaks(t, crlf(bare), "--server", s.Sub, "-tls", "--helo", "client.test", "-a", "PLAIN",
			"-au", "bob@example.org", "-ap", smtpWrongPassword, "--from", "alice@example.org", "--to", "bob@example.org")
		if !strings.Contains(out, "535 5.7.8") {
			t.Errorf("AUTH with a wrong password not answered 535 5.7.8:\n%s", out)
		}
		if strings.Contains(out, "MAIL FROM") {
			t.Errorf("swaks went on after a failed AUTH:\n%s", out)
		}
		// The log is read from the server's stderr as it comes.
		mailtest.Eventually(t, 10*time.Second, "the failed AUTH in the log", func() bool {
			return strings.Contains(s.Log(), "event=auth_failed")
		})
	})

	t.Run("forged sender 553 5.7.1", func(t *testing.T) {
		before := maildirNew(t, mailRoot(s.Server), bob)
		out, tr := smtpSwaks(t, crlf(bare), append([]string{"--server", s.Sub, "-tls", "--helo", "client.test",
			"--from", "bob@example.org", "--to", "bob@example.org"}, auth("PLAIN")...)...)
		wantReply(t, tr, out, "MAIL FROM:<bob@example.org>", "553 5.7.1")
		noNew(t, s.Server, bob, before)
		// Her own address with a recipient_delimiter extension is hers.
		out, tr = smtpSwaks(t, crlf(bare), append([]string{"--server", s.Sub, "-tls", "--helo", "client.test",
			"--from", "alice+lists@example.org", "--to", "bob@example.org"}, auth("PLAIN")...)...)
		wantReply(t, tr, out, "MAIL FROM:<alice+lists@example.org>", "250 ")
		wantDataReply(t, tr, out, "250 ")
	})

	t.Run("remote recipient is queued", func(t *testing.T) {
		before := maildirNew(t, mailRoot(s.Server), bob)
		out, tr := smtpSwaks(t, crlf(bare), append([]string{"--server", s.Sub, "-tls", "--helo", "client.test",
			"--from", "alice@example.org", "--to", "carol@remote.example,bob@example.org"}, auth("PLAIN")...)...)
		wantReply(t, tr, out, "RCPT TO:<carol@remote.example>", "250 ")
		wantDataReply(t, tr, out, "250 ")
		if !strings.Contains(s.Log(), "event=queued") {
			t.Errorf("no queued record in the log")
		}
		// The queue delivers the local recipient's copy too, once.
		mailtest.Eventually(t, 20*time.Second, "bob's copy from the queue", func() bool {
			return len(maildirNew(t, mailRoot(s.Server), bob)) > len(before)
		})
		if n := len(maildirNew(t, mailRoot(s.Server), bob)) - len(before); n != 1 {
			t.Errorf("bob got %d copies", n)
		}
	})
}

// TestSMTPSwaksInsecureAuthHonoured runs submission without any TLS
// certificate and with allow_insecure_auth = true: the server starts
// (there is no STARTTLS to offer), AUTH is offered and works in clear.
// On loopback AUTH is allowed anyway, so what this shows is that the key
// is accepted and the listener works without TLS; that the key lifts the
// TLS requirement for non-loopback clients is smtp's unit test
// TestAuthOnlyOverTLSOrLoopback (tests may only use loopback).
func TestSMTPSwaksInsecureAuthHonoured(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	srv := startServerNoPasswordLogged(t, `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[submission]
listen = ["127.0.0.1:0"]
allow_insecure_auth = true
`, "alice@example.org", "bob@example.org")
	if out, code := srv.Run(t, "", "check"); code != 0 {
		t.Fatalf("mailroom check refuses allow_insecure_auth: exit %d\n%s", code, out)
	}
	addr := srv.Addr(t, "submission", false)
	before := maildirNew(t, mailRoot(srv), "example.org/bob")
	start := time.Now()
	out, tr := smtpSwaks(t, crlf("Subject: in clear\n\nhi\n"), "--server", addr, "--helo", "client.test",
		"-a", "LOGIN", "-au", "alice@example.org", "-ap", smtpPassword, "--from", "alice@example.org", "--to", "bob@example.org")
	ehlo, _ := tr.replies("EHLO client.test")
	if !containsLine(ehlo, "250-AUTH PLAIN LOGIN") && !containsLine(ehlo, "250 AUTH PLAIN LOGIN") {
		t.Errorf("EHLO does not offer AUTH:\n%s", out)
	}
	if containsPrefix(ehlo, "250-STARTTLS") || containsPrefix(ehlo, "250 STARTTLS") {
		t.Errorf("STARTTLS offered without a certificate:\n%s", out)
	}
	wantDataReply(t, tr, out, "250 ")
	got := oneNew(t, srv, "example.org/bob", before)
	checkSMTPReceived(t, got.Received, "ESMTPA", "bob@example.org", start)
}

// checkAddedIDAndDate checks that a submitted message that had no
// Message-ID or Date was stored with both added at the top, and otherwise
// as sent.
func checkAddedIDAndDate(t *testing.T, rest, sent string, since time.Time) {
	t.Helper()
	idLine, r, _ := strings.Cut(rest, "\n")
	dateLine, r, _ := strings.Cut(r, "\n")
	if !strings.HasPrefix(idLine, "Message-ID: <") || !strings.HasSuffix(idLine, "@mx.test>") {
		t.Errorf("no Message-ID added at the top (got %q):\n%s", idLine, rest)
	}
	if !strings.HasPrefix(dateLine, "Date: ") {
		t.Errorf("no Date added after the Message-ID (got %q):\n%s", dateLine, rest)
	} else {
		checkDate(t, strings.TrimPrefix(dateLine, "Date: "), since)
	}
	if r != sent {
		t.Errorf("the rest of the message differs\n got: %q\nwant: %q", r, sent)
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func containsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// tail is the end of a long transcript.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
