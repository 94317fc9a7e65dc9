package lmtp_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/lmtp"
)

// TestDiskFull puts one mail home on a 64 KiB tmpfs and fills it: that
// recipient gets 452 4.3.1 (try later), nothing half written stays behind,
// the other recipient gets the message, and the session goes on.
func TestDiskFull(t *testing.T) {
	env, addr, _ := start(t, lmtp.Options{}, "alice@example.org", "bob@example.org")
	home := mountTmpfs(t, filepath.Join(env.MailRoot, "example.org", "bob"), "size=64k")
	// Fill the file system, leaving room for the Maildir's directories.
	os.MkdirAll(filepath.Join(home, "Maildir", "tmp"), 0o700)
	os.MkdirAll(filepath.Join(home, "Maildir", "new"), 0o700)
	os.MkdirAll(filepath.Join(home, "Maildir", "cur"), 0o700)
	f, _ := os.Create(filepath.Join(home, "filler"))
	f.Write(make([]byte, 1<<20))
	f.Close()

	d := mailtest.Dial(t, "tcp", addr)
	d.Send("LHLO c")
	d.Expect("250 ")
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "RCPT TO:<bob@example.org>", "DATA")
	d.Expect("250")
	d.Expect("250")
	d.Expect("250")
	d.Expect("354")
	d.Send("Subject: big", "", strings.Repeat(strings.Repeat("0123456789", 7)+"\r\n", 300), ".")
	d.Expect("250 2.0.0 <alice@example.org>")
	d.Expect("452 4.3.1 <bob@example.org>")
	d.Send("NOOP")
	d.Expect("250")
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/bob")) + mailtest.TmpFiles(t, env.MailRoot, "example.org/bob"); n != 0 {
		t.Fatalf("%d files left in bob's full Maildir", n)
	}
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")); n != 1 {
		t.Fatalf("alice has %d messages", n)
	}
}

// TestReadOnlyMailHome mounts a read-only file system over one mail home:
// that recipient gets 451 (try later), the other gets the message, and the
// session goes on. (Permission bits do not stop root, a read-only mount
// does.)
func TestReadOnlyMailHome(t *testing.T) {
	env, addr, _ := start(t, lmtp.Options{}, "alice@example.org", "bob@example.org")
	mountTmpfs(t, filepath.Join(env.MailRoot, "example.org", "bob"), "ro,size=64k")

	d := mailtest.Dial(t, "tcp", addr)
	d.Send("LHLO c")
	d.Expect("250 ")
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "RCPT TO:<bob@example.org>", "DATA")
	for _, want := range []string{"250", "250", "250", "354"} {
		d.Expect(want)
	}
	d.Send("Subject: x", "", "y", ".")
	d.Expect("250 2.0.0 <alice@example.org>")
	d.Expect("451 4.3.0 <bob@example.org>")
	d.Send("NOOP")
	d.Expect("250")
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")); n != 1 {
		t.Fatalf("alice has %d messages", n)
	}
}

// mountTmpfs mounts a small tmpfs with opts over dir (created) until the
// test ends: a mail home that fills up or refuses writes. It needs root,
// which CI has; elsewhere the test is skipped, loudly.
func mountTmpfs(t *testing.T, dir, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: mounting a tmpfs needs root (CI runs as root)")
	}
	os.MkdirAll(dir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		if mailtest.InCI() {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("SKIP: cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}
