package mda_test

import (
	"context"
	"errors"
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
