package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bad input to the real binary's IMAP server over raw TCP. Each case gets
// a clear NO or BAD and the session goes on; no mailbox name, however
// built, makes anything outside the mail home, or anything at all.

// escapeToken is in every bad mailbox name, so that whatever a refused
// name might have created can be found by name anywhere.
const escapeToken = "zqxescape"

// badMailboxNames are refused by CREATE (and every other command taking a
// mailbox): they leave the mail home, or are not valid names. They are
// sent as synchronizing literals, which carry any byte.
var badMailboxNames = []struct {
	name, why string
}{
	{"../" + escapeToken + "1", "parent directory"},
	{"../../" + escapeToken + "2", "two levels up"},
	{"../../../../../../../../tmp/" + escapeToken + "3", "far up into /tmp"},
	{escapeToken + "4/../../" + escapeToken + "4b", "dot-dot in the middle"},
	{escapeToken + "5/..", "dot-dot at the end"},
	{"/" + escapeToken + "6", "absolute path"},
	{"/tmp/" + escapeToken + "7", "absolute path into /tmp"},
	{"..", "dot-dot alone"},
	{".", "dot alone"},
	{escapeToken + "8\x00evil", "NUL"},
	{escapeToken + "9\x01x", "control character"},
	{escapeToken + "10\r\nx", "CRLF"},
	{escapeToken + "11\xff\xfe", "invalid UTF-8 (and not modified UTF-7)"},
	{escapeToken + "12&Jjo", "unterminated modified UTF-7"},
	{escapeToken + "13&AGE-", "modified UTF-7 encoding plain ASCII"},
	{escapeToken + "14//x", "empty level"},
	{strings.Repeat("a", 300) + escapeToken + "15", "longer than a file name may be"},
}

// TestIMAPBadMailboxNames sends every bad name to CREATE, RENAME (as the
// new name), SELECT, STATUS, APPEND, DELETE and SUBSCRIBE, also with
// UTF8=ACCEPT enabled. Each is refused, the session goes on, and the
// test directory around data_dir holds no new directory and no path with
// escapeToken in it; nor do /tmp and / at the top.
func TestIMAPBadMailboxNames(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "", "alice@example.org")
	ic := dialIMAP(t, s.IMAP, nil)
	ic.login("alice@example.org")
	// The first LIST makes the mail home and the standard folders, so the
	// snapshot is taken after it.
	ic.ok(`LIST "" "*"`)
	ic.ok(`CREATE legit`)
	before := walkDirs(t, s.Dir)

	lit := func(prefix string, name string, suffix string) {
		t.Helper()
		st, _ := ic.withLiteral(prefix, []byte(name), suffix)
		checkRefusal(t, fmt.Sprintf("%s%q%s", prefix, name, suffix), st, nil)
	}
	for _, utf8 := range []bool{false, true} {
		if utf8 {
			ic.ok("ENABLE UTF8=ACCEPT")
		}
		for _, bad := range badMailboxNames {
			t.Run(fmt.Sprintf("%s utf8=%v", bad.why, utf8), func(t *testing.T) {
				lit("CREATE ", bad.name, "")
				lit("RENAME legit ", bad.name, "")
				lit("SELECT ", bad.name, "")
				lit("EXAMINE ", bad.name, "")
				lit("STATUS ", bad.name, " (MESSAGES)")
				lit("DELETE ", bad.name, "")
				lit("SUBSCRIBE ", bad.name, "")
				// The message goes as a non-synchronizing literal
				// (LITERAL+ or LITERAL-: it is under 4096 bytes), since
				// the library asks for it before the name is judged.
				lit("APPEND ", bad.name, " {17+}\r\nSubject: x\r\n\r\nh\r\n")
			})
		}
		// The session is still usable and the legit folder untouched.
		ic.ok("NOOP")
		ic.ok("SELECT legit")
		ic.ok("UNSELECT")
	}

	// LIST with a reference or pattern that climbs out lists nothing of
	// what is above the mail home.
	for _, cmd := range []string{`LIST "" "../*"`, `LIST "../" "*"`, `LIST "../../" "%"`, `LIST "/" "*"`, `LIST "" "/*"`} {
		u, st := ic.cmd(cmd)
		if strings.HasPrefix(st, "OK") {
			for _, l := range u {
				for _, outside := range []string{"mailroom", "data", "mail", "example.org", "alice", "tmp", "etc"} {
					if strings.HasSuffix(l, " "+outside) || strings.HasSuffix(l, ` "`+outside+`"`) || strings.Contains(l, "/"+outside) {
						t.Errorf("%s lists %q, a name from outside the mail home", cmd, l)
					}
				}
			}
		} else {
			checkRefusal(t, cmd, st, u)
		}
	}
	u := ic.ok(`LIST "" "*"`)
	for _, l := range u {
		if strings.Contains(l, escapeToken) || strings.Contains(l, "..") {
			t.Errorf("LIST after the bad names shows %q", l)
		}
	}

	after := walkDirs(t, s.Dir)
	for p := range after {
		if !before[p] {
			t.Errorf("a refused name made the directory %s", p)
		}
	}
	filepath.WalkDir(s.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(p, escapeToken) {
			t.Errorf("a refused name made %s", p)
		}
		return nil
	})
	for _, dir := range []string{"/tmp", "/", filepath.Dir(s.Dir)} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.Contains(e.Name(), escapeToken) {
				t.Errorf("a refused name made %s", filepath.Join(dir, e.Name()))
			}
		}
	}
}

// walkDirs returns the directories under root, relative to it.
func walkDirs(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out[rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// appendLimit returns the n of APPENDLIMIT=n in caps, failing if the
// server does not advertise one (RFC 7889).
func appendLimit(t *testing.T, caps []string) int {
	t.Helper()
	for _, c := range caps {
		if v, ok := strings.CutPrefix(strings.ToUpper(c), "APPENDLIMIT="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("capability %s", c)
			}
			return n
		}
	}
	t.Fatalf("no APPENDLIMIT=n in the capabilities %q", caps)
	return 0
}

// TestIMAPBadInputSession drives one authenticated session through input
// a server must survive: a literal over APPENDLIMIT (refused before the
// client sends it), a literal over the limit for a command that is not
// APPEND, unknown commands, commands in the wrong state, syntax errors,
// and 10,000 pipelined NOOPs. Every one is answered and the session is
// still usable at the end, and APPEND of exactly the limit is stored.
func TestIMAPBadInputSession(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "", "alice@example.org")

	t.Run("before login", func(t *testing.T) {
		ic := dialIMAP(t, s.IMAP, nil)
		for _, cmd := range []string{"SELECT INBOX", "EXAMINE INBOX", `LIST "" "*"`, `STATUS INBOX (MESSAGES)`,
			"FETCH 1 FLAGS", "UID FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "SEARCH ALL",
			"CREATE x", "IDLE", "UNSELECT", "CLOSE"} {
			ic.refused(cmd)
		}
		st, _ := ic.withLiteral("APPEND INBOX ", []byte("x\r\n"), "")
		checkRefusal(t, "APPEND before login", st, nil)
		ic.refused("LOGIN alice@example.org wrong-password")
		ic.refused("LOGIN")
		ic.refused(`LOGIN "unterminated`)
		ic.login("alice@example.org")
		ic.ok("SELECT INBOX")
	})

	t.Run("unknown command before login", func(t *testing.T) {
		// The library answers BAD and hangs up, to make cross-protocol
		// attacks harder (an HTTP request sent to the IMAP port); that
		// is deliberate, so only the BAD is required.
		ic := dialIMAP(t, s.IMAP, nil)
		tag := ic.nextTag()
		ic.send(tag + " GET / HTTP/1.1\r\n")
		for {
			l, ok := ic.line()
			if !ok {
				t.Fatalf("connection closed without a BAD for an unknown command")
			}
			if rest, found := strings.CutPrefix(l, tag+" "); found {
				if !strings.HasPrefix(rest, "BAD") {
					t.Errorf("unknown command before login: %s, want BAD", rest)
				}
				break
			}
		}
	})

	ic := dialIMAP(t, s.IMAP, nil)
	ic.login("alice@example.org")
	limit := appendLimit(t, ic.capabilities())
	if limit > 100<<20 {
		t.Fatalf("APPENDLIMIT=%d is more than 100 MiB; max_message_bytes is 100000", limit)
	}

	t.Run("APPEND over APPENDLIMIT", func(t *testing.T) {
		tag := ic.nextTag()
		ic.send(fmt.Sprintf("%s APPEND INBOX {%d}\r\n", tag, limit+1))
		l, ok := ic.line()
		if !ok {
			t.Fatal("connection closed after an over-size APPEND literal was announced")
		}
		if strings.HasPrefix(l, "+") {
			t.Fatalf("the server asked for a literal of %d bytes over APPENDLIMIT=%d: %q", limit+1, limit, l)
		}
		rest, found := strings.CutPrefix(l, tag+" ")
		if !found {
			t.Fatalf("reply to an over-size APPEND: %q, want the tagged refusal", l)
		}
		if !strings.HasPrefix(rest, "NO [TOOBIG]") && !strings.HasPrefix(rest, "BAD") {
			t.Errorf("over-size APPEND: %s, want NO [TOOBIG] (RFC 7889) or BAD", rest)
		}
		ic.ok("NOOP")
		u, _ := ic.cmd("STATUS INBOX (MESSAGES)")
		if len(u) != 1 || !strings.Contains(u[0], "MESSAGES 0") {
			t.Errorf("STATUS INBOX after the refused APPEND: %q, want MESSAGES 0", u)
		}
	})

	t.Run("literal over the limit for CREATE", func(t *testing.T) {
		st, sent := ic.withLiteral("CREATE ", []byte(strings.Repeat("b", 100000)), "")
		if sent {
			t.Errorf("the server took a mailbox name of 100000 bytes as a literal (answer %s)", st)
		}
		checkRefusal(t, "CREATE {100000}", st, nil)
		ic.ok("NOOP")
	})

	t.Run("APPEND of exactly APPENDLIMIT", func(t *testing.T) {
		msg := sizedMessage(limit, "exactly APPENDLIMIT")
		st, sent := ic.withLiteral("APPEND INBOX ", []byte(msg), "")
		if !sent || !strings.HasPrefix(st, "OK") {
			t.Fatalf("APPEND of exactly APPENDLIMIT=%d bytes: %s", limit, st)
		}
		ic.ok("SELECT INBOX")
		u := ic.ok("FETCH 1 (RFC822.SIZE)")
		if len(u) != 1 || !strings.Contains(u[0], fmt.Sprintf("RFC822.SIZE %d", limit)) {
			t.Errorf("FETCH 1 (RFC822.SIZE) after APPEND of %d bytes: %q", limit, u)
		}
		ic.ok("UNSELECT")
	})

	t.Run("unknown commands and syntax errors", func(t *testing.T) {
		for _, cmd := range []string{"FOOBAR", "FOOBAR with arguments", "XYZZY INBOX", "UID FOOBAR 1",
			"DONE", "FETCH", "FETCH 1", "FETCH x FLAGS", "SEARCH FOO", "LIST", `LIST ""`,
			`STATUS INBOX (BOGUS)`, "STORE 1 FLAGS.LOUD (\\Seen)", "SELECT", `CREATE ""`,
			"NOOP extra", `SELECT "unterminated`, "FETCH 1 (FLAGS", "SEARCH CHARSET KOI9-X ALL"} {
			ic.refused(cmd)
		}
		ic.ok("NOOP")
	})

	t.Run("wrong state", func(t *testing.T) {
		ic.cmd("UNSELECT") // whatever the state the cases above left
		for _, cmd := range []string{"FETCH 1 FLAGS", "UID FETCH 1:* FLAGS", "STORE 1 +FLAGS (\\Seen)",
			"SEARCH ALL", "EXPUNGE", "UID EXPUNGE 1", "COPY 1 Trash", "MOVE 1 Trash", "CLOSE"} {
			ic.refused(cmd)
		}
		ic.ok("SELECT INBOX")
		ic.refused("LOGIN alice@example.org " + smtpPassword)
		ic.refused("AUTHENTICATE PLAIN")
		ic.refused("STARTTLS")
		ic.refused("FETCH 99999 FLAGS")
		ic.refused("STORE 99999 +FLAGS (\\Seen)")
		// Nonexistent UIDs are no error (RFC 9051 §6.4.9).
		u := ic.ok("UID FETCH 99999 FLAGS")
		if len(u) != 0 {
			t.Errorf("UID FETCH of a nonexistent UID: %q", u)
		}
		ic.ok("NOOP")
	})

	t.Run("10000 pipelined NOOPs", func(t *testing.T) {
		const n = 10000
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "p%d NOOP\r\n", i)
		}
		done := make(chan error, 1)
		go func() {
			_, err := ic.c.Write([]byte(b.String()))
			done <- err
		}()
		start := time.Now()
		for i := range n {
			tag := fmt.Sprintf("p%d ", i)
			for {
				l, ok := ic.line()
				if !ok {
					t.Fatalf("connection closed after %d of %d pipelined NOOPs", i, n)
				}
				if rest, found := strings.CutPrefix(l, tag); found {
					if !strings.HasPrefix(rest, "OK") {
						t.Fatalf("pipelined NOOP %d: %s", i, rest)
					}
					break
				}
				if !strings.HasPrefix(l, "* ") {
					t.Fatalf("pipelined NOOP %d: unexpected line %q", i, l)
				}
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		t.Logf("%d pipelined NOOPs answered in %v", n, time.Since(start))
		ic.ok("NOOP")
		ic.ok("FETCH 1 (FLAGS)")
	})

	// Lines that are not commands at all: the library cannot find a tag
	// and a command name in them, so it may hang up rather than answer
	// (imapserver's readCommand); each gets a BAD or the end of its own
	// connection, and the server goes on serving others.
	t.Run("malformed lines", func(t *testing.T) {
		for _, line := range []string{"", "t1", "t1 ", "t1 \x01\x02\x03", "\x01 NOOP", "* NOOP", "+ NOOP",
			"DONE", "t1 NOOP\x00", strings.Repeat("a", 100000)} {
			mc := dialIMAP(t, s.IMAP, nil)
			mc.login("alice@example.org")
			mc.send(line + "\r\n")
			l, ok := mc.line()
			if ok && !strings.Contains(l, "BAD") && !strings.HasPrefix(l, "* BYE") {
				t.Errorf("malformed line %q: answer %q, want BAD or the connection closed", abbrev(line), l)
			}
			mc.c.Close()
			fresh := dialIMAP(t, s.IMAP, nil)
			fresh.login("alice@example.org")
			fresh.ok("NOOP")
			fresh.c.Close()
		}
	})

	u, st := ic.cmd("LOGOUT")
	if !strings.HasPrefix(st, "OK") || !slices.ContainsFunc(u, func(l string) bool { return strings.HasPrefix(l, "* BYE") }) {
		t.Errorf("LOGOUT: %s %q", st, u)
	}
}
