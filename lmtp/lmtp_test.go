package lmtp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/lmtp"
	"mailroom/mailbox"
	"mailroom/mda"
)

func start(t *testing.T, opts lmtp.Options, users ...string) (*mailenv.Env, string, string) {
	t.Helper()
	if users == nil {
		users = []string{"alice@example.org", "bob@example.org"}
	}
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: users, MaxMessageBytes: opts.MaxMessageBytes})
	_, tcp, unix := mailenv.StartLMTP(t, env, opts)
	return env, tcp, unix
}

func TestLHLOCapabilities(t *testing.T) {
	_, addr, _ := start(t, lmtp.Options{MaxMessageBytes: 12345})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("LHLO client.test")
	caps := strings.Join(d.Expect("250 "), "\n")
	for _, c := range []string{"PIPELINING", "SIZE 12345", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"} {
		if !strings.Contains(caps, "250-"+c+"\n") && !strings.HasSuffix(caps, "250 "+c) {
			t.Errorf("LHLO lacks %s:\n%s", c, caps)
		}
	}
}

// TestDialogs runs raw LMTP conversations and checks every reply code.
func TestDialogs(t *testing.T) {
	type step struct{ send, want string }
	cases := []struct {
		name  string
		steps []step
	}{
		{"HELO and EHLO are not LMTP", []step{{"HELO x", "500 5.5.1"}, {"EHLO x", "500 5.5.1"}}},
		{"MAIL before LHLO is out of sequence", []step{{"MAIL FROM:<a@b.example>", "503 5.5.1"}}},
		{"RCPT before MAIL is out of sequence", []step{{"LHLO c", "250"}, {"RCPT TO:<alice@example.org>", "503 5.5.1"}}},
		{"DATA without an accepted recipient gets 503 (RFC 2033 §4.2)", []step{
			{"LHLO c", "250"}, {"MAIL FROM:<a@b.example>", "250"},
			{"RCPT TO:<nobody@example.org>", "550 5.1.1"}, {"DATA", "503 5.5.1"},
			{"BDAT 3 LAST\r\nabcNOOP", "503 5.5.1"}, {"", "250"},
			{"NOOP", "250"}}},
		{"unknown user, foreign domain, bad syntax", []step{
			{"LHLO c", "250"}, {"MAIL FROM:<a@b.example>", "250"},
			{"RCPT TO:<nobody@example.org>", "550 5.1.1"},
			{"RCPT TO:<alice@elsewhere.example>", "550 5.1.2"},
			{"RCPT TO:<alice>", "501"},
			{"RCPT TO:<alice@example.org>", "250"}}},
		{"local parts that could escape the mail home", []step{
			{"LHLO c", "250"}, {"MAIL FROM:<a@b.example>", "250"},
			{"RCPT TO:<../alice@example.org>", "501 5.1.3"},
			{"RCPT TO:<a/../../x@example.org>", "501 5.1.3"},
			{"RCPT TO:<.@example.org>", "501 5.1.3"},
			{"RCPT TO:<al\x01ice@example.org>", "5"},
			{"RCPT TO:<al\x00ice@example.org>", "5"},
			{"RCPT TO:<\"a b\"@example.org>", "501"},
			{"RCPT TO:<alice@example.org>", "250"}}},
		{"bad sender", []step{{"LHLO c", "250"}, {"MAIL FROM:<no-at-sign>", "501"}, {"MAIL FROM:<>", "250"}}},
		{"declared size too big", []step{{"LHLO c", "250"}, {"MAIL FROM:<a@b.example> SIZE=99999999", "552 5.3.4"}}},
		{"RSET clears the transaction", []step{
			{"LHLO c", "250"}, {"MAIL FROM:<a@b.example>", "250"}, {"RCPT TO:<alice@example.org>", "250"},
			{"RSET", "250"}, {"DATA", "503"}}},
		{"unknown command", []step{{"LHLO c", "250"}, {"FROB", "500 5.5.2"}, {"NOOP", "250"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, addr, _ := start(t, lmtp.Options{MaxMessageBytes: 100000})
			d := mailtest.Dial(t, "tcp", addr)
			for _, s := range c.steps {
				if s.send != "" {
					d.Send(s.send)
				}
				d.Expect(s.want)
			}
		})
	}
}

// TestPerRecipientReplies: after DATA, one reply per accepted RCPT in
// order, a duplicate included, and a failed mailbox gets its own 451 while
// the others get 250.
func TestPerRecipientReplies(t *testing.T) {
	env, addr, _ := start(t, lmtp.Options{}, "alice@example.org", "bob@example.org", "carol@example.org")
	// carol's mail home cannot hold a Maildir: a file is in the way.
	os.MkdirAll(filepath.Join(env.MailRoot, "example.org", "carol"), 0o700)
	os.WriteFile(filepath.Join(env.MailRoot, "example.org", "carol", "Maildir"), []byte("in the way"), 0o600)

	d := mailtest.Dial(t, "tcp", addr)
	d.Send("LHLO c")
	d.Expect("250 ")
	// Pipelined, as Postfix sends it.
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "RCPT TO:<nobody@example.org>",
		"RCPT TO:<carol@example.org>", "RCPT TO:<bob+tag@example.org>", "RCPT TO:<Alice@example.org>", "DATA")
	for _, want := range []string{"250", "250", "550 5.1.1", "250", "250", "250", "354"} {
		d.Expect(want)
	}
	d.Send("Subject: t", "", "..leading dot", ".")
	for _, want := range []string{
		"250 2.0.0 <alice@example.org>",
		"451 4.3.0 <carol@example.org>",
		"250 2.0.0 <bob+tag@example.org>",
		"250 2.0.0 <Alice@example.org>",
	} {
		d.Expect(want)
	}
	// The session goes on after a failed delivery.
	d.Send("NOOP")
	d.Expect("250")

	if m := mailtest.Messages(t, env.MailRoot, "example.org/alice"); len(m) != 1 || !strings.HasSuffix(m[0], "Subject: t\n\n.leading dot\n") {
		t.Errorf("alice: %q", m)
	}
	if m := mailtest.Messages(t, env.MailRoot, "example.org/bob"); len(m) != 1 || !strings.Contains(m[0], "Delivered-To: bob+tag@example.org\n") {
		t.Errorf("bob: %q", m)
	}
}

func TestBDAT(t *testing.T) {
	env, addr, _ := start(t, lmtp.Options{})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("LHLO c")
	d.Expect("250 ")
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "RCPT TO:<bob@example.org>")
	d.Expect("250")
	d.Expect("250")
	d.Expect("250")
	d.SendRaw("BDAT 9\r\nSubject: ")
	d.Expect("250")
	d.SendRaw("BDAT 7 LAST\r\nx\r\n\r\nyz")
	d.Expect("250 2.0.0 <alice@example.org>")
	d.Expect("250 2.0.0 <bob@example.org>")
	if m := mailtest.Messages(t, env.MailRoot, "example.org/bob"); len(m) != 1 || !strings.HasSuffix(m[0], "\nSubject: x\n\nyz") {
		t.Errorf("bob: %q", m)
	}
}

func TestTooBigAndLongLine(t *testing.T) {
	env, addr, _ := start(t, lmtp.Options{MaxMessageBytes: 1000})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("LHLO c")
	d.Expect("250 ")
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "DATA")
	d.Expect("250")
	d.Expect("250")
	d.Expect("354")
	for range 30 {
		d.Send(strings.Repeat("y", 70))
	}
	d.Send(".")
	d.Expect("552 5.3.4")
	if m := mailtest.Messages(t, env.MailRoot, "example.org/alice"); len(m) != 0 {
		t.Fatalf("stored %d messages", len(m))
	}
	d.Send("RSET")
	d.Expect("250")
	// Exactly the announced size is accepted (RFC 1870).
	d.Send("MAIL FROM:<s@remote.example> SIZE=1000", "RCPT TO:<alice@example.org>", "DATA")
	d.Expect("250")
	d.Expect("250")
	d.Expect("354")
	d.Send(strings.Repeat("e", 998), ".")
	d.Expect("250 2.0.0")
	if m := mailtest.Messages(t, env.MailRoot, "example.org/alice"); len(m) != 1 || !strings.HasSuffix(m[0], "\n"+strings.Repeat("e", 998)+"\n") {
		t.Fatalf("a message of exactly the limit was not stored whole")
	}
	d.Send("MAIL FROM:<s@remote.example> SIZE=1001")
	d.Expect("552 5.3.4")
	// An over-long command line is answered and the session goes on.
	d.Send(strings.Repeat("A", 3000))
	d.Expect("5")
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<"+strings.Repeat("r", 5000)+"@example.org>")
	d.Expect("250")
	d.Expect("500 5.5.2")
	d.Send("NOOP")
	d.Expect("250")
}

// TestUnixSocketWithClient delivers with go-smtp's LMTP client over the
// unix socket.
func TestUnixSocketWithClient(t *testing.T) {
	env, _, sock := start(t, lmtp.Options{})
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	cl := gosmtp.NewClientLMTP(c)
	defer cl.Close()
	if err := cl.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Mail("s@remote.example", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@example.org", "bob@example.org"} {
		if err := cl.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "Subject: over a socket\r\n\r\nhi\r\n")
	resp, err := w.CloseWithLMTPResponse()
	if err != nil || len(resp) != 2 {
		t.Fatalf("per-recipient responses %v, %v", resp, err)
	}
	m := mailtest.Messages(t, env.MailRoot, "example.org/alice")
	if len(m) != 1 || !strings.Contains(m[0], "Received: from client.test (unix socket)\n") {
		t.Fatalf("alice: %q", m)
	}
}

// TestShutdownClosesIdleConnections: Shutdown must not wait for an idle
// client to hang up by itself.
func TestShutdownClosesIdleConnections(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org"}})
	srv, addr, _ := mailenv.StartLMTP(t, env, lmtp.Options{})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("LHLO c")
	d.Expect("250 ")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !d.Closed() {
		t.Fatal("idle connection left open")
	}
}

// TestLongLineInData: a body line over max_line_length is accepted and
// stored as it came, as Postfix does, and the session stays in step.
func TestLongLineInData(t *testing.T) {
	env, addr, _ := start(t, lmtp.Options{})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("LHLO c")
	d.Expect("250 ")
	d.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "DATA")
	d.Expect("250")
	d.Expect("250")
	d.Expect("354")
	d.Send("Subject: x", "", strings.Repeat("z", 5000), ".")
	d.Expect("250 2.0.0 <alice@example.org>")
	d.Send("NOOP")
	d.Expect("250")
	if m := mailtest.Messages(t, env.MailRoot, "example.org/alice"); len(m) != 1 || !strings.HasSuffix(m[0], "\n"+strings.Repeat("z", 5000)+"\n") {
		t.Fatalf("the long line was not stored whole")
	}
}

// blockingStore holds every Commit until release is closed.
type blockingStore struct {
	mda.Store
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) Stage(ctx context.Context, home string, r io.Reader) (mailbox.Staged, error) {
	st, err := b.Store.Stage(ctx, home, r)
	if err != nil {
		return nil, err
	}
	return blockingStaged{st, b}, nil
}

type blockingStaged struct {
	mailbox.Staged
	b *blockingStore
}

func (s blockingStaged) Commit(ctx context.Context) error {
	close(s.b.entered)
	<-s.b.release
	return s.Staged.Commit(ctx)
}

// TestCloseWaitsForDeliveries: a forced Close (after the shutdown grace)
// returns only once a delivery still in its fsyncs has finished, so that
// the caller does not close the stores under it.
func TestCloseWaitsForDeliveries(t *testing.T) {
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org"}})
	bs := &blockingStore{Store: env.Store, entered: make(chan struct{}), release: make(chan struct{})}
	d, err := mda.New(mda.Options{Hostname: "mx.test", Domains: []string{"example.org"}, Accounts: env.Accounts, Store: bs, SpoolDir: env.Dir})
	if err != nil {
		t.Fatal(err)
	}
	srv := lmtp.New(lmtp.Options{Hostname: "mx.test", Deliverer: d, Panics: mailtest.Panics})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	c := mailtest.Dial(t, "tcp", l.Addr().String())
	c.Send("LHLO c", "MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "DATA", "Subject: x", "", "y", ".")
	<-bs.entered
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a delivery was still committing")
	case <-time.After(100 * time.Millisecond):
	}
	close(bs.release)
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return after the delivery finished")
	}
}
