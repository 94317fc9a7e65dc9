package imap

import (
	"context"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/panics"
)

// TestMain fails the run on any panic that a server of these tests
// recovered (start gives them mailtest.Panics).
func TestMain(m *testing.M) { mailtest.Main(m) }

// TestPanicIsRecorded: a panic in a command, which the connection's loop
// recovers, is counted with its stack, and the client gets BYE.
func TestPanicIsRecorded(t *testing.T) {
	t.Parallel()
	var rec panics.Recorder
	ts := start(t, Options{Panics: &rec, Auth: AuthenticatorFunc(func(ctx context.Context, user, pass string) (string, error) {
		panic("account store bug")
	})})
	ts.panicExpected = true
	r := dialRaw(t, ts.addr)
	r.send("a LOGIN alice secret")
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("after the panic: %q, want BYE", l)
	}
	mailtest.Eventually(t, 10*time.Second, "the panic is recorded", func() bool { return rec.Count() == 1 })
	if first := rec.First(); len(first) != 1 || !strings.Contains(first[0], "account store bug") || !strings.Contains(first[0], "main_test.go") {
		t.Errorf("recorded %q, want the panic with its stack", first)
	}
	if !strings.Contains(rec.First()[0], "imap LOGIN") {
		t.Errorf("recorded %q, want the command named", rec.First()[0])
	}
}
