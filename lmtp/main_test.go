package lmtp_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
	"mailroom/internal/panics"
	"mailroom/lmtp"
	"mailroom/mda"
)

// TestMain fails the run on any panic that a server of these tests
// recovered (their sessions record into mailtest.Panics).
func TestMain(m *testing.M) { mailtest.Main(m) }

// panicking is a Deliverer whose every transaction panics.
type panicking struct{}

func (panicking) Begin(ctx context.Context, from string, info mda.Info) (*mda.Txn, error) {
	panic("delivery agent bug")
}

// TestPanicIsRecorded: a panic in a session, which go-smtp recovers and
// reports through its ErrorLog, is counted with its stack, and the
// client gets a 421.
func TestPanicIsRecorded(t *testing.T) {
	var rec panics.Recorder
	srv := lmtp.New(lmtp.Options{Hostname: "mx.test", Deliverer: panicking{}, Panics: &rec})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	d := mailtest.Dial(t, "tcp", l.Addr().String())
	d.Send("LHLO client.test")
	d.Expect("250 ")
	d.Send("MAIL FROM:<s@remote.example>")
	d.Expect("421 4.0.0")
	mailtest.Eventually(t, 10*time.Second, "the panic is recorded", func() bool { return rec.Count() == 1 })
	if first := rec.First(); len(first) != 1 || !strings.Contains(first[0], "delivery agent bug") || !strings.Contains(first[0], "main_test.go") {
		t.Errorf("recorded %q, want the panic with its stack", first)
	}
}
