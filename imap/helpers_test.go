package imap

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailroom/account"
	"mailroom/internal/mailtest"
	"mailroom/internal/memfolders"
)

// The tests' fixtures: an in-process server on 127.0.0.1:0 over the
// in-memory folder store, with accounts alice and bob (password
// "secret"), whose mail homes are their names.

var _ Store = (*memfolders.Store)(nil)

type testAuth struct{}

func (testAuth) Authenticate(ctx context.Context, username, password string) (string, error) {
	if (username == "alice" || username == "bob") && password == "secret" {
		return username, nil
	}
	if username == "broken" {
		return "", errors.New("database on fire: /var/lib/mailroom/db")
	}
	return "", account.ErrAuthFailed
}

// lockedBuffer collects a server's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testServer struct {
	srv   *Server
	store *memfolders.Store
	addr  string
	log   *lockedBuffer
	// panicExpected keeps the cleanup from failing the test on a
	// recovered panic (a test that makes one on purpose).
	panicExpected bool
}

// start serves opts (Store and Auth filled in if unset) on 127.0.0.1:0,
// or on l if given; it is closed at cleanup, and the test fails if the
// log shows a panic.
func start(t testing.TB, opts Options, l ...net.Listener) *testServer {
	t.Helper()
	ts := &testServer{store: memfolders.New(), log: &lockedBuffer{}}
	if ms, ok := opts.Store.(*memfolders.Store); ok {
		ts.store = ms // a caching one: deliver there
	}
	if opts.Store == nil {
		opts.Store = ts.store
	}
	if opts.Auth == nil {
		opts.Auth = testAuth{}
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = -1 // no throttle unless the test asks for one
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	opts.Logger = slog.New(slog.NewTextHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Panics == nil {
		opts.Panics = mailtest.Panics
	}
	ts.srv = New(opts)
	var ln net.Listener
	if len(l) > 0 {
		ln = l[0]
	} else {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ts.addr = ln.Addr().String()
	serve := ts.srv.Serve
	if tl, ok := ln.(implicitTLS); ok {
		serve, ln = ts.srv.ServeTLS, tl.Listener
	}
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	t.Cleanup(func() {
		ts.srv.Close()
		if err := <-done; err != nil && !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		if !ts.panicExpected && panicked(ts.log.String()) {
			t.Errorf("the server panicked:\n%s", ts.log.String())
		}
	})
	return ts
}

// deliver puts a message into alice's folder as a delivery would.
func (ts *testServer) deliver(t testing.TB, folder, msg string) uint32 {
	t.Helper()
	uid, err := ts.store.Deliver("alice", folder, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func (ts *testServer) dial(t testing.TB, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(ts.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// login dials and logs in as alice.
func (ts *testServer) login(t testing.TB, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c := ts.dial(t, h)
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// raw is a line-level IMAP client for exact responses.
type raw struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func dialRaw(t testing.TB, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newRaw(t, c)
}

func newRaw(t testing.TB, c net.Conn) *raw {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, conn: c, r: bufio.NewReaderSize(c, 1<<16)}
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return r
}

func (r *raw) line() string {
	r.t.Helper()
	l, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (after %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := r.conn.Write([]byte(s + "\r\n")); err != nil {
		r.t.Fatalf("send %q: %v", s, err)
	}
}

// cmd sends a command with a fresh tag and returns the untagged lines
// and the tagged status line (without its tag).
func (r *raw) cmd(format string, args ...any) (untagged []string, status string) {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("T%d", r.n)
	r.send(tag + " " + fmt.Sprintf(format, args...))
	return r.until(tag)
}

func (r *raw) until(tag string) (untagged []string, status string) {
	r.t.Helper()
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		untagged = append(untagged, l)
	}
}

// ok runs a command that must succeed and returns its untagged lines.
func (r *raw) ok(format string, args ...any) []string {
	r.t.Helper()
	u, st := r.cmd(format, args...)
	if !strings.HasPrefix(st, "OK") {
		r.t.Fatalf("%s: %s (untagged %q)", fmt.Sprintf(format, args...), st, u)
	}
	return u
}

func (r *raw) login() {
	r.t.Helper()
	r.ok("LOGIN alice secret")
}

// implicitTLS given to start makes it serve with ServeTLS.
type implicitTLS struct{ net.Listener }

// fakeRemote makes accepted connections report a non-loopback address,
// as a client on the network would have.
type fakeRemote struct{ net.Listener }

func (l fakeRemote) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
}

// testTLS is a server TLS config with a fresh self-signed certificate.
func testTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.test"},
		DNSNames:     []string{"mx.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// panicked reports whether the log records a recovered panic (package
// panics logs each with event=panic).
func panicked(log string) bool {
	return strings.Contains(log, "event=panic")
}
