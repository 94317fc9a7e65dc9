package e2e

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// Bad input to the real binary over raw TCP: no third-party tool, the
// exact bytes matter. Each case says what mailroom does, which is the
// contract these tests pin down: a clear error and the session goes on
// where that is possible, and never a panic, a corrupted mailbox or a
// message that was not sent as one.

// lineReader is a raw client connection for tests that must write every
// byte themselves and see every line the server sends, including whether
// it closes the connection.
type lineReader struct {
	c net.Conn
	r *bufio.Reader
}

// dialLines connects to addr and reads the greeting.
func dialLines(t *testing.T, addr string) *lineReader {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	lr := &lineReader{c: c, r: bufio.NewReader(c)}
	if l, ok := lr.line(); !ok || !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	return lr
}

// line reads one line; ok is false if the connection ended first.
func (lr *lineReader) line() (string, bool) {
	l, err := lr.r.ReadString('\n')
	if err != nil {
		return l, false
	}
	return strings.TrimSuffix(l, "\r\n"), true
}

// reply reads a whole (multi-line) reply and returns its last line.
func (lr *lineReader) reply(t *testing.T) string {
	t.Helper()
	for {
		l, ok := lr.line()
		if !ok {
			t.Fatalf("connection closed while reading a reply (got %q)", l)
		}
		if len(l) < 4 || l[3] != '-' {
			return l
		}
	}
}

// send writes s as it is.
func (lr *lineReader) send(t *testing.T, s string) {
	t.Helper()
	if _, err := lr.c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// expect sends s and fails unless the reply starts with prefix.
func (lr *lineReader) expect(t *testing.T, s, prefix string) string {
	t.Helper()
	lr.send(t, s)
	r := lr.reply(t)
	if !strings.HasPrefix(r, prefix) {
		t.Errorf("reply to %q: %q, want %q...", s, r, prefix)
	}
	return r
}

// untilClosed reads what the server still sends until it closes the
// connection, and fails if it does not within the deadline.
func (lr *lineReader) untilClosed(t *testing.T, within time.Duration) []string {
	t.Helper()
	lr.c.SetReadDeadline(time.Now().Add(within))
	var lines []string
	for {
		l, err := lr.r.ReadString('\n')
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return lines
		}
		if err != nil {
			t.Fatalf("connection still open after %v (read: %v; got %q)", within, err, lines)
		}
		lines = append(lines, strings.TrimSuffix(l, "\r\n"))
	}
}

// mxTransaction sends EHLO, MAIL, RCPT and DATA, each checked.
func (lr *lineReader) mxTransaction(t *testing.T, rcpt string) {
	t.Helper()
	lr.expect(t, "EHLO client.test\r\n", "250 ")
	lr.expect(t, "MAIL FROM:<carol@remote.example>\r\n", "250 ")
	lr.expect(t, "RCPT TO:<"+rcpt+">\r\n", "250 ")
	lr.expect(t, "DATA\r\n", "354 ")
}

// TestSMTPBadInput sends the MX listener what well-behaved clients do not.
func TestSMTPBadInput(t *testing.T) {
	t.Parallel()
	s := startSMTPServer(t, "", "alice@example.org", "bob@example.org", "postmaster@example.org")
	const alice, bob = "example.org/alice", "example.org/bob"
	// Subtests run one after the other: they count alice's and bob's
	// messages.

	t.Run("command lines over 1000 octets", func(t *testing.T) {
		// RFC 5321 §4.5.3.1.4 allows 512 octets for a command line;
		// mailroom takes up to 2000 (go-smtp's MaxLineLength) so that
		// long parameters from real clients pass.
		lr := dialLines(t, s.MX)
		lr.expect(t, "EHLO client.test\r\n", "250 ")
		lr.expect(t, "NOOP "+strings.Repeat("x", 1000-len("NOOP \r\n"))+"\r\n", "250 ")
		lr.expect(t, "NOOP "+strings.Repeat("x", 1500)+"\r\n", "250 ")
		// Over max_line_length (2000) the line is still read to its end
		// and answered, and the session goes on (it used to be "500 Too
		// long line" and the end of the connection): NOOP ignores its
		// argument; the commands whose arguments matter answer 500
		// 5.5.2 (the next subtest but one).
		lr.expect(t, "NOOP "+strings.Repeat("x", 2500)+"\r\n", "250 ")
		lr.expect(t, "NOOP\r\n", "250 ")
		// Only a line no client writes (over 256 KiB, the memory one
		// line may take) ends the session.
		lr.send(t, "NOOP "+strings.Repeat("x", 300<<10)+"\r\nNOOP\r\n")
		got := lr.untilClosed(t, 10*time.Second)
		if len(got) > 1 || len(got) == 1 && !strings.HasPrefix(got[0], "500 5.4.0") {
			t.Errorf("after a 300 KiB command: %q, want at most a 500 5.4.0 and the connection closed", got)
		}
		// The server is fine.
		lr = dialLines(t, s.MX)
		lr.expect(t, "EHLO client.test\r\n", "250 ")
	})

	t.Run("lines over 1000 octets in DATA", func(t *testing.T) {
		before := homes(t, s.Server, alice, bob)
		// Up to 2000 octets a line is taken and stored as sent.
		msg := "Subject: long lines\r\n\r\n" + strings.Repeat("y", 998) + "\r\n" + strings.Repeat("z", 1998) + "\r\nend\r\n"
		lr := dialLines(t, s.MX)
		lr.mxTransaction(t, "alice@example.org")
		lr.send(t, msg+".\r\n")
		if r := lr.reply(t); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("message with 1000- and 2000-octet lines: %q, want 250", r)
		}
		if got := oneNew(t, s.Server, alice, before[alice]); got.Rest != lf(msg) {
			t.Errorf("stored message differs\n got: %q\nwant: %q", got.Rest, lf(msg))
		}

		// A longer line is accepted and stored as it came, as Postfix
		// does (it used to fail the message with 554 and leave the
		// session out of step), and the session goes on: the next
		// pipelined transaction is a message of its own.
		before = homes(t, s.Server, alice, bob)
		lr = dialLines(t, s.MX)
		lr.mxTransaction(t, "alice@example.org")
		long := "Subject: very long\r\n\r\n" + strings.Repeat("w", 2500) + "\r\n"
		lr.send(t, long+".\r\n"+
			"MAIL FROM:<carol@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
		for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
			if r := lr.reply(t); !strings.HasPrefix(r, want) {
				t.Fatalf("after a 2500-octet line in DATA: %q, want %q", r, want)
			}
		}
		lr.expect(t, "Subject: next\r\n\r\nx\r\n.\r\n", "250 ")
		if got := oneNew(t, s.Server, alice, before[alice]); got.Rest != lf(long) {
			t.Errorf("the long line was not stored as sent: %q", got.Rest)
		}
		oneNew(t, s.Server, bob, before[bob])
		lr.expect(t, "NOOP\r\n", "250 ")
	})

	t.Run("command lines over max_line_length", func(t *testing.T) {
		// A 5,000-octet RCPT is read to its end and answered 500 5.5.2
		// (it used to get a reset); the session goes on.
		lr := dialLines(t, s.MX)
		lr.expect(t, "EHLO client.test\r\n", "250 ")
		lr.expect(t, "MAIL FROM:<carol@remote.example>\r\n", "250 ")
		lr.expect(t, "RCPT TO:<"+strings.Repeat("x", 5000)+"@example.org>\r\n", "500 5.5.2")
		lr.expect(t, "NOOP\r\n", "250 ")
		// RFC 5321 §4.5.1: postmaster without a domain is accepted.
		lr.expect(t, "RCPT TO:<postmaster>\r\n", "250 ")
		lr.expect(t, "QUIT\r\n", "221 ")
	})

	t.Run("bare LF and bare CR in commands", func(t *testing.T) {
		// Commands ended by a bare LF are accepted (as Postfix does by
		// default); a bare CR inside a command line makes it a bad
		// command, answered 501, and the session goes on.
		before := maildirNew(t, mailRoot(s.Server), alice)
		lr := dialLines(t, s.MX)
		lr.expect(t, "EHLO client.test\n", "250 ")
		lr.expect(t, "NOOP\n", "250 ")
		lr.expect(t, "NOOP\rNOOP\r\n", "501 ")
		lr.expect(t, "\rNOOP\r\n", "501 ")
		lr.expect(t, "MAIL FROM:<carol@remote.example>\n", "250 ")
		lr.expect(t, "RCPT TO:<alice@example.org>\n", "250 ")
		lr.expect(t, "DATA\n", "354 ")
		lr.expect(t, "Subject: bare LF commands\r\n\r\nbody\r\n.\r\n", "250 ")
		lr.expect(t, "QUIT\n", "221 ")
		if got := oneNew(t, s.Server, alice, before); got.Rest != "Subject: bare LF commands\n\nbody\n" {
			t.Errorf("stored %q", got.Rest)
		}
	})

	t.Run("bare LF and bare CR in DATA", func(t *testing.T) {
		// In DATA only CRLF.CRLF ends the message: "\n.\n", "\r.\r" and
		// mixtures are data, and bare LF and CR are kept as they came
		// (CRLF is stored as LF). A "message" after a bare-LF dot is
		// not a second message (SMTP smuggling, CVE-2023-51764).
		before := homes(t, s.Server, alice, bob)
		body := "lf\nonly\r\n" +
			"cr\ronly\r\n" +
			"x\n.\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\n" +
			"y\r.\rz\r\n" +
			"w\n.\r\n" +
			"\r.\n\r\n" +
			"end\r\n"
		lr := dialLines(t, s.MX)
		lr.mxTransaction(t, "alice@example.org")
		lr.expect(t, "Subject: bare\r\n\r\n"+body+".\r\n", "250 ")
		lr.expect(t, "NOOP\r\n", "250 ")
		want := "Subject: bare\n\n" +
			"lf\nonly\n" +
			"cr\ronly\n" +
			"x\n.\nMAIL FROM:<evil@remote.example>\nRCPT TO:<bob@example.org>\nDATA\nSubject: smuggled\n\n" +
			"y\r.\rz\n" +
			"w\n.\n" +
			"\r.\n\n" +
			"end\n"
		if got := oneNew(t, s.Server, alice, before[alice]); got.Rest != want {
			t.Errorf("stored message differs\n got: %q\nwant: %q", got.Rest, want)
		}
		noNew(t, s.Server, bob, before[bob])
	})

	t.Run("NUL bytes", func(t *testing.T) {
		before := maildirNew(t, mailRoot(s.Server), alice)
		lr := dialLines(t, s.MX)
		lr.expect(t, "EHLO client.test\r\n", "250 ")
		lr.expect(t, "NO\x00OP\r\n", "501 5.5.2")
		lr.expect(t, "MAIL FROM:<carol\x00@remote.example>\r\n", "501 5.1.7")
		lr.expect(t, "MAIL FROM:<carol@remote.example>\r\n", "250 ")
		lr.expect(t, "RCPT TO:<ali\x00ce@example.org>\r\n", "501 5.1.3")
		lr.expect(t, "RCPT TO:<alice@example.org>\r\n", "250 ")
		lr.expect(t, "DATA\r\n", "354 ")
		// In the message a NUL is data: it is stored as it came.
		lr.expect(t, "Subject: nul\r\n\r\na\x00b\r\n.\r\n", "250 ")
		lr.expect(t, "NOOP\r\n", "250 ")
		if got := oneNew(t, s.Server, alice, before); got.Rest != "Subject: nul\n\na\x00b\n" {
			t.Errorf("stored %q", got.Rest)
		}
	})

	t.Run("NUL in the EHLO name", func(t *testing.T) {
		// A HELO/EHLO name is a domain or an address literal
		// (RFC 5321 §4.1.1.1); a NUL in it is a syntax error. (It must not be
		// echoed back in the reply either: replies are text.)
		lr := dialLines(t, s.MX)
		lr.send(t, "EHLO a\x00b\r\n")
		var reply []string
		for {
			l, ok := lr.line()
			reply = append(reply, l)
			if !ok || len(l) < 4 || l[3] != '-' {
				break
			}
		}
		if !strings.HasPrefix(reply[0], "501 ") {
			t.Errorf("EHLO with a NUL in the name: %q, want 501", reply)
		}
		if strings.Contains(strings.Join(reply, ""), "\x00") {
			t.Errorf("the reply echoes the NUL: %q", reply)
		}
		// Either way the session goes on.
		lr.expect(t, "NOOP\r\n", "250 ")
	})

	t.Run("DATA content before the 354 without PIPELINING", func(t *testing.T) {
		// A client that greets with HELO (so no PIPELINING) but sends
		// everything at once: mailroom, like go-smtp, does not police
		// the lock-step; it answers each command in order and takes
		// what follows DATA as the message, exactly as sent.
		before := maildirNew(t, mailRoot(s.Server), alice)
		lr := dialLines(t, s.MX)
		lr.send(t, "HELO client.test\r\nMAIL FROM:<carol@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"+
			"Subject: early\r\n\r\nearly talker\r\n.\r\nQUIT\r\n")
		for _, want := range []string{"250 ", "250 ", "250 ", "354 ", "250 ", "221 "} {
			if r := lr.reply(t); !strings.HasPrefix(r, want) {
				t.Errorf("reply %q, want %q", r, want)
			}
		}
		if got := oneNew(t, s.Server, alice, before); got.Rest != "Subject: early\n\nearly talker\n" {
			t.Errorf("stored %q", got.Rest)
		}
		// When DATA is refused (no recipient was accepted), what the
		// client sent as the message is read as commands: its own
		// fault, but nothing may be delivered and the server goes on.
		beforeBob := maildirNew(t, mailRoot(s.Server), bob)
		lr = dialLines(t, s.MX)
		lr.send(t, "HELO client.test\r\nMAIL FROM:<carol@remote.example>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n"+
			"Subject: early\r\n\r\nRCPT TO:<bob@example.org>\r\n.\r\nQUIT\r\n")
		for _, want := range []string{"250 ", "250 ", "550 5.1.1", "503 "} {
			if r := lr.reply(t); !strings.HasPrefix(r, want) {
				t.Errorf("reply %q, want %q", r, want)
			}
		}
		rest := lr.untilClosed(t, 10*time.Second)
		if len(rest) == 0 || !strings.HasPrefix(rest[len(rest)-1], "221 ") {
			t.Errorf("the server did not get to QUIT: %q", rest)
		}
		noNew(t, s.Server, bob, beforeBob)
	})

	t.Run("declared SIZE over the limit", func(t *testing.T) {
		// RFC 1870: refused at MAIL, before any data is sent.
		lr := dialLines(t, s.MX)
		lr.expect(t, "EHLO client.test\r\n", "250 ")
		lr.expect(t, "MAIL FROM:<carol@remote.example> SIZE=100001\r\n", "552 5.3.4")
		lr.expect(t, "MAIL FROM:<carol@remote.example> SIZE=100000\r\n", "250 ")
	})

	// The server survived all of it.
	lr := dialLines(t, s.MX)
	lr.expect(t, "EHLO client.test\r\n", "250 ")
	if strings.Contains(s.Log(), "panic") {
		t.Errorf("the server log shows a panic:\n%s", s.Log())
	}
}

// TestSMTPInvalidBase64InAuth sends AUTH responses that are not base64.
// RFC 4954 §4: "If the server cannot BASE64 decode any client response,
// it MUST reject the AUTH command with a 501 reply (and an enhanced
// status code of 5.5.2)". The session goes on, and a good AUTH works.
func TestSMTPInvalidBase64InAuth(t *testing.T) {
	t.Parallel()
	s := startSMTPServer(t, "", "alice@example.org")
	for _, tc := range []struct {
		name  string
		steps []string // sent in turn; every reply but the last is 334
	}{
		{"initial response", []string{"AUTH PLAIN !!!notbase64"}},
		{"initial response without padding", []string{"AUTH LOGIN YWxpY2U"}},
		{"LOGIN user name", []string{"AUTH LOGIN", "%%%"}},
		{"PLAIN after 334", []string{"AUTH PLAIN", "not base64 at all"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lr := dialLines(t, s.Sub)
			lr.expect(t, "EHLO client.test\r\n", "250 ")
			for _, step := range tc.steps[:len(tc.steps)-1] {
				lr.expect(t, step+"\r\n", "334 ")
			}
			lr.expect(t, tc.steps[len(tc.steps)-1]+"\r\n", "501 5.5.2")
			// The session goes on and a good AUTH succeeds.
			lr.expect(t, "NOOP\r\n", "250 ")
			plain := base64.StdEncoding.EncodeToString([]byte("\x00alice@example.org\x00" + smtpPassword))
			lr.expect(t, "AUTH PLAIN "+plain+"\r\n", "235 2.0.0")
		})
	}
	t.Run("cancelled with *", func(t *testing.T) {
		lr := dialLines(t, s.Sub)
		lr.expect(t, "EHLO client.test\r\n", "250 ")
		lr.expect(t, "AUTH LOGIN\r\n", "334 ")
		lr.expect(t, "*\r\n", "501 ")
		lr.expect(t, "NOOP\r\n", "250 ")
	})
}

// TestSMTPIdleTimeout: a client that goes silent is told 421 and
// disconnected after [limits] idle_timeout, whether it stopped between
// commands or in the middle of a message, and nothing half-sent is kept.
func TestSMTPIdleTimeout(t *testing.T) {
	t.Parallel()
	s := startSMTPServer(t, `idle_timeout = "1s"`, "alice@example.org")
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, lr *lineReader)
	}{
		{"after the greeting", func(*testing.T, *lineReader) {}},
		{"after EHLO", func(t *testing.T, lr *lineReader) { lr.expect(t, "EHLO client.test\r\n", "250 ") }},
		{"in DATA", func(t *testing.T, lr *lineReader) {
			lr.mxTransaction(t, "alice@example.org")
			lr.send(t, "Subject: cut off\r\n\r\nhalf a mess")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lr := dialLines(t, s.MX)
			tc.do(t, lr)
			start := time.Now()
			got := lr.untilClosed(t, 10*time.Second)
			elapsed := time.Since(start)
			if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "421 4.4.2") {
				t.Errorf("silent client got %q, want 421 4.4.2 and the connection closed", got)
			}
			// The client is owed nothing but the 421: no reply to a
			// message it never finished, and certainly not one that
			// calls its silence a "local problem".
			if len(got) > 1 {
				t.Errorf("before the 421, the silent client got %q", got[:len(got)-1])
			}
			if elapsed < 900*time.Millisecond || elapsed > 5*time.Second {
				t.Errorf("disconnected after %v, want about idle_timeout (1s)", elapsed)
			}
		})
	}
	t.Cleanup(func() {
		// After the subtests: the message cut off in DATA left nothing.
		if msgs := maildirNew(t, mailRoot(s.Server), "example.org/alice"); len(msgs) != 0 {
			t.Errorf("alice has %d messages, want none", len(msgs))
		}
		if n := mailtest.TmpFiles(t, mailRoot(s.Server), "example.org/alice"); n != 0 {
			t.Errorf("%d files left in tmp/", n)
		}
	})
}

// TestSMTPTrickleDropped: a client that sends a byte at a time, each
// well within idle_timeout, is dropped once its command or its message
// takes longer than idle_timeout plus what min_data_rate allows for its
// size (Postfix's per-request deadline), instead of holding its
// connection for as long as it keeps trickling (issue 11: a byte every
// 2 s kept a connection 118 s with idle_timeout = 10s, so 200 such
// clients fill max_connections). A client that sends a message slowly
// but steadily, above min_data_rate, is not cut off.
func TestSMTPTrickleDropped(t *testing.T) {
	t.Parallel()
	// idle_timeout 1s, min_data_rate 500 (the default): a byte every
	// 300 ms passes each read's timeout but not the request's.
	s := startSMTPServer(t, `idle_timeout = "1s"`, "alice@example.org")
	trickle := func(t *testing.T, lr *lineReader, text string) {
		for i := range len(text) {
			if _, err := lr.c.Write([]byte{text[i]}); err != nil {
				return // dropped
			}
			time.Sleep(300 * time.Millisecond) // the client's pace, not synchronisation
		}
	}
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, lr *lineReader)
		text string
	}{
		{"command", func(*testing.T, *lineReader) {}, "EHLO a-long-client-name.test\r\n"},
		{"in DATA", func(t *testing.T, lr *lineReader) { lr.mxTransaction(t, "alice@example.org") }, "Subject: slow\r\n\r\nnever finished, a byte at a time\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lr := dialLines(t, s.MX)
			tc.do(t, lr)
			start := time.Now()
			go trickle(t, lr, tc.text)
			got := lr.untilClosed(t, 8*time.Second)
			elapsed := time.Since(start)
			// The part of a command line that arrived before the
			// deadline is answered as a line (textproto reads it so),
			// then comes the 421.
			if len(got) == 0 || len(got) > 2 || !strings.HasPrefix(got[len(got)-1], "421 4.4.2") {
				t.Errorf("trickling client got %q, want 421 4.4.2 and the connection closed", got)
			}
			if elapsed > 4*time.Second {
				t.Errorf("dropped after %v, want about idle_timeout (1s)", elapsed)
			}
		})
	}
	t.Run("slow but steady message", func(t *testing.T) {
		t.Parallel()
		lr := dialLines(t, s.MX)
		lr.mxTransaction(t, "alice@example.org")
		// 3 s of 200-octet lines every 100 ms: 2,000 octets a second,
		// above min_data_rate, so the deadline grows faster than time.
		line := "X-Filler: " + strings.Repeat("x", 188) + "\r\n"
		for range 30 {
			lr.send(t, line)
			time.Sleep(100 * time.Millisecond) // the client's pace
		}
		lr.send(t, "\r\nbody\r\n.\r\n")
		if r := lr.reply(t); !strings.HasPrefix(r, "250 ") {
			t.Errorf("steady message: %q, want 250", r)
		}
	})
}

// TestSMTPManyConnections opens 1,000 connections to the MX at once, with
// max_connections = 50: at most 50 are greeted, the others get 421 and are
// closed, and afterwards the server serves a normal client.
func TestSMTPManyConnections(t *testing.T) {
	t.Parallel()
	// max_connections_per_ip is raised so that max_connections is the
	// limit that bites (every test connection comes from 127.0.0.1).
	s := startSMTPServer(t, "max_connections = 50\nmax_connections_per_ip = 1000", "alice@example.org")
	const n = 1000
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		greetings = map[string]int{}
		all       = make(chan struct{})
		read      sync.WaitGroup
	)
	read.Add(n)
	for range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", s.MX, 20*time.Second)
			if err != nil {
				mu.Lock()
				greetings["dial error: "+err.Error()]++
				mu.Unlock()
				read.Done()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			l, err := bufio.NewReader(c).ReadString('\n')
			key := ""
			switch {
			case strings.HasPrefix(l, "220 mx.test "):
				key = "220"
			case strings.HasPrefix(l, "421 4.7.0 mx.test "):
				key = "421"
			default:
				key = "other: " + l
				if err != nil {
					key += " (" + err.Error() + ")"
				}
			}
			mu.Lock()
			greetings[key]++
			mu.Unlock()
			read.Done()
			// Hold every connection until all have their answer, so
			// that the limit is really reached.
			<-all
		})
	}
	read.Wait()
	close(all)
	wg.Wait()
	if greetings["220"] == 0 || greetings["220"] > 50 {
		t.Errorf("%d connections greeted, want 1..50 (max_connections): %v", greetings["220"], greetings)
	}
	if greetings["220"]+greetings["421"] != n {
		t.Errorf("greetings %v: want only 220 and 421 for all %d connections", greetings, n)
	}

	// The server stays up and serves a normal client once the crowd is
	// gone (closed connections are counted out as the server notices).
	var lr *lineReader
	mailtest.Eventually(t, 10*time.Second, "the server to greet a new client with 220", func() bool {
		c, err := net.Dial("tcp", s.MX)
		if err != nil {
			return false
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		l, _ := r.ReadString('\n')
		if !strings.HasPrefix(l, "220 ") {
			c.Close()
			return false
		}
		lr = &lineReader{c: c, r: r}
		t.Cleanup(func() { c.Close() })
		return true
	})
	lr.mxTransaction(t, "alice@example.org")
	lr.expect(t, "Subject: after the crowd\r\n\r\nhi\r\n.\r\n", "250 ")
	if got := oneNew(t, s.Server, "example.org/alice", nil); got.Rest != "Subject: after the crowd\n\nhi\n" {
		t.Errorf("stored %q", got.Rest)
	}
}
