package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// Dovecot's imaptest against the real binary (issue 14): its compliance
// scripts, all of them, and a stress run of ten clients.

// runImaptest runs imaptest with args against s as alice and returns its
// output; it fails the test if imaptest cannot run at all.
func runImaptest(t *testing.T, s *imapServer, timeout time.Duration, args ...string) string {
	t.Helper()
	dir := mailtest.Imaptest(t)
	host, port := hostPort(t, s.IMAP)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "imaptest"),
		append([]string{"host=" + host, "port=" + port, "user=alice@example.org", "pass=" + smtpPassword}, args...)...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("imaptest %q did not finish within %v:\n%s", args, timeout, out)
	}
	// A failed group makes the exit status non-zero; the output says
	// which, so it is judged from there.
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("imaptest: %v", err)
	}
	return string(out)
}

var imaptestSummary = regexp.MustCompile(`(?m)^(\d+) test groups: (\d+) failed, (\d+) skipped`)

// TestIMAPImaptestCompliance runs every script of imaptest's tests/
// directory: each group must pass (Dovecot 2.3 passes them all).
func TestIMAPImaptestCompliance(t *testing.T) {
	t.Parallel()
	for _, f := range storeFormats {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			var skip []string
			if f.name == "mbox" {
				// These create folders below the test folder, which
				// holds messages: an mbox folder is a file or a
				// directory, not both (Dovecot's mbox refuses the
				// same CREATEs).
				skip = []string{"list", "listext", "mutf7", "subscribe"}
			}
			imaptestCompliance(t, f.config, skip)
		})
	}
}

// imaptestCompliance runs the scripts of imaptest's tests/ but those in
// skip against a server with the extra configuration config.
func imaptestCompliance(t *testing.T, config string, skip []string) {
	dir := mailtest.Imaptest(t)
	tests := filepath.Join(dir, "tests")
	if len(skip) > 0 {
		tests = t.TempDir()
		ents, err := os.ReadDir(filepath.Join(dir, "tests"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if slices.Contains(skip, e.Name()) || e.IsDir() {
				continue
			}
			if err := os.Symlink(filepath.Join(dir, "tests", e.Name()), filepath.Join(tests, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := startIMAPServer(t, config, "alice@example.org")
	out := runImaptest(t, s, 5*time.Minute, "test="+tests)
	m := imaptestSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in imaptest's output:\n%s", out)
	}
	t.Logf("imaptest: %s", m[0])
	if m[2] != "0" {
		t.Errorf("%s of %s test groups failed:\n%s", m[2], m[1], out)
	}
	if m[1] == "0" {
		t.Errorf("imaptest ran no test group:\n%s", out)
	}
	checkServerLog(t, s)
}

// TestIMAPImaptestStress runs imaptest's stress mode for 30 seconds with
// ten clients, which check every response they get (keywords announced
// in FLAGS before use, EXPUNGE and FETCH in order, ...): no error line.
func TestIMAPImaptestStress(t *testing.T) {
	t.Parallel()
	for _, f := range storeFormats {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			imaptestStress(t, f.config)
		})
	}
}

func imaptestStress(t *testing.T, config string) {
	mailtest.Imaptest(t)
	s := startIMAPServer(t, config, "alice@example.org")
	mbox := filepath.Join(t.TempDir(), "stress.mbox")
	if err := os.WriteFile(mbox, []byte(stressMbox()), 0o600); err != nil {
		t.Fatal(err)
	}
	out := runImaptest(t, s, 2*time.Minute, "clients=10", "secs=30", "mbox="+mbox)
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Error:") || strings.HasPrefix(l, "Panic:") || strings.HasPrefix(l, "Fatal:") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		t.Errorf("imaptest stress: %d error lines, the first:\n%s", len(errs), strings.Join(errs[:min(len(errs), 20)], "\n"))
	}
	if !strings.Contains(out, "Totals:") {
		t.Errorf("imaptest stress printed no totals:\n%s", out)
	}
	checkServerLog(t, s)
}

// checkServerLog fails the test on any error the server logged (a
// SERVERBUG, a recovered panic, a store failure).
func checkServerLog(t *testing.T, s *imapServer) {
	t.Helper()
	for _, l := range strings.Split(s.Log(), "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "event=panic") {
			t.Errorf("server log: %s", l)
		}
	}
}

// stressMbox is the mailbox imaptest's stress clients APPEND from: plain,
// multipart and encoded messages, with LF line ends as imaptest's own
// sample mboxes have.
func stressMbox() string {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "From sender%d@example.org Mon Jan  1 00:00:00 2024\n", i)
		fmt.Fprintf(&b, "From: Sender %d <sender%d@example.org>\nTo: alice@example.org\n", i, i)
		fmt.Fprintf(&b, "Subject: stress message %d\nDate: Mon, 1 Jan 2024 10:%02d:00 +0000\nMessage-ID: <stress%d@example.org>\n", i, i%60, i)
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "\nPlain body %d.\n%s\n", i, strings.Repeat("Some text for the body. ", i%7+1))
		case 1:
			fmt.Fprintf(&b, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b%d\n\n--b%d\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nGr=C3=BC=C3=9Fe %d\n--b%d\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAwQFBgcICQ==\n--b%d--\n", i, i, i, i, i)
		default:
			fmt.Fprintf(&b, "MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\nCaf\xe9 %d\n", i)
		}
		b.WriteString("\n")
	}
	return b.String()
}
