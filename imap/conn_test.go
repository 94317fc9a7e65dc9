package imap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailroom/imap/internal/wire"
	"mailroom/internal/memfolders"
)

// countingListener counts the writes to the sockets it accepts.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// Responses are buffered until the loop waits for the client: FETCH 1:*
// of many messages is a handful of writes, not one per message, and
// pipelined commands are answered together.
func TestWritesCoalesced(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	ts := start(t, Options{}, cl)
	for i := range 300 {
		ts.deliver(t, "INBOX", msgN(i))
	}
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("SELECT INBOX")
	before := cl.writes.Load()
	if u := r.ok("FETCH 1:* (UID FLAGS RFC822.SIZE)"); len(u) != 300 {
		t.Fatalf("FETCH: %d responses", len(u))
	}
	if n := cl.writes.Load() - before; n > 3 {
		t.Errorf("FETCH 1:* of 300 messages took %d writes", n)
	}
	before = cl.writes.Load()
	var cmds strings.Builder
	for i := range 20 {
		fmt.Fprintf(&cmds, "P%d NOOP\r\n", i)
	}
	if _, err := r.conn.Write([]byte(cmds.String())); err != nil {
		t.Fatal(err)
	}
	r.until("P19")
	if n := cl.writes.Load() - before; n > 2 {
		t.Errorf("20 pipelined NOOPs took %d writes", n)
	}
}

func TestServeTLS(t *testing.T) {
	t.Parallel()
	conf := testTLS(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{TLSConfig: conf, Store: memfolders.New(), Auth: testAuth{}})
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(fakeRemote{l}) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	c, err := imapclient.DialTLS(l.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("login over ServeTLS from a remote address: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Caps()["STARTTLS"]; ok {
		t.Error("STARTTLS offered on a TLS connection")
	}
}

// Client mistakes are answered BAD or NO with the reason, never NO
// [SERVERBUG], and the session goes on in step (issue 14's list).
func TestClientMistakes(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	ts.deliver(t, "INBOX", msgN(1))
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("SELECT INBOX")
	big := strings.Repeat("x", 70<<10)
	for _, tc := range []struct{ cmd, want string }{
		{`CREATE "&AC4-&AC4-"`, "NO [CANNOT] Mailbox name is not valid modified UTF-7"},
		{`SELECT "&Jjo"`, "NO [CANNOT] Mailbox name is not valid modified UTF-7"},
		{"SEARCH " + strings.Repeat("(", 1000) + "ALL" + strings.Repeat(")", 1000), "BAD Search keys nested too deeply"},
		{"SEARCH " + strings.Repeat("OR ALL ", 5000) + "ALL", "BAD Search keys nested too deeply"},
		{"FETCH 1:4294967296 FLAGS", "BAD Invalid sequence set: number too large"},
		{"FETCH x FLAGS", "BAD Invalid sequence set"},
		{"FETCH 1 (FLAGS", "BAD"},
		{"SEARCH FOO", "BAD Unknown search key FOO"},
		{"SEARCH CHARSET KOI8-R TEXT x", "NO [BADCHARSET (US-ASCII UTF-8)]"},
		{"STORE 1 +FLAGS (\\*)", "BAD"},
		{"STATUS INBOX (MESSAGES NOSUCH)", "BAD Unknown STATUS item NOSUCH"},
		{"LIST (RECURSIVEMATCH) \"\" *", "BAD RECURSIVEMATCH needs SUBSCRIBED"},
		{"UID FROB 1", "BAD Unknown command UID FROB"},
		{"NOSUCH", "BAD Unknown command NOSUCH"},
		// A literal over the command's limit: refused before it comes
		// when the client waits for "+", read and thrown away when
		// not; either way the next command is read from its start.
		{fmt.Sprintf("SEARCH TEXT {%d}", len(big)), "NO [TOOBIG]"},
		{fmt.Sprintf("SEARCH TEXT {%d+}\r\n%s", len(big), big), "NO [TOOBIG]"},
		{fmt.Sprintf("SEARCH TEXT {%d+}\r\n%s", 5000, strings.Repeat("T1 LOGOUT\r\n", 454)+"xxxxxx"), "OK"},
	} {
		if _, st := r.cmd("%s", tc.cmd); !strings.HasPrefix(st, tc.want) {
			t.Errorf("%.60s: %q, want %q", tc.cmd, st, tc.want)
		}
	}
	// A line without a tag: untagged BAD, and the session goes on.
	r.send("")
	if l := r.line(); !strings.HasPrefix(l, "* BAD") {
		t.Errorf("an empty line: %q", l)
	}
	r.send("(")
	if l := r.line(); !strings.HasPrefix(l, "* BAD") {
		t.Errorf("a line without a tag: %q", l)
	}
	r.ok("NOOP")
	if strings.Contains(ts.log.String(), "SERVERBUG") || strings.Contains(ts.log.String(), "command failed") {
		t.Errorf("a client mistake was taken for a server bug:\n%s", ts.log.String())
	}
}

// ID (RFC 2971) works before and after login, and says who we are.
func TestID(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	u := r.ok(`ID ("name" "Thunderbird" "version" "128.0")`)
	if strings.Join(u, "|") != `* ID ("name" "mailroom")` {
		t.Errorf("ID: %q", u)
	}
	r.ok("ID NIL")
	if _, st := r.cmd("ID foo"); !strings.HasPrefix(st, "BAD") {
		t.Errorf("ID foo: %q", st)
	}
	r.login()
	r.ok("ID NIL")
	if c := ts.login(t, nil); !c.Caps().Has(goimap.Cap("ID")) {
		t.Errorf("ID not in the capabilities: %v", c.Caps())
	}
}

// An unknown command before login is another protocol: BYE.
func TestUnknownCommandBeforeLogin(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	r.send("GET / HTTP/1.1")
	if l := r.line(); !strings.HasPrefix(l, "GET BAD") {
		t.Errorf("GET: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("after GET: %q", l)
	}
}

// An error that is none of the client's is NO [SERVERBUG] to the client
// and logged with the command, never with its arguments.
func TestServerBugLogged(t *testing.T) {
	t.Parallel()
	var logBuf lockedBuffer
	var out bytes.Buffer
	c := &conn{
		srv:     New(Options{Store: memfolders.New(), Auth: testAuth{}}),
		dec:     wire.NewDecoder(bufio.NewReader(strings.NewReader("\r\n"))),
		enc:     wire.NewEncoder(&out),
		cmdName: "FETCH",
	}
	c.ss = &session{log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	c.dec.Begin(100)
	if err := c.dec.CRLF(); err != nil {
		t.Fatal(err)
	}
	if !c.reject("a1", errors.New("snapshot lost its messages")) {
		t.Fatal("the connection ended")
	}
	c.enc.Flush()
	if got := out.String(); got != "a1 NO [SERVERBUG] Internal server error\r\n" {
		t.Errorf("answer %q", got)
	}
	if l := logBuf.String(); !strings.Contains(l, "command=FETCH") || !strings.Contains(l, "snapshot lost its messages") {
		t.Errorf("log %q", l)
	}
}
