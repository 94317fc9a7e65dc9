package e2e

import (
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
)

// runPython runs a script from testdata with python3 and fails the test
// unless it exits 0 having printed "ALL CHECKS PASSED". prefix, if not
// empty, is a command that runs it (ip netns exec ...).
func runPython(t *testing.T, prefix []string, script string, args ...string) string {
	t.Helper()
	python := mailtest.NeedTool(t, "python3")
	path, err := filepath.Abs(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	argv := append(append(prefix, python, path), args...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	text := strings.ReplaceAll(string(out), smtpPassword, "<password>")
	if err != nil || !strings.Contains(text, "ALL CHECKS PASSED") {
		t.Fatalf("%s: %v\n%s", script, err, text)
	}
	return text
}

// TestIMAPTLS logs in with Python's imaplib over implicit TLS
// (IMAP4_SSL on [imap] listen_tls) and after STARTTLS on the plain port,
// with LOGIN and AUTHENTICATE PLAIN, verifying the certificate against
// the test's own (testdata/imap_tls.py). It also checks the capabilities
// over raw connections: STARTTLS offered in clear and gone once TLS is
// on, and in clear on loopback no LOGINDISABLED.
func TestIMAPTLS(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "", "alice@example.org")
	host, tlsPort := hostPort(t, s.IMAPS)
	_, plainPort := hostPort(t, s.IMAP)
	ic := dialIMAP(t, s.IMAP, nil)
	caps := ic.capabilities()
	if !slices.Contains(caps, "STARTTLS") {
		t.Errorf("plain port with [tls] set: capabilities %q lack STARTTLS", caps)
	}
	if slices.Contains(caps, "LOGINDISABLED") || !slices.Contains(caps, "AUTH=PLAIN") {
		t.Errorf("plain port on loopback: capabilities %q, want AUTH=PLAIN and no LOGINDISABLED", caps)
	}
	tc := dialIMAP(t, s.IMAPS, &tls.Config{InsecureSkipVerify: true})
	caps = tc.capabilities()
	if slices.Contains(caps, "STARTTLS") || !slices.Contains(caps, "AUTH=PLAIN") {
		t.Errorf("implicit TLS: capabilities %q, want AUTH=PLAIN and no STARTTLS", caps)
	}
	tc.refused("STARTTLS")
	tc.login("alice@example.org")
	tc.ok("SELECT INBOX")
	// Last: its wrong password holds alice back for a moment (authdelay).
	runPython(t, nil, "imap_tls.py", host, tlsPort, plainPort, "alice@example.org", smtpPassword, smtpWrongPassword, s.Cert)
}

// TestIMAPNoTLSConfigured: without [tls], STARTTLS is neither offered nor
// accepted, and on loopback LOGIN works in clear.
func TestIMAPNoTLSConfigured(t *testing.T) {
	t.Parallel()
	s := startServerNoPasswordLogged(t, `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[imap]
listen = ["127.0.0.1:0"]
`, "alice@example.org")
	ic := dialIMAP(t, s.Addr(t, "imap", false), nil)
	if caps := ic.capabilities(); slices.Contains(caps, "STARTTLS") {
		t.Errorf("STARTTLS offered without [tls]: %q", caps)
	}
	ic.refused("STARTTLS")
	ic.login("alice@example.org")
	ic.ok("SELECT INBOX")
}

// TestIMAPPlaintextOffLoopback: from an address that is not loopback (a
// network namespace of the test's own), the plain port says LOGINDISABLED
// and refuses LOGIN until STARTTLS (testdata/imap_offloopback.py, with
// imaplib); with allow_insecure_auth = true in [imap], LOGIN works in
// clear. Not parallel: the namespace's name is per process.
func TestIMAPPlaintextOffLoopback(t *testing.T) {
	mailtest.NeedTool(t, "python3")
	host := newNetnsHost(t)
	certDir := mailtest.ShortTempDir(t)
	cert, key := mailtest.TestCert(t, certDir)
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_insecure_auth=%v", insecure), func(t *testing.T) {
			s := startServerNoPasswordLogged(t, fmt.Sprintf(`hostname = "mx.test"
data_dir = "%%DATA%%"
domains = ["example.org"]
[tls]
cert = %q
key = %q
[imap]
listen = ["%s:0"]
allow_insecure_auth = %v
`, cert, key, host.serverAddr, insecure), "alice@example.org")
			h, port := hostPort(t, s.Addr(t, "imap", false))
			flag := "0"
			if insecure {
				flag = "1"
			}
			runPython(t, []string{"ip", "netns", "exec", host.name}, "imap_offloopback.py",
				h, port, "alice@example.org", smtpPassword, cert, flag)
		})
	}
}
