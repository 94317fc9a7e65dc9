package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDeliverReportsStatus runs `mailroom deliver` as Postfix's pipe(8)
// would and checks the exit status and the first line of output, which
// pipe(8) reads for the RFC 3463 status of its bounce: a forwarding loop
// (the message already carries Delivered-To: for an alias) is 65 with
// 5.4.6, never an undocumented status whose DSN would read "data format
// error"; an unknown user is 67 with 5.1.1; too big is 65 with 5.3.4; a
// broken configuration is 75 with 4.3.5, so that the MTA keeps the mail.
func TestDeliverReportsStatus(t *testing.T) {
	cfg := writeConfig(t)
	dir := filepath.Dir(cfg)
	os.WriteFile(filepath.Join(dir, "aliases"), []byte("sales: alice\nping: pong\npong: ping\n"), 0o600)
	f, _ := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("[delivery]\naliases = \"aliases\"\n[limits]\nmax_message_bytes = 1000\n")
	f.Close()
	if out, code := cli(t, "pw\n", "user", "add", "-config", cfg, "alice@example.org"); code != 0 {
		t.Fatalf("user add: %d %s", code, out)
	}
	msg := "Subject: x\n\nbody\n"
	for _, c := range []struct {
		name   string
		stdin  string
		args   []string
		exit   int
		status string
	}{
		{"delivered", msg, []string{"alice@example.org"}, 0, ""},
		{"alias", msg, []string{"sales@example.org"}, 0, ""},
		{"null sender as <>", msg, []string{"-f", "<>", "alice@example.org"}, 0, ""},
		{"loop via Delivered-To", "Delivered-To: sales@example.org\n" + msg, []string{"sales@example.org"}, exitDataErr, "5.4.6"},
		{"alias cycle", msg, []string{"ping@example.org"}, exitDataErr, "5.4.6"},
		{"unknown user", msg, []string{"nobody@example.org"}, exitNoUser, "5.1.1"},
		{"too big", "Subject: big\n\n" + strings.Repeat("x", 2000) + "\n", []string{"alice@example.org"}, exitDataErr, "5.3.4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, code := cli(t, c.stdin, append([]string{"deliver", "-config", cfg}, c.args...)...)
			if code != c.exit {
				t.Fatalf("exit %d, want %d\n%s", code, c.exit, out)
			}
			if c.status == "" {
				if out != "" {
					t.Errorf("output %q, want none", out)
				}
				return
			}
			if !strings.HasPrefix(out, c.status+" mailroom deliver: ") {
				t.Errorf("output %q, want it to begin with %q", out, c.status+" mailroom deliver: ")
			}
			if strings.Count(out, "\n") != 1 {
				t.Errorf("output %q, want one line", out)
			}
		})
	}

	// A configuration that cannot be read is temporary (4.3.5, exit 75).
	broken := filepath.Join(dir, "broken.toml")
	os.WriteFile(broken, []byte("hostname = \n"), 0o600)
	out, code := cli(t, msg, "deliver", "-config", broken, "alice@example.org")
	if code != exitTempFail || !regexp.MustCompile(`^4\.3\.5 mailroom deliver: .*broken\.toml:1`).MatchString(out) {
		t.Errorf("broken configuration: exit %d, output %q; want 75 and 4.3.5 naming the file and line", code, out)
	}
}
