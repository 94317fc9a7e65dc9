package imap

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func msgN(i int) string {
	return fmt.Sprintf("From: a@example.org\r\nSubject: message %d\r\n\r\nbody %d\r\n", i, i)
}

func TestStore(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	for i := range 3 {
		ts.deliver(t, "INBOX", msgN(i))
	}
	r := dialRaw(t, ts.addr)
	r.login()
	u := r.ok("SELECT INBOX")
	if !strings.Contains(strings.Join(u, "\n"), `PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)`) {
		t.Errorf("SELECT: %q", u)
	}
	for _, tc := range []struct{ cmd, want string }{
		{`STORE 1 +FLAGS (\Seen $Work)`, `* 1 FETCH (FLAGS ($Work \Seen \Recent))`},
		{`STORE 1 -FLAGS (\Seen)`, `* 1 FETCH (FLAGS ($Work \Recent))`},
		{`STORE 1:2 FLAGS (\flagged)`, "* 1 FETCH (FLAGS (\\Flagged \\Recent))\n* 2 FETCH (FLAGS (\\Flagged \\Recent))"},
		{`UID STORE 3 +FLAGS (\Answered)`, `* 3 FETCH (UID 3 FLAGS (\Answered \Recent))`},
		{`STORE 2 +FLAGS.SILENT (\Deleted)`, ``},
		// \Recent is the server's: STORE cannot set it, but this
		// session is the first to see these messages (RFC 3501 §2.3.2).
		{`STORE 3 +FLAGS (\Recent)`, `* 3 FETCH (FLAGS (\Answered \Recent))`},
	} {
		u := r.ok("%s", tc.cmd)
		// A new keyword is announced with FLAGS (checked below).
		u = slices.DeleteFunc(u, func(l string) bool {
			return strings.HasPrefix(l, "* FLAGS") || strings.HasPrefix(l, "* OK [PERMANENTFLAGS")
		})
		if got := strings.Join(u, "\n"); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.cmd, got, tc.want)
		}
	}
	// RFC 9051 §7.3.5: FLAGS (and PERMANENTFLAGS) name a new keyword
	// before the FETCH that uses it.
	if u := r.ok(`STORE 3 +FLAGS ($New)`); strings.Join(u, "\n") != `* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Work $New)`+"\n"+
		`* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $Work $New \*)] Permanent flags`+"\n"+
		`* 3 FETCH (FLAGS ($New \Answered \Recent))` {
		t.Errorf("a new keyword is not announced with FLAGS first: %q", u)
	}
	if u := r.ok("FETCH 2 FLAGS"); u[0] != `* 2 FETCH (FLAGS (\Deleted \Flagged \Recent))` {
		t.Errorf("after silent STORE: %q", u)
	}
	if _, st := r.cmd(`STORE 1 +FLAGS (\*)`); !strings.HasPrefix(st, "BAD") {
		t.Errorf(`STORE \*: %q`, st)
	}
	r.ok("EXAMINE INBOX")
	if _, st := r.cmd(`STORE 1 +FLAGS (\Seen)`); !strings.HasPrefix(st, "NO") {
		t.Errorf("STORE in EXAMINE: %q", st)
	}
}

func TestCopyMoveExpungeUIDPlus(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	for i := range 5 {
		ts.deliver(t, "INBOX", msgN(i))
	}
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("SELECT INBOX")
	_, st := r.cmd("COPY 2:3 Archive")
	if !strings.HasPrefix(st, "OK [COPYUID ") || !strings.Contains(st, " 2:3 1:2]") {
		t.Errorf("COPY: %q", st)
	}
	if _, st := r.cmd("COPY 1 Nowhere"); !strings.HasPrefix(st, "NO [TRYCREATE]") {
		t.Errorf("COPY to a missing folder: %q", st)
	}
	u := r.ok("UID MOVE 4:5 Trash")
	if len(u) != 3 || !strings.HasPrefix(u[0], "* OK [COPYUID ") || !strings.HasSuffix(u[0], " 4:5 1:2] Moved") ||
		u[1] != "* 5 EXPUNGE" || u[2] != "* 4 EXPUNGE" {
		t.Errorf("MOVE: %q", u)
	}
	if _, st := r.cmd("MOVE 1 Nowhere"); !strings.HasPrefix(st, "NO [TRYCREATE]") {
		t.Errorf("MOVE to a missing folder: %q", st)
	}
	r.ok(`STORE 1,3 +FLAGS.SILENT (\Deleted)`)
	u = r.ok("UID EXPUNGE 3")
	if strings.Join(u, "|") != "* 3 EXPUNGE" {
		t.Errorf("UID EXPUNGE: %q", u)
	}
	u = r.ok("EXPUNGE")
	if strings.Join(u, "|") != "* 1 EXPUNGE" {
		t.Errorf("EXPUNGE: %q", u)
	}
	if u := r.ok("UID FETCH 1:* UID"); strings.Join(u, "|") != "* 1 FETCH (UID 2)" {
		t.Errorf("left: %q", u)
	}
	u = r.ok("STATUS Archive (MESSAGES UIDNEXT UNSEEN SIZE)")
	if len(u) != 1 || !strings.Contains(u[0], "MESSAGES 2 UIDNEXT 3 UNSEEN 2 SIZE ") {
		t.Errorf("STATUS: %q", u)
	}
	// CLOSE expunges silently; in EXAMINE it expunges nothing.
	r.ok(`STORE 1 +FLAGS (\Deleted)`)
	r.ok("EXAMINE INBOX")
	if u := r.ok("CLOSE"); len(u) != 0 {
		t.Errorf("CLOSE wrote %q", u)
	}
	r.ok("SELECT INBOX")
	if u := r.ok("CLOSE"); len(u) != 0 {
		t.Errorf("CLOSE wrote %q", u)
	}
	if u := r.ok("STATUS INBOX (MESSAGES)"); !strings.Contains(u[0], "MESSAGES 0") {
		t.Errorf("after CLOSE: %q", u)
	}
	// A folder deleted by another session while selected: it looks
	// empty, and CLOSE still works.
	r.ok("SELECT Archive")
	o := dialRaw(t, ts.addr)
	o.login()
	o.ok("DELETE Archive")
	if u := r.ok("NOOP"); strings.Join(u, "|") != "* 2 EXPUNGE|* 1 EXPUNGE" {
		t.Errorf("selected folder deleted: %q", u)
	}
	r.ok("CLOSE")
}

func TestAppend(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{AppendLimit: 1000})
	c := ts.login(t, nil)
	msg := msgN(1)
	cmd := c.Append("Drafts", int64(len(msg)), &goimap.AppendOptions{
		Flags: []goimap.Flag{goimap.FlagDraft, "$Custom"},
		Time:  time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC),
	})
	cmd.Write([]byte(msg))
	cmd.Close()
	data, err := cmd.Wait()
	if err != nil || data.UID != 1 || data.UIDValidity == 0 {
		t.Fatalf("APPEND: %+v %v", data, err)
	}
	if _, err := c.Select("Drafts", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{Flags: true, InternalDate: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	if !slices.Equal(msgs[0].Flags, []goimap.Flag{"$Custom", goimap.FlagDraft, `\Recent`}) || !msgs[0].InternalDate.Equal(time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)) {
		t.Errorf("appended: flags %v date %v", msgs[0].Flags, msgs[0].InternalDate)
	}

	r := dialRaw(t, ts.addr)
	r.login()
	if _, st := r.cmd("APPEND INBOX {2000}"); !strings.HasPrefix(st, "NO [TOOBIG]") {
		t.Errorf("over APPENDLIMIT: %q", st)
	}
	// Sent without waiting, the refused message is skipped: the session
	// stays in step.
	if _, st := r.cmd("APPEND INBOX {2000+}\r\n%s", strings.Repeat("x\r\nT99 LOGOUT\r\n", 133)+"xxxxx"); !strings.HasPrefix(st, "NO [TOOBIG]") {
		t.Errorf("over APPENDLIMIT, LITERAL+: %q", st)
	}
	if _, st := r.cmd("APPEND Nowhere {5+}\r\nhello"); !strings.HasPrefix(st, "NO [TRYCREATE]") {
		t.Errorf("APPEND to a missing folder: %q", st)
	}
	r.ok("NOOP")
}

// Two sessions on one folder see each other's changes: new messages,
// flag changes and expunges, each reported once and in order.
func TestTwoSessions(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	for i := range 3 {
		ts.deliver(t, "INBOX", msgN(i))
	}
	a := dialRaw(t, ts.addr)
	a.login()
	a.ok("SELECT INBOX")
	b := dialRaw(t, ts.addr)
	b.login()
	b.ok("SELECT INBOX")

	a.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
	if u := a.ok("NOOP"); len(u) != 0 {
		t.Errorf("a's own change reported back to a: %q", u)
	}
	if u := b.ok("NOOP"); strings.Join(u, "|") != `* 2 FETCH (UID 2 FLAGS (\Flagged))` {
		t.Errorf("b sees a's STORE as %q", u)
	}
	a.appendMsg("INBOX", "", "", msgN(9))
	// a's APPEND polled INBOX, so a has the new message as \Recent.
	if u := b.ok("NOOP"); strings.Join(u, "|") != "* 4 EXISTS|* 0 RECENT" {
		t.Errorf("b sees a's APPEND as %q", u)
	}
	a.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	a.ok("EXPUNGE")
	// FETCH, STORE and SEARCH may not report EXPUNGE: b keeps its view.
	if u := b.ok("FETCH 1 UID"); strings.Join(u, "|") != "* 1 FETCH (UID 1)" {
		t.Errorf("b's FETCH after a's EXPUNGE: %q", u)
	}
	if u := b.ok("NOOP"); strings.Join(u, "|") != "* 1 EXPUNGE" {
		t.Errorf("b sees a's EXPUNGE as %q", u)
	}
	if u := b.ok("FETCH 1 UID"); strings.Join(u, "|") != "* 1 FETCH (UID 2)" {
		t.Errorf("b's numbering after EXPUNGE: %q", u)
	}
	// Another program removes a file: the next poll reports it.
	ts.store.RemoveQuietly("alice", "INBOX", 3)
	if u := b.ok("NOOP"); strings.Join(u, "|") != "* 2 EXPUNGE" {
		t.Errorf("a removal behind our back: %q", u)
	}
}

// A keyword another session sets, or a message it adds carries, is
// announced in FLAGS and PERMANENTFLAGS before the first response that
// could use it (RFC 9051 §7.3.5; imaptest's stress run checks it as
// "Keyword used without being in FLAGS"), also to a read-only session
// (FLAGS only: it may store none).
func TestKeywordsAnnouncedToOthers(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	for i := range 2 {
		ts.deliver(t, "INBOX", msgN(i))
	}
	a := dialRaw(t, ts.addr)
	a.login()
	a.ok("SELECT INBOX")
	b := dialRaw(t, ts.addr)
	b.login()
	b.ok("SELECT INBOX")
	c := dialRaw(t, ts.addr)
	c.login()
	c.ok("EXAMINE INBOX")
	const sys = `\Answered \Flagged \Deleted \Seen \Draft`
	a.ok(`STORE 2 +FLAGS.SILENT ($Label1)`)
	if u := b.ok("NOOP"); strings.Join(u, "|") != `* FLAGS (`+sys+` $Label1)|`+
		`* OK [PERMANENTFLAGS (`+sys+` $Label1 \*)] Permanent flags|* 2 FETCH (UID 2 FLAGS ($Label1))` {
		t.Errorf("b sees a's new keyword as %q", u)
	}
	if u := c.ok("NOOP"); strings.Join(u, "|") != `* FLAGS (`+sys+` $Label1)|`+
		`* 2 FETCH (UID 2 FLAGS ($Label1))` {
		t.Errorf("read-only c sees a's new keyword as %q", u)
	}
	// A known keyword again: no FLAGS.
	a.ok(`STORE 1 +FLAGS.SILENT ($Label1)`)
	if u := b.ok("NOOP"); strings.Join(u, "|") != `* 1 FETCH (UID 1 FLAGS ($Label1))` {
		t.Errorf("b sees a known keyword as %q", u)
	}
	a.appendMsg("INBOX", "$Label2", "", msgN(3))
	u := b.ok("NOOP")
	if len(u) == 0 || u[0] != `* FLAGS (`+sys+` $Label1 $Label2)` {
		t.Fatalf("b sees a's APPEND with a new keyword as %q", u)
	}
	if u := b.ok("FETCH 3 FLAGS"); strings.Join(u, "|") != `* 3 FETCH (FLAGS ($Label2))` {
		t.Errorf("FETCH of the appended message: %q", u)
	}
}

// IDLE reports a delivery at once, and one by another program within the
// poll interval; also an expunge and a flag change by another session.
func TestIdle(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{PollInterval: 200 * time.Millisecond})
	ts.deliver(t, "INBOX", msgN(0))
	events := make(chan string, 10)
	c := ts.login(t, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				events <- fmt.Sprintf("EXISTS %d", *d.NumMessages)
			}
		},
		Expunge: func(seq uint32) { events <- fmt.Sprintf("EXPUNGE %d", seq) },
		Fetch:   func(m *imapclient.FetchMessageData) { events <- "FETCH" },
	})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	expect := func(want string, within time.Duration) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		case <-time.After(within):
			t.Errorf("no %q within %v", want, within)
		}
	}
	t0 := time.Now()
	ts.deliver(t, "INBOX", msgN(1))
	expect("EXISTS 2", time.Second)
	if d := time.Since(t0); d > 150*time.Millisecond {
		t.Errorf("a delivery through this process took %v to show (Watch not used?)", d)
	}
	ts.store.DeliverQuietly("alice", "INBOX", []byte(msgN(2)))
	expect("EXISTS 3", time.Second)

	o := dialRaw(t, ts.addr)
	o.login()
	o.ok("SELECT INBOX")
	o.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	expect("FETCH", time.Second)
	o.ok("EXPUNGE")
	expect("EXPUNGE 1", time.Second)
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}
