package mda_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/mda"
)

// deliverAll runs one SMTP-style transaction (one reply for everybody).
func (e *rulesEnv) deliverAll(t *testing.T, from, msg string, rcpts ...string) error {
	t.Helper()
	ctx := context.Background()
	txn, err := e.MDA.Begin(ctx, from, mda.Info{Proto: "ESMTP"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := txn.AddRcpt(ctx, r); err != nil {
			t.Fatalf("AddRcpt(%s): %v", r, err)
		}
	}
	return txn.DeliverAll(ctx, strings.NewReader(msg))
}

// TestDeliverAllBouncesRecipientsThatFailedForGood: over SMTP the reply
// is 250 as soon as one recipient got the message, so a recipient whose
// every target failed for good (a pipe that exits 1, a forwarding loop)
// must reach the sender as a bounce, or it is lost without a word.
func TestDeliverAllBouncesRecipientsThatFailedForGood(t *testing.T) {
	e := newRulesEnv(t, "perm: \"|echo gone >&2; exit 1\"\nlist: bob\n", nil)
	if err := e.deliverAll(t, "sender@remote.example", plainMsg, "alice@example.org", "perm@example.org"); err != nil {
		t.Fatalf("DeliverAll: %v, want success (alice got it)", err)
	}
	if len(e.fwd.bounces) != 1 || len(e.fwd.bounces[0]) != 1 || e.fwd.bounces[0][0].Rcpt != "perm@example.org" ||
		e.fwd.bounces[0][0].Status != "5.3.0" {
		t.Fatalf("bounces %+v, want one about perm@example.org (5.3.0)", e.fwd.bounces)
	}

	e.fwd.bounces = nil
	msg := "Delivered-To: list@example.org\n" + plainMsg
	if err := e.deliverAll(t, "sender@remote.example", msg, "alice@example.org", "list@example.org"); err != nil {
		t.Fatalf("DeliverAll: %v, want success (alice got it)", err)
	}
	if len(e.fwd.bounces) != 1 || len(e.fwd.bounces[0]) != 1 || e.fwd.bounces[0][0].Rcpt != "list@example.org" ||
		e.fwd.bounces[0][0].Status != "5.4.6" || !errors.Is(e.fwd.bounces[0][0].Err, mda.ErrLoop) {
		t.Fatalf("bounces %+v, want one 5.4.6 about list@example.org", e.fwd.bounces)
	}

	// Nobody got it: the reply says so, and there is no bounce besides.
	e.fwd.bounces = nil
	if err := e.deliverAll(t, "sender@remote.example", plainMsg, "perm@example.org"); err == nil {
		t.Fatal("DeliverAll succeeded though the only target failed")
	}
	if len(e.fwd.bounces) != 0 {
		t.Errorf("bounces %+v besides the failure reply", e.fwd.bounces)
	}
	// The null sender gets no bounce, and the message is still accepted.
	if err := e.deliverAll(t, "", plainMsg, "alice@example.org", "perm@example.org"); err != nil {
		t.Fatalf("DeliverAll from <>: %v", err)
	}
	if len(e.fwd.bounces) != 0 {
		t.Errorf("bounces %+v to the null sender", e.fwd.bounces)
	}
}

// TestFailureTextShownToTheSender: what reaches the sender (the LMTP/SMTP
// reply, the bounce) says what failed and quotes a command's stderr, but
// not the command line, the file path or the alias chain, which are the
// administrator's or the user's own business (a command line may even
// hold a token).
func TestFailureTextShownToTheSender(t *testing.T) {
	e := newRulesEnv(t, `
cmd: "|echo no such list >&2; exit 1 # token=SECRET1"
file: /nonexistent-SECRET2/archive
mixed: alice, "|exit 2 # SECRET3", /nonexistent-SECRET4/x
ping: pong
pong: ping, alice
`, nil)
	res := e.deliver(t, "sender@remote.example", plainMsg, "cmd@example.org", "file@example.org", "mixed@example.org", "ping@example.org")
	var pe *mda.PermanentError
	if !errors.As(res[0], &pe) || !strings.Contains(pe.Text, "no such list") || !strings.Contains(pe.Text, "status 1") {
		t.Errorf("command: %#v, want its status and stderr", res[0])
	}
	for i, r := range res[:2] {
		if !errors.As(r, &pe) || strings.Contains(pe.Text, "SECRET") {
			t.Errorf("reply %d: %q shows the command or the path", i, pe.Text)
		}
	}
	if res[2] != nil || res[3] != nil {
		t.Fatalf("mixed %v, ping %v: want success (alice got them)", res[2], res[3])
	}
	if len(e.fwd.bounces) != 1 || len(e.fwd.bounces[0]) != 3 {
		t.Fatalf("bounces %+v, want one with mixed's pipe and file and ping's loop", e.fwd.bounces)
	}
	for _, f := range e.fwd.bounces[0] {
		if s := f.Err.Error(); strings.Contains(s, "SECRET") || strings.Contains(s, "->") {
			t.Errorf("bounced piece %s: %q shows the command, the path or the chain", f.Rcpt, s)
		}
	}
	if f := e.fwd.bounces[0][2]; !errors.Is(f.Err, mda.ErrLoop) || f.Status != "5.4.6" {
		t.Errorf("loop piece %+v: the cause is lost", f)
	}
}

// TestRecipientGivenTwiceIsBouncedOnce: the same address in two RCPTs
// gets one copy and one result each; its failed pieces appear once in
// the one bounce, not once per RCPT.
func TestRecipientGivenTwiceIsBouncedOnce(t *testing.T) {
	e := newRulesEnv(t, "mixed: alice, \"|exit 1\"\n", nil)
	e.forward(t, "bob", "\\bob, \"|/bin/true\"\n") // the pipe is refused (allow_commands off)
	res := e.deliver(t, "sender@remote.example", plainMsg, "mixed@example.org", "bob@example.org", "Mixed@example.org", "bob@example.org")
	for i, r := range res {
		if r != nil {
			t.Errorf("result %d: %v", i, r)
		}
	}
	if len(e.fwd.bounces) != 1 || len(e.fwd.bounces[0]) != 2 {
		t.Fatalf("bounces %+v, want one with mixed's pipe and bob's refused pipe, once each", e.fwd.bounces)
	}
}

// TestDeliverAllStopsBeforeForwarding: with one reply for everybody, a
// command that asks to be retried fails the whole message, and nothing
// that cannot be taken back (a forward already queued) is done first,
// or the sender's retry would forward it twice.
func TestDeliverAllStopsBeforeForwarding(t *testing.T) {
	e := newRulesEnv(t, "x: partner@remote.example, $OUT/archive, \"|exit 75\"\n", nil)
	err := e.deliverAll(t, "sender@remote.example", plainMsg, "x@example.org")
	var tmp interface{ Temporary() bool }
	if !errors.As(err, &tmp) || !tmp.Temporary() {
		t.Fatalf("DeliverAll: %v, want a temporary failure", err)
	}
	if len(e.fwd.enqueued) != 0 {
		t.Errorf("forwarded %+v before the command failed; the retry forwards it again", e.fwd.enqueued)
	}
	if _, err := os.Stat(filepath.Join(e.out, "archive")); err == nil {
		t.Error("the file was appended to before the command failed; the retry appends again")
	}
}
