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

// TestExampleDKIM loads examples/mailroom.toml with its [[dkim]] entries
// uncommented (and data_dir somewhere the test can write the keys
// `mailroom dkim keygen` would have made), so that what the example shows
// is what Load takes.
func TestExampleDKIM(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "mailroom.toml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var lines []string
	inDKIM := false
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "# [[dkim]]") {
			inDKIM = true
		}
		if inDKIM && strings.HasPrefix(l, "# ") {
			l = strings.TrimPrefix(l, "# ")
		} else if inDKIM {
			inDKIM = false
		}
		lines = append(lines, strings.ReplaceAll(l, "/var/lib/mailroom", dir))
	}
	text := strings.Join(lines, "\n")
	if strings.Count(text, "\n[[dkim]]") != 2 {
		t.Fatalf("the example's [[dkim]] entries were not found:\n%s", text)
	}
	keyDir := filepath.Join(dir, "dkim", "example.org")
	os.MkdirAll(keyDir, 0o700)
	for sel, algo := range map[string]string{"mailroom": dkim.RSA, "mailroom-ed25519": dkim.Ed25519} {
		k, err := dkim.Generate(algo)
		if err != nil {
			t.Fatal(err)
		}
		pem, _ := dkim.MarshalKey(k)
		if err := os.WriteFile(filepath.Join(keyDir, sel+".key"), pem, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "mailroom.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []DKIMKey{
		{Domain: "example.org", Selector: "mailroom", Key: filepath.Join(keyDir, "mailroom.key")},
		{Domain: "example.org", Selector: "mailroom-ed25519", Key: filepath.Join(keyDir, "mailroom-ed25519.key")},
	}
	if len(cfg.DKIM) != 2 || cfg.DKIM[0] != want[0] || cfg.DKIM[1] != want[1] {
		t.Errorf("[[dkim]] = %+v, want %+v", cfg.DKIM, want)
	}
}
