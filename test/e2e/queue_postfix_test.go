package e2e

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/lmtp"
	"mailroom/queue"
	"mailroom/smtp/outbound"
)

// queueMessage leaves mailroom through its queue: 8-bit text, lines that
// need dot-stuffing and a long line, with every header Postfix would
// otherwise add, so that what arrives must end with it byte for byte.
var queueMessage = "From: Alice <alice@mailroom.test>\n" +
	"To: bob@example.org, carol@example.org\n" +
	"Subject: out through the queue\n" +
	"Date: Wed, 25 Nov 2026 08:00:00 +0000\n" +
	"Message-ID: <queue-e2e@mailroom.test>\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"Grüße aus der Warteschlange.\n" +
	".\n" +
	"..two dots\n" +
	strings.Repeat("long ", 190) + "line\n" +
	"last line\n"

// staticDNS resolves every name to 127.0.0.1 and gives each domain an MX
// named after it: enough to make Postfix the MX of example.org.
type staticDNS struct{}

func (staticDNS) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return []*net.MX{{Host: "mx." + name, Pref: 10}}, nil
}

func (staticDNS) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
}

// queueToPostfix runs a private Postfix that hands example.org to an
// in-process mailroom LMTP server, and an outbound queue whose transport
// the test sets up to reach that Postfix.
func queueToPostfix(t *testing.T, transport func(p *postfix) *outbound.Transport) (*postfix, *mailenv.Env, *queue.Queue, *logSink) {
	t.Helper()
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"bob@example.org", "carol@example.org"}})
	_, lmtpAddr, _ := mailenv.StartLMTP(t, env, lmtp.Options{})
	p := startPostfix(t, "lmtp:inet:"+lmtpAddr)
	logs := &logSink{}
	q, err := queue.Open(queue.Options{
		DB: env.DB, Dir: filepath.Join(env.Dir, "queue"), Hostname: "mailroom.test",
		Transport: transport(p), Retry: []time.Duration{time.Second},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		q.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("mailroom queue log:\n%s", logs.String())
		}
	})
	return p, env, q, logs
}

type logSink struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func checkArrivedIntact(t *testing.T, msg, rcpt string) {
	t.Helper()
	got := splitTrace(t, msg)
	if got.ReturnPath != "<alice@mailroom.test>" || got.DeliveredTo != rcpt {
		t.Errorf("Return-Path: %s, Delivered-To: %s; want <alice@mailroom.test>, %s", got.ReturnPath, got.DeliveredTo, rcpt)
	}
	// Postfix's Received: names mailroom's EHLO.
	if !strings.HasPrefix(got.Rest, "Received: from mailroom.test (localhost [127.0.0.1])\n\tby postfix.test (Postfix) with ESMTP") {
		t.Errorf("Postfix's Received: does not name EHLO mailroom.test:\n%s", got.Rest)
	}
	if !strings.HasSuffix(got.Rest, "\n"+queueMessage) {
		t.Errorf("message changed on the way:\n%q\nwant it to end with\n%q", got.Rest, queueMessage)
	}
}

// TestQueueToPostfixSmarthost sends through a private Postfix configured
// as [relay] smarthost.
func TestQueueToPostfixSmarthost(t *testing.T) {
	p, env, q, logs := queueToPostfix(t, func(p *postfix) *outbound.Transport {
		return outbound.New(outbound.Options{Hostname: "mailroom.test", Smarthost: p.addr()})
	})
	if _, err := q.Enqueue(t.Context(), "alice@mailroom.test", []string{"bob@example.org"}, strings.NewReader(queueMessage)); err != nil {
		t.Fatal(err)
	}
	got := waitDelivered(t, p, env.MailRoot, map[string]int{"example.org/bob": 1}, nil)
	checkArrivedIntact(t, got["example.org/bob"][0].Data, "bob@example.org")
	mailtest.Eventually(t, 10*time.Second, "the queue to empty", func() bool { l, _ := q.List(); return len(l) == 0 })
	if !strings.Contains(logs.String(), "event=sent") {
		t.Errorf("no sent record in the log:\n%s", logs)
	}
}

// TestQueueToPostfixAsMX finds Postfix as example.org's MX (through the
// resolver interface and mx_port) and sends both recipients in one
// transaction.
func TestQueueToPostfixAsMX(t *testing.T) {
	p, env, q, _ := queueToPostfix(t, func(p *postfix) *outbound.Transport {
		return outbound.New(outbound.Options{Hostname: "mailroom.test", Resolver: staticDNS{}, Port: p.Port})
	})
	if _, err := q.Enqueue(t.Context(), "alice@mailroom.test", []string{"bob@example.org", "carol@example.org"}, strings.NewReader(queueMessage)); err != nil {
		t.Fatal(err)
	}
	got := waitDelivered(t, p, env.MailRoot, map[string]int{"example.org/bob": 1, "example.org/carol": 1}, nil)
	checkArrivedIntact(t, got["example.org/bob"][0].Data, "bob@example.org")
	checkArrivedIntact(t, got["example.org/carol"][0].Data, "carol@example.org")
	if !p.logged("from=<alice@mailroom.test>", "nrcpt=2") {
		t.Errorf("Postfix did not get both recipients in one transaction:\n%s", p.Log())
	}
}
