package e2e

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// The tests in this file run the "Behind Postfix" recipes of README.md,
// read from the README itself so that what users copy is what was tested,
// against Debian's stock Postfix: /usr/share/postfix/master.cf.dist
// unchanged but for the smtpd's port (and a recipe's added transport),
// with the chroot Debian's configure-instance.sh prepares.

// debianMasterCf is Debian's master.cf.
const debianMasterCf = "/usr/share/postfix/master.cf.dist"

// recipeMainCf is the private instance's main.cf before a recipe's lines.
// The client the tests send from, 127.0.0.1, is not in mynetworks: it is
// the internet's MTAs, whose mail is checked.
const recipeMainCf = `compatibility_level = 3.6
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
mynetworks = 192.0.2.0/24
alias_maps =
alias_database =
local_recipient_maps =
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

// recipe returns the README's code blocks of the named recipe, by the
// file their first line names: "mailroom.toml", "main.cf", "master.cf".
func recipe(t *testing.T, name string) map[string]string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(mailtest.ModuleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	re := regexp.MustCompile("(?ms)^```[a-z]*\n(# [^\n]*\\(recipe: " + regexp.QuoteMeta(name) + "\\)\n)(.*?)^```\n")
	for _, m := range re.FindAllStringSubmatch(string(readme), -1) {
		for _, f := range []string{"mailroom.toml", "main.cf", "master.cf"} {
			if strings.Contains(m[1], f) {
				blocks[f] = m[2]
			}
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("README.md has no blocks of recipe %q", name)
	}
	return blocks
}

// newDebianPostfix prepares a private Postfix with recipeMainCf and the
// recipe's main.cf lines (edited by edit, which may be nil), not started.
func newDebianPostfix(t *testing.T, mainCf string) *postfix {
	t.Helper()
	mailtest.NeedTool(t, "postfix")
	if _, err := os.Stat(debianMasterCf); err != nil {
		t.Fatalf("Debian's master.cf: %v (package postfix)", err)
	}
	return newPostfix(t, recipeMainCf+mainCf)
}

// startDebian starts p with Debian's master.cf, its smtpd on the
// instance's own port instead of 25, and extra (a recipe's transport)
// appended.
func (p *postfix) startDebian(t *testing.T, extra string) {
	t.Helper()
	stock, err := os.ReadFile(debianMasterCf)
	if err != nil {
		t.Fatal(err)
	}
	smtpd := regexp.MustCompile(`(?m)^smtp(\s+inet\s)`)
	if len(smtpd.FindAllIndex(stock, -1)) != 1 {
		t.Fatalf("%s: no single \"smtp inet\" line", debianMasterCf)
	}
	p.start(t, func(port int) string {
		return smtpd.ReplaceAllString(string(stock), "127.0.0.1:"+strconv.Itoa(port)+"$1") + extra
	}, true)
}

// mailroomSockDir makes the directory inside Postfix's chroot that
// contrib/tmpfiles.d/mailroom-postfix.conf makes at boot: setgid, group
// postfix, owned by mailroom's user (uid).
func mailroomSockDir(t *testing.T, p *postfix, uid int) {
	t.Helper()
	grp, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(grp.Gid)
	dir := filepath.Join(p.queue, "mailroom")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	// Mkdir's mode does not take the setgid bit.
	if err := os.Chmod(dir, 0o2750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// rcptReplies sends one message from client.test to Postfix with swaks
// and returns Postfix's reply to each RCPT, and to the message (empty if
// no recipient was accepted).
func (p *postfix) rcptReplies(t *testing.T, message, from string, to ...string) (rcpt map[string]string, data string) {
	t.Helper()
	out := swaks(t, message, "--server", p.addr(), "--helo", "client.test", "--from", from, "--to", strings.Join(to, ","))
	tr := parseTranscript(out)
	rcpt = map[string]string{}
	for _, r := range to {
		replies, _ := tr.replies("RCPT TO:<" + r + ">")
		rcpt[r] = strings.Join(replies, "\n")
	}
	if d := tr.dataReplies(); len(d) > 0 {
		data = d[len(d)-1]
	}
	return rcpt, data
}

// recipeUsers and recipeAliases are the accounts and aliases file every
// recipe test delivers to.
var recipeUsers = []string{"alice@example.org", "bob@example.org"}

const recipeAliases = "sales: alice, bob\n"

// TestPostfixRecipeLMTP runs the recommended recipe: Postfix asks
// mailroom's socketmap for domains and mailboxes and delivers over LMTP to
// a unix socket inside its chroot. Known users, an alias and a +tag are
// delivered; an unknown user of a local domain gets 550 5.1.1 from
// Postfix at RCPT, and a domain mailroom does not serve 554 (no relay),
// so Postfix never accepts what it would have to bounce (and a
// mailbox reached through several addresses gets one copy); with mailroom
// stopped, Postfix answers 4xx (try later), never 5xx.
func TestPostfixRecipeLMTP(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	r := recipe(t, "lmtp")
	p := newDebianPostfix(t, r["main.cf"])
	mailroomSockDir(t, p, 0)
	aliases := filepath.Join(p.base, "aliases")
	writeFile(t, aliases, recipeAliases)
	s := startServer(t, fmt.Sprintf("hostname = \"mx.test\"\ndata_dir = \"%%DATA%%\"\ndomains = [\"example.org\"]\n[delivery]\naliases = %q\n", aliases)+
		strings.ReplaceAll(r["mailroom.toml"], "/var/spool/postfix", p.queue), recipeUsers...)
	p.startDebian(t, "")
	root := mailRoot(s)
	start := time.Now()

	rcpt, data := p.rcptReplies(t, crlf(postfixMessage), "carol@example.net",
		"bob@example.org", "sales@example.org", "alice+tag@example.org", "nobody@example.org", "someone@example.net")
	for _, ok := range []string{"bob@example.org", "sales@example.org", "alice+tag@example.org"} {
		if !strings.HasPrefix(rcpt[ok], "250 ") {
			t.Errorf("Postfix's reply to RCPT TO:<%s>: %q, want 250", ok, rcpt[ok])
		}
	}
	if !strings.HasPrefix(rcpt["nobody@example.org"], "550 5.1.1 ") {
		t.Errorf("Postfix's reply to an unknown user: %q, want 550 5.1.1 at RCPT", rcpt["nobody@example.org"])
	}
	// Postfix's default smtpd_relay_restrictions end in
	// defer_unauth_destination: 454, and the sender gives up in days.
	if r := rcpt["someone@example.net"]; !strings.Contains(r, "4.7.1 <someone@example.net>: Relay access denied") {
		t.Errorf("Postfix's reply to a domain mailroom does not serve: %q, want Relay access denied", r)
	}
	if !strings.HasPrefix(data, "250 ") {
		t.Fatalf("Postfix did not accept the message: %q", data)
	}
	// One copy per mailbox, however many of its addresses are named.
	got := waitDelivered(t, p, root, map[string]int{"example.org/bob": 1, "example.org/alice": 1}, nil)
	for _, m := range got["example.org/bob"] {
		tr := splitTrace(t, m.Data)
		if tr.ReturnPath != "<carol@example.net>" {
			t.Errorf("bob's copy: Return-Path %s, want <carol@example.net>", tr.ReturnPath)
		}
		checkReceived(t, tr.Received, "postfix.test", "unix socket", tr.OriginalTo, start)
		if !strings.HasSuffix(tr.Rest, "\n\n"+postfixBody) {
			t.Errorf("message changed on the way:\n%q", tr.Rest)
		}
	}
	if !p.logged("to=<bob@example.org>", "[mailroom/lmtp.sock]", "status=sent") {
		t.Errorf("Postfix's log does not show bob delivered over mailroom/lmtp.sock")
	}
	if p.logged("status=bounced") {
		t.Errorf("Postfix bounced something: with the socketmap it must refuse at RCPT instead")
	}

	// Mailroom down: temporary, at RCPT.
	s.Stop(t)
	rcpt, _ = p.rcptReplies(t, crlf(postfixMessage), "carol@example.net", "bob@example.org")
	if !strings.HasPrefix(rcpt["bob@example.org"], "4") {
		t.Errorf("Postfix's reply to RCPT with mailroom stopped: %q, want 4xx", rcpt["bob@example.org"])
	}
}

// TestPostfixRecipeVerify runs the recipe without a socketmap: Postfix
// probes each recipient over LMTP on TCP (reject_unverified_recipient)
// and refuses at RCPT, with 550, those mailroom refuses.
func TestPostfixRecipeVerify(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	r := recipe(t, "verify")
	aliases := filepath.Join(mailtest.ShortTempDir(t), "aliases")
	writeFile(t, aliases, recipeAliases)
	s := startServer(t, fmt.Sprintf("hostname = \"mx.test\"\ndata_dir = \"%%DATA%%\"\ndomains = [\"example.org\"]\n[delivery]\naliases = %q\n", aliases)+
		strings.ReplaceAll(r["mailroom.toml"], "127.0.0.1:24", "127.0.0.1:0"), recipeUsers...)
	lmtpAddr := s.Addr(t, "lmtp", false)
	p := newDebianPostfix(t, strings.ReplaceAll(r["main.cf"], "127.0.0.1:24", lmtpAddr))
	p.startDebian(t, "")
	root := mailRoot(s)

	// The first RCPT for an address starts a probe; Postfix waits a few
	// seconds for it, and answers 450 if it is still running, as any
	// greylisting does: a sender retries, and so does this test.
	verdict := func(addr string) string {
		var reply string
		mailtest.Eventually(t, 60*time.Second, "Postfix to verify "+addr, func() bool {
			out := swaks(t, crlf("Subject: probe\n\nx\n"), "--server", p.addr(), "--helo", "client.test",
				"--from", "carol@example.net", "--to", addr, "--quit-after", "RCPT")
			replies, _ := parseTranscript(out).replies("RCPT TO:<" + addr + ">")
			reply = strings.Join(replies, "\n")
			return !strings.HasPrefix(reply, "450 ")
		})
		return reply
	}
	for _, c := range []struct{ addr, want string }{
		{"bob@example.org", "250 "},
		{"sales@example.org", "250 "},
		{"nobody@example.org", "550 5.1.1 "},
	} {
		if got := verdict(c.addr); !strings.HasPrefix(got, c.want) {
			t.Errorf("Postfix's reply to RCPT TO:<%s>: %q, want %q", c.addr, got, c.want)
		}
	}
	if !p.logged("to=<nobody@example.org>", "status=undeliverable", "550 5.1.1") {
		t.Errorf("Postfix's log does not show the probe refused by mailroom")
	}

	p.submit(t, crlf(postfixMessage), "carol@example.net", "bob@example.org", "sales@example.org")
	// bob, named directly and through sales, gets one copy.
	waitDelivered(t, p, root, map[string]int{"example.org/bob": 1, "example.org/alice": 1}, nil)
	if p.logged("status=bounced") {
		t.Errorf("Postfix bounced something")
	}
}

// TestPostfixRecipePipe runs the pipe(8) recipe: Postfix (validating
// recipients with mailroom's socketmap) runs `mailroom deliver` as user
// mailroom for each recipient, with mailroom serve running as mailroom
// too (started as root, [server] user). An alias is delivered to its
// members, not refused as a loop (which Postfix's own Delivered-To: made
// of every alias with flags=D); a real loop (the message already
// delivered to the alias) is bounced by Postfix with mailroom's 5.4.6
// while the other recipient of the same message gets it; and that bounce,
// from <>, comes back through the pipe with Return-Path <>.
func TestPostfixRecipePipe(t *testing.T) {
	t.Parallel()
	mailtest.NeedTool(t, "swaks")
	uid, gid := mailroomUser(t)
	r := recipe(t, "pipe")
	p := newDebianPostfix(t, r["main.cf"])
	mailroomSockDir(t, p, uid)

	cfgText := "hostname = \"mx.test\"\ndata_dir = \"%DATA%\"\ndomains = [\"example.org\"]\n" +
		"[server]\nuser = \"mailroom\"\n[delivery]\naliases = \"%DATA%/aliases\"\n" +
		strings.ReplaceAll(r["mailroom.toml"], "/var/spool/postfix", p.queue)
	cfg, dir := mailtest.WriteConfig(t, cfgText)
	writeFile(t, filepath.Join(dir, "aliases"), recipeAliases)
	chownTree(t, dir, uid, gid)
	s := mailtest.StartServerConfig(t, cfg, dir)
	for _, u := range recipeUsers {
		if out, code := s.Run(t, "secret\n", "user", "add", u); code != 0 {
			t.Fatalf("mailroom user add %s: exit %d\n%s", u, code, out)
		}
	}
	// The recipe's command, with the test's configuration and a copy of
	// the test's binary: the shared one may be rebuilt by another test
	// process while Postfix still runs this one.
	bin := filepath.Join(p.base, "mailroom")
	data, err := os.ReadFile(mailtest.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	master := strings.ReplaceAll(r["master.cf"], "argv=/usr/local/bin/mailroom deliver ",
		"argv="+bin+" deliver -config "+cfg+" ")
	if master == r["master.cf"] {
		t.Fatalf("recipe's master.cf has no argv=/usr/local/bin/mailroom deliver:\n%s", r["master.cf"])
	}
	p.startDebian(t, master)
	root := mailRoot(s)

	p.submit(t, crlf(postfixMessage), "carol@example.net", "bob@example.org", "sales@example.org")
	// One delivery per recipient: bob directly and through sales.
	got := waitDelivered(t, p, root, map[string]int{"example.org/bob": 2, "example.org/alice": 1}, nil)
	tr := splitTrace(t, got["example.org/alice"][0].Data)
	if tr.ReturnPath != "<carol@example.net>" || tr.OriginalTo != "sales@example.org" || tr.DeliveredTo != "alice@example.org" {
		t.Errorf("alice's copy: Return-Path %s, X-Original-To %s, Delivered-To %s", tr.ReturnPath, tr.OriginalTo, tr.DeliveredTo)
	}
	if strings.Contains(tr.Rest, "Delivered-To:") || strings.Contains(tr.Rest, "Return-Path:") {
		t.Errorf("Postfix added trace fields of its own:\n%s", tr.Rest)
	}
	if !p.logged("to=<sales@example.org>", "relay=mailroom", "status=sent (delivered via mailroom service)") {
		t.Errorf("Postfix's log does not show sales@ delivered by the pipe")
	}

	// A loop: the message was already delivered to sales once.
	before := map[string][]stored{}
	for _, h := range []string{"example.org/alice", "example.org/bob"} {
		before[h] = maildirNew(t, root, h)
	}
	p.submit(t, crlf("Delivered-To: sales@example.org\n"+postfixMessage), "alice@example.org", "sales@example.org", "bob@example.org")
	got = waitDelivered(t, p, root, map[string]int{"example.org/bob": 1, "example.org/alice": 1}, before)
	bounces, others := splitBounce(t, got["example.org/alice"])
	if len(bounces) != 1 || len(others) != 0 {
		t.Fatalf("alice got %d bounces and %d other messages, want the bounce alone", len(bounces), len(others))
	}
	checkDSN(t, bounces[0], "sales@example.org", "5.4.6")
	if !strings.Contains(bounces[0], "mailroom deliver: Mail forwarding loop detected") {
		t.Errorf("bounce does not quote mailroom's reason:\n%s", bounces[0])
	}
	if !p.logged("to=<sales@example.org>", "relay=mailroom", "dsn=5.4.6, status=bounced") {
		t.Errorf("Postfix's log does not show the loop bounced with 5.4.6")
	}
}
