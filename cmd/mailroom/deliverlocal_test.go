package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/internal/ctl"
	"mailroom/internal/mailtest"
	"mailroom/queue"
)

// TestDeliverLocalLoopsArePermanent: a queued message (a DSN to a local
// sender, usually) that loops through the aliases or comes back to an
// address it was already delivered to fails for good with 5.4.6: the
// queue must not retry it for days.
func TestDeliverLocalLoopsArePermanent(t *testing.T) {
	aliases := filepath.Join(t.TempDir(), "aliases")
	os.WriteFile(aliases, []byte("ping: pong\npong: ping\nlist: alice\nbroken: \"|exit 1\"\n"), 0o600)
	cfg := queueConfig(t, fmt.Sprintf("[delivery]\naliases = %q\n", aliases))
	a, err := openApp(cfg, slog.New(slog.DiscardHandler), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.accounts.Add("alice@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	msg := "From: MAILER-DAEMON\nSubject: bounce\n\nx\n"
	for _, c := range []struct {
		rcpt, msg, status string
	}{
		{"ping@example.org", msg, "5.4.6"},
		{"list@example.org", "Delivered-To: list@example.org\n" + msg, "5.4.6"},
		{"alice@example.org", strings.Repeat("Received: x\n", 101) + msg, "5.4.6"},
		{"broken@example.org", msg, "5.3.0"},
	} {
		err := deliverLocal(t.Context(), a, "", c.rcpt, strings.NewReader(c.msg))
		var qe *queue.Error
		if !errors.As(err, &qe) || qe.Temporary() || qe.Status != c.status {
			t.Errorf("deliverLocal(%s) = %#v, want a permanent queue.Error with status %s", c.rcpt, err, c.status)
		}
	}
}

// TestDeliverErrorHidesTheAliasChain: `mailroom deliver`'s message ends up
// in the MTA's bounce; a loop must not spell out the forwarding chain.
func TestDeliverErrorHidesTheAliasChain(t *testing.T) {
	aliases := filepath.Join(t.TempDir(), "aliases")
	os.WriteFile(aliases, []byte("ping: pong\npong: ping\n"), 0o600)
	cfg := queueConfig(t, fmt.Sprintf("[delivery]\naliases = %q\n", aliases))
	a, err := openApp(cfg, slog.New(slog.DiscardHandler), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = opDeliver(t.Context(), a, []byte(`{"from":"x@remote.example","rcpts":["pong@example.org"]}`), strings.NewReader("Subject: x\n\nx\n"))
	var ce *ctl.Error
	if !errors.As(err, &ce) || ce.Exit != exitDataErr {
		t.Fatalf("deliver to a loop: %#v, want exit %d", err, exitDataErr)
	}
	if strings.Contains(ce.Msg, "ping") || strings.Contains(ce.Msg, "->") || !strings.Contains(ce.Msg, "loop") {
		t.Errorf("message %q, want a loop without the chain", ce.Msg)
	}
}

// TestDeliverPartialFailureQueuesOneBounce: `mailroom deliver` to an
// alias whose pipe fails for good while a mailbox gets the message exits
// 0 (the MTA must not retry what landed) and queues one DSN to the
// sender about the pipe.
func TestDeliverPartialFailureQueuesOneBounce(t *testing.T) {
	aliases := filepath.Join(t.TempDir(), "aliases")
	os.WriteFile(aliases, []byte("mixed: alice, \"|exit 1\"\n"), 0o600)
	cfg := queueConfig(t, fmt.Sprintf("[delivery]\naliases = %q\n", aliases))
	a, err := openApp(cfg, slog.New(slog.DiscardHandler), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.accounts.Add("alice@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	_, err = opDeliver(t.Context(), a, []byte(`{"from":"sender@remote.example","rcpts":["mixed@example.org"]}`), strings.NewReader("Subject: x\n\nx\n"))
	if err != nil {
		t.Fatalf("deliver: %v, want success", err)
	}
	list, err := a.queue.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].From != "" || len(list[0].Rcpts) != 1 || list[0].Rcpts[0].Addr != "sender@remote.example" {
		t.Fatalf("queue %+v, want one DSN from <> to the sender", list)
	}
	if n := len(mailtest.Messages(t, cfg.MailRoot(), "example.org/alice")); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
}
