package certs

import (
	"crypto/tls"
	"os"
	"testing"
	"time"

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
	if until := time.Until(s.NotAfter()); until < 23*time.Hour || until > 25*time.Hour {
		t.Errorf("NotAfter is %v from now, want the test certificate's 24h", until)
	}

	// A renewed certificate is picked up by Reload.
	mailtest.TestCert(t, dir)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	second, _ := s.Config().GetCertificate(&tls.ClientHelloInfo{})
	if string(first.Certificate[0]) == string(second.Certificate[0]) {
		t.Fatal("Reload kept the old certificate")
	}
	if !s.NotAfter().Equal(second.Leaf.NotAfter) {
		t.Errorf("NotAfter %v after a reload, want the renewed certificate's %v", s.NotAfter(), second.Leaf.NotAfter)
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
