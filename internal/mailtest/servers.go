package mailtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/lmtp"
	"mailroom/smtp"
)

// StartLMTP serves LMTP for env in-process on 127.0.0.1:0 and on a unix
// socket in env.Dir, and returns the server and both addresses. It is
// shut down at cleanup.
func StartLMTP(t testing.TB, env *Env, opts lmtp.Options) (srv *lmtp.Server, tcpAddr, unixPath string) {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "mx.test"
	}
	opts.Deliverer = env.MDA
	srv = lmtp.New(opts)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unixPath = filepath.Join(env.Dir, "lmtp.sock")
	ul, err := net.Listen("unix", unixPath)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	for _, l := range []net.Listener{tl, ul} {
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve: %v", err)
			}
			done <- struct{}{}
		}()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		<-done
	})
	return srv, tl.Addr().String(), unixPath
}

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

// StartSMTP serves SMTP for env in-process on 127.0.0.1:0 (and, when
// opts.TLS is set, implicit TLS on a second port) and returns the plain
// and TLS addresses. It is shut down at cleanup.
func StartSMTP(t testing.TB, env *Env, opts smtp.Options) (plain, implicitTLS string) {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "mx.test"
	}
	if opts.Deliverer == nil {
		opts.Deliverer = env.MDA
	}
	if opts.Accounts == nil {
		opts.Accounts = env.Accounts
	}
	srv := smtp.New(opts)
	serve := func(l net.Listener, fn func(net.Listener) error, done chan struct{}) {
		go func() {
			if err := fn(l); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve: %v", err)
			}
			close(done)
		}()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done1, done2 := make(chan struct{}), make(chan struct{})
	serve(l, srv.Serve, done1)
	plain = l.Addr().String()
	if opts.TLS != nil {
		lt, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		serve(lt, srv.ServeTLS, done2)
		implicitTLS = lt.Addr().String()
	} else {
		close(done2)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done1
		<-done2
	})
	return plain, implicitTLS
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
