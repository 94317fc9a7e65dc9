package smtp_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/certs"
	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/mda"
	"mailroom/mda/alias"
	"mailroom/smtp"
)

func tlsConfig(t *testing.T) *tls.Config {
	cert, key := mailtest.TestCert(t, t.TempDir())
	cs, err := certs.Load(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cs.Config()
}

// testAliases: sales reaches alice; support reaches only bob.
const testAliases = "sales: alice, bob\nsupport: bob\npostmaster: alice\n"

func newEnv(t *testing.T) *mailenv.Env {
	table, err := alias.Parse(strings.NewReader(testAliases), "aliases")
	if err != nil {
		t.Fatal(err)
	}
	return mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org", "bob@example.org"}, MaxMessageBytes: 10000,
		Adjust: func(o *mda.Options) { o.Aliases = table }})
}

func plainAuth(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
}

func TestMXGreetingAndEHLO(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, MaxMessageBytes: 10000, TLS: tlsConfig(t)})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO client.test")
	caps := strings.Join(d.Expect("250 "), "\n")
	for _, c := range []string{"PIPELINING", "SIZE 10001", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "STARTTLS"} {
		if !strings.Contains(caps+"\n", "250-"+c+"\n") && !strings.HasSuffix(caps, "250 "+c) {
			t.Errorf("EHLO lacks %s:\n%s", c, caps)
		}
	}
	if strings.Contains(caps, "AUTH") {
		t.Errorf("the MX offers AUTH:\n%s", caps)
	}
	d.StartTLS()
	d.Send("EHLO client.test")
	caps = strings.Join(d.Expect("250 "), "\n")
	if strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "AUTH") {
		t.Errorf("after STARTTLS:\n%s", caps)
	}
}

func TestMXDialogs(t *testing.T) {
	type step struct{ send, want string }
	cases := []struct {
		name  string
		steps []step
	}{
		{"greeting names the host", nil},
		{"HELO works", []step{{"HELO client.test", "250 2.0.0 Hello client.test"}}},
		{"VRFY does not reveal accounts", []step{{"EHLO c", "250"}, {"VRFY alice", "252"}, {"VRFY nobody", "252"}}},
		{"EXPN is not implemented", []step{{"EHLO c", "250"}, {"EXPN staff", "502"}}},
		{"NOOP and RSET", []step{{"EHLO c", "250"}, {"NOOP", "250"}, {"MAIL FROM:<s@remote.example>", "250"}, {"RSET", "250"}, {"RCPT TO:<alice@example.org>", "503"}}},
		{"unknown local user", []step{{"EHLO c", "250"}, {"MAIL FROM:<s@remote.example>", "250"}, {"RCPT TO:<nobody@example.org>", "550 5.1.1"}}},
		{"no relay, whatever HELO and MAIL FROM say", []step{
			{"EHLO example.org", "250"}, {"MAIL FROM:<alice@example.org>", "250"},
			{"RCPT TO:<victim@elsewhere.example>", "554 5.7.1"},
			{"RCPT TO:<victim%elsewhere.example@example.org>", "5"},
			{"RCPT TO:<@example.org:victim@elsewhere.example>", "5"},
			{"RCPT TO:<alice@example.org>", "250"}}},
		{"declared SIZE too large", []step{{"EHLO c", "250"}, {"MAIL FROM:<s@remote.example> SIZE=10001", "552 5.3.4"}, {"MAIL FROM:<s@remote.example> SIZE=10000", "250"}}},
		{"too many recipients", []step{{"EHLO c", "250"}, {"MAIL FROM:<s@remote.example>", "250"},
			{"RCPT TO:<alice@example.org>", "250"}, {"RCPT TO:<bob@example.org>", "250"}, {"RCPT TO:<alice+x@example.org>", "452 4.5.3"}}},
		{"DATA without recipients", []step{{"EHLO c", "250"}, {"MAIL FROM:<s@remote.example>", "250"}, {"DATA", "503"}}},
		{"path escape in local part", []step{{"EHLO c", "250"}, {"MAIL FROM:<s@remote.example>", "250"}, {"RCPT TO:<../alice@example.org>", "501 5.1.3"}}},
		{"AUTH is not offered on the MX", []step{{"EHLO c", "250"}, {"AUTH PLAIN " + plainAuth("alice@example.org", "secret"), "5"}}},
		{"NUL in a command", []step{{"EHLO c", "250"}, {"MAIL FROM:<s\x00@remote.example>", "5"}, {"NOOP", "250"}}},
		{"postmaster without a domain (RFC 5321 §4.5.1)", []step{{"EHLO c", "250"}, {"MAIL FROM:<s@remote.example>", "250"},
			{"RCPT TO:<postmaster>", "250"}, {"RCPT TO:<PostMaster>", "250"}}},
		{"control characters in EHLO", []step{{"EHLO a\x00b", "501 5.5.2"}, {"EHLO a\x1bb", "501 5.5.2"}, {"EHLO ok.test", "250"}}},
	}
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, MaxMessageBytes: 10000, MaxRecipients: 2})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := mailtest.Dial(t, "tcp", addr)
			for _, s := range c.steps {
				d.Send(s.send)
				d.Expect(s.want)
			}
		})
	}
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")); n != 0 {
		t.Fatalf("dialogs stored %d messages", n)
	}
}

func send(d *mailtest.Dialog, from string, rcpts []string, lines ...string) {
	d.Send("MAIL FROM:<" + from + ">")
	d.Expect("250")
	for _, r := range rcpts {
		d.Send("RCPT TO:<" + r + ">")
		d.Expect("250")
	}
	d.Send("DATA")
	d.Expect("354")
	d.Send(append(lines, ".")...)
}

func TestMXDelivery(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, TLS: tlsConfig(t)})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO client.test")
	d.Expect("250 ")
	send(d, "s@remote.example", []string{"alice@example.org"}, "Subject: plain", "", "..dot", "bare\nLF inside", "x")
	d.Expect("250 ")
	d.StartTLS()
	d.Send("EHLO client.test")
	d.Expect("250 ")
	send(d, "s@remote.example", []string{"alice@example.org", "bob@example.org"}, "Subject: tls", "", "y")
	d.Expect("250 ")

	m := mailtest.Messages(t, env.MailRoot, "example.org/alice")
	if len(m) != 2 {
		t.Fatalf("alice has %d messages", len(m))
	}
	if !strings.Contains(m[0], "Received: from client.test ([127.0.0.1])\n\tby mx.test (mailroom) with ESMTP id ") ||
		!strings.HasSuffix(m[0], "Subject: plain\n\n.dot\nbare\nLF inside\nx\n") {
		t.Errorf("plain message:\n%s", m[0])
	}
	if !strings.Contains(m[1], "with ESMTPS (using TLS 1.3 with cipher TLS_") {
		t.Errorf("TLS message lacks TLS details:\n%s", m[1])
	}
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/bob")); n != 1 {
		t.Errorf("bob has %d messages", n)
	}
}

// TestSmuggling: only CRLF.CRLF ends DATA; a bare-LF dot line is data
// (SMTP smuggling, CVE-2023-51764 and friends).
func TestSmuggling(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO c")
	d.Expect("250 ")
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "DATA")
	d.Expect("250")
	d.Expect("250")
	d.Expect("354")
	d.SendRaw("Subject: a\r\n\r\nfirst\n.\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\n.\r\n")
	d.Expect("250 ")
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/bob")); n != 0 {
		t.Fatal("a smuggled message reached bob")
	}
	if m := mailtest.Messages(t, env.MailRoot, "example.org/alice"); len(m) != 1 || !strings.Contains(m[0], "\n.\nMAIL FROM:<evil@remote.example>\n") {
		t.Fatalf("alice: %q", m)
	}
}

// TestMXAllOrNothing: when one mailbox cannot take the message, the whole
// transaction gets 451 and no mailbox keeps a copy, so the retry does not
// duplicate.
func TestMXAllOrNothing(t *testing.T) {
	env := newEnv(t)
	os.MkdirAll(filepath.Join(env.MailRoot, "example.org", "bob"), 0o700)
	os.WriteFile(filepath.Join(env.MailRoot, "example.org", "bob", "Maildir"), []byte("in the way"), 0o600)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO c")
	d.Expect("250 ")
	send(d, "s@remote.example", []string{"alice@example.org", "bob@example.org"}, "Subject: x", "", "y")
	d.Expect("451 4.3.0")
	d.Send("NOOP")
	d.Expect("250")
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")) + mailtest.TmpFiles(t, env.MailRoot, "example.org/alice"); n != 0 {
		t.Fatalf("alice kept %d files", n)
	}
}

func TestMXTooBig(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, MaxMessageBytes: 10000})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO c")
	d.Expect("250 ")
	// Exactly the limit is accepted, one byte more is not.
	line := strings.Repeat("a", 98) // 100 bytes with CRLF
	lines := make([]string, 100)
	for i := range lines {
		lines[i] = line
	}
	send(d, "s@remote.example", []string{"alice@example.org"}, lines...)
	d.Expect("250 ")
	lines[99] += "a"
	send(d, "s@remote.example", []string{"alice@example.org"}, lines...)
	d.Expect("552 5.3.4")
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")); n != 1 {
		t.Fatalf("alice has %d messages, want 1", n)
	}
}

func TestConnectionLimit(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, MaxConnsPerIP: 2})
	mailtest.Dial(t, "tcp", addr)
	mailtest.Dial(t, "tcp", addr)
	// The third from the same address is turned away.
	over, err := dialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(over, "421 4.7.0") {
		t.Fatalf("third connection: %q", over)
	}
}

func TestIdleTimeout(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, IdleTimeout: 300 * time.Millisecond})
	a := mailtest.Dial(t, "tcp", addr)
	// A silent client is told why and disconnected...
	a.Expect("421 4.4.2")
	if !a.Closed() {
		t.Fatal("idle connection still open")
	}
	// ...also in the middle of a message, with no other reply first, and
	// nothing is stored.
	b := mailtest.Dial(t, "tcp", addr)
	b.Send("EHLO c", "MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "DATA")
	b.Expect("250 ")
	b.Expect("250")
	b.Expect("250")
	b.Expect("354")
	b.Send("Subject: half")
	b.Expect("421 4.4.2")
	if !b.Closed() {
		t.Fatal("connection still open after a timeout in DATA")
	}
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")) + mailtest.TmpFiles(t, env.MailRoot, "example.org/alice"); n != 0 {
		t.Fatalf("%d files stored from a cut-off message", n)
	}
}

func dialRaw(addr string) (string, error) {
	c, err := (&tlsFreeDialer{}).dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b), nil
}

// TestManyConnections opens 1,000 connections at once: those over the limit
// get 421, the server stays up and a normal client is served after.
func TestManyConnections(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, MaxConns: 50})
	// Every client keeps its connection open until all have read their
	// greeting, so that the server really sees 1,000 at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	greetings := map[string]int{}
	release := make(chan struct{})
	var read sync.WaitGroup
	read.Add(1000)
	for range 1000 {
		wg.Go(func() {
			c, err := (&tlsFreeDialer{}).dial(addr)
			if err != nil {
				mu.Lock()
				greetings["dial error"]++
				mu.Unlock()
				read.Done()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 3)
			io.ReadFull(c, buf)
			mu.Lock()
			greetings[string(buf)]++
			mu.Unlock()
			read.Done()
			<-release
		})
	}
	read.Wait()
	close(release)
	wg.Wait()
	if greetings["220"] == 0 || greetings["421"] == 0 {
		t.Errorf("greetings: %v; want both 220 and 421", greetings)
	}
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO c")
	d.Expect("250 ")
	send(d, "s@remote.example", []string{"alice@example.org"}, "x")
	d.Expect("250 ")
}

func TestShutdownLetsDeliveryFinish(t *testing.T) {
	env := newEnv(t)
	srv := smtp.New(smtp.Options{Role: smtp.MX, Hostname: "mx.test", Deliverer: env.MDA, Panics: mailtest.Panics})
	l, _ := (&tlsFreeDialer{}).listen()
	go srv.Serve(l)
	d := mailtest.Dial(t, "tcp", l.Addr().String())
	d.Send("EHLO c")
	d.Expect("250 ")
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "DATA")
	d.Expect("250")
	d.Expect("250")
	d.Expect("354")
	d.Send("Subject: in flight", "")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	// The message in progress still completes and is acknowledged...
	d.Send("body", ".")
	d.Expect("250 ")
	// ...and then the connection is closed.
	if !d.Closed() {
		t.Fatal("connection left open after its delivery during shutdown")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/alice")); n != 1 {
		t.Fatalf("%d messages", n)
	}
}

// TestMaxLineLength: a command line over max_line_length is read to its
// end and answered 500 5.5.2, and the session goes on (it used to get
// "500 Too long line" and the connection closed, with the rest unread,
// often seen as a reset); a longer message line is accepted and stored
// as it is, as Postfix does, and the session stays in step (it used to
// get 554 and then "500 Too long line" for the next command). Over
// STARTTLS too, where only the library sees lines.
func TestMaxLineLength(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.MX, MaxLineLength: 1100, TLS: tlsConfig(t)})
	long := strings.Repeat("k", 2500)
	for _, tc := range []struct {
		name     string
		starttls bool
	}{{"plain", false}, {"STARTTLS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			d := mailtest.Dial(t, "tcp", addr)
			if tc.starttls {
				d.Send("EHLO c")
				d.Expect("250 ")
				d.StartTLS()
			}
			// The session starts at the first EHLO (again after STARTTLS).
			d.Send("EHLO " + strings.Repeat("h", 1200) + ".test")
			d.Expect("500 5.5.2")
			d.Send("EHLO c")
			d.Expect("250 ")
			d.Send("MAIL FROM:<s@remote.example>")
			d.Expect("250 ")
			d.Send("RCPT TO:<" + strings.Repeat("r", 5000) + "@example.org>")
			d.Expect("500 5.5.2")
			d.Send("NOOP")
			d.Expect("250 ")
			d.Send("RSET")
			d.Expect("250 ")
			before := len(mailtest.Messages(t, env.MailRoot, "example.org/alice"))
			send(d, "s@remote.example", []string{"alice@example.org"}, "Subject: long", "", long, "end")
			d.Expect("250 ")
			d.Send("NOOP")
			d.Expect("250 ")
			msgs := mailtest.Messages(t, env.MailRoot, "example.org/alice")
			if len(msgs) != before+1 || !strings.HasSuffix(msgs[len(msgs)-1], "\n"+long+"\nend\n") {
				t.Errorf("the long line was not stored as it was sent")
			}
		})
	}
}
