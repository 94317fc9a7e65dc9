package mailtest

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// Dialog is a raw line-level client for SMTP-like protocols, for tests
// that must see exact replies.
type Dialog struct {
	t    testing.TB
	conn net.Conn
	r    *textproto.Reader
}

// Dial connects to network/addr and reads the greeting.
func Dial(t testing.TB, network, addr string) *Dialog {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return DialConn(t, c)
}

// DialConn is Dial over a connection the test made (from an address of
// its choice, say).
func DialConn(t testing.TB, c net.Conn) *Dialog {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	d := &Dialog{t: t, conn: c, r: textproto.NewReader(bufio.NewReader(c))}
	d.Expect("220 ")
	return d
}

// Send writes lines, each ended with CRLF.
func (d *Dialog) Send(lines ...string) {
	d.t.Helper()
	if _, err := d.conn.Write([]byte(strings.Join(lines, "\r\n") + "\r\n")); err != nil {
		d.t.Fatalf("send %q: %v", lines, err)
	}
}

// SendRaw writes s as it is (for BDAT chunks).
func (d *Dialog) SendRaw(s string) {
	d.t.Helper()
	if _, err := d.conn.Write([]byte(s)); err != nil {
		d.t.Fatalf("send %q: %v", s, err)
	}
}

// Reply reads one reply, multi-line or not, and returns its lines.
func (d *Dialog) Reply() []string {
	d.t.Helper()
	var lines []string
	for {
		l, err := d.r.ReadLine()
		if err != nil {
			d.t.Fatalf("read reply (after %q): %v", lines, err)
		}
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// Expect reads one reply and fails unless its last line starts with
// prefix. It returns the reply's lines.
func (d *Dialog) Expect(prefix string) []string {
	d.t.Helper()
	lines := d.Reply()
	if !strings.HasPrefix(lines[len(lines)-1], prefix) {
		d.t.Fatalf("reply %q, want %q...", lines, prefix)
	}
	return lines
}

// Closed reports whether the server has closed the connection.
func (d *Dialog) Closed() bool {
	_, err := d.r.ReadLine()
	return err != nil
}

// StartTLS sends STARTTLS on the dialog and continues over TLS, trusting
// any certificate (the tests' own).
func (d *Dialog) StartTLS() {
	d.t.Helper()
	d.Send("STARTTLS")
	d.Expect("220")
	tc := tls.Client(d.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	if err := tc.Handshake(); err != nil {
		d.t.Fatalf("TLS handshake: %v", err)
	}
	d.conn = tc
	d.r = textproto.NewReader(bufio.NewReader(tc))
}

// DialTLS connects with implicit TLS and reads the greeting.
func DialTLS(t testing.TB, addr string) *Dialog {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	d := &Dialog{t: t, conn: c, r: textproto.NewReader(bufio.NewReader(c))}
	d.Expect("220 ")
	return d
}
