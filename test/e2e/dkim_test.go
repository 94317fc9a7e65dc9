package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/dkimtest"
	"mailroom/internal/mailtest/fakedns"
	"mailroom/mailauth/dkim"
)

const dkimConfig = `hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[submission]
listen = ["127.0.0.1:0"]
[smtp]
listen = ["127.0.0.1:0"]
[delivery]
aliases = %q
[dns]
server = %q
[relay]
mx_port = %d
srs_secret = "dkim-test-secret"
[queue]
retry = ["1s"]
[checks]
trusted_networks = []   # so that checks on submission, were there any, would show
[[dkim]]
domain = "example.org"
selector = "mailroom"
[[dkim]]
domain = "example.org"
selector = "mailroom-ed25519"
`

// zoneRecord takes the record out of the zone-file line `mailroom dkim
// keygen` prints: the name and the quoted strings joined.
func zoneRecord(t *testing.T, out string) (string, string) {
	t.Helper()
	m := regexp.MustCompile(`(?s)(\S+)\. 3600 IN TXT \((.*?)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no TXT record in keygen's output:\n%s", out)
	}
	var value strings.Builder
	for i, part := range strings.Split(m[2], `"`) {
		if i%2 == 1 {
			value.WriteString(part)
		}
	}
	return m[1], value.String()
}

// TestDKIMKeygenSignVerify is the user's path: `mailroom dkim keygen` for
// an RSA and an Ed25519 key, `mailroom dkim check` before and after the
// records are published (in a fake DNS server that [dns] server names),
// then a message submitted with swaks leaves through the queue (MX found
// through the same DNS) signed twice, and dkimpy and opendkim verify both
// signatures as the remote MTA received them. A DSN from the postmaster
// is signed too; forwarded mail is not signed again.
func TestDKIMKeygenSignVerify(t *testing.T) {
	t.Parallel()
	mta := mailtest.StartMTA(t, "nobody@example.net")
	dns := fakedns.Start(t,
		"example.net. 60 IN MX 10 mx.example.net.",
		"mx.example.net. 60 IN A 127.0.0.1",
	)
	aliases := filepath.Join(t.TempDir(), "aliases")
	if err := os.WriteFile(aliases, []byte("fwd: bob@example.net\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, dir := mailtest.WriteConfig(t, fmt.Sprintf(dkimConfig, aliases, dns.Addr, mta.Port))

	out, code := mailtest.RunBinary(t, cfg, "", "dkim", "check", "example.org")
	if code != 1 || !strings.Contains(out, "mailroom._domainkey.example.org") {
		t.Errorf("dkim check before keygen: exit %d (want 1)\n%s", code, out)
	}
	records := map[string]string{}
	for _, algo := range []string{"rsa", "ed25519"} {
		out, code := mailtest.RunBinary(t, cfg, "", "dkim", "keygen", "example.org", "-algo", algo)
		if code != 0 {
			t.Fatalf("dkim keygen -algo %s: exit %d\n%s", algo, code, out)
		}
		name, value := zoneRecord(t, out)
		records[name] = value
		if !strings.Contains(value, "k="+algo) {
			t.Errorf("keygen -algo %s printed %s", algo, value)
		}
	}
	for _, sel := range []string{"mailroom", "mailroom-ed25519"} {
		fi, err := os.Stat(filepath.Join(dir, "dkim", "example.org", sel+".key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key %s: %v, mode %v (want 0600)", sel, err, fi.Mode())
		}
	}
	if out, code := mailtest.RunBinary(t, cfg, "", "dkim", "keygen", "example.org"); code == 0 {
		t.Errorf("keygen over an existing key succeeded:\n%s", out)
	}
	out, code = mailtest.RunBinary(t, cfg, "", "dkim", "check", "example.org")
	if code != 1 || strings.Count(out, "not published (no TXT record)") != 2 || !strings.Contains(out, "publish:") {
		t.Errorf("dkim check before publishing: exit %d (want 1, both not published)\n%s", code, out)
	}
	for name, value := range records {
		dns.AddTXT(name, value)
	}
	out, code = mailtest.RunBinary(t, cfg, "", "dkim", "check", "example.org")
	if code != 0 || !strings.Contains(out, "mailroom._domainkey.example.org: ok (rsa, 2048 bits)") ||
		!strings.Contains(out, "mailroom-ed25519._domainkey.example.org: ok (ed25519)") {
		t.Errorf("dkim check once published: exit %d\n%s", code, out)
	}

	s := mailtest.StartServerConfig(t, cfg, dir)
	if out, code := s.Run(t, smtpPassword+"\n", "user", "add", "alice@example.org"); code != 0 {
		t.Fatalf("user add: exit %d\n%s", code, out)
	}
	msg := crlf("From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: signed by mailroom\n" +
		"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nHello Bob,\n  spaces  kept  \nbye\n")
	submit := func(to string) {
		t.Helper()
		_, tr := smtpSwaks(t, msg, "--server", s.Addr(t, "submission", false), "--helo", "client.test",
			"-a", "PLAIN", "-au", "alice@example.org", "-ap", smtpPassword, "--from", "alice@example.org", "--to", to)
		if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
			t.Fatalf("submission to %s: %q", to, r)
		}
	}
	submit("bob@example.net")
	select {
	case <-mta.Arrived():
	case <-time.After(30 * time.Second):
		t.Fatalf("the remote MTA got nothing in 30s\n%s", s.Log())
	}
	got := mta.Got()[0].Data
	if strings.Contains(got, "Authentication-Results:") {
		t.Errorf("a submitted message was checked like the MX's mail:\n%s", got)
	}
	if n := strings.Count(got, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d DKIM signatures on the message sent, want 2:\n%s", n, got)
	}
	if rep, ok := dkimtest.DKIMPy(t, dns.Addr, got); !ok || strings.Count(rep, " pass") != 2 {
		t.Errorf("dkimpy did not verify both signatures:\n%s\n%s", rep, got)
	}
	if out, err := dkimtest.Opendkim(t, records, got); err != nil {
		t.Errorf("opendkim-testmsg did not verify the message sent: %v\n%s", err, out)
	}
	altered := strings.Replace(got, "Hello Bob", "Hello Eve", 1)
	if rep, ok := dkimtest.DKIMPy(t, dns.Addr, altered); ok || strings.Contains(rep, " pass") {
		t.Errorf("dkimpy verified the message altered after signing:\n%s", rep)
	}

	// The bounce for a refused recipient comes from the postmaster
	// (MAILER-DAEMON@mx.example.org), signed with example.org's keys.
	submit("nobody@example.net")
	var dsn string
	mailtest.Eventually(t, 30*time.Second, "the DSN in alice's mailbox", func() bool {
		for _, m := range maildirNew(t, mailRoot(s), "example.org/alice") {
			if strings.Contains(m.Data, "multipart/report") {
				dsn = m.Data
				return true
			}
		}
		return false
	})
	hdr, _, _ := strings.Cut(dsn, "\n\n")
	if n := strings.Count(hdr, "DKIM-Signature:"); n != 2 || !strings.Contains(hdr, "d=example.org") {
		t.Fatalf("the DSN's header carries %d signatures, want 2 with d=example.org:\n%s", n, dsn)
	}
	if rep, ok := dkimtest.DKIMPy(t, dns.Addr, crlf(dsn)); !ok {
		t.Errorf("dkimpy did not verify the DSN:\n%s", rep)
	}

	// Forwarded mail is not signed again: the alias fwd@ forwards to
	// bob@example.net (a foreign envelope rewritten with SRS). A message alice
	// submits to it carries the two signatures made at submission, once;
	// one from outside whose From: names example.org gets none from us,
	// which would vouch for what we did not write.
	arrive := func(what string) mailtest.Received {
		t.Helper()
		select {
		case <-mta.Arrived():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the remote MTA got nothing in 30s\n%s", what, s.Log())
		}
		all := mta.Got()
		return all[len(all)-1]
	}
	submit("fwd@example.org")
	fwd := arrive("submitted to the alias")
	if n := strings.Count(fwd.Data, "DKIM-Signature:"); n != 2 {
		t.Errorf("submitted, then forwarded: %d signatures, want the 2 made at submission", n)
	}
	if rep, ok := dkimtest.DKIMPy(t, dns.Addr, fwd.Data); !ok || strings.Count(rep, " pass") != 2 {
		t.Errorf("dkimpy did not verify the forwarded message's signatures:\n%s", rep)
	}
	outside := crlf("From: <boss@example.org>\nTo: fwd@example.org\nSubject: from outside\n\nHello.\n")
	_, tr := smtpSwaks(t, outside, "--server", s.Addr(t, "smtp", false), "--helo", "client.test", "--from", "x@example.net", "--to", "fwd@example.org")
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("MX to the alias: %q", r)
	}
	if got := arrive("from outside to the alias"); strings.Contains(got.Data, "DKIM-Signature:") || !strings.HasPrefix(got.From, "SRS0=") {
		t.Errorf("mail from outside, forwarded with envelope %q (want SRS0=), was signed:\n%s", got.From, got.Data)
	}
}

// TestDKIMCheckVerdicts: `mailroom dkim check` tells a published key of the
// same type that is not this one (exit 1, "does not match", with the
// record to publish), and a DNS server that fails (exit 75: try again
// later) from a key that is not published.
func TestDKIMCheckVerdicts(t *testing.T) {
	t.Parallel()
	dns := fakedns.Start(t)
	cfg, _ := mailtest.WriteConfig(t, fmt.Sprintf(`hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[dns]
server = %q
[[dkim]]
domain = "example.org"
selector = "mailroom"
`, dns.Addr))
	out, code := mailtest.RunBinary(t, cfg, "", "dkim", "keygen", "example.org")
	if code != 0 {
		t.Fatalf("keygen: exit %d\n%s", code, out)
	}
	name, ours := zoneRecord(t, out)
	other, err := dkim.Generate(dkim.RSA)
	if err != nil {
		t.Fatal(err)
	}
	theirs, _ := dkim.RecordFor(other.Public())
	dns.AddTXT(name, theirs)
	out, code = mailtest.RunBinary(t, cfg, "", "dkim", "check", "example.org")
	if code != 1 || !strings.Contains(out, name+": does not match the key") || !strings.Contains(out, "publish:") || !strings.Contains(strings.ReplaceAll(out, "\"\n", ""), ours[:40]) {
		t.Errorf("another RSA key published: exit %d (want 1, does not match, what to publish)\n%s", code, out)
	}
	dns.ServFail("_domainkey.example.org")
	out, code = mailtest.RunBinary(t, cfg, "", "dkim", "check", "example.org")
	if code != 75 || !strings.Contains(out, name+": DNS lookup failed") || !strings.Contains(out, "try again later") {
		t.Errorf("DNS failing: exit %d (want 75, try again later)\n%s", code, out)
	}
}

// TestDKIMKeygenSelector: -selector names the record and the key file
// (a rollover's second key), a selector that is not DNS labels (a path)
// is refused before anything is written, and so is a domain that is not
// one of ours.
func TestDKIMKeygenSelector(t *testing.T) {
	t.Parallel()
	cfg, dir := mailtest.WriteConfig(t, `hostname = "mx.example.org"
data_dir = "%DATA%"
domains = ["example.org"]
`)
	out, code := mailtest.RunBinary(t, cfg, "", "dkim", "keygen", "example.org", "-selector", "s2026", "-algo", "ed25519")
	if code != 0 {
		t.Fatalf("keygen -selector s2026: exit %d\n%s", code, out)
	}
	if name, value := zoneRecord(t, out); name != "s2026._domainkey.example.org" || !strings.Contains(value, "k=ed25519") {
		t.Errorf("keygen -selector s2026 printed %s %s", name, value)
	}
	if fi, err := os.Stat(filepath.Join(dir, "dkim", "example.org", "s2026.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the key s2026.key: %v", err)
	}
	for _, args := range [][]string{
		{"example.org", "-selector", "../../evil"},
		{"example.org", "-selector", "a/b"},
		{"example.org", "-selector", "-x"},
		{"example.net"},
	} {
		out, code := mailtest.RunBinary(t, cfg, "", append([]string{"dkim", "keygen"}, args...)...)
		if code != 64 {
			t.Errorf("keygen %q: exit %d, want 64\n%s", args, code, out)
		}
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".key") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Errorf("key files after the refusals: %q, want only s2026.key", files)
	}
}
