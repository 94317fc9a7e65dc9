package smtpconn

import (
	"io"
	stdlog "log"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/mailtest"
	"mailroom/internal/panics"
)

// nullSession accepts everything and reads the message.
type nullSession struct{}

func (nullSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (nullSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (nullSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (nullSession) Reset()        {}
func (nullSession) Logout() error { return nil }

// TestLibraryLineLimitEndsTheSession shows the go-smtp defect that
// NewServer works around (docs/upstream/go-smtp.md, 1): its one line
// limit fails a message with a longer line and then every later read, so
// the session is out of step, and a longer command line ends the
// connection with the rest unread.
func TestLibraryLineLimitEndsTheSession(t *testing.T) {
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return nullSession{}, nil }))
	srv.Domain = "mx.test"
	srv.MaxLineLength = 100
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	d := mailtest.Dial(t, "tcp", l.Addr().String())
	d.Send("EHLO c", "MAIL FROM:<a@b.test>", "RCPT TO:<c@d.test>", "DATA")
	d.Expect("250 ")
	d.Expect("250 ")
	d.Expect("250 ")
	d.Expect("354 ")
	d.Send(strings.Repeat("x", 200), ".")
	if r := d.Reply(); !strings.HasPrefix(r[0], "554") {
		t.Logf("a long message line: %q", r)
	}
	d.Send("NOOP")
	if r := d.Reply(); !strings.Contains(r[0], "Too long line") {
		t.Errorf("go-smtp now answers %q after a long message line: the line-limit workaround may go", r)
	}
}

// tooManyErrors is a pipelined session whose fourth bad command makes
// go-smtp close the connection, followed by commands it has read already.
var tooManyErrors = []string{"EHLO c", "MAIL FROM:<a@b.test>", "FOO", "FOO", "FOO", "FOO", "RCPT TO:<c@d.test>", "RCPT TO:<e@d.test>"}

// playToEnd sends lines to addr in one write and reads what the server
// sends until it closes the connection.
func playToEnd(t *testing.T, addr string, lines []string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(strings.Join(lines, "\r\n") + "\r\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestLibraryAnswersAfterClosing shows the go-smtp defect that
// conns.Options.LinePerRead works around (docs/upstream/go-smtp.md, 6):
// after "Too many errors" it closes the connection but goes on with the
// commands in its buffer, with no session, and each RCPT panics.
func TestLibraryAnswersAfterClosing(t *testing.T) {
	var log mailtest.LockedBuffer
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return nullSession{}, nil }))
	srv.Domain = "mx.test"
	srv.ErrorLog = stdlog.New(&log, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	playToEnd(t, l.Addr().String(), tooManyErrors)
	srv.Shutdown(t.Context()) // every connection's handler done
	if !strings.Contains(log.String(), "panic") {
		t.Errorf("go-smtp no longer panics on commands read before it closed (log %q): LinePerRead may go", log.String())
	}
}

// TestNoCommandAfterClose: the same session on NewServer's server ends
// at the close, with no panic.
func TestNoCommandAfterClose(t *testing.T) {
	rec := new(panics.Recorder)
	srv := NewServer(Options{Proto: "smtp", Hostname: "mx.test", Panics: rec}, func(*gosmtp.Conn) (gosmtp.Session, error) { return nullSession{}, nil })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	out := playToEnd(t, l.Addr().String(), tooManyErrors)
	if !strings.Contains(out, "Too many errors") {
		t.Errorf("the session did not end at the fourth bad command: %q", out)
	}
	if strings.Contains(out, "250 2.0.0 I'll make sure") {
		t.Errorf("a command after the close was answered: %q", out)
	}
	// Every connection's handler is done once Shutdown returns.
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := rec.Count(); n != 0 {
		t.Errorf("%d panics: %v", n, rec.First())
	}
}
