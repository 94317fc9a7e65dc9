package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
)

// TestCheckSieve: `mailroom check` compiles the administrator's before
// and after scripts and names the file, line and column of an error.
func TestCheckSieve(t *testing.T) {
	dir := mailtest.ShortTempDir(t)
	good := filepath.Join(dir, "spam.sieve")
	os.WriteFile(good, []byte("require \"fileinto\";\nif header :contains \"X-Spam\" \"yes\" { fileinto \"Junk\"; }\n"), 0o600)
	bad := filepath.Join(dir, "bad.sieve")
	os.WriteFile(bad, []byte("require \"fileinto\";\nif true {\n  fileinto;\n}\n"), 0o600)
	cfg := filepath.Join(dir, "mailroom.toml")
	write := func(after string) {
		os.WriteFile(cfg, []byte("hostname = \"mx\"\ndata_dir = \"data\"\ndomains = [\"example.org\"]\n[lmtp]\nlisten = [\"127.0.0.1:0\"]\n"+
			"[sieve]\nbefore = [\"spam.sieve\"]\nafter = ["+after+"]\n"), 0o600)
	}
	write("")
	if out, code := cli(t, "", "check", "-config", cfg); code != 0 {
		t.Fatalf("check with a good script: %d %s", code, out)
	}
	write(`"bad.sieve"`)
	out, code := cli(t, "", "check", "-config", cfg)
	if code != exitConfig || !strings.Contains(out, bad+":3:3: ") {
		t.Fatalf("check with a bad script: %d %s", code, out)
	}
}

// TestSieveCommands runs `mailroom sieve` without a server (the same
// operations run in serve through the control socket: e2e tests them).
func TestSieveCommands(t *testing.T) {
	cfg := writeConfig(t)
	dir := filepath.Dir(cfg)
	if out, code := cli(t, "pw\n", "user", "add", "-config", cfg, "alice@example.org"); code != 0 {
		t.Fatalf("user add: %d %s", code, out)
	}
	good := filepath.Join(dir, "filter.sieve")
	os.WriteFile(good, []byte("require \"fileinto\";\nfileinto \"Junk\";\n"), 0o600)
	bad := filepath.Join(dir, "bad.sieve")
	os.WriteFile(bad, []byte("keep;\nfrob;\n"), 0o600)
	steps := []struct {
		stdin string
		args  []string
		code  int
		out   string
	}{
		{"", []string{"list", "alice@example.org"}, 0, ""},
		{"", []string{"put", "alice@example.org", good}, 0, "alice@example.org: filter stored\n"},
		{"", []string{"put", "alice@example.org", bad}, exitDataErr, "bad:2:1: unknown command \"frob\""},
		{"discard;\n", []string{"put", "-name", "other", "-activate", "alice@example.org", "-"}, 0, "alice@example.org: other stored and active\n"},
		{"", []string{"list", "alice@example.org"}, 0, "filter\t37\nother\t9\tACTIVE\n"},
		{"", []string{"get", "alice@example.org", "filter"}, 0, "require \"fileinto\";\nfileinto \"Junk\";\n"},
		{"", []string{"get", "alice@example.org", "nope"}, exitNoUser, "no such script"},
		{"", []string{"activate", "alice@example.org", "filter"}, 0, "alice@example.org: filter active\n"},
		{"", []string{"del", "alice@example.org", "filter"}, exitDataErr, "the script is active"},
		{"", []string{"check", "alice@example.org"}, 0, "ok\n"},
		{"", []string{"check", "alice@example.org", bad}, exitDataErr, bad + ":2:1: unknown command \"frob\""},
		{"stop;\n", []string{"check", "alice@example.org", "-"}, 0, "ok\n"},
		{"", []string{"deactivate", "alice@example.org"}, 0, "alice@example.org: no active script\n"},
		{"", []string{"del", "alice@example.org", "filter"}, 0, "alice@example.org: filter deleted\n"},
		{"", []string{"list", "bob@example.org"}, exitNoUser, "bob@example.org: no such account"},
		{"", []string{"put", "alice@example.org"}, exitUsage, "wrong number of arguments"},
		{"", []string{"frob", "alice@example.org"}, exitUsage, "unknown sieve command"},
	}
	for _, s := range steps {
		out, code := cli(t, s.stdin, append([]string{"sieve", "-config", cfg}, s.args...)...)
		if code != s.code || !strings.Contains(out, s.out) || (s.code == 0 && out != s.out) {
			t.Errorf("sieve %q: exit %d %q, want %d %q", s.args, code, out, s.code, s.out)
		}
	}
	// What put stored is what delivery reads.
	home := filepath.Join(dir, "data", "mail", "example.org", "alice", "sieve")
	if b, err := os.ReadFile(filepath.Join(home, "other.sieve")); err != nil || string(b) != "discard;\n" {
		t.Errorf("other.sieve: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(home, ".active")); !os.IsNotExist(err) {
		t.Errorf(".active after deactivate: %v", err)
	}
}

// TestSieveLimitsWiring: [sieve]'s limits reach the scripts' runs and
// the store's quotas.
func TestSieveLimitsWiring(t *testing.T) {
	cfg := queueConfig(t, "[sieve]\nmax_redirects = 2\nmax_actions = 7\nmax_scripts = 3\nmax_script_size = 1000\n")
	s, err := openSieve(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l := s.Limits(); l.MaxRedirects != 2 || l.MaxActions != 7 {
		t.Errorf("limits %+v, want 2 redirects and 7 actions", l)
	}
	if s.MaxScriptSize() != 1000 {
		t.Errorf("max script size %d", s.MaxScriptSize())
	}
	home := "example.org/alice"
	for i, name := range []string{"a", "b", "c", "d"} {
		err := s.Put(home, name, []byte("keep;"))
		if (i < 3) != (err == nil) {
			t.Errorf("script %d: %v (max_scripts = 3)", i+1, err)
		}
	}
}
