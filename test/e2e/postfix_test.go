package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// postfix is a private Postfix instance for one test: its own
// config_directory, queue_directory, data_directory and log under a
// temporary directory, an smtpd on 127.0.0.1 at a port of its own, and
// nothing shared with the system's instance.
type postfix struct {
	bin   string // the postfix command
	base  string
	etc   string // config_directory
	queue string // queue_directory
	log   string // maillog_file
	Port  int    // smtpd
}

const postfixMainCf = `compatibility_level = 3.6
config_directory = {{BASE}}/etc
queue_directory = {{BASE}}/q
data_directory = {{BASE}}/data
mail_owner = postfix
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = example.org
virtual_transport = {{TRANSPORT}}
maillog_file = {{BASE}}/maillog
maillog_file_prefixes = {{BASE}}
smtputf8_enable = yes
disable_dns_lookups = yes
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
biff = no
`

// postfixMasterCf is the minimum to receive by SMTP, deliver by LMTP and
// bounce, with no chroot anywhere (Debian's master.cf chroots most
// services, which would hide the LMTP socket and the log).
const postfixMasterCf = `127.0.0.1:{{PORT}} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// startPostfix starts a private Postfix whose virtual_transport (for
// example.org) is transport, e.g. "lmtp:inet:127.0.0.1:2424". It is
// stopped, and anything left of it killed, at cleanup.
func startPostfix(t *testing.T, transport string) *postfix {
	t.Helper()
	p := newPostfix(t, strings.ReplaceAll(postfixMainCf, "{{TRANSPORT}}", transport))
	p.start(t, func(port int) string {
		return strings.ReplaceAll(postfixMasterCf, "{{PORT}}", strconv.Itoa(port))
	}, false)
	return p
}

// newPostfix prepares a private Postfix instance with mainCf ({{BASE}}
// replaced by its directory) without starting it.
func newPostfix(t *testing.T, mainCf string) *postfix {
	t.Helper()
	bin := mailtest.NeedTool(t, "postfix")
	if os.Geteuid() != 0 {
		// Postfix starts as root and runs its daemons as mail_owner.
		if mailtest.InCI() {
			t.Fatalf("a private Postfix needs root")
		}
		t.Skip("SKIP: a private Postfix needs root")
	}
	if _, err := user.Lookup("postfix"); err != nil {
		t.Fatalf("postfix is installed but user postfix is missing: %v", err)
	}
	base := mailtest.ShortTempDir(t)
	// Postfix's daemons run as user postfix and must reach the log and
	// their directories.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &postfix{bin: bin, base: base, etc: filepath.Join(base, "etc"), queue: filepath.Join(base, "q"), log: filepath.Join(base, "maillog")}
	for _, d := range []string{p.etc, p.queue, filepath.Join(base, "data")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pf, _ := user.Lookup("postfix")
	uid, _ := strconv.Atoi(pf.Uid)
	if err := os.Chown(filepath.Join(base, "data"), uid, -1); err != nil {
		t.Fatal(err)
	}
	mainCf = strings.ReplaceAll(mainCf, "{{BASE}}", base)
	if err := os.WriteFile(filepath.Join(p.etc, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("postfix log:\n%s", p.Log())
		}
	})
	return p
}

// start writes master(port) as master.cf and starts the instance, its
// smtpd on a port of its own. With debianChroot, the chroot of the
// daemons that run chrooted is prepared first by Debian's own
// configure-instance.sh, as Debian's postfix@.service does.
func (p *postfix) start(t *testing.T, master func(port int) string, debianChroot bool) {
	t.Helper()
	// The port must be written into master.cf, so it is picked by
	// binding :0 and closing; another process may take it meanwhile, in
	// which case the master cannot bind it and we try another.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p.Port = freePort(t)
		if err := os.WriteFile(filepath.Join(p.etc, "master.cf"), []byte(master(p.Port)), 0o644); err != nil {
			t.Fatal(err)
		}
		if attempt == 0 {
			// check creates the queue directories with their owners.
			if out, err := p.cmd("check"); err != nil {
				t.Fatalf("postfix check: %v\n%s\nlog:\n%s", err, out, p.Log())
			}
			if debianChroot {
				cmd := exec.Command("/usr/lib/postfix/configure-instance.sh", "-")
				cmd.Env = append(os.Environ(), "MAIL_CONFIG="+p.etc)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("Debian's configure-instance.sh: %v\n%s", err, out)
				}
			}
		}
		out, err := p.cmd("start")
		if err == nil {
			lastErr = nil
			break
		}
		lastErr = fmt.Errorf("postfix start: %v\n%s", err, out)
		p.stop(t)
	}
	if lastErr != nil {
		t.Fatalf("%v\nlog:\n%s", lastErr, p.Log())
	}
	// `postfix start` returns once the master has started; wait for its
	// smtpd listener to accept.
	mailtest.Eventually(t, 10*time.Second, "Postfix's smtpd to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", p.addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (p *postfix) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// cmd runs `postfix -c etc args...`. Postfix logs its complaints to
// maillog_file, not to a stderr that is not a terminal.
func (p *postfix) cmd(args ...string) (string, error) {
	cmd := exec.Command(p.bin, append([]string{"-c", p.etc}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Log returns Postfix's log so far.
func (p *postfix) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// logged reports whether one line of Postfix's log has all of parts.
func (p *postfix) logged(parts ...string) bool {
	for _, l := range strings.Split(p.Log(), "\n") {
		all := true
		for _, part := range parts {
			all = all && strings.Contains(l, part)
		}
		if all {
			return true
		}
	}
	return false
}

// stop stops the instance with `postfix stop`, waits for its processes to
// go, and kills any that stay. Its processes are recognized by their
// working directory, which every Postfix daemon sets to its queue_directory.
func (p *postfix) stop(t *testing.T) {
	if len(p.procs()) == 0 {
		return
	}
	p.cmd("stop")
	mailtest.Poll(10*time.Second, func() bool { return len(p.procs()) == 0 })
	if left := p.procs(); len(left) > 0 {
		t.Logf("postfix: killing %d processes left after postfix stop: %v", len(left), left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// procs lists the live processes of this instance: those whose working
// directory is inside its base directory. (A zombie has none.)
func (p *postfix) procs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && (cwd == p.base || strings.HasPrefix(cwd, p.base+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// queueEmpty reports whether Postfix has no message left in its queue.
func (p *postfix) queueEmpty(t *testing.T) bool {
	t.Helper()
	for _, d := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		n := 0
		filepath.WalkDir(filepath.Join(p.queue, d), func(_ string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				n++
			}
			return nil
		})
		if n > 0 {
			return false
		}
	}
	return true
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// submit sends message by SMTP to Postfix and checks that Postfix
// accepted it for every recipient: from then on it is Postfix's to deliver
// or bounce.
func (p *postfix) submit(t *testing.T, message, from string, to ...string) {
	t.Helper()
	out := swaks(t, message, "--server", p.addr(), "--helo", "client.test", "--from", from, "--to", strings.Join(to, ","))
	tr := parseTranscript(out)
	for _, rcpt := range to {
		if r, _ := tr.replies("RCPT TO:<" + rcpt + ">"); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
			t.Fatalf("Postfix's reply to RCPT TO:<%s>: %q, want 250\n%s", rcpt, r, out)
		}
	}
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("Postfix did not accept the message: %q\n%s", r, out)
	}
}

// waitDelivered waits until every home has at least its count of new
// messages and Postfix's queue is empty, then checks the counts are exact.
func waitDelivered(t *testing.T, p *postfix, root string, want map[string]int, before map[string][]stored) map[string][]stored {
	t.Helper()
	mailtest.Eventually(t, 30*time.Second, fmt.Sprintf("Postfix to deliver %v and empty its queue", want), func() bool {
		for home, n := range want {
			if len(newSince(t, root, home, before[home])) < n {
				return false
			}
		}
		return p.queueEmpty(t)
	})
	got := map[string][]stored{}
	for home, n := range want {
		got[home] = newSince(t, root, home, before[home])
		if len(got[home]) != n {
			t.Errorf("%s got %d messages, want %d", home, len(got[home]), n)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return got
}

// splitBounce tells the bounce (null sender) from the other messages.
func splitBounce(t *testing.T, msgs []stored) (bounces, others []string) {
	t.Helper()
	for _, m := range msgs {
		if splitTrace(t, m.Data).ReturnPath == "<>" {
			bounces = append(bounces, m.Data)
		} else {
			others = append(others, m.Data)
		}
	}
	return bounces, others
}

// checkDSN checks a Postfix bounce reports exactly rcpt as failed with
// status, per RFC 3464.
func checkDSN(t *testing.T, bounce, rcpt, status string) {
	t.Helper()
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=delivery-status",
		"Final-Recipient: rfc822; " + rcpt + "\n",
		"Action: failed\n",
		"Status: " + status + "\n",
	} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	if n := strings.Count(bounce, "Final-Recipient:"); n != 1 {
		t.Errorf("bounce reports %d recipients, want 1 (%s):\n%s", n, rcpt, bounce)
	}
}

// postfixMessage goes through Postfix to mailroom: 8-bit text and lines
// that Postfix's LMTP client must dot-stuff.
const postfixMessage = "From: Alice <alice@example.org>\n" +
	"To: bob@example.org, nobody@example.org\n" +
	"Subject: through postfix\n" +
	"Message-ID: <through-postfix@example.org>\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"Grüße über Postfix.\n" +
	".\n" +
	"..two dots\n" +
	"last line\n"

// postfixBody is what must arrive after the headers Postfix adds.
var postfixBody = postfixMessage[strings.Index(postfixMessage, "\n\n")+2:]

// checkRelayed checks a message that Postfix handed to mailroom: mailroom's
// trace fields, Postfix's Received:, and the sender's headers and body
// untouched.
func checkRelayed(t *testing.T, msg, rcpt, remote string, since time.Time) {
	t.Helper()
	got := splitTrace(t, msg)
	if got.ReturnPath != "<alice@example.org>" || got.DeliveredTo != rcpt {
		t.Errorf("Return-Path: %s, Delivered-To: %s; want <alice@example.org>, %s", got.ReturnPath, got.DeliveredTo, rcpt)
	}
	checkReceived(t, got.Received, "postfix.test", remote, rcpt, since)
	if !strings.HasPrefix(got.Rest, "Received: from client.test (localhost [127.0.0.1])\n\tby postfix.test (Postfix) with ESMTP id ") {
		t.Errorf("Postfix's Received: does not follow mailroom's:\n%s", got.Rest)
	}
	if !strings.Contains(got.Rest, "\nSubject: through postfix\n") || !strings.HasSuffix(got.Rest, "\n\n"+postfixBody) {
		t.Errorf("message changed on the way: got\n%q\nwant it to end with\n%q", got.Rest, "\n\n"+postfixBody)
	}
}

// TestPostfixLMTPUnixSocket puts a private Postfix in front of mailroom,
// handing mail for example.org to mailroom's LMTP unix socket (mode 0660,
// group postfix, as Postfix's lmtp client runs as user postfix). A message
// to bob and to an unknown user lands in bob's Maildir, and the unknown
// user is bounced by Postfix, not accepted and lost: the DSN, with status
// 5.1.1, comes back through the same path to the sender, alice.
func TestPostfixLMTPUnixSocket(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	mailtest.NeedTool(t, "postfix")
	// The socket's directory must be searchable by user postfix;
	// data_dir (0700) is not, as in a real installation where the socket
	// lives under /run.
	sockDir := mailtest.ShortTempDir(t)
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "lmtp.sock")
	s := startServer(t, fmt.Sprintf(`hostname = "mx.test"
data_dir = "%%DATA%%"
domains = ["example.org"]
[lmtp]
listen = ["unix:%s"]
socket_group = "postfix"
`, sock), "alice@example.org", "bob@example.org")

	// The socket is as the configuration says: Postfix can use it, the
	// world cannot.
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	if gid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)); gid != grp.Gid {
		t.Errorf("socket group id %s, want %s (postfix)", gid, grp.Gid)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode %#o, want 0660", perm)
	}

	p := startPostfix(t, "lmtp:unix:"+sock)
	root := mailRoot(s)
	start := time.Now()
	p.submit(t, crlf(postfixMessage), "alice@example.org", "bob@example.org", "nobody@example.org")
	got := waitDelivered(t, p, root, map[string]int{"example.org/bob": 1, "example.org/alice": 1}, nil)

	checkRelayed(t, got["example.org/bob"][0].Data, "bob@example.org", "unix socket", start)
	bounces, others := splitBounce(t, got["example.org/alice"])
	if len(bounces) != 1 || len(others) != 0 {
		t.Fatalf("alice got %d bounces and %d other messages, want one bounce", len(bounces), len(others))
	}
	checkDSN(t, bounces[0], "nobody@example.org", "5.1.1")
	if !strings.Contains(bounces[0], "550 5.1.1") {
		t.Errorf("bounce does not quote mailroom's 550 5.1.1:\n%s", bounces[0])
	}
	checkReceived(t, splitTrace(t, bounces[0]).Received, "postfix.test", "unix socket", "alice@example.org", start)
	if !p.logged("to=<nobody@example.org>", "["+sock+"]", "dsn=5.1.1, status=bounced") {
		t.Errorf("Postfix's log does not show nobody@example.org bounced by mailroom at %s", sock)
	}
	if _, err := os.Stat(filepath.Join(root, "example.org", "nobody")); !os.IsNotExist(err) {
		t.Errorf("a mail home was made for the unknown recipient (stat: %v)", err)
	}
}

// TestPostfixLMTPTCP is TestPostfixLMTPUnixSocket over TCP, plus a message
// larger than mailroom's limit: Postfix learns the limit from LHLO's SIZE
// and bounces it with 5.3.4 rather than retrying for days.
func TestPostfixLMTPTCP(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	mailtest.NeedTool(t, "postfix")
	s := startServer(t, `hostname = "mx.test"
data_dir = "%DATA%"
domains = ["example.org"]
[lmtp]
listen = ["127.0.0.1:0"]
[limits]
max_message_bytes = 100000
`, "alice@example.org", "bob@example.org")
	p := startPostfix(t, "lmtp:inet:"+s.Addr(t, "lmtp", false))
	root := mailRoot(s)
	start := time.Now()

	p.submit(t, crlf(postfixMessage), "alice@example.org", "bob@example.org", "nobody@example.org")
	got := waitDelivered(t, p, root, map[string]int{"example.org/bob": 1, "example.org/alice": 1}, nil)
	checkRelayed(t, got["example.org/bob"][0].Data, "bob@example.org", "[127.0.0.1]", start)
	bounces, others := splitBounce(t, got["example.org/alice"])
	if len(bounces) != 1 || len(others) != 0 {
		t.Fatalf("alice got %d bounces and %d other messages, want one bounce", len(bounces), len(others))
	}
	checkDSN(t, bounces[0], "nobody@example.org", "5.1.1")
	checkReceived(t, splitTrace(t, bounces[0]).Received, "postfix.test", "[127.0.0.1]", "alice@example.org", start)
	if !p.logged("to=<nobody@example.org>", "relay=127.0.0.1[127.0.0.1]:", "dsn=5.1.1, status=bounced") {
		t.Errorf("Postfix's log does not show nobody@example.org bounced by mailroom")
	}

	// Too big for mailroom, not for Postfix.
	before := map[string][]stored{
		"example.org/alice": maildirNew(t, root, "example.org/alice"),
		"example.org/bob":   maildirNew(t, root, "example.org/bob"),
	}
	big := crlf("Subject: too big for mailroom\n\n" + strings.Repeat(strings.Repeat("z", 99)+"\n", maxMessageBytes/100+100))
	p.submit(t, big, "alice@example.org", "bob@example.org")
	got = waitDelivered(t, p, root, map[string]int{"example.org/alice": 1, "example.org/bob": 0}, before)
	bounces, _ = splitBounce(t, got["example.org/alice"])
	if len(bounces) != 1 {
		t.Fatalf("alice got no bounce for the over-size message")
	}
	checkDSN(t, bounces[0], "bob@example.org", "5.3.4")
}
