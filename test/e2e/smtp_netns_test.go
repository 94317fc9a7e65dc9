package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
)

// netnsHost is a test host of our own: a network namespace joined to this
// one by a veth pair, so that a client there reaches the server from an
// address that is not loopback. Only the two ends of the pair carry
// traffic.
type netnsHost struct {
	name       string // namespace
	serverAddr string // our end, in this namespace
}

func newNetnsHost(t *testing.T) *netnsHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: network namespaces need root (CI runs as root)")
	}
	ip := mailtest.NeedTool(t, "ip")
	id := os.Getpid() % 100000
	h := &netnsHost{name: fmt.Sprintf("mrtest%d", id), serverAddr: "10.213.7.1"}
	vHost, vPeer := fmt.Sprintf("mrv%da", id), fmt.Sprintf("mrv%db", id)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", h.name)
	t.Cleanup(func() {
		exec.Command(ip, "link", "del", vHost).Run()
		exec.Command(ip, "netns", "del", h.name).Run()
	})
	run("link", "add", vHost, "type", "veth", "peer", "name", vPeer)
	run("link", "set", vPeer, "netns", h.name)
	run("addr", "add", h.serverAddr+"/30", "dev", vHost)
	run("link", "set", vHost, "up")
	run("netns", "exec", h.name, "ip", "addr", "add", "10.213.7.2/30", "dev", vPeer)
	run("netns", "exec", h.name, "ip", "link", "set", vPeer, "up")
	return h
}

// TestSMTPAuthRefusedWithoutTLSOffLoopback: from an address that is not
// loopback (a network namespace of the test's own), submission offers AUTH
// only after STARTTLS.
func TestSMTPAuthRefusedWithoutTLSOffLoopback(t *testing.T) {
	mailtest.NeedTool(t, "swaks")
	host := newNetnsHost(t)
	certDir := mailtest.ShortTempDir(t)
	cert, key := mailtest.TestCert(t, certDir)
	s := startServerNoPasswordLogged(t, fmt.Sprintf(`hostname = "mx.test"
data_dir = "%%DATA%%"
domains = ["example.org"]
[tls]
cert = %q
key = %q
[submission]
listen = ["%s:0"]
`, cert, key, host.serverAddr), "alice@example.org", "bob@example.org")
	addr := s.Addr(t, "submission", false)

	swaksFrom := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", host.name, "swaks", "--server", addr,
			"--helo", "client.test", "--from", "alice@example.org", "--to", "bob@example.org"}, args...)...)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}

	// In clear: no AUTH in the EHLO reply, so swaks will not send the
	// password at all. (An AUTH sent anyway gets 538 5.7.11: the unit
	// test TestAuthOnlyOverTLSOrLoopback.)
	out := swaksFrom("--quit-after", "EHLO")
	if strings.Contains(out, "AUTH") || !strings.Contains(out, "STARTTLS") {
		t.Fatalf("EHLO in clear from a non-loopback client:\n%s", out)
	}
	out = swaksFrom("-a", "PLAIN", "-au", "alice@example.org", "-ap", smtpPassword)
	if strings.Contains(out, "235 ") || !strings.Contains(out, "did not advertise") {
		t.Fatalf("AUTH in clear off loopback:\n%s", out)
	}
	// Without AUTH, submission refuses the sender.
	out = swaksFrom()
	if !strings.Contains(out, "530 5.7.0") {
		t.Fatalf("MAIL without AUTH:\n%s", out)
	}
	// After STARTTLS, AUTH works and the message is delivered.
	before := len(maildirNew(t, mailRoot(s), "example.org/bob"))
	out = swaksFrom("-tls", "-a", "PLAIN", "-au", "alice@example.org", "-ap", smtpPassword)
	if !strings.Contains(out, "235 ") || !strings.Contains(out, "250 2.0.0") {
		t.Fatalf("AUTH after STARTTLS:\n%s", out)
	}
	if n := len(maildirNew(t, mailRoot(s), "example.org/bob")) - before; n != 1 {
		t.Fatalf("bob got %d messages", n)
	}
	if !strings.Contains(s.Log(), "remote=[10.213.7.2]") {
		t.Fatalf("the server did not see the client's non-loopback address:\n%s", s.Log())
	}
}
