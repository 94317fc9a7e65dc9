package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/config"
	"mailroom/internal/mailtest"
)

// sinkMTA is a go-smtp server that accepts everything except recipients
// starting with "gone@".
type sinkMTA struct {
	mu   sync.Mutex
	msgs []string
}

type sinkSession struct{ m *sinkMTA }

func (s sinkSession) Reset()                                 {}
func (s sinkSession) Logout() error                          { return nil }
func (s sinkSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s sinkSession) Data(r io.Reader) error                 { b, _ := io.ReadAll(r); s.m.add(string(b)); return nil }
func (m *sinkMTA) add(msg string)                            { m.mu.Lock(); m.msgs = append(m.msgs, msg); m.mu.Unlock() }
func (m *sinkMTA) count() int                                { m.mu.Lock(); defer m.mu.Unlock(); return len(m.msgs) }
func (s sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if strings.HasPrefix(to, "gone@") {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	return nil
}

func startSink(t *testing.T) (*sinkMTA, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &sinkMTA{}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return sinkSession{m}, nil }))
	srv.Domain = "sink.test"
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return m, l.Addr().String()
}

func queueConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir := mailtest.ShortTempDir(t)
	p := filepath.Join(dir, "mailroom.toml")
	os.WriteFile(p, []byte(`hostname = "mx.test"
data_dir = "data"
domains = ["example.org"]
`+extra), 0o600)
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestQueueWiringSendsAndBouncesLocally(t *testing.T) {
	sink, addr := startSink(t)
	cfg := queueConfig(t, fmt.Sprintf("[relay]\nsmarthost = %q\n", addr))
	a, err := openApp(cfg, slog.New(slog.DiscardHandler), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.accounts.Add("alice@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	q, err := openQueue(a, config.Queue{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runQueue(context.Background(), a, q)
	defer stop()
	msg := "From: alice@example.org\nSubject: out\n\nhi\n"
	if _, err := q.Enqueue(t.Context(), "alice@example.org", []string{"ok@remote.example", "gone@remote.example"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	root := cfg.MailRoot()
	mailtest.Eventually(t, 10*time.Second, "the smarthost's copy and alice's bounce", func() bool {
		return sink.count() >= 1 && len(mailtest.Messages(t, root, "example.org/alice")) >= 1
	})
	if sink.count() != 1 {
		t.Fatalf("the smarthost got %d messages, want 1", sink.count())
	}
	got := mailtest.Messages(t, root, "example.org/alice")
	if len(got) != 1 {
		t.Fatalf("alice got %d messages, want one bounce", len(got))
	}
	b := got[0]
	for _, want := range []string{"Return-Path: <>\n", "multipart/report", "Final-Recipient: rfc822; gone@remote.example", "Status: 5.1.1",
		"Diagnostic-Code: smtp; 550 5.1.1 no such user here", "Subject: out"} {
		if !strings.Contains(b, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "ok@remote.example") {
		t.Errorf("the bounce names the recipient that was delivered:\n%s", b)
	}
}

// queueCLI runs `mailroom queue ARGS` in-process as run does (main.go's
// switch gets its "queue" case with the wiring).
func queueCLI(args ...string) (string, int) {
	var out bytes.Buffer
	if err := cmdQueue(args, &out, &out); err != nil {
		fmt.Fprintf(&out, "mailroom queue: %v\n", err)
		return out.String(), exitCode(err)
	}
	return out.String(), 0
}

func TestQueueCommandsWithoutServer(t *testing.T) {
	cfg := queueConfig(t, "[relay]\nsmarthost = \"127.0.0.1:1\"\n")
	a, err := openApp(cfg, slog.New(slog.DiscardHandler), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	q, err := openQueue(a, config.Queue{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Enqueue(t.Context(), "", []string{"bob@remote.example"}, strings.NewReader("Subject: x\n\ny\n"))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()

	flags := []string{"-config", cfg.Path}
	steps := []struct {
		args []string
		code int
		out  []string
	}{
		{[]string{"queue", "list"}, 0, []string{"ID", "LAST ERROR", id, "<>", "bob@remote.example", "now"}},
		{[]string{"queue", "flush"}, 0, []string{"1 message(s) due now"}},
		{[]string{"queue", "drop", "NOSUCHID0000"}, exitDataErr, []string{"no such queued message"}},
		{[]string{"queue", "drop", id}, 0, []string{id + ": dropped"}},
		{[]string{"queue", "list"}, 0, []string{"queue is empty"}},
		{[]string{"queue", "drop"}, exitUsage, []string{"takes 1 argument"}},
		{[]string{"queue", "frob"}, exitUsage, []string{"unknown queue command"}},
	}
	for _, s := range steps {
		out, code := queueCLI(append(s.args[1:], flags...)...)
		if code != s.code {
			t.Fatalf("%v: exit %d, want %d\n%s", s.args, code, s.code, out)
		}
		for _, w := range s.out {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", s.args, w, out)
			}
		}
	}
	filepath.WalkDir(filepath.Join(cfg.DataDir, "queue"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			t.Errorf("file left in the queue directory after drop: %s", p)
		}
		return nil
	})
}
