package e2e

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/mailbox/mbox"
	"mailroom/smtp"
)

// TestAliasFanOutOverLMTP delivers one message over LMTP (swaks) to an
// alias with three local members, a remote address, a pipe and a file,
// and checks every one got exactly one copy: the remote one through the
// queue to an in-test SMTP server (mailroom's own MX role, for another
// domain) acting as the smarthost.
func TestAliasFanOutOverLMTP(t *testing.T) {
	remote := mailenv.NewEnv(t, mailenv.EnvOptions{Domains: []string{"remote.example"}, Users: []string{"partner@remote.example"}})
	smarthost, _ := mailenv.StartSMTP(t, remote, smtp.Options{Role: smtp.MX})

	out := mailtest.ShortTempDir(t)
	// Commands run as nobody when mailroom runs as root (CI): let the
	// pipe write its output here.
	if err := os.Chmod(out, 0o1777); err != nil {
		t.Fatal(err)
	}
	aliases := filepath.Join(out, "aliases")
	writeFile(t, aliases, fmt.Sprintf(`# the team
postmaster: alice
team: alice, bob,
  carol@example.org, "Alice"
  partner@remote.example
  "|(id -u; cat) > %[1]s/piped"
  %[1]s/archive.mbox
`, out))
	srv := startServer(t, fmt.Sprintf(`hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[lmtp]
listen = ["127.0.0.1:0"]
[delivery]
aliases = %q
[relay]
smarthost = %q
[queue]
retry = ["1s"]
`, aliases, smarthost), "alice@example.org", "bob@example.org", "carol@example.org")

	msg := crlf("From: sender@elsewhere.example\nTo: team@example.org\nSubject: fan out\nMessage-ID: <fan@elsewhere.example>\n\nTo everybody.\nFrom here on, quoted in mbox.\n")
	tr := parseTranscript(lmtpSwaks(t, srv.Addr(t, "lmtp", false), false, msg, "sender@elsewhere.example", "team@example.org"))
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("LMTP replies %v", r)
	}
	root := mailRoot(srv)
	for _, u := range []string{"alice", "bob", "carol"} {
		got := maildirNew(t, root, "example.org/"+u)
		if len(got) != 1 {
			t.Fatalf("%s has %d messages, want 1", u, len(got))
		}
		if !strings.Contains(got[0].Data, "X-Original-To: team@example.org\n") || !strings.Contains(got[0].Data, "Delivered-To: "+u+"@example.org\n") {
			t.Errorf("%s's copy lacks X-Original-To/Delivered-To:\n%s", u, got[0].Data)
		}
	}
	raw, err := os.ReadFile(filepath.Join(out, "piped"))
	uid, piped, _ := strings.Cut(string(raw), "\n")
	if err != nil || !strings.Contains(piped, "Subject: fan out\n") || !strings.HasPrefix(piped, "Return-Path: <sender@elsewhere.example>\n") {
		t.Errorf("pipe got %q (%v)", piped, err)
	}
	wantUID := strconv.Itoa(os.Geteuid())
	if os.Geteuid() == 0 {
		wantUID = "65534"
		if u, err := user.Lookup("nobody"); err == nil {
			wantUID = u.Uid
		}
	}
	if uid != wantUID {
		t.Errorf("the command ran as uid %s, want %s (nobody when mailroom runs as root)", uid, wantUID)
	}
	f, err := os.Open(filepath.Join(out, "archive.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msgs, err := mbox.Split(f)
	if err != nil || len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), "\nFrom here on, quoted in mbox.\n") {
		t.Errorf("mbox: %d messages (%v)", len(msgs), err)
	}
	mailtest.Eventually(t, 20*time.Second, "the forwarded copy to reach the remote MX", func() bool {
		return len(mailtest.Messages(t, remote.MailRoot, "remote.example/partner")) == 1
	})
	fwd := mailtest.Messages(t, remote.MailRoot, "remote.example/partner")[0]
	if !strings.Contains(fwd, "Return-Path: <sender@elsewhere.example>\n") || !strings.Contains(fwd, "Delivered-To: team@example.org\n") {
		t.Errorf("forwarded copy lacks the original sender or the loop marker:\n%s", fwd)
	}
	if c := strings.Count(srv.Log(), `msg=expanded`); c != 1 {
		t.Errorf("expansion logged %d times, want once per message", c)
	}

	// mailroom route prints the tree with where each rule came from.
	rout, code := srv.Run(t, "", "route", "team@example.org")
	if code != 0 {
		t.Fatalf("route: exit %d\n%s", code, rout)
	}
	for _, want := range []string{aliases + ":3", "partner@remote.example", "cat) > ", "archive.mbox", "example.org/carol"} {
		if !strings.Contains(rout, want) {
			t.Errorf("route output lacks %q:\n%s", want, rout)
		}
	}
	if rout, code := srv.Run(t, "", "route", "nobody@example.org"); code != 67 {
		t.Errorf("route of an unknown user: exit %d, want 67\n%s", code, rout)
	}
	// Reload on change: a broken file keeps the old table, and says where.
	writeFile(t, aliases, "team alice\n")
	srv.Run(t, "", "route", "team@example.org")
	mailtest.Eventually(t, 5*time.Second, "the broken aliases file to be reported", func() bool {
		return strings.Contains(srv.Log(), aliases+":1")
	})
	if rout, code := srv.Run(t, "", "route", "team@example.org"); code != 0 || !strings.Contains(rout, "partner@remote.example") {
		t.Errorf("the old table is not in force after a broken edit: exit %d\n%s", code, rout)
	}
	if cout, code := srv.Run(t, "", "check"); code != 78 || !strings.Contains(cout, aliases+":1") {
		t.Errorf("check of a broken aliases file: exit %d\n%s", code, cout)
	}
}

// TestForwardLoopEndsInOneBounce: two accounts whose .forward files point
// at each other, behind a private Postfix that hands mail to mailroom over
// LMTP. mailroom refuses the recipient with 5.4.6 and Postfix returns
// exactly one bounce to the sender, which is also a mailroom account.
func TestForwardLoopEndsInOneBounce(t *testing.T) {
	srv := startServer(t, `hostname = "mx.example.org"
data_dir = "%DATA%"
domains = ["example.org"]
[lmtp]
listen = ["127.0.0.1:0"]
`, "alice@example.org", "bob@example.org", "carol@example.org")
	root := mailRoot(srv)
	writeFile(t, filepath.Join(root, "example.org", "alice", ".forward"), "bob\n")
	writeFile(t, filepath.Join(root, "example.org", "bob", ".forward"), "alice@example.org\n")
	p := startPostfix(t, "lmtp:inet:"+srv.Addr(t, "lmtp", false))

	msg := crlf("From: carol@example.org\nTo: alice@example.org\nSubject: round and round\n\nhello\n")
	tr := parseTranscript(swaks(t, msg, "--server", p.addr(), "--from", "carol@example.org", "--to", "alice@example.org"))
	if r, _ := tr.replies("QUIT"); len(r) == 0 {
		t.Fatalf("swaks did not finish:\n%v", tr)
	}
	got := waitDelivered(t, p, root, map[string]int{"example.org/carol": 1}, nil)
	bounce := got["example.org/carol"][0].Data
	if !strings.Contains(bounce, "5.4.6") {
		t.Errorf("the bounce does not say 5.4.6:\n%s", bounce)
	}
	for _, u := range []string{"alice", "bob"} {
		if n := len(maildirNew(t, root, "example.org/"+u)); n != 0 {
			t.Errorf("%s got %d copies of a looping message", u, n)
		}
	}
	if n := len(maildirNew(t, root, "example.org/carol")); n != 1 {
		t.Errorf("carol got %d bounces, want 1", n)
	}
	if out, code := srv.Run(t, "", "route", "alice@example.org"); code == 0 || !strings.Contains(out, "loop") {
		t.Errorf("route of a looping address: exit %d\n%s", code, out)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
