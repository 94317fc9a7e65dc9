package imap

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestList(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("CREATE Work/Projects/2024")
	r.ok("CREATE Lists/")
	r.ok("DELETE Work/Projects")
	r.ok("SUBSCRIBE Work/Projects/2024")
	r.ok("UNSUBSCRIBE Junk")
	ts.deliver(t, "INBOX", msgN(1))
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{`LIST "" ""`, []string{`* LIST (\Noselect) "/" ""`}},
		{`LIST "" %`, []string{
			`* LIST (\HasNoChildren) "/" INBOX`,
			`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
			`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
			`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
			`* LIST (\HasNoChildren) "/" "Lists"`,
			`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
			`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
			`* LIST (\HasChildren) "/" "Work"`,
		}},
		{`LIST "" Work/*`, []string{
			`* LIST (\NonExistent \Noselect \HasChildren) "/" "Work/Projects"`,
			`* LIST (\HasNoChildren) "/" "Work/Projects/2024"`,
		}},
		{`LIST Work %`, []string{`* LIST (\NonExistent \Noselect \HasChildren) "/" "Work/Projects"`}},
		{`LIST "" inbox`, []string{`* LIST (\HasNoChildren) "/" INBOX`}},
		{`LIST "" T*`, []string{`* LIST (\HasNoChildren \Trash) "/" "Trash"`}},
		{`LIST "" Nothing*`, nil},
		{`LIST (SPECIAL-USE) "" *`, []string{
			`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
			`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
			`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
			`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
			`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
		}},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" Work%`, []string{
			`* LIST (\HasChildren) "/" "Work" (CHILDINFO ("SUBSCRIBED"))`,
		}},
		{`LIST (SUBSCRIBED) "" Work*`, []string{
			`* LIST (\HasNoChildren \Subscribed) "/" "Work/Projects/2024"`,
		}},
		{`LSUB "" J*`, nil},
		{`LIST "" (INBOX Sent) RETURN (STATUS (MESSAGES UNSEEN SIZE))`, []string{
			`* LIST (\HasNoChildren) "/" INBOX`,
			`* STATUS INBOX (MESSAGES 1 UNSEEN 1 SIZE 51)`,
			`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
			`* STATUS "Sent" (MESSAGES 0 UNSEEN 0 SIZE 0)`,
		}},
	} {
		u := r.ok("%s", tc.cmd)
		if got, want := strings.Join(u, "\n"), strings.Join(tc.want, "\n"); got != want {
			t.Errorf("%s:\n got %s\nwant %s", tc.cmd, got, want)
		}
	}
}

func TestFolderCommands(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	r.login()
	for _, tc := range []struct{ cmd, want string }{
		{"CREATE a/b", "OK"},
		{"CREATE a", "NO [ALREADYEXISTS]"},
		{"CREATE INBOX", "NO [ALREADYEXISTS]"},
		{"CREATE inbox", "NO [ALREADYEXISTS]"},
		{"CREATE x (USE (\\Sent))", "NO [USEATTR]"},
		{"RENAME a c", "OK"},
		{"SELECT c/b", "OK"},
		{"SELECT a/b", "NO [NONEXISTENT]"},
		{"RENAME c Sent", "NO [ALREADYEXISTS]"},
		{"RENAME c c/d", "NO [CANNOT]"},
		{"RENAME nothere x", "NO [NONEXISTENT]"},
		{"DELETE c", "OK"},
		{"DELETE c", "NO [NONEXISTENT]"},
		{"DELETE INBOX", "NO [CANNOT]"},
		{"DELETE nothere", "NO [NONEXISTENT]"},
		{"SUBSCRIBE nothere", "NO [NONEXISTENT]"},
		{"STATUS nothere (MESSAGES)", "NO [NONEXISTENT]"},
		{"EXAMINE nothere", "NO [NONEXISTENT]"},
		{"NAMESPACE", "OK"},
	} {
		if _, st := r.cmd("%s", tc.cmd); !strings.HasPrefix(st, tc.want) {
			t.Errorf("%s: %q, want %s", tc.cmd, st, tc.want)
		}
	}
	if u := r.ok("NAMESPACE"); u[0] != `* NAMESPACE (("" "/")) NIL NIL` {
		t.Errorf("NAMESPACE: %q", u)
	}
	// RENAME INBOX moves its messages and leaves INBOX empty.
	ts.deliver(t, "INBOX", msgN(1))
	r.ok("RENAME INBOX Old")
	if u := r.ok("STATUS Old (MESSAGES)"); !strings.Contains(u[0], "MESSAGES 1") {
		t.Errorf("RENAME INBOX: %q", u)
	}
	if u := r.ok("STATUS INBOX (MESSAGES)"); !strings.Contains(u[0], "MESSAGES 0") {
		t.Errorf("RENAME INBOX: %q", u)
	}
}

// Names that cannot be stored safely are refused before the store.
func TestBadNames(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	r.login()
	lit := func(s string) string { return fmt.Sprintf("{%d+}\r\n%s", len(s), s) }
	names := []string{`".."`, `"a/../b"`, `"/etc"`, `"a//b"`, `"."`, `"a/."`, `""`,
		"\"bad\xff\xfeutf8\"", "\"tab\there\"", "\"ctl\x01\"", lit(strings.Repeat("x", 600))}
	for _, name := range names {
		// APPEND's message comes with LITERAL+, after the refused name:
		// it is skipped, and the session stays in step.
		cmds := []string{"CREATE %s", "SELECT %s", "RENAME Sent %s", "DELETE %s", "STATUS %s (MESSAGES)", "APPEND %s {1+}\r\nx"}
		for _, cmd := range cmds {
			c := fmt.Sprintf(cmd, name)
			if _, st := r.cmd("%s", c); !strings.HasPrefix(st, "NO") && !strings.HasPrefix(st, "BAD") {
				t.Errorf("%q: %q", c, st)
			}
		}
	}
	u := r.ok(`LIST "" *`)
	if len(u) != 6 {
		t.Errorf("folders after bad names: %q", u)
	}
	// UTF-8 names work, as modified UTF-7 and as UTF-8 after ENABLE.
	r.ok("CREATE &AMk-t&AOk-")
	if u := r.ok(`LIST "" &AMk-t&AOk-`); len(u) != 1 || !strings.HasSuffix(u[0], `"/" "&AMk-t&AOk-"`) {
		t.Errorf("UTF-7 name: %q", u)
	}
	r.ok("ENABLE UTF8=ACCEPT")
	if u := r.ok(`LIST "" *t*`); !strings.Contains(strings.Join(u, "\n"), `"/" "Été"`) {
		t.Errorf("UTF-8 name after ENABLE: %q", u)
	}
	r.ok("CREATE \"caf\xc3\xa9\"")
	if u := r.ok(`LIST "" caf*`); len(u) != 1 || !strings.HasSuffix(u[0], "\"caf\xc3\xa9\"") {
		t.Errorf("a raw UTF-8 name: %q", u)
	}
	// A name literal that is not UTF-7 is refused, and the session goes
	// on.
	r2 := dialRaw(t, ts.addr)
	r2.login()
	if _, st := r2.cmd("CREATE %s", lit("new\r\nline\x00")); !strings.HasPrefix(st, "NO") {
		t.Errorf("CREATE with CRLF and NUL: %q", st)
	}
	r2.ok("NOOP")
}

// Unknown commands, commands in the wrong state and a flood of pipelined
// commands each get an answer, and the session survives.
func TestBadCommands(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	for _, tc := range []struct{ cmd, want string }{
		{"SELECT INBOX", "BAD"},
		{"FETCH 1 FLAGS", "BAD"},
		{"LIST \"\" *", "BAD"},
		{"IDLE", "BAD"},
	} {
		if _, st := r.cmd("%s", tc.cmd); !strings.HasPrefix(st, tc.want) {
			t.Errorf("not authenticated, %s: %q", tc.cmd, st)
		}
	}
	r.login()
	for _, tc := range []struct{ cmd, want string }{
		{"XYZZY", "BAD"},
		{"FETCH 1 FLAGS", "BAD"},
		{"STORE 1 +FLAGS (\\Seen)", "BAD"},
		{"EXPUNGE", "BAD"},
		{"CLOSE", "BAD"},
		{"LOGIN alice secret", "BAD"},
		{"SELECT", "BAD"},
		{"SEARCH ALL", "BAD"},
		{"UID FROB 1", "BAD"},
		{"STATUS INBOX (NOSUCH)", "BAD"},
		{"LIST (BOGUS) \"\" *", "BAD"},
		{"SELECT INBOX", "OK"},
		{"FETCH 1:* (FLAGS", "BAD"},
		{"SEARCH NOSUCHKEY", "BAD Unknown search key NOSUCHKEY"},
		{"STORE 1 FROB (x)", "BAD"},
		{"COPY 1:* INBOX", "OK"},
	} {
		if _, st := r.cmd("%s", tc.cmd); !strings.HasPrefix(st, tc.want) {
			t.Errorf("%s: %q, want %s", tc.cmd, st, tc.want)
		}
	}
	r.ok("NOOP")
	// An unknown command before login ends the connection with BYE: it
	// is most likely another protocol (a cross-protocol attack).
	r2 := dialRaw(t, ts.addr)
	r2.send("X1 GET / HTTP/1.1")
	if l := r2.line(); !strings.HasPrefix(l, "X1 BAD") {
		t.Errorf("HTTP before login: %q", l)
	}
	if l := r2.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("HTTP before login: %q, want BYE", l)
	}
}

func TestPipelined(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	ts.deliver(t, "INBOX", msgN(1))
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("SELECT INBOX")
	const n = 10000
	var b strings.Builder
	for i := range n {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "P%d NOOP\r\n", i)
		case 1:
			fmt.Fprintf(&b, "P%d FETCH 1 (FLAGS UID)\r\n", i)
		case 2:
			fmt.Fprintf(&b, "P%d BOGUS\r\n", i)
		case 3:
			fmt.Fprintf(&b, "P%d FETCH 99 FLAGS\r\n", i)
		}
	}
	go r.conn.Write([]byte(b.String()))
	r.conn.SetDeadline(time.Now().Add(60 * time.Second))
	for i := range n {
		_, st := r.until(fmt.Sprintf("P%d", i))
		want := map[int]string{0: "OK", 1: "OK", 2: "BAD", 3: "BAD"}[i%4]
		if !strings.HasPrefix(st, want) {
			t.Fatalf("command %d: %q, want %s", i, st, want)
		}
	}
	r.ok("NOOP")
}
