package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	closed := filepath.Join(dir, "closed")
	os.Mkdir(closed, 0o700)
	cases := []struct {
		name, toml, want string
	}{
		{"no listeners", "", "will receive no mail"},
		{"submission without TLS off loopback", "[submission]\nlisten = [\"0.0.0.0:587\"]\n", "cannot authenticate"},
		{"managesieve without TLS off loopback", "[managesieve]\nlisten = [\"0.0.0.0:4190\"]\n", "managesieve.listen \"0.0.0.0:4190\" without [tls]"},
		{"one client can take every connection", "[limits]\nmax_connections = 20\nmax_connections_per_ip = 20\n", "one client address can take every SMTP connection"},
		{"metrics off loopback", "[metrics]\nlisten = \"0.0.0.0:9154\"\n", "metrics.listen \"0.0.0.0:9154\" is not on loopback"},
		{"socket group cannot reach", "[lmtp]\nlisten = [\"unix:" + closed + "/lmtp.sock\"]\nsocket_group = \"0\"\n", "is mode 0700"},
	}
	for _, c := range cases {
		cfg, err := Parse("m.toml", []byte("hostname = \"mx\"\ndomains = [\"example.org\"]\n"+c.toml))
		if err != nil {
			t.Fatal(err)
		}
		w := strings.Join(cfg.Warnings(), "\n")
		if !strings.Contains(w, c.want) {
			t.Errorf("%s: warnings %q, want %q", c.name, w, c.want)
		}
	}
	quiet, _ := Parse("m.toml", []byte("hostname = \"mx\"\ndomains = [\"example.org\"]\n[submission]\nlisten = [\"127.0.0.1:587\"]\n[metrics]\nlisten = \"127.0.0.1:9154\"\n"))
	if w := quiet.Warnings(); len(w) != 0 {
		t.Errorf("loopback submission without TLS warns: %q", w)
	}
}
