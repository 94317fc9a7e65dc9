package queue

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestBounceOfLocalFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{}
		h := newHarness(t, tr, nil)
		h.run()
		failures := []Failure{
			{Rcpt: "bob@example.org", Status: "5.3.0", Err: errors.New("command exited 1: no such list")},
			{Rcpt: "carol@example.org", Err: errors.New("file targets are not allowed in .forward")},
		}
		if err := h.q.Bounce(t.Context(), "sender@remote.example", failures, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		settle(time.Minute)
		calls := tr.sent()
		if len(calls) != 1 || calls[0].From != "" || len(calls[0].To) != 1 || calls[0].To[0] != "sender@remote.example" {
			t.Fatalf("sent %+v, want one DSN from <> to the sender", calls)
		}
		d := parseDSN(t, calls[0].Body)
		if len(d.rcpts) != 2 {
			t.Fatalf("%d recipient groups, want 2", len(d.rcpts))
		}
		for i, want := range []struct{ rcpt, status string }{{"bob@example.org", "5.3.0"}, {"carol@example.org", "5.0.0"}} {
			if got := d.rcpts[i].Get("Final-Recipient"); got != "rfc822; "+want.rcpt {
				t.Errorf("Final-Recipient %q, want %s", got, want.rcpt)
			}
			if got := d.rcpts[i].Get("Status"); got != want.status {
				t.Errorf("Status %q, want %s", got, want.status)
			}
		}
		if !strings.Contains(d.text, "no such list") || !strings.Contains(d.original, "Subject: hello") {
			t.Errorf("DSN lacks the reason or the original header:\n%s\n%s", d.text, d.original)
		}
	})
}

func TestBounceToNullSenderIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{}
		h := newHarness(t, tr, nil)
		h.run()
		err := h.q.Bounce(t.Context(), "", []Failure{{Rcpt: "bob@example.org", Err: errors.New("x")}}, strings.NewReader(testMsg))
		if err != nil {
			t.Fatal(err)
		}
		settle(time.Minute)
		if len(tr.sent()) != 0 || len(h.records(t)) != 0 {
			t.Errorf("a DSN to the null sender: %+v", tr.sent())
		}
	})
}

// TestBounceWithoutReason: a failure that carries no error is bounced
// with "no reason given" rather than panicking the delivery.
func TestBounceWithoutReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{}
		h := newHarness(t, tr, nil)
		h.run()
		if err := h.q.Bounce(t.Context(), "sender@remote.example", []Failure{{Rcpt: "bob@example.org"}}, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		settle(time.Minute)
		calls := tr.sent()
		if len(calls) != 1 {
			t.Fatalf("sent %+v, want one DSN", calls)
		}
		if d := parseDSN(t, calls[0].Body); !strings.Contains(d.text, "no reason given") {
			t.Errorf("DSN text:\n%s", d.text)
		}
	})
}
