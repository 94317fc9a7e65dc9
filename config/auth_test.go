package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/mailauth/dkim"
)

func TestDKIMKeysAndDNS(t *testing.T) {
	dir := t.TempDir()
	k, err := dkim.Generate(dkim.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	pemData, _ := dkim.MarshalKey(k)
	// One key where keygen puts it, one named relative to the file.
	def := filepath.Join(dir, "data", "dkim", "example.org", "ed.key")
	os.MkdirAll(filepath.Dir(def), 0o700)
	os.WriteFile(def, pemData, 0o600)
	os.WriteFile(filepath.Join(dir, "other.key"), pemData, 0o600)
	p := filepath.Join(dir, "m.toml")
	os.WriteFile(p, []byte(`hostname = "mx"
data_dir = "data"
domains = ["example.org"]
[relay]
dns = "127.0.0.1:5353"
[[dkim]]
domain = "Example.ORG"
selector = "ed"
[[dkim]]
domain = "example.org"
selector = "other"
key = "other.key"
`), 0o600)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DKIM[0].Key != def || cfg.DKIM[0].Domain != "example.org" {
		t.Errorf("dkim[0] = %+v, want key %s and the domain normalised", cfg.DKIM[0], def)
	}
	if cfg.DKIM[1].Key != filepath.Join(dir, "other.key") {
		t.Errorf("dkim[1].key = %q, want it relative to the file", cfg.DKIM[1].Key)
	}
	if cfg.DNSServer() != "127.0.0.1:5353" {
		t.Errorf("DNSServer = %q, want relay.dns's value", cfg.DNSServer())
	}
	if w := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(w, "relay.dns is the old name of [dns] server") {
		t.Errorf("no warning about relay.dns:\n%s", w)
	}
}
