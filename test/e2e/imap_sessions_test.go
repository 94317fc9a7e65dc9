package e2e

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// idleEvent is one unilateral response an idling session got.
type idleEvent struct {
	kind  string // "exists", "expunge", "flags"
	n     uint32 // EXISTS count or sequence number
	flags []string
	at    time.Time
}

// idler logs in, selects INBOX and returns a client whose unilateral
// responses arrive on the channel.
func idler(t *testing.T, addr, user string) (*imapclient.Client, <-chan idleEvent) {
	t.Helper()
	ev := make(chan idleEvent, 100)
	c := imapLogin(t, addr, user, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { ev <- idleEvent{kind: "expunge", n: seq, at: time.Now()} },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				ev <- idleEvent{kind: "exists", n: *d.NumMessages, at: time.Now()}
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err != nil {
				return
			}
			var flags []string
			for _, f := range buf.Flags {
				if f != `\Recent` {
					flags = append(flags, string(f))
				}
			}
			slices.Sort(flags)
			ev <- idleEvent{kind: "flags", n: buf.SeqNum, flags: flags, at: time.Now()}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT INBOX: %v", err)
	}
	return c, ev
}

// expectEvent waits up to a second after since for an event of kind, and
// returns it; events of other kinds before it are skipped.
func expectEvent(t *testing.T, ev <-chan idleEvent, kind, after string, since time.Time) idleEvent {
	t.Helper()
	timeout := time.After(time.Until(since.Add(time.Second)))
	for {
		select {
		case e := <-ev:
			if e.kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s in the idling session within 1 s of %s", strings.ToUpper(kind), after)
			return idleEvent{}
		}
	}
}

// TestIMAPSessionsSeeEachOther: a session in IDLE on INBOX learns within
// a second what another session does there (STORE: FETCH FLAGS, EXPUNGE:
// EXPUNGE, APPEND and COPY: EXISTS) and of a delivery over LMTP.
func TestIMAPSessionsSeeEachOther(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "", "alice@example.org")
	const user = "alice@example.org"
	for i := 1; i <= 3; i++ {
		deliverLMTP(t, s.LMTP, "carol@example.net", user, fmt.Sprintf("Subject: seen %d\n\nmessage %d\n", i, i))
	}
	watcher, ev := idler(t, s.IMAP, user)
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatalf("IDLE: %v", err)
	}
	actor := imapLogin(t, s.IMAP, user, nil)
	if _, err := actor.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := actor.Store(goimap.SeqSetNum(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true,
		Flags: []goimap.Flag{goimap.FlagFlagged, "$Work"}}, nil).Close(); err != nil {
		t.Fatalf("STORE: %v", err)
	}
	e := expectEvent(t, ev, "flags", "another session's STORE", start)
	if e.n != 2 || !slices.Equal(e.flags, []string{"$Work", `\Flagged`}) {
		t.Errorf("after another session's STORE 2 +FLAGS (\\Flagged $Work): FETCH %d FLAGS %q", e.n, e.flags)
	}

	start = time.Now()
	if err := actor.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true,
		Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("STORE: %v", err)
	}
	if err := actor.Expunge().Close(); err != nil {
		t.Fatalf("EXPUNGE: %v", err)
	}
	if e := expectEvent(t, ev, "expunge", "another session's EXPUNGE", start); e.n != 1 {
		t.Errorf("after another session expunged message 1: EXPUNGE %d", e.n)
	}

	start = time.Now()
	msg := crlf("Subject: appended\n\nby the other session\n")
	app := actor.Append("INBOX", int64(len(msg)), nil)
	app.Write([]byte(msg))
	app.Close()
	if _, err := app.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	if e := expectEvent(t, ev, "exists", "another session's APPEND", start); e.n != 3 {
		t.Errorf("after another session's APPEND: EXISTS %d, want 3", e.n)
	}

	at := deliverLMTP(t, s.LMTP, "carol@example.net", user, "Subject: delivered\n\nwhile idling\n")
	if e := expectEvent(t, ev, "exists", "a delivery's 250", at); e.n != 4 {
		t.Errorf("after a delivery: EXISTS %d, want 4", e.n)
	}

	if err := idle.Close(); err != nil {
		t.Fatalf("DONE: %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE: %v", err)
	}
	st := selectState(t, watcher, "INBOX")
	if got, want := st.subjects(), []string{"appended", "delivered", "seen 2", "seen 3"}; !slices.Equal(got, want) {
		t.Errorf("INBOX after IDLE: %q, want %q", got, want)
	}
}

// TestIMAPStalledClientDoesNotBlock: a client that asks for megabytes
// (FETCH 1:* BODY[] many times over) and reads none of it leaves the
// server blocked writing to it. Meanwhile a delivery to the same INBOX is
// answered 250, and other sessions of the same account can SELECT,
// FETCH, STORE and see the delivered message: nothing waits for the
// stalled session.
func TestIMAPStalledClientDoesNotBlock(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "", "alice@example.org")
	const user = "alice@example.org"

	ic := dialIMAP(t, s.IMAP, nil)
	ic.login(user)
	const n = 20
	for i := range n {
		msg := sizedMessage(90000, fmt.Sprintf("big %d", i))
		if st, sent := ic.withLiteral("APPEND INBOX ", []byte(msg), ""); !sent || !strings.HasPrefix(st, "OK") {
			t.Fatalf("APPEND: %s", st)
		}
	}
	ic.ok("SELECT INBOX")
	// A small receive buffer so that the server's writes block soon.
	ic.c.(*net.TCPConn).SetReadBuffer(4096)
	var cmds strings.Builder
	for i := range 20 { // 20 × 1.8 MB: far more than any socket buffers
		fmt.Fprintf(&cmds, "s%d FETCH 1:* BODY.PEEK[]\r\n", i)
	}
	ic.send(cmds.String())
	// Read a little, so that the server is surely inside the FETCH.
	buf := make([]byte, 1000)
	if _, err := ic.r.Read(buf); err != nil {
		t.Fatal(err)
	}

	type result struct {
		at  time.Time
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		at, err := lmtpSend(s.LMTP, "carol@example.net", user, "Subject: past the stalled client\n\nhello\n")
		done <- result{at, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("delivery while a client stalls: %v", r.err)
		}
		t.Logf("delivery answered %v after it began", r.at.Sub(start))
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to a delivery within 10 s while an IMAP client stalls on INBOX")
	}

	other := imapLogin(t, s.IMAP, user, nil)
	check := make(chan error, 1)
	go func() {
		sel, err := other.Select("INBOX", nil).Wait()
		if err == nil && sel.NumMessages != n+1 {
			err = fmt.Errorf("SELECT INBOX: %d messages, want %d", sel.NumMessages, n+1)
		}
		if err == nil {
			err = other.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true,
				Flags: []goimap.Flag{goimap.FlagSeen}}, nil).Close()
		}
		if err == nil {
			var msgs []*imapclient.FetchMessageBuffer
			msgs, err = other.Fetch(goimap.SeqSetNum(n+1), &goimap.FetchOptions{Envelope: true}).Collect()
			if err == nil && (len(msgs) != 1 || msgs[0].Envelope.Subject != "past the stalled client") {
				err = fmt.Errorf("FETCH %d ENVELOPE: %v", n+1, msgs)
			}
		}
		check <- err
	}()
	select {
	case err := <-check:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("another session of the account got no answer within 10 s while a client stalls on INBOX")
	}
	other.Logout().Wait()

	// The stalled client goes away (a reset, as when a phone loses its
	// network) while the server is writing a literal to it. Its session
	// must end: with no client left, the server stops at once.
	ic.c.(*net.TCPConn).SetLinger(0)
	ic.c.Close()
	probe := dialIMAP(t, s.IMAP, nil) // the server still serves
	probe.login(user)
	probe.ok("NOOP")
	probe.ok("LOGOUT")
	probe.c.Close()
	start = time.Now()
	s.Stop(t)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("with no IMAP client connected, mailroom serve took %v to stop after SIGTERM: the session of the "+
			"client that went away during a FETCH never ended (log: %q)", d.Round(time.Second), busyLines(s.Log()))
	}
}

// busyLines returns the log lines that say sessions were still busy.
func busyLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "busy") || strings.Contains(l, "did not finish") {
			out = append(out, l)
		}
	}
	return out
}
