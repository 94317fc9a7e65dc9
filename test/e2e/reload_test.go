package e2e

import (
	"bytes"
	"crypto/tls"
	"net/smtp"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// TestSIGHUPReloadsCertificate replaces the certificate files under a
// running server and sends SIGHUP: new STARTTLS sessions present the new
// certificate, and a broken file keeps the old one in use.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	t.Parallel()
	s := startSMTPServer(t, "")
	key := strings.TrimSuffix(s.Cert, "cert.pem") + "key.pem"
	first := presented(t, s.MX)

	dir := strings.TrimSuffix(s.Cert, "/cert.pem")
	mailtest.TestCert(t, dir) // writes a new pair over the old files
	hup(t, s.Server, "TLS certificate reloaded")
	second := presented(t, s.MX)
	if bytes.Equal(first, second) {
		t.Fatal("still the old certificate after SIGHUP")
	}

	os.WriteFile(key, []byte("garbage"), 0o600)
	hup(t, s.Server, "TLS certificate not reloaded")
	if third := presented(t, s.MX); !bytes.Equal(third, second) {
		t.Fatal("a broken key file replaced the working certificate")
	}
}

// hup sends SIGHUP and waits for the log line that says it was handled.
func hup(t *testing.T, s *mailtest.Server, want string) {
	t.Helper()
	before := strings.Count(s.Log(), want)
	if err := syscall.Kill(s.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	mailtest.Eventually(t, 10*time.Second, want, func() bool { return strings.Count(s.Log(), want) > before })
}

// presented returns the leaf certificate the server shows after STARTTLS.
func presented(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	st, _ := c.TLSConnectionState()
	return st.PeerCertificates[0].Raw
}
