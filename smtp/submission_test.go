package smtp_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/smtp"
)

// fakeQueue records what submission enqueues.
type fakeQueue struct {
	mu   sync.Mutex
	msgs []queued
	err  error
}

type queued struct {
	from string
	to   []string
	data string
}

func (q *fakeQueue) Enqueue(ctx context.Context, from string, to []string, r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return "", q.err
	}
	q.msgs = append(q.msgs, queued{from, to, string(b)})
	return "Q1", nil
}

func startSubmission(t *testing.T, q smtp.Queue) (*mailenv.Env, string, string) {
	env := newEnv(t)
	plain, implicit := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, TLS: tlsConfig(t), Queue: q, Delimiter: "+",
		AuthFailureDelay: -1})
	return env, plain, implicit
}

func login(d *mailtest.Dialog) {
	d.Send("EHLO client.test")
	d.Expect("250 ")
	d.Send("AUTH PLAIN " + plainAuth("alice@example.org", "secret"))
	d.Expect("235 2.0.0")
}

func TestSubmissionNeedsAuth(t *testing.T) {
	_, addr, _ := startSubmission(t, &fakeQueue{})
	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO client.test")
	caps := strings.Join(d.Expect("250 "), "\n")
	// On loopback AUTH is offered even without TLS.
	if !strings.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO on loopback lacks AUTH:\n%s", caps)
	}
	d.Send("MAIL FROM:<alice@example.org>")
	d.Expect("530 5.7.0")
	d.Send("RCPT TO:<bob@example.org>")
	d.Expect("503")
	d.Send("AUTH PLAIN " + plainAuth("alice@example.org", "wrong"))
	d.Expect("535 5.7.8")
	d.Send("AUTH PLAIN !!!notbase64")
	d.Expect("501 5.5.2")
	d.Send("AUTH PLAIN =")
	d.Expect("501 5.5.2 Invalid AUTH response")
	d.Send("AUTH CRAM-MD5")
	d.Expect("504")
	d.Send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("bob@example.org\x00alice@example.org\x00secret")))
	d.Expect("535")
	d.Send("AUTH LOGIN")
	d.Expect("334 " + base64.StdEncoding.EncodeToString([]byte("Username:")))
	d.Send(base64.StdEncoding.EncodeToString([]byte("alice@example.org")))
	d.Expect("334 " + base64.StdEncoding.EncodeToString([]byte("Password:")))
	d.Send(base64.StdEncoding.EncodeToString([]byte("secret")))
	d.Expect("235")
}

func TestSubmissionSenderOwnership(t *testing.T) {
	_, addr, _ := startSubmission(t, &fakeQueue{})
	d := mailtest.Dial(t, "tcp", addr)
	login(d)
	for _, c := range []struct{ from, want string }{
		{"bob@example.org", "553 5.7.1"},
		{"alice@elsewhere.example", "553 5.7.1"},
		{"", "553 5.7.1"},
		{"alice+news@example.org", "250"},
		{"ALICE@Example.org", "250"},
		{"sales@example.org", "250"},         // an alias that reaches alice
		{"support@example.org", "553 5.7.1"}, // one that does not
	} {
		d.Send("MAIL FROM:<" + c.from + ">")
		d.Expect(c.want)
		d.Send("RSET")
		d.Expect("250")
	}
}

func TestSubmissionLocalAddsHeaders(t *testing.T) {
	env, _, implicit := startSubmission(t, &fakeQueue{})
	d := mailtest.DialTLS(t, implicit)
	login(d)
	send(d, "alice@example.org", []string{"bob@example.org"}, "Subject: no id", "", "body")
	d.Expect("250 ")
	send(d, "alice@example.org", []string{"bob@example.org"}, "Message-Id: <given@client>", "date: Mon, 1 Jan 2024 00:00:00 +0000", "Subject: has id", "", "Message-ID: <in-body@x>")
	d.Expect("250 ")
	m := mailtest.Messages(t, env.MailRoot, "example.org/bob")
	if len(m) != 2 {
		t.Fatalf("bob has %d messages", len(m))
	}
	if !strings.Contains(m[0], "\nMessage-ID: <") || !strings.Contains(m[0], "\nDate: ") ||
		!strings.Contains(m[0], "with ESMTPSA (using TLS") {
		t.Errorf("first message:\n%s", m[0])
	}
	if strings.Count(m[1], "Message-ID") != 1 || strings.Contains(m[1], "\nDate: ") {
		t.Errorf("headers added to a message that had them:\n%s", m[1])
	}
}

func TestSubmissionRemoteGoesToQueue(t *testing.T) {
	q := &fakeQueue{}
	env, addr, _ := startSubmission(t, q)
	d := mailtest.Dial(t, "tcp", addr)
	d.StartTLS()
	login(d)
	send(d, "alice@example.org", []string{"friend@elsewhere.example", "bob@example.org"}, "Subject: out", "", "hi")
	d.Expect("250 ")
	if len(q.msgs) != 1 {
		t.Fatalf("queued %d messages", len(q.msgs))
	}
	got := q.msgs[0]
	if got.from != "alice@example.org" || strings.Join(got.to, ",") != "bob@example.org,friend@elsewhere.example" {
		t.Errorf("envelope %q -> %q", got.from, got.to)
	}
	if !strings.HasPrefix(got.data, "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (mailroom) with ESMTPSA (using TLS") ||
		!strings.Contains(got.data, "\r\nMessage-ID: <") || !strings.HasSuffix(got.data, "Subject: out\r\n\r\nhi\r\n") {
		t.Errorf("queued message:\n%q", got.data)
	}
	// The queue delivers the local copy too: nothing went to bob directly.
	if n := len(mailtest.Messages(t, env.MailRoot, "example.org/bob")); n != 0 {
		t.Errorf("bob got %d direct copies", n)
	}
	// A queue that cannot take the message: 451, try again.
	q.err = errors.New("disk trouble")
	send(d, "alice@example.org", []string{"friend@elsewhere.example"}, "x")
	d.Expect("451 4.3.0")
}

func TestSubmissionWithoutQueue(t *testing.T) {
	_, addr, _ := startSubmission(t, nil)
	d := mailtest.Dial(t, "tcp", addr)
	login(d)
	send(d, "alice@example.org", []string{"friend@elsewhere.example"}, "x")
	d.Expect("451")
}

// TestAuthThrottle: one mistyped password is retried at once; after a
// second failure the address is refused at once with 454 4.7.0, a right
// password as a wrong one (it used to be answered 235 at once while a
// wrong one waited, which told a guesser the answer), on every connection
// from it; the third failed or refused attempt on a connection closes it.
// Other users behind the address are not held back by one user's failures.
func TestAuthThrottle(t *testing.T) {
	env := newEnv(t)
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, AuthFailureDelay: time.Minute})
	bob := mailtest.Dial(t, "tcp", addr)
	bob.Send("EHLO client.test")
	bob.Expect("250 ")
	bob.Send("AUTH PLAIN " + plainAuth("bob@example.org", "wrong"))
	bob.Expect("535 5.7.8")
	bob.Send("AUTH PLAIN " + plainAuth("bob@example.org", "secret"))
	bob.Expect("235 ")

	d := mailtest.Dial(t, "tcp", addr)
	d.Send("EHLO client.test")
	d.Expect("250 ")
	for range 2 {
		d.Send("AUTH PLAIN " + plainAuth("alice@example.org", "wrong"))
		d.Expect("535 5.7.8")
	}
	t0 := time.Now()
	d.Send("AUTH PLAIN " + plainAuth("alice@example.org", "secret"))
	d.Expect("454 4.7.0")
	if el := time.Since(t0); el > 5*time.Second {
		t.Errorf("refusal took %v: a throttled session must not wait holding its slot", el)
	}
	other := mailtest.Dial(t, "tcp", addr)
	other.Send("EHLO client.test")
	other.Expect("250 ")
	other.Send("AUTH PLAIN " + plainAuth("alice@example.org", "secret"))
	other.Expect("454 4.7.0")
	carol := mailtest.Dial(t, "tcp", addr)
	carol.Send("EHLO client.test")
	carol.Expect("250 ")
	carol.Send("AUTH PLAIN " + plainAuth("bob@example.org", "secret"))
	carol.Expect("235 ")
	if !d.Closed() {
		t.Error("connection still open after three failed attempts")
	}
}
