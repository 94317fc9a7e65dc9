package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/internal/dbcheck"
	"mailroom/internal/mailtest"
)

// TestMain lets the test binary serve as dbcheck's child process, as the
// mailroom binary does.
func TestMain(m *testing.M) {
	dbcheck.Main()
	os.Exit(m.Run())
}

// cli runs the command in-process, as a user would from the shell, with no
// server running: every command must then open the database itself.
func cli(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &out)
	return out.String(), code
}

func writeConfig(t *testing.T) string {
	t.Helper()
	dir := mailtest.ShortTempDir(t)
	p := filepath.Join(dir, "mailroom.toml")
	os.WriteFile(p, []byte(`hostname = "mx.test"
data_dir = "data"
domains = ["example.org"]
[lmtp]
listen = ["127.0.0.1:0"]
`+mailtest.CheapBcrypt), 0o600)
	return p
}

func TestCheck(t *testing.T) {
	cfg := writeConfig(t)
	if out, code := cli(t, "", "check", "-config", cfg); code != 0 || !strings.Contains(out, "warning: example.org has no postmaster") {
		t.Fatalf("check without postmaster: %d %s", code, out)
	}
	// An account named postmaster is enough.
	if out, code := cli(t, "pw\n", "user", "add", "-config", cfg, "postmaster@example.org"); code != 0 {
		t.Fatalf("user add: %d %s", code, out)
	}
	if out, code := cli(t, "", "check", "-config", cfg); code != 0 || !strings.Contains(out, "ok") || strings.Contains(out, "warning") {
		t.Fatalf("check good config: %d %s", code, out)
	}
	// So is an alias; and an aliases file with an error is reported
	// with its file and line.
	aliases := filepath.Join(filepath.Dir(cfg), "aliases")
	os.WriteFile(aliases, []byte("postmaster: root@elsewhere.example\n"), 0o600)
	withAliases := filepath.Join(filepath.Dir(cfg), "aliases.toml")
	os.WriteFile(withAliases, []byte("hostname = \"mx\"\ndata_dir = \"d2\"\ndomains = [\"example.org\"]\n[lmtp]\nlisten = [\"127.0.0.1:0\"]\n[delivery]\naliases = \"aliases\"\n"), 0o600)
	if out, code := cli(t, "", "check", "-config", withAliases); code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("check with postmaster aliased: %d %s", code, out)
	}
	os.WriteFile(aliases, []byte("postmaster: root@elsewhere.example\n\nsales alice\n"), 0o600)
	if out, code := cli(t, "", "check", "-config", withAliases); code != exitConfig || !strings.Contains(out, aliases+":3: ") {
		t.Fatalf("check with a broken aliases file: %d %s", code, out)
	}
	open := filepath.Join(filepath.Dir(cfg), "open.toml")
	os.WriteFile(open, []byte("hostname = \"mx\"\ndata_dir = \"d\"\ndomains = [\"example.org\"]\n[submission]\nlisten = [\"0.0.0.0:587\"]\n"), 0o600)
	if out, code := cli(t, "", "check", "-config", open); code != 0 || !strings.Contains(out, "warning: ") || !strings.Contains(out, "cannot authenticate") {
		t.Fatalf("check with a warning: %d %s", code, out)
	}
	bad := filepath.Join(filepath.Dir(cfg), "bad.toml")
	os.WriteFile(bad, []byte("hostname = \"x\"\ndomains = [\"example.org\"]\nbogus = 1\n"), 0o600)
	out, code := cli(t, "", "check", "-config", bad)
	if code != exitConfig || !strings.Contains(out, bad+":3: unknown key \"bogus\"") {
		t.Fatalf("check bad config: %d %s", code, out)
	}
	t.Setenv("MAILROOM_CONFIG", cfg)
	if _, code := cli(t, "", "check"); code != 0 {
		t.Fatalf("$MAILROOM_CONFIG not used: %d", code)
	}
}

func TestUserCommandsWithoutServer(t *testing.T) {
	cfg := writeConfig(t)
	steps := []struct {
		stdin string
		args  []string
		code  int
		out   string
	}{
		{"s3cret\n", []string{"user", "add", "alice@example.org"}, 0, "added"},
		{"pw", []string{"user", "add", "bob@example.org"}, 0, "added"},
		{"pw\n", []string{"user", "add", "ALICE@example.org"}, exitDataErr, "already exists"},
		{"pw\n", []string{"user", "add", "x@other.example"}, exitDataErr, "not one of the configured domains"},
		{"pw\n", []string{"user", "add", "../x@example.org"}, exitFail, "invalid address"},
		{"", []string{"user", "add", "carol@example.org"}, exitDataErr, "no password on standard input"},
		{"", []string{"user", "list"}, 0, "alice@example.org\t"},
		{"new\n", []string{"user", "passwd", "alice@example.org"}, 0, "password changed"},
		{"new\n", []string{"user", "passwd", "nobody@example.org"}, exitNoUser, "no such account"},
		{"", []string{"user", "del", "bob@example.org"}, 0, "deleted"},
		{"", []string{"user", "del", "bob@example.org"}, exitNoUser, "no such account"},
		{"", []string{"user", "frob", "x"}, exitUsage, "unknown user command"},
		{"", []string{"user", "add"}, exitUsage, "takes 1 address"},
	}
	for _, s := range steps {
		// Flags after the positional arguments work too.
		out, code := cli(t, s.stdin, append(s.args, "-config", cfg)...)
		if code != s.code || !strings.Contains(out, s.out) {
			t.Fatalf("%v: exit %d %q; want %d and %q", s.args, code, out, s.code, s.out)
		}
	}
	out, _ := cli(t, "", "user", "list", "-config", cfg)
	if strings.Contains(out, "bob") || !strings.Contains(out, "alice") {
		t.Fatalf("list after del: %q", out)
	}
}

func TestDeliverWithoutServer(t *testing.T) {
	cfg := writeConfig(t)
	cli(t, "pw\n", "user", "add", "alice@example.org", "-config", cfg)
	cli(t, "pw\n", "user", "add", "bob@example.org", "-config", cfg)
	root := filepath.Join(filepath.Dir(cfg), "data", "mail")

	msg := "Subject: via deliver\n\nhello\n"
	if out, code := cli(t, msg, "deliver", "-config", cfg, "-f", "sender@remote.example", "alice@example.org", "bob+x@example.org"); code != 0 {
		t.Fatalf("deliver: %d %s", code, out)
	}
	for _, home := range []string{"example.org/alice", "example.org/bob"} {
		m := mailtest.Messages(t, root, home)
		if len(m) != 1 || !strings.HasPrefix(m[0], "Return-Path: <sender@remote.example>\n") || !strings.HasSuffix(m[0], msg) {
			t.Fatalf("%s: %q", home, m)
		}
	}
	// One unknown recipient: exit 67 and nobody gets a copy.
	out, code := cli(t, msg, "deliver", "-config", cfg, "alice@example.org", "nobody@example.org")
	if code != exitNoUser || !strings.Contains(out, "nobody@example.org") {
		t.Fatalf("unknown recipient: %d %s", code, out)
	}
	if n := len(mailtest.Messages(t, root, "example.org/alice")); n != 1 {
		t.Fatalf("alice has %d messages after a refused delivery", n)
	}
	if _, code := cli(t, msg, "deliver", "-config", cfg); code != exitUsage {
		t.Fatalf("no recipient: %d", code)
	}
	if _, code := cli(t, msg, "deliver", "-config", "/nonexistent.toml", "alice@example.org"); code != exitTempFail {
		t.Fatalf("missing config: %d, want 75 so the MTA keeps the message", code)
	}
}

// TestCheckWarnings: check warns about IMAP in clear off loopback and a
// data_dir others can read, and fails (78) on a socket_group that does
// not exist, which serve would only find when it binds the socket.
func TestCheckWarnings(t *testing.T) {
	dir := mailtest.ShortTempDir(t)
	write := func(extra string) string {
		p := filepath.Join(dir, "c.toml")
		os.WriteFile(p, []byte("hostname = \"mx.test\"\ndata_dir = \"data\"\ndomains = [\"example.org\"]\n"+extra), 0o600)
		return p
	}
	cfg := write("[lmtp]\nlisten = [\"127.0.0.1:0\"]\n[imap]\nlisten = [\"0.0.0.0:143\"]\n")
	out, code := cli(t, "", "check", "-config", cfg)
	if code != 0 || !strings.Contains(out, `warning: `+cfg+`: imap.listen "0.0.0.0:143" without [tls]`) {
		t.Errorf("IMAP in clear off loopback: %d %s", code, out)
	}
	os.Chmod(filepath.Join(dir, "data"), 0o755)
	if out, _ := cli(t, "", "check", "-config", cfg); !strings.Contains(out, "data_dir "+filepath.Join(dir, "data")+" is mode 0755: make it 0700") {
		t.Errorf("data_dir 0755: %s", out)
	}
	os.Chmod(filepath.Join(dir, "data"), 0o700)
	cfg = write("[imap]\nlisten = [\"127.0.0.1:0\"]\n[lmtp]\nlisten = [\"unix:lmtp.sock\"]\nsocket_group = \"no-such-group-mr\"\n")
	out, code = cli(t, "", "check", "-config", cfg)
	if code != exitConfig || !strings.Contains(out, `lmtp.socket_group "no-such-group-mr": no such group`) {
		t.Errorf("missing socket_group: %d %s", code, out)
	}
	if strings.Contains(out, "warning") {
		t.Errorf("loopback IMAP and a 0700 data_dir got a warning: %s", out)
	}
}
