package e2e

import (
	"fmt"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exactMessage has what tends to get mangled on the way to disk: 8-bit
// text, a folded header, a long line, trailing white space, tabs, empty
// lines, and lines that start with a dot and so are dot-stuffed on the wire.
var exactMessage = "From: Carol <carol@example.net>\n" +
	"To: Alice <alice@example.org>\n" +
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= exact\n" +
	"Message-ID: <exact-1@example.net>\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\n" +
	"X-Folded: first part\n" +
	"\tsecond part\n" +
	"X-Long: " + strings.Repeat("0123456789", 90) + "\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"Grüße aus Köln, 世界.\n" +
	".\n" +
	"..\n" +
	".leading dot\n" +
	" . space then dot\n" +
	"trailing spaces   \n" +
	"\ttab first\ttab inside\t\n" +
	"\n" +
	"\n" +
	"Return-Path: <not-a-header@example.net>\n" +
	"last line\n"

// TestLMTPSwaksStoresMessageExactly delivers a message with swaks over TCP
// and over the unix socket, and checks that the file in the Maildir is the
// three trace fields followed by the message exactly as sent (CRLF turned
// into LF), and that the trace fields say who sent it, for whom and when.
func TestLMTPSwaksStoresMessageExactly(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig, "alice@example.org")
	for _, tc := range []struct {
		name   string
		unix   bool
		remote string
	}{
		{"tcp", false, "[127.0.0.1]"},
		{"unix", true, "unix socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: both deliver to alice and count her messages.
			before := maildirNew(t, mailRoot(s), "example.org/alice")
			start := time.Now()
			out := lmtpSwaks(t, s.Addr(t, "lmtp", tc.unix), tc.unix, crlf(exactMessage), "carol@example.net", "alice@example.org")
			tr := parseTranscript(out)
			if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
				t.Fatalf("replies to the message: %q, want one 250\n%s", r, out)
			}
			msgs := newSince(t, mailRoot(s), "example.org/alice", before)
			if len(msgs) != 1 {
				t.Fatalf("alice got %d messages, want 1", len(msgs))
			}
			got := splitTrace(t, msgs[0].Data)
			if got.ReturnPath != "<carol@example.net>" {
				t.Errorf("Return-Path: %s, want <carol@example.net>", got.ReturnPath)
			}
			if got.DeliveredTo != "alice@example.org" {
				t.Errorf("Delivered-To: %s, want alice@example.org", got.DeliveredTo)
			}
			checkReceived(t, got.Received, "client.test", tc.remote, "alice@example.org", start)
			if got.Rest != exactMessage {
				t.Errorf("stored message differs from the one sent\n got: %q\nwant: %q", got.Rest, exactMessage)
			}
		})
	}
}

// TestLMTPSwaksPerRecipientReplies sends one message to two users and one
// unknown address: the unknown one is refused at RCPT with 550 5.1.1, each
// accepted recipient gets its own 250 after the message (RFC 2033), and
// each mailbox gets exactly one copy naming its own recipient.
func TestLMTPSwaksPerRecipientReplies(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig, "alice@example.org", "bob@example.org")
	msg := "Subject: three recipients\n\nhello\n"
	start := time.Now()
	out := lmtpSwaks(t, s.Addr(t, "lmtp", false), false, crlf(msg), "carol@example.net",
		"alice@example.org", "nobody@example.org", "bob@example.org")
	tr := parseTranscript(out)

	for _, c := range []struct{ rcpt, want string }{
		{"alice@example.org", "250 "},
		{"nobody@example.org", "550 5.1.1 "},
		{"bob@example.org", "250 "},
	} {
		r, ok := tr.replies("RCPT TO:<" + c.rcpt + ">")
		if !ok || len(r) != 1 || !strings.HasPrefix(r[0], c.want) {
			t.Errorf("reply to RCPT TO:<%s>: %q, want %q...", c.rcpt, r, c.want)
		}
	}
	// One reply per accepted recipient, in RCPT order; none for the
	// refused one.
	r := tr.dataReplies()
	if len(r) != 2 {
		t.Fatalf("got %d replies after the message, want 2 (one per accepted recipient): %q\n%s", len(r), r, out)
	}
	for i, rcpt := range []string{"alice@example.org", "bob@example.org"} {
		if !strings.HasPrefix(r[i], "250 ") {
			t.Errorf("reply %d after the message (for %s): %q, want 250", i+1, rcpt, r[i])
		}
	}

	var ids []string
	for _, u := range []string{"alice", "bob"} {
		msgs := maildirNew(t, mailRoot(s), "example.org/"+u)
		if len(msgs) != 1 {
			t.Fatalf("%s has %d messages, want 1", u, len(msgs))
		}
		got := splitTrace(t, msgs[0].Data)
		if got.DeliveredTo != u+"@example.org" {
			t.Errorf("%s's copy: Delivered-To: %s", u, got.DeliveredTo)
		}
		ids = append(ids, checkReceived(t, got.Received, "client.test", "[127.0.0.1]", u+"@example.org", start))
		if got.Rest != msg {
			t.Errorf("%s's copy differs: %q, want %q", u, got.Rest, msg)
		}
	}
	if ids[0] != ids[1] {
		t.Errorf("one transaction, two Received ids: %s and %s", ids[0], ids[1])
	}
	if _, err := os.Stat(filepath.Join(mailRoot(s), "example.org", "nobody")); !os.IsNotExist(err) {
		t.Errorf("a mail home was made for the unknown recipient (stat: %v)", err)
	}
}

// TestLMTPSwaksRecipientDelimiter checks that user+ext@ (or user-ext@ with
// recipient_delimiter = "-") is delivered to user's mailbox with the full
// address in Delivered-To, and that the other character is not taken for
// the delimiter.
func TestLMTPSwaksRecipientDelimiter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, config      string
		extended, refused string
	}{
		{"default", serverConfig, "alice+lists@example.org", "alice-lists@example.org"},
		{"dash", serverConfig + "[delivery]\nrecipient_delimiter = \"-\"\n", "alice-lists@example.org", "alice+lists@example.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, tc.config, "alice@example.org")
			msg := "Subject: delimiter\n\nfor " + tc.extended + "\n"
			out := lmtpSwaks(t, s.Addr(t, "lmtp", true), true, crlf(msg), "carol@example.net", tc.extended, tc.refused)
			tr := parseTranscript(out)
			if r, _ := tr.replies("RCPT TO:<" + tc.extended + ">"); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
				t.Errorf("RCPT TO:<%s>: %q, want 250", tc.extended, r)
			}
			if r, _ := tr.replies("RCPT TO:<" + tc.refused + ">"); len(r) != 1 || !strings.HasPrefix(r[0], "550 5.1.1 ") {
				t.Errorf("RCPT TO:<%s>: %q, want 550 5.1.1", tc.refused, r)
			}
			if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
				t.Fatalf("replies to the message: %q, want one 250\n%s", r, out)
			}
			msgs := maildirNew(t, mailRoot(s), "example.org/alice")
			if len(msgs) != 1 {
				t.Fatalf("alice has %d messages, want 1", len(msgs))
			}
			got := splitTrace(t, msgs[0].Data)
			if got.DeliveredTo != tc.extended {
				t.Errorf("Delivered-To: %s, want %s", got.DeliveredTo, tc.extended)
			}
			if !strings.Contains(got.Received, "for <"+tc.extended+">") {
				t.Errorf("Received: does not name <%s>:\n%s", tc.extended, got.Received)
			}
			if got.Rest != msg {
				t.Errorf("stored %q, want %q", got.Rest, msg)
			}
			entries, err := os.ReadDir(filepath.Join(mailRoot(s), "example.org"))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "alice" {
				t.Errorf("mail homes under example.org: %v, want only alice", entries)
			}
		})
	}
}

// sizedMessage returns a message of exactly n bytes on the wire (CRLF line
// ends, no line starting with a dot), with subject as its Subject.
func sizedMessage(n int, subject string) string {
	head := "Subject: " + subject + "\r\n\r\n"
	var b strings.Builder
	b.WriteString(head)
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len()+len(line) <= n-len("y\r\n") {
		b.WriteString(line)
	}
	// The last line makes up the difference (at least "y\r\n").
	b.WriteString(strings.Repeat("y", n-b.Len()-2) + "\r\n")
	return b.String()
}

// TestLMTPSwaksSizeLimit checks max_message_bytes: a message of exactly the
// limit (counted as on the wire, RFC 1870) is accepted, one byte more gets
// 552 5.3.4 for every recipient and nothing is stored, not even a partial
// file in tmp/ or the spool, and the server still takes mail afterwards.
func TestLMTPSwaksSizeLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig, "alice@example.org", "bob@example.org")
	addr := s.Addr(t, "lmtp", false)

	big := sizedMessage(maxMessageBytes+1, "one byte too big")
	if len(big) != maxMessageBytes+1 {
		t.Fatalf("sizedMessage made %d bytes", len(big))
	}
	out := lmtpSwaks(t, addr, false, big, "carol@example.net", "alice@example.org", "bob@example.org")
	r := parseTranscript(out).dataReplies()
	if len(r) == 0 {
		t.Fatalf("no reply to the over-size message:\n%s", out)
	}
	for _, l := range r {
		if !strings.HasPrefix(l, "552 5.3.4 ") {
			t.Errorf("reply to the over-size message: %q, want 552 5.3.4", l)
		}
	}
	if len(r) != 2 {
		t.Errorf("got %d replies to the over-size message, want 2 (one per recipient): %q", len(r), r)
	}
	for _, u := range []string{"alice", "bob"} {
		if msgs := maildirNew(t, mailRoot(s), "example.org/"+u); len(msgs) != 0 {
			t.Errorf("%s got %d messages of an over-size message", u, len(msgs))
		}
	}
	if entries, err := os.ReadDir(filepath.Join(s.Dir, "spool")); err == nil && len(entries) != 0 {
		t.Errorf("spool holds %d files after the refused message", len(entries))
	}

	// One byte under the limit: accepted, after the refusal, on a new
	// session, and stored whole.
	under := sizedMessage(maxMessageBytes-1, "one byte under the limit")
	out = lmtpSwaks(t, addr, false, under, "carol@example.net", "alice@example.org")
	if r := parseTranscript(out).dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("reply to a message of max_message_bytes-1 (%d) bytes: %q, want 250", maxMessageBytes-1, r)
	}
	msgs := maildirNew(t, mailRoot(s), "example.org/alice")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	if got := splitTrace(t, msgs[0].Data).Rest; got != lf(under) {
		t.Errorf("message under the limit stored as %d bytes, want %d", len(got), len(lf(under)))
	}

	// Exactly the limit: SIZE 100000 promises to take 100000 octets
	// (RFC 1870), and Postfix sends a message of exactly that size.
	t.Run("exactly the limit", func(t *testing.T) {
		before := maildirNew(t, mailRoot(s), "example.org/bob")
		exact := sizedMessage(maxMessageBytes, "exactly the limit")
		out := lmtpSwaks(t, addr, false, exact, "carol@example.net", "bob@example.org")
		r := parseTranscript(out).dataReplies()
		if len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
			t.Fatalf("reply to a message of exactly max_message_bytes (%d): %q, want 250", maxMessageBytes, r)
		}
		msgs := newSince(t, mailRoot(s), "example.org/bob", before)
		if len(msgs) != 1 || splitTrace(t, msgs[0].Data).Rest != lf(exact) {
			t.Errorf("message of exactly the limit not stored whole (%d new messages)", len(msgs))
		}
	})
}

// TestLMTPSwaksDotStuffing sends lines made of dots and lines starting with
// dots in every position that matters (first body line, last line before
// the terminator, a lone "." that would end DATA if not stuffed), over TCP
// and the unix socket, and checks each is stored unstuffed, exactly once.
func TestLMTPSwaksDotStuffing(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig, "alice@example.org")
	var body strings.Builder
	body.WriteString("Subject: dots\n\n")
	for _, l := range []string{".", "..", "...", ".x", "..x", ". .", "x.", ".\t", "", "."} {
		fmt.Fprintf(&body, "%s\n", l)
	}
	body.WriteString(".last")
	body.WriteString("\n")
	msg := body.String()
	for _, unix := range []bool{false, true} {
		before := maildirNew(t, mailRoot(s), "example.org/alice")
		out := lmtpSwaks(t, s.Addr(t, "lmtp", unix), unix, crlf(msg), "carol@example.net", "alice@example.org")
		tr := parseTranscript(out)
		if r := tr.dataReplies(); len(r) != 1 || !strings.HasPrefix(r[0], "250 ") {
			t.Fatalf("unix=%v: replies to the message: %q, want one 250\n%s", unix, r, out)
		}
		// swaks must have stuffed them, or this test tests nothing.
		if !strings.Contains(out, " -> ..\n -> ...\n -> ....\n") {
			t.Fatalf("swaks did not dot-stuff the message as expected:\n%s", out)
		}
		msgs := newSince(t, mailRoot(s), "example.org/alice", before)
		if len(msgs) != 1 {
			t.Fatalf("unix=%v: alice got %d messages, want 1", unix, len(msgs))
		}
		if got := splitTrace(t, msgs[0].Data).Rest; got != msg {
			t.Errorf("unix=%v: stored\n%q\nwant\n%q", unix, got, msg)
		}
	}
}

// TestLMTPSessionGoesOn drives one LMTP session by hand over TCP: refused
// commands (unknown user, a local part that tries to leave the mail root,
// DATA with no accepted recipient) get their error and the session goes
// on to deliver a message normally.
func TestLMTPSessionGoesOn(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig, "alice@example.org")
	c, err := textproto.Dial("tcp", s.Addr(t, "lmtp", false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expect := func(code int) string {
		t.Helper()
		_, msg, err := c.ReadResponse(code)
		if err != nil {
			t.Fatalf("want %d: %v (%s)", code, err, msg)
		}
		return msg
	}
	cmd := func(code int, format string, args ...any) string {
		t.Helper()
		if err := c.PrintfLine(format, args...); err != nil {
			t.Fatal(err)
		}
		return expect(code)
	}
	expect(220)
	cmd(250, "LHLO client.test")
	cmd(250, "MAIL FROM:<carol@example.net>")
	if msg := cmd(550, "RCPT TO:<nobody@example.org>"); !strings.HasPrefix(msg, "5.1.1 ") {
		t.Errorf("RCPT of an unknown user: 550 %s, want 550 5.1.1", msg)
	}
	cmd(5, "RCPT TO:<../alice@example.org>")
	cmd(5, "RCPT TO:<alice/../../x@example.org>")
	cmd(503, "DATA")
	cmd(250, "RSET")
	cmd(250, "MAIL FROM:<carol@example.net>")
	cmd(250, "RCPT TO:<alice@example.org>")
	cmd(354, "DATA")
	w := c.DotWriter()
	io.WriteString(w, "Subject: after errors\r\n\r\nstill here\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	expect(250)
	cmd(221, "QUIT")

	msgs := maildirNew(t, mailRoot(s), "example.org/alice")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	if got := splitTrace(t, msgs[0].Data).Rest; got != "Subject: after errors\n\nstill here\n" {
		t.Errorf("stored %q", got)
	}
	for dir, want := range map[string]string{mailRoot(s): "example.org", filepath.Join(mailRoot(s), "example.org"): "alice"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != want {
			t.Errorf("%s holds %v, want only %s", dir, entries, want)
		}
	}
}
