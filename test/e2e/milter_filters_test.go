package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/dkimtest"
	"mailroom/internal/mailtest/fakedns"
	"mailroom/internal/mailtest/fakemilter"
)

// A filter process started for one test: its own configuration directory
// and socket, nothing of the system's instance.
type filter struct {
	Socket string // "unix:/..."
	dir    string
	log    string
	cmd    *exec.Cmd
}

// startFilter starts argv and waits until ready (nil: until sock exists).
func startFilter(t *testing.T, name, sock, logFile string, wait time.Duration, ready func() bool, argv ...string) *filter {
	t.Helper()
	f := &filter{Socket: "unix:" + sock, dir: filepath.Dir(logFile), log: logFile}
	if ready == nil {
		ready = func() bool {
			_, err := os.Stat(sock)
			return err == nil
		}
	}
	f.cmd = exec.Command(argv[0], argv[1:]...)
	out, err := os.Create(filepath.Join(f.dir, name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	f.cmd.Stdout, f.cmd.Stderr = out, out
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { f.cmd.Wait(); out.Close(); close(exited) }()
	t.Cleanup(func() {
		// The process group of the filter we started (rspamd forks
		// its workers), by its id.
		syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(f.dir, name+".out"))
			l, _ := os.ReadFile(f.log)
			t.Logf("%s output:\n%s\nlog:\n%s", name, b, l)
		}
	})
	ok := mailtest.Poll(wait, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		return ready()
	})
	select {
	case <-exited:
		b, _ := os.ReadFile(filepath.Join(f.dir, name+".out"))
		t.Fatalf("%s exited at start: %s", name, b)
	default:
	}
	if !ok {
		t.Fatalf("%s did not make its socket in %v", name, wait)
	}
	return f
}

const rspamdConf = `options {
  pidfile = "{{DIR}}/rspamd.pid";
  dns { nameserver = ["{{DNS}}"]; timeout = 1s; retransmits = 1; }
  local_addrs = [];
}
logging { type = "file"; filename = "{{DIR}}/rspamd.log"; level = "info"; }
actions { reject = 15; add_header = 6; }
lua = "{{DIR}}/mailroom-test.lua";
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:{{PORT}}";
  count = 1;
  reject_message = "Spam message rejected";
{{README}}
}
`

// rspamdRules are the test's local rules: a marker in the message makes
// it spam (score 20, over reject's 15), another scores 8 (rspamd's
// add_header action), and every message gets a header.
const rspamdRules = `rspamd_config.MAILROOM_MARKER = {
  callback = function(task)
    return tostring(task:get_content()):find('MAILROOM-REJECT-ME', 1, true) ~= nil
  end,
  score = 20.0,
  description = 'the marker of mailroom tests',
}
rspamd_config.MAILROOM_SPAMMY = {
  callback = function(task)
    return tostring(task:get_content()):find('MAILROOM-SPAMMY', 1, true) ~= nil
  end,
  score = 8.0,
  description = 'a marker that takes a message over add_header (6), below reject (15)',
}
rspamd_config.MAILROOM_SEEN = {
  callback = function(task)
    task:set_milter_reply({ add_headers = { ['X-Mailroom-Rspamd'] = 'seen' } })
    return true
  end,
  score = 0.0,
  description = 'adds a header to every message',
}
`

// startRspamd runs rspamd's proxy worker in milter mode with the
// README's settings (scanning by itself: no normal worker, no controller,
// no Redis), with only the test's rules, its DNS a fake server that
// knows nothing. Socket is the milters entry of the README, for the
// port it listens on.
func startRspamd(t *testing.T) *filter {
	t.Helper()
	bin := mailtest.NeedTool(t, "rspamd")
	mailtest.NeedRoot(t, "rspamd (it runs as the user starting it only with -i)")
	dns := fakedns.Start(t)
	dir := mailtest.ShortTempDir(t)
	port := freePort(t)
	proxy, milter := readmeRspamd(t, port)
	conf := strings.NewReplacer("{{DIR}}", dir, "{{DNS}}", dns.Addr, "{{PORT}}", fmt.Sprint(port), "{{README}}", proxy).Replace(rspamdConf)
	if err := os.WriteFile(filepath.Join(dir, "rspamd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mailroom-test.lua"), []byte(rspamdRules), 0o644); err != nil {
		t.Fatal(err)
	}
	// rspamd compiles its TLD list and language models at start: slow
	// on a busy machine.
	f := startFilter(t, "rspamd", "", filepath.Join(dir, "rspamd.log"), 3*time.Minute,
		func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
			}
			return err == nil
		},
		bin, "-f", "-i", "-u", "root", "-g", "root", "-c", filepath.Join(dir, "rspamd.conf"),
		"--var=DBDIR="+dir, "--var=RUNDIR="+dir, "--var=LOGDIR="+dir)
	f.Socket = milter
	return f
}

// TestRspamdMilter plugs a private rspamd into the MX as a milter: a
// message with the marker is refused with rspamd's reply; one over the
// add_header score is delivered with the X-Spam field that action adds,
// as the README says; any other gets the header rspamd's rule adds and
// no X-Spam. (A milter that is not there: TestMilterFailuresKeepMail,
// "absent".)
func TestRspamdMilter(t *testing.T) {
	t.Parallel()
	rs := startRspamd(t)
	s := startServer(t, fmt.Sprintf(`hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
milters = [%q]
milter_timeout = "60s"
`, rs.Socket), "alice@example.org")
	mx := s.Addr(t, "smtp", false)
	send := func(msg string) string {
		t.Helper()
		_, tr := smtpSwaks(t, msg, "--server", mx, "--helo", "client.test", "--from", "bob@example.net", "--to", "alice@example.org")
		r := tr.dataReplies()
		if len(r) != 1 {
			t.Fatalf("replies %q", r)
		}
		return r[0]
	}
	if r := send(checkedMessage("bob@example.net", "")); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("clean message: %q", r)
	}
	m := mailtest.Messages(t, mailRoot(s), "example.org/alice")
	if len(m) != 1 || !strings.Contains(m[0], "X-Mailroom-Rspamd: seen") || strings.Contains(m[0], "X-Spam:") {
		t.Fatalf("the delivered message lacks rspamd's header, or is marked spam:\n%q", m)
	}
	spammy := crlf("From: <bob@example.net>\nTo: alice@example.org\nSubject: maybe\n\nMAILROOM-SPAMMY\n")
	if r := send(spammy); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("message over add_header: %q, want 250", r)
	}
	m = mailtest.Messages(t, mailRoot(s), "example.org/alice")
	if len(m) != 2 || !strings.Contains(m[1], "X-Spam: Yes\n") {
		t.Fatalf("the message over add_header lacks the X-Spam field rspamd's action adds:\n%q", m)
	}
	spam := crlf("From: <bob@example.net>\nTo: alice@example.org\nSubject: buy\n\nMAILROOM-REJECT-ME\n")
	if r := send(spam); !strings.HasPrefix(r, "554 5.7.1 ") || !strings.Contains(r, "Spam message rejected") {
		t.Errorf("marked message: %q, want rspamd's 554 5.7.1 Spam message rejected", r)
	}
	if n := len(mailtest.Messages(t, mailRoot(s), "example.org/alice")); n != 2 {
		t.Errorf("%d messages delivered, want the two not refused", n)
	}
}

const opendkimConf = `Syslog no
LogWhy yes
Socket local:{{DIR}}/opendkim.sock
PidFile {{DIR}}/opendkim.pid
Mode sv
Domain example.org
Selector od
KeyFile {{DIR}}/od.private
Canonicalization relaxed/relaxed
AuthservID opendkim.test
InternalHosts 192.0.2.254
ResolverConfiguration {{DIR}}/unbound.conf
TemporaryDirectory {{DIR}}
`

// Its resolver (libunbound) asks the test's fake DNS server and nothing
// else, without DNSSEC.
const opendkimUnbound = `server:
  do-not-query-localhost: no
  module-config: "iterator"
forward-zone:
  name: "."
  forward-addr: {{DNS}}
`

// startOpendkim runs opendkim as a milter that signs for example.org
// (authenticated clients) and verifies everything else, its keys looked
// up in dns.
func startOpendkim(t *testing.T, dns *fakedns.Server) *filter {
	t.Helper()
	bin := mailtest.NeedTool(t, "opendkim")
	genkey := mailtest.NeedTool(t, "opendkim-genkey")
	// opendkim refuses a configuration file in a directory others may
	// write to, as /tmp is: one under the user's cache directory.
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(cache, 0o700)
	dir, err := os.MkdirTemp(cache, "mrodk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command(genkey, "-D", dir, "-d", "example.org", "-s", "od").CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey: %v\n%s", err, out)
	}
	txt, _ := os.ReadFile(filepath.Join(dir, "od.txt"))
	var rec strings.Builder
	for i, part := range strings.Split(string(txt), `"`) {
		if i%2 == 1 {
			rec.WriteString(part)
		}
	}
	dns.AddTXT("od._domainkey.example.org", rec.String())
	host, port, _ := strings.Cut(dns.Addr, ":")
	r := strings.NewReplacer("{{DIR}}", dir, "{{DNS}}", host+"@"+port)
	for name, content := range map[string]string{"opendkim.conf": opendkimConf, "unbound.conf": opendkimUnbound} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(r.Replace(content)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return startFilter(t, "opendkim", filepath.Join(dir, "opendkim.sock"), filepath.Join(dir, "opendkim.out"), 30*time.Second, nil,
		bin, "-f", "-x", filepath.Join(dir, "opendkim.conf"))
}

// TestOpendkimMilter: opendkim as a milter signs what alice submits
// (dkimpy verifies the signature on the copy the remote MTA got), and on
// the MX verifies a signature dkimpy made, recording it in its own
// Authentication-Results field.
func TestOpendkimMilter(t *testing.T) {
	t.Parallel()
	dns, keyFile := checksDNS(t)
	dns.Add(t, "example.net. 60 IN MX 10 mx.example.net.", "mx.example.net. 60 IN A 127.0.0.1")
	od := startOpendkim(t, dns)
	mta := mailtest.StartMTA(t)
	s := startServer(t, fmt.Sprintf(`hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
milters = [%q]
[submission]
listen = ["127.0.0.1:0"]
milters = [%q]
[dns]
server = %q
[relay]
mx_port = %d
`, od.Socket, od.Socket, dns.Addr, mta.Port), "alice@example.org")
	if out, code := s.Run(t, smtpPassword+"\n", "user", "passwd", "alice@example.org"); code != 0 {
		t.Fatalf("user passwd: %d %s", code, out)
	}
	msg := checkedMessage("alice@example.org", "")
	_, tr := smtpSwaks(t, msg, "--server", s.Addr(t, "submission", false), "--helo", "client.test",
		"-a", "PLAIN", "-au", "alice@example.org", "-ap", smtpPassword, "--from", "alice@example.org", "--to", "bob@example.net")
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("submission: %q", r)
	}
	select {
	case <-mta.Arrived():
	case <-time.After(30 * time.Second):
		t.Fatal("nothing arrived at the remote MTA")
	}
	got := mta.Got()[0].Data
	if !strings.Contains(got, "s=od") {
		t.Fatalf("opendkim did not sign the submitted message:\n%s", got)
	}
	if rep, ok := dkimtest.DKIMPy(t, dns.Addr, got); !ok {
		t.Errorf("dkimpy did not verify opendkim's signature:\n%s\n%s", rep, got)
	}

	signed := dkimtest.SignDKIMPy(t, "signed.example", "py", keyFile, checkedMessage("b@signed.example", ""))
	_, tr = smtpSwaks(t, signed, "--server", s.Addr(t, "smtp", false), "--helo", "client.test", "--from", "b@signed.example", "--to", "alice@example.org")
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("MX: %q", r)
	}
	m := mailtest.Messages(t, mailRoot(s), "example.org/alice")
	if len(m) != 1 || !strings.Contains(m[0], "Authentication-Results: opendkim.test;") || !strings.Contains(m[0], "dkim=pass") {
		t.Errorf("opendkim's verdict is missing:\n%q", m)
	}
}

// TestMilterFailuresKeepMail: with a milter that is not there, hangs, dies
// in the middle of the message or answers garbage, the server answers with
// milter_default_action within milter_timeout and stays up: tempfail
// (451) leaves the message with the client, accept delivers it; nothing
// is lost either way.
func TestMilterFailuresKeepMail(t *testing.T) {
	t.Parallel()
	broken := map[string]*fakemilter.Milter{
		"absent": {Addr: "unix:" + filepath.Join(mailtest.ShortTempDir(t), "no-milter.sock")},
		"hangs": fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
			return nil, map[bool]string{true: "hang"}[code == 'E']
		}),
		"crashes": fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
			return nil, map[bool]string{true: "close"}[code == 'B']
		}),
		"garbage": fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
			if code == 'N' {
				return [][]byte{[]byte("\x00\x00\x00\x03zz!")}, ""
			}
			return nil, ""
		}),
	}
	for name, m := range broken {
		for _, action := range []string{"tempfail", "accept"} {
			t.Run(name+"/"+action, func(t *testing.T) {
				t.Parallel()
				s := startServer(t, fmt.Sprintf(`hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
milters = [%q]
milter_default_action = %q
milter_timeout = "1s"
`, m.Addr, action), "alice@example.org")
				for i := range 2 { // the second proves the server is still up
					start := time.Now()
					_, tr := smtpSwaks(t, checkedMessage("bob@example.net", ""), "--server", s.Addr(t, "smtp", false),
						"--helo", "client.test", "--from", "bob@example.net", "--to", "alice@example.org")
					r := tr.dataReplies()
					if name == "absent" && action == "tempfail" {
						// Not there at MAIL, when it is first dialled.
						r, _ = tr.replies("MAIL FROM:<bob@example.net>")
					}
					if d := time.Since(start); d > 10*time.Second {
						t.Errorf("message %d took %v with a 1s milter_timeout", i, d)
					}
					want := map[string]string{"tempfail": "451 4.7.1 ", "accept": "250 "}[action]
					if len(r) != 1 || !strings.HasPrefix(r[0], want) {
						t.Fatalf("message %d: %q, want %q", i, r, want)
					}
				}
				n := len(mailtest.Messages(t, mailRoot(s), "example.org/alice"))
				if want := map[string]int{"tempfail": 0, "accept": 2}[action]; n != want {
					t.Errorf("%d delivered, want %d", n, want)
				}
				if !strings.Contains(s.Log(), "milter failed: default action") {
					t.Errorf("the log does not say the milter failed:\n%s", s.Log())
				}
			})
		}
	}
}

// TestMilterQuarantine: a milter's quarantine action (SMFIR_QUARANTINE)
// sends the message to the recipient's Junk folder, made if missing, with
// the milter's other changes; the client gets 250.
func TestMilterQuarantine(t *testing.T) {
	t.Parallel()
	m := fakemilter.Start(t, func(code byte, _ []byte) ([][]byte, string) {
		if code == 'E' {
			return [][]byte{fakemilter.Packet('h', "X-Spam\x00Yes\x00"), fakemilter.Packet('q', "spam score 20\x00"), fakemilter.Packet('a')}, ""
		}
		return nil, ""
	})
	s := startServer(t, fmt.Sprintf(`hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
milters = [%q]
`, m.Addr), "alice@example.org")
	_, tr := smtpSwaks(t, checkedMessage("bob@example.net", ""), "--server", s.Addr(t, "smtp", false),
		"--helo", "client.test", "--from", "bob@example.net", "--to", "alice@example.org")
	if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("quarantined message: %q, want 250", r)
	}
	junk := mailtest.FolderMessages(t, mailRoot(s), "example.org/alice", ".Junk")
	if len(junk) != 1 || len(mailtest.Messages(t, mailRoot(s), "example.org/alice")) != 0 {
		t.Fatalf("%d in Junk, %d in INBOX; want 1 and 0", len(junk), len(mailtest.Messages(t, mailRoot(s), "example.org/alice")))
	}
	if !strings.Contains(junk[0], "X-Spam: Yes\n") {
		t.Errorf("the quarantined message lacks the milter's header:\n%s", junk[0])
	}
}
