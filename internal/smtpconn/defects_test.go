package smtpconn

import (
	"io"
	"net"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/mailtest"
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
