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
