package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden .err files")

func TestExamplesLoad(t *testing.T) {
	for _, name := range []string{"mailroom.toml", "dev.toml"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(filepath.Join("..", "examples", name))
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Domains) == 0 || len(cfg.LMTP.Listen) == 0 {
				t.Fatalf("example lost its settings: %+v", cfg)
			}
		})
	}
}

func TestLoadDefaultsAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.toml")
	os.WriteFile(p, []byte("hostname = \"mx\"\ndata_dir = \"data\"\ndomains = [\"Example.ORG\"]\n[lmtp]\nlisten = [\"unix:s.sock\"]\n"), 0o600)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "data") {
		t.Errorf("data_dir = %q, want it relative to the file", cfg.DataDir)
	}
	if cfg.LMTP.Listen[0] != "unix:"+filepath.Join(dir, "s.sock") {
		t.Errorf("listen = %q", cfg.LMTP.Listen[0])
	}
	if cfg.Domains[0] != "example.org" {
		t.Errorf("domain not normalised: %q", cfg.Domains[0])
	}
	if cfg.Limits.MaxMessageBytes != 26214400 || cfg.Limits.MaxRecipients != 100 ||
		cfg.RecipientDelimiter() != "+" || !cfg.ForwardFiles() || cfg.Delivery.Format != "maildir" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if m, _ := cfg.SocketMode(); m != 0o660 {
		t.Errorf("socket mode %o", m)
	}
}

func TestEmptyDelimiterDisables(t *testing.T) {
	cfg, err := Parse("x.toml", []byte("[delivery]\nrecipient_delimiter = \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RecipientDelimiter() != "" {
		t.Fatalf("delimiter %q", cfg.RecipientDelimiter())
	}
}

// TestBad loads each testdata/bad/*.toml and compares the error with its
// golden .err file: every message must name the file and the key or line.
func TestBad(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.toml")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if err == nil {
				t.Fatal("no error")
			}
			got := err.Error() + "\n"
			for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
				if !strings.HasPrefix(line, f) {
					t.Errorf("error line does not name the file: %q", line)
				}
			}
			golden := strings.TrimSuffix(f, ".toml") + ".err"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/bad/*.toml")
	files = append(files, "../examples/mailroom.toml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		cfg.Validate()
	})
}

// TestIMAPTable: [imap] takes the listener keys and max_connections.
func TestIMAPTable(t *testing.T) {
	cfg, err := Parse("x.toml", []byte("hostname = \"mx\"\ndata_dir = \"/d\"\ndomains = [\"example.org\"]\n[imap]\nlisten = [\"127.0.0.1:143\"]\nmax_connections = 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IMAP.MaxConnections != 5 || len(cfg.IMAP.Listen) != 1 {
		t.Errorf("[imap] = %+v", cfg.IMAP)
	}
	if d := Default(); d.IMAP.MaxConnections != 1000 || d.Limits.MinDataRate != 500 {
		t.Errorf("defaults: imap.max_connections %d, limits.min_data_rate %d", d.IMAP.MaxConnections, d.Limits.MinDataRate)
	}
}
