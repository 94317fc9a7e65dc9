package e2e

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/dkimtest"
	"mailroom/internal/mailtest/fakedns"
	"mailroom/mailauth/dkim"
)

const checksConfig = `hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
[lmtp]
listen = ["127.0.0.1:0"]
[dns]
server = %q
[checks]
trusted_networks = []   # swaks connects from 127.0.0.1, which is trusted by default
%s
`

// checksDNS is the sending domains' DNS: a policy of each kind, one
// domain that passes SPF, and one whose mail dkimpy signs.
func checksDNS(t *testing.T) (*fakedns.Server, string) {
	t.Helper()
	dns := fakedns.Start(t,
		`reject.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.reject.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`quarantine.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.quarantine.example. 60 IN TXT "v=DMARC1; p=quarantine"`,
		`none.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.none.example. 60 IN TXT "v=DMARC1; p=none"`,
		`good.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.good.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`signed.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.signed.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`tmp.example. 60 IN TXT "v=spf1 include:dead.example -all"`,
		`_dmarc.tmp.example. 60 IN TXT "v=DMARC1; p=reject"`,
	)
	dns.ServFail("dead.example") // tmp.example's SPF fails temporarily
	k, err := dkim.Generate(dkim.RSA)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "dkimpy.key")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))})
	if err := os.WriteFile(keyFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	rec, _ := dkim.RecordFor(k.Public())
	dns.AddTXT(dkim.RecordName("py", "signed.example"), rec)
	return dns, keyFile
}

func checkedMessage(from, extra string) string {
	return crlf("From: <" + from + ">\nTo: alice@example.org\nSubject: from " + from + "\nDate: Mon, 6 Jul 2026 10:00:00 +0000\n" + extra + "\nHello.\n")
}

// TestMXChecksAndPolicy sends to the MX with swaks from domains whose
// DMARC policy is reject, quarantine and none (all failing, SPF -all):
// 550 5.7.1 at the end of DATA, delivered to Junk, delivered marked. Mail
// that passes (SPF; a DKIM signature made by dkimpy) gets
// Authentication-Results saying so; an SPF SERVFAIL under p=reject gets
// 451 4.7.0, and an Authentication-Results forged
// with this server's authserv-id is removed while another server's stays.
func TestMXChecksAndPolicy(t *testing.T) {
	t.Parallel()
	dns, keyFile := checksDNS(t)
	s := startServer(t, fmt.Sprintf(checksConfig, dns.Addr, ""), "alice@example.org")
	mx := s.Addr(t, "smtp", false)
	root := mailRoot(s)
	const alice = "example.org/alice"
	send := func(from, msg string) string {
		t.Helper()
		_, tr := smtpSwaks(t, msg, "--server", mx, "--helo", "client.test", "--from", from, "--to", "alice@example.org")
		r := tr.dataReplies()
		if len(r) != 1 {
			t.Fatalf("from %s: replies %q", from, r)
		}
		return r[0]
	}
	// The only Authentication-Results field of this server in msg.
	ours := func(msg string) string {
		t.Helper()
		hdr, _, _ := strings.Cut(lf(msg), "\n\n")
		var found []string
		for _, f := range strings.Split(strings.ReplaceAll(hdr, "\n\t", " "), "\n") {
			if strings.HasPrefix(f, "Authentication-Results: mx.example.org;") {
				found = append(found, f)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d Authentication-Results fields of mx.example.org, want 1:\n%s", len(found), msg)
		}
		return found[0]
	}

	if r := send("a@reject.example", checkedMessage("a@reject.example", "")); !strings.HasPrefix(r, "550 5.7.1 ") || !strings.Contains(r, "reject.example") {
		t.Errorf("p=reject: %q, want 550 5.7.1 naming the domain", r)
	}
	if n := len(mailtest.Messages(t, root, alice)) + len(mailtest.FolderMessages(t, root, alice, ".Junk")); n != 0 {
		t.Fatalf("the rejected message was delivered (%d files)", n)
	}

	// A temporary DNS failure that could make the difference is
	// deferred, never refused for good.
	if r := send("a@tmp.example", checkedMessage("a@tmp.example", "")); !strings.HasPrefix(r, "451 4.7.0 ") {
		t.Errorf("SPF SERVFAIL under p=reject: %q, want 451 4.7.0", r)
	}

	if r := send("a@quarantine.example", checkedMessage("a@quarantine.example", "")); !strings.HasPrefix(r, "250 ") {
		t.Errorf("p=quarantine: %q, want 250", r)
	}
	junk := mailtest.FolderMessages(t, root, alice, ".Junk")
	if len(junk) != 1 || len(mailtest.Messages(t, root, alice)) != 0 {
		t.Fatalf("p=quarantine: %d in Junk, %d in INBOX; want 1 and 0", len(junk), len(mailtest.Messages(t, root, alice)))
	}
	if ar := ours(junk[0]); !strings.Contains(ar, "dmarc=fail") || !strings.Contains(ar, "spf=fail") {
		t.Errorf("quarantined message: %s", ar)
	}

	if r := send("a@none.example", checkedMessage("a@none.example", "")); !strings.HasPrefix(r, "250 ") {
		t.Errorf("p=none: %q, want 250", r)
	}
	forged := "Authentication-Results: mx.example.org; dkim=pass header.d=bank.example\nAuthentication-Results: other.example; spf=pass\n"
	if r := send("a@good.example", checkedMessage("a@good.example", forged)); !strings.HasPrefix(r, "250 ") {
		t.Errorf("good.example: %q, want 250", r)
	}
	signed := dkimtest.SignDKIMPy(t, "signed.example", "py", keyFile, checkedMessage("b@signed.example", ""))
	if r := send("b@signed.example", signed); !strings.HasPrefix(r, "250 ") {
		t.Errorf("signed.example: %q, want 250", r)
	}
	inbox := mailtest.Messages(t, root, alice)
	if len(inbox) != 3 {
		t.Fatalf("%d messages in INBOX, want 3", len(inbox))
	}
	for _, c := range []struct {
		from string
		want []string
	}{
		{"a@none.example", []string{"spf=fail smtp.mailfrom=a@none.example", "dkim=none", "dmarc=fail", "p=none", "header.from=none.example"}},
		{"a@good.example", []string{"spf=pass smtp.mailfrom=a@good.example", "dmarc=pass", "header.from=good.example"}},
		{"b@signed.example", []string{"spf=fail", "dkim=pass", "header.d=signed.example", "header.s=py", "dmarc=pass"}},
	} {
		var msg string
		for _, m := range inbox {
			if strings.Contains(m, "Subject: from "+c.from) {
				msg = m
			}
		}
		if msg == "" {
			t.Errorf("no message from %s", c.from)
			continue
		}
		ar := ours(msg)
		for _, w := range c.want {
			if !strings.Contains(strings.ToLower(ar), strings.ToLower(w)) {
				t.Errorf("from %s: %q lacks %q", c.from, ar, w)
			}
		}
		if c.from == "a@good.example" {
			if strings.Contains(msg, "bank.example") || !strings.Contains(msg, "Authentication-Results: other.example; spf=pass") {
				t.Errorf("the forged field was not removed, or another server's was:\n%s", msg)
			}
		}
	}

	// LMTP is behind an MTA that did its own checks: nothing is checked,
	// and its Authentication-Results stay, even one naming this host.
	front := "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=a@reject.example\n"
	out := lmtpSwaks(t, s.Addr(t, "lmtp", false), false, checkedMessage("a@reject.example", front), "a@reject.example", "alice@example.org")
	if r := parseTranscript(out).dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("LMTP from reject.example: %q, want 250 (LMTP is not checked)", r)
	}
	var viaLMTP string
	for _, m := range mailtest.Messages(t, root, alice) {
		if strings.Contains(m, "with LMTP") {
			viaLMTP = m
		}
	}
	if viaLMTP == "" || strings.Count(viaLMTP, "Authentication-Results:") != 1 || !strings.Contains(viaLMTP, "spf=pass smtp.mailfrom=a@reject.example") {
		t.Errorf("the LMTP message was checked or its front MTA's results changed:\n%s", viaLMTP)
	}
}

// TestMXChecksPolicySettings: checks.dmarc_reject = "quarantine" turns
// p=reject into Junk delivery; spf_fail = "reject" refuses an SPF fail
// without DMARC; temperror = "mark" delivers what a temporary DNS
// failure left open; mail from a trusted network is taken unchecked; with
// enabled = false, forged Authentication-Results still go.
func TestMXChecksPolicySettings(t *testing.T) {
	t.Parallel()
	dns, _ := checksDNS(t)
	dns.Add(t, `nodmarc.example. 60 IN TXT "v=spf1 -all"`)
	s := startServer(t, fmt.Sprintf(checksConfig, dns.Addr, `dmarc_reject = "quarantine"
spf_fail = "reject"
temperror = "mark"`), "alice@example.org")
	mx := s.Addr(t, "smtp", false)
	send := func(from string) string {
		t.Helper()
		_, tr := smtpSwaks(t, checkedMessage(from, ""), "--server", mx, "--helo", "client.test", "--from", from, "--to", "alice@example.org")
		r := tr.dataReplies()
		if len(r) != 1 {
			t.Fatalf("from %s: replies %q", from, r)
		}
		return r[0]
	}
	if r := send("a@reject.example"); !strings.HasPrefix(r, "250 ") {
		t.Errorf("p=reject with dmarc_reject=quarantine: %q, want 250", r)
	}
	if n := len(mailtest.FolderMessages(t, mailRoot(s), "example.org/alice", ".Junk")); n != 1 {
		t.Errorf("%d messages in Junk, want 1", n)
	}
	if r := send("a@nodmarc.example"); !strings.HasPrefix(r, "550 5.7.1 ") {
		t.Errorf("SPF fail without DMARC with spf_fail=reject: %q, want 550 5.7.1", r)
	}
	if r := send("a@tmp.example"); !strings.HasPrefix(r, "250 ") {
		t.Errorf("SPF SERVFAIL under p=reject with temperror=mark: %q, want 250", r)
	}
	if n := len(mailtest.Messages(t, mailRoot(s), "example.org/alice")); n != 1 {
		t.Errorf("%d messages in INBOX, want the one temperror=mark let through", n)
	}

	asked := dns.QueriesFor("_dmarc.reject.example")
	trusted := startServer(t, fmt.Sprintf(strings.Replace(checksConfig, "trusted_networks = []", `trusted_networks = ["127.0.0.1"]`, 1), dns.Addr, ""), "alice@example.org")
	_, tr := smtpSwaks(t, checkedMessage("a@reject.example", "Authentication-Results: mx.example.org; spf=pass\n"),
		"--server", trusted.Addr(t, "smtp", false), "--helo", "client.test", "--from", "a@reject.example", "--to", "alice@example.org")
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Errorf("from a trusted network: %q, want 250", r)
	}
	m := mailtest.Messages(t, mailRoot(trusted), "example.org/alice")
	if len(m) != 1 || strings.Count(m[0], "Authentication-Results:") != 1 || dns.QueriesFor("_dmarc.reject.example") != asked {
		t.Errorf("mail from a trusted network was checked or changed:\n%q", m)
	}

	// With the checks off, a field forged with this server's authserv-id
	// still goes (RFC 8601 §5); another server's stays.
	off := startServer(t, fmt.Sprintf(checksConfig, dns.Addr, "enabled = false"), "alice@example.org")
	_, tr = smtpSwaks(t, checkedMessage("a@reject.example", "Authentication-Results: mx.example.org; dmarc=pass\nAuthentication-Results: other.example; spf=pass\n"),
		"--server", off.Addr(t, "smtp", false), "--helo", "client.test", "--from", "a@reject.example", "--to", "alice@example.org")
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Errorf("checks off: %q, want 250", r)
	}
	m = mailtest.Messages(t, mailRoot(off), "example.org/alice")
	if len(m) != 1 || strings.Contains(m[0], "Authentication-Results: mx.example.org") || !strings.Contains(m[0], "Authentication-Results: other.example; spf=pass") {
		t.Errorf("checks off: the forged field was kept, or another server's removed:\n%q", m)
	}
}
