package certs

import (
	"crypto/tls"
	"os"
	"testing"

	"mailroom/internal/mailtest"
)

func TestLoadAndReload(t *testing.T) {
	dir := t.TempDir()
	cert, key := mailtest.TestCert(t, dir)
	s, err := Load(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.Config().GetCertificate(&tls.ClientHelloInfo{})

	// A renewed certificate is picked up by Reload.
	mailtest.TestCert(t, dir)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	second, _ := s.Config().GetCertificate(&tls.ClientHelloInfo{})
	if string(first.Certificate[0]) == string(second.Certificate[0]) {
		t.Fatal("Reload kept the old certificate")
	}

	// A broken file keeps the last good pair.
	os.WriteFile(cert, []byte("garbage"), 0o644)
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted garbage")
	}
	third, _ := s.Config().GetCertificate(&tls.ClientHelloInfo{})
	if third != second {
		t.Fatal("a failed Reload replaced the certificate")
	}
	if _, err := Load(cert, key); err == nil {
		t.Fatal("Load accepted garbage")
	}
}
