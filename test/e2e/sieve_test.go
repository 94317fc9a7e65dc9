package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/dkimtest"
	"mailroom/internal/mailtest/fakedns"
)

// sieveConnect runs sieve-connect against addr as user, the password on
// file descriptor 3 as a careful script would pass it, verifying the
// server's certificate (cert) after STARTTLS. It returns the output and
// the exit status.
func sieveConnect(t *testing.T, addr, cert, user string, args ...string) (string, int) {
	t.Helper()
	bin := mailtest.NeedTool(t, "sieve-connect")
	host, port := hostPort(t, addr)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.WriteString(smtpPassword + "\n")
	w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-s", host, "-p", port, "-u", user,
		"--passwordfd", "3", "--tlscafile", cert, "--noclearauth"}, args...)...)
	cmd.ExtraFiles = []*os.File{r}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sieve-connect: %v", err)
	}
	return string(out), code
}

// TestSieveManageSieve: scripts uploaded over ManageSieve, by Python (as
// a webmail would) and by sieve-connect, decide what the next LMTP
// delivery does: filed into a new folder with flags that IMAP shows, or
// refused at LMTP time with the script's reason. A script that does not
// compile is refused with its line and column.
func TestSieveManageSieve(t *testing.T) {
	t.Parallel()
	python := mailtest.NeedTool(t, "python3")
	s := startIMAPServer(t, "[managesieve]\nlisten = [\"127.0.0.1:0\"]\n", "alice@example.org", "bob@example.org")
	ms := s.Addr(t, "managesieve", false)

	// alice's filter, uploaded from Python.
	aliceScript := "require [\"fileinto\", \"mailbox\", \"imap4flags\"];\r\n" +
		"if header :contains \"subject\" \"[go]\" {\r\n  fileinto :create :flags [\"\\\\Flagged\", \"$label1\"] \"Lists/go\";\r\n  stop;\r\n}\r\n"
	scriptFile := filepath.Join(t.TempDir(), "filter.sieve")
	os.WriteFile(scriptFile, []byte(aliceScript), 0o600)
	py, err := filepath.Abs("testdata/managesieve.py")
	if err != nil {
		t.Fatal(err)
	}
	host, port := hostPort(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, py, host, port, "alice@example.org", smtpPassword, s.Cert, scriptFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALL CHECKS PASSED") {
		t.Fatalf("managesieve.py: %v\n%s\n%s", err, out, s.Log())
	}

	// bob's, with sieve-connect: a broken one first.
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.sieve")
	os.WriteFile(broken, []byte("require \"reject\";\nif header :contains \"subject\" \"spam\" {\n  reject \"x\"\n}\n"), 0o600)
	if out, code := sieveConnect(t, ms, s.Cert, "bob@example.org", "--upload", "--localsieve", broken, "--remotesieve", "broken"); code == 0 || !strings.Contains(out, "broken:4:1: ") {
		t.Errorf("sieve-connect upload of a broken script: exit %d\n%s", code, out)
	}
	good := filepath.Join(dir, "nospam.sieve")
	nospam := "require \"reject\";\nif header :contains \"subject\" \"spam\" {\n  reject \"No spam, thanks.\";\n}\n"
	os.WriteFile(good, []byte(nospam), 0o600)
	for _, args := range [][]string{
		{"--upload", "--localsieve", good, "--remotesieve", "nospam"},
		{"--activate", "--remotesieve", "nospam"},
	} {
		if out, code := sieveConnect(t, ms, s.Cert, "bob@example.org", args...); code != 0 {
			t.Fatalf("sieve-connect %q: exit %d\n%s", args, code, out)
		}
	}
	if out, code := sieveConnect(t, ms, s.Cert, "bob@example.org", "--list"); code != 0 || strings.TrimSpace(out) != `"nospam" ACTIVE` {
		t.Errorf("sieve-connect --list: exit %d\n%s", code, out)
	}
	// The administrator sees the same through the control socket.
	if out, code := s.Run(t, "", "sieve", "list", "bob@example.org"); code != 0 || out != fmt.Sprintf("nospam\t%d\tACTIVE\n", len(nospam)) {
		t.Errorf("mailroom sieve list: exit %d %q", code, out)
	}

	deliverLMTP(t, s.LMTP, "carol@example.net", "alice@example.org", "From: carol@example.net\nSubject: [go] release\n\nnews\n")
	deliverLMTP(t, s.LMTP, "carol@example.net", "alice@example.org", "From: carol@example.net\nSubject: hello\n\nhi\n")
	_, err = lmtpSend(s.LMTP, "carol@example.net", "bob@example.org", "From: carol@example.net\nSubject: cheap spam\n\nbuy\n")
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "No spam, thanks.") {
		t.Errorf("delivery rejected by bob's script: %v, want 550 with the reason", err)
	}
	deliverLMTP(t, s.LMTP, "carol@example.net", "bob@example.org", "From: carol@example.net\nSubject: lunch\n\nnoon?\n")

	ic := dialIMAP(t, s.IMAP, nil)
	ic.ok("LOGIN alice@example.org " + smtpPassword)
	u := ic.ok(`SELECT "Lists/go"`)
	if !containsLine(u, "* 1 EXISTS") {
		t.Errorf("Lists/go: %q, want one message", u)
	}
	u = ic.ok("FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if len(u) == 0 || !strings.Contains(u[0], `\Flagged`) || !strings.Contains(u[0], "$label1") || !strings.Contains(u[0], "[go] release") {
		t.Errorf("the filed message: %q, want \\Flagged and $label1", u)
	}
	if u := ic.ok("SELECT INBOX"); !containsLine(u, "* 1 EXISTS") {
		t.Errorf("alice's INBOX: %q, want the other message only", u)
	}
	ic = dialIMAP(t, s.IMAP, nil)
	ic.ok("LOGIN bob@example.org " + smtpPassword)
	u = ic.ok("SELECT INBOX")
	if !containsLine(u, "* 1 EXISTS") {
		t.Errorf("bob's INBOX: %q, want the lunch message only", u)
	}
}

const sieveQueueConfig = `hostname = "mx.example.org"
data_dir = "%%DATA%%"
domains = ["example.org"]
[lmtp]
listen = ["127.0.0.1:0"]
[dns]
server = %q
[relay]
mx_port = %d
srs_secret = "a test secret"
[queue]
retry = ["1s"]
[[dkim]]
domain = "example.org"
selector = "mailroom"
`

// TestSieveVacationAndRedirect: a vacation reply reaches the sender's
// MX through the queue, with the null sender, RFC 3834's fields and a
// DKIM signature dkimpy verifies, once per period; a redirect leaves
// through the queue with an SRS sender.
func TestSieveVacationAndRedirect(t *testing.T) {
	t.Parallel()
	mta := mailtest.StartMTA(t)
	dns := fakedns.Start(t,
		"remote.example. 60 IN MX 10 mx.remote.example.",
		"mx.remote.example. 60 IN A 127.0.0.1",
	)
	cfg, dir := mailtest.WriteConfig(t, fmt.Sprintf(sieveQueueConfig, dns.Addr, mta.Port))
	out, code := mailtest.RunBinary(t, cfg, "", "dkim", "keygen", "example.org")
	if code != 0 {
		t.Fatalf("dkim keygen: exit %d\n%s", code, out)
	}
	name, value := zoneRecord(t, out)
	dns.AddTXT(name, value)
	s := mailtest.StartServerConfig(t, cfg, dir)
	for _, u := range []string{"alice@example.org", "bob@example.org"} {
		if out, code := s.Run(t, smtpPassword+"\n", "user", "add", u); code != 0 {
			t.Fatalf("user add %s: exit %d\n%s", u, code, out)
		}
	}
	put := func(user, src string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "main.sieve")
		os.WriteFile(f, []byte(src), 0o600)
		if out, code := s.Run(t, "", "sieve", "put", "-activate", user, f); code != 0 {
			t.Fatalf("sieve put %s: exit %d\n%s", user, code, out)
		}
	}
	put("alice@example.org", "require \"vacation\";\nvacation :days 7 :subject \"Away until Monday\" \"I am away; back on Monday.\";\n")
	put("bob@example.org", "require \"copy\";\nredirect :copy \"bob@remote.example\";\n")
	lmtpAddr := s.Addr(t, "lmtp", false)
	first := "From: Carol <carol@remote.example>\nTo: alice@example.org\nSubject: lunch\nMessage-ID: <m1@remote.example>\n\nnoon?\n"
	deliverLMTP(t, lmtpAddr, "carol@remote.example", "alice@example.org", first)
	select {
	case <-mta.Arrived():
	case <-time.After(30 * time.Second):
		t.Fatalf("no vacation reply at the sender's MX in 30s\n%s", s.Log())
	}
	reply := mta.Got()[0]
	if reply.From != "" || len(reply.To) != 1 || reply.To[0] != "carol@remote.example" {
		t.Errorf("reply envelope %q -> %q, want <> -> carol", reply.From, reply.To)
	}
	hdr, body, _ := strings.Cut(reply.Data, "\r\n\r\n")
	for _, want := range []string{"\r\nFrom: alice@example.org\r\n", "\r\nTo: <carol@remote.example>\r\n", "\r\nSubject: Away until Monday\r\n",
		"\r\nIn-Reply-To: <m1@remote.example>\r\n", "\r\nReferences: <m1@remote.example>\r\n", "\r\nAuto-Submitted: auto-replied (vacation)\r\n"} {
		if !strings.Contains("\r\n"+hdr+"\r\n", want) {
			t.Errorf("reply lacks %q:\n%s", strings.TrimSpace(want), reply.Data)
		}
	}
	if !strings.Contains(body, "I am away; back on Monday.") {
		t.Errorf("reply body:\n%s", body)
	}
	if rep, ok := dkimtest.DKIMPy(t, dns.Addr, reply.Data); !ok {
		t.Errorf("dkimpy did not verify the reply:\n%s\n%s", rep, reply.Data)
	}
	// Within the period, no second reply: the delivery says so in the
	// log before its 250.
	deliverLMTP(t, lmtpAddr, "carol@remote.example", "alice@example.org", strings.Replace(first, "<m1@", "<m2@", 1))
	if !strings.Contains(s.Log(), "already replied to this sender within the period") {
		t.Errorf("the second message was not recognised as answered:\n%s", s.Log())
	}
	if n := len(maildirNew(t, mailRoot(s), "example.org/alice")); n != 2 {
		t.Errorf("alice has %d messages, want both", n)
	}
	// A long thread: the reply's References is folded within RFC 5322's
	// lines, and dkimpy still verifies the signature over it.
	var refs []string
	for i := range 60 {
		refs = append(refs, fmt.Sprintf("<thread-message-%02d@remote.example>", i))
	}
	deliverLMTP(t, lmtpAddr, "erin@remote.example", "alice@example.org",
		"From: erin@remote.example\nTo: alice@example.org\nSubject: re: long thread\nMessage-ID: <m3@remote.example>\nReferences: "+
			strings.Join(refs, "\n ")+"\n\nand?\n")
	select {
	case <-mta.Arrived():
	case <-time.After(30 * time.Second):
		t.Fatalf("no vacation reply to the long thread in 30s\n%s", s.Log())
	}
	long := mta.Got()[1]
	for i, l := range strings.Split(long.Data, "\r\n") {
		if len(l) > 998 {
			t.Errorf("reply line %d is %d octets", i+1, len(l))
		}
	}
	if !strings.Contains(long.Data, "<thread-message-00@remote.example>") || !strings.Contains(long.Data, "<m3@remote.example>") {
		t.Errorf("the reply's References lacks the thread's first or the message:\n%s", long.Data)
	}
	if rep, ok := dkimtest.DKIMPy(t, dns.Addr, long.Data); !ok {
		t.Errorf("dkimpy did not verify the long-thread reply:\n%s\n%s", rep, long.Data)
	}

	deliverLMTP(t, lmtpAddr, "dave@remote.example", "bob@example.org", "From: dave@remote.example\nSubject: fwd me\n\nplease\n")
	select {
	case <-mta.Arrived():
	case <-time.After(30 * time.Second):
		t.Fatalf("the redirect did not arrive in 30s\n%s", s.Log())
	}
	got := mta.Got()
	if len(got) != 3 {
		t.Fatalf("the MX got %d messages, want the two replies and the redirect (no second reply to carol)", len(got))
	}
	fwd := got[2]
	if !strings.HasPrefix(fwd.From, "SRS0=") || !strings.HasSuffix(fwd.From, "@example.org") || len(fwd.To) != 1 || fwd.To[0] != "bob@remote.example" {
		t.Errorf("redirect envelope %q -> %q, want an SRS0 sender", fwd.From, fwd.To)
	}
	if !strings.HasPrefix(fwd.Data, "Delivered-To: bob@example.org\r\n") || !strings.Contains(fwd.Data, "Subject: fwd me") {
		t.Errorf("redirected copy:\n%s", fwd.Data)
	}
	if n := len(maildirNew(t, mailRoot(s), "example.org/bob")); n != 1 {
		t.Errorf("bob has %d messages, want his own copy (:copy)", n)
	}
	if out, code := s.Run(t, "", "queue", "list"); code != 0 || !strings.Contains(out, "queue is empty") {
		t.Errorf("queue list: exit %d\n%s", code, out)
	}
}

// TestSieveHostile: scripts written to stall or overflow delivery (a
// catastrophic :matches, a regex that backtracks elsewhere, variables
// that double, an include loop, deep nesting, a huge file, put on disk
// by hand) end in
// the implicit keep, logged with the script's line and column, in
// bounded time.
func TestSieveHostile(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig, "alice@example.org")
	home := filepath.Join(mailRoot(s), "example.org", "alice", "sieve")
	many := func(test string, n int) string {
		var b strings.Builder
		b.WriteString("require [\"regex\", \"variables\", \"fileinto\"];\n")
		for range n {
			b.WriteString("if " + test + " { fileinto \"Nope\"; }\n")
		}
		return b.String()
	}
	cases := []struct{ name, src, log string }{
		{"matches", many(`header :matches "x-big" "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"`, 2000), "cost limit"},
		{"regex", many(`header :regex "x-big" "(a*)*(a|aa)*b$"`, 3000), "cost limit"},
		{"variables", "require \"variables\";\n" + strings.Repeat("set \"a\" \"${a}${a}x\";\n", 2000) +
			strings.Repeat("if string :contains \"${a}${a}${a}${a}\" \"b\" { discard; }\n", 2000), "cost limit"},
		{"too large", strings.Repeat("keep;\n", 50000), "larger than 262144 octets"},
		{"include loop", "require \"include\";\ninclude \"b\";\n", "is a loop"},
		{"deep", strings.Repeat("if true {\n", 200) + strings.Repeat("}\n", 200), "nested deeper"},
	}
	os.MkdirAll(home, 0o700)
	os.WriteFile(filepath.Join(home, "b.sieve"), []byte("require \"include\";\ninclude \"main\";\n"), 0o600)
	msg := "X-Big: " + strings.Repeat("a", 50000) + "\nSubject: hostile\n\nbody\n"
	for i, c := range cases {
		// Written as an administrator's shell would: nothing checks
		// them before delivery does.
		if err := os.WriteFile(filepath.Join(home, "main.sieve"), []byte(c.src), 0o600); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(home, ".active"), []byte("main\n"), 0o600)
		start := time.Now()
		deliverLMTP(t, s.Addr(t, "lmtp", false), "carol@example.net", "alice@example.org", msg)
		took := time.Since(start)
		if n := len(maildirNew(t, mailRoot(s), "example.org/alice")); n != i+1 {
			t.Errorf("%s: INBOX has %d messages, want %d (the implicit keep)", c.name, n, i+1)
		}
		if took > 30*time.Second {
			t.Errorf("%s: the delivery took %v", c.name, took)
		}
		if !strings.Contains(s.Log(), c.log) {
			t.Errorf("%s: log lacks %q", c.name, c.log)
		}
	}
	if !strings.Contains(s.Log(), "event=sieve_error script=main line=") {
		t.Errorf("no sieve_error line naming the script and line:\n%s", s.Log())
	}
}
