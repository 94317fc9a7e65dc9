package managesieve

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailroom/account"
	"mailroom/internal/authdelay"
	"mailroom/internal/mailtest"
	"mailroom/sieve"
	"mailroom/sieve/sievestore"
)

func TestMain(m *testing.M) { mailtest.Main(m) }

// testEnv is a server on 127.0.0.1:0 over a script store in a temporary
// mail root, with the accounts alice@example.org and bob@example.org
// (password "secret").
type testEnv struct {
	srv     *Server
	addr    string
	scripts *sievestore.Store
	root    string
	log     *mailtest.LockedBuffer
	tls     *tls.Config
}

type envOptions struct {
	tls        bool
	remote     bool // connections look as if from the network
	insecure   bool
	throttle   *authdelay.Throttle
	maxScripts int
	// maxScriptSize is the server's and store's limit (0: 4096).
	maxScriptSize int
}

var testAuth = AuthenticatorFunc(func(ctx context.Context, user, pass string) (string, error) {
	switch {
	case pass != "secret":
		return "", account.ErrAuthFailed
	case strings.EqualFold(user, "alice@example.org"):
		return "example.org/alice", nil
	case strings.EqualFold(user, "bob@example.org"):
		return "example.org/bob", nil
	}
	return "", account.ErrAuthFailed
})

func newEnv(t *testing.T, o envOptions) *testEnv {
	t.Helper()
	e := &testEnv{root: t.TempDir(), log: &mailtest.LockedBuffer{}}
	if o.maxScriptSize == 0 {
		o.maxScriptSize = 4096
	}
	var err error
	e.scripts, err = sievestore.New(sievestore.Options{MailRoot: e.root, MaxScripts: o.maxScripts, MaxScriptSize: o.maxScriptSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.scripts.Close() })
	opts := Options{
		Scripts: e.scripts, Auth: testAuth, AllowInsecureAuth: o.insecure,
		Extensions: sieve.Extensions(), MaxRedirects: 4, MaxScriptSize: o.maxScriptSize,
		Throttle: o.throttle,
		Logger:   slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Panics:   mailtest.Panics,
	}
	if o.tls {
		cert, key := mailtest.TestCert(t, t.TempDir())
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}}
		e.tls = opts.TLSConfig
	}
	e.srv = New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	if o.remote {
		l = fakeRemote{l}
	}
	go e.srv.Serve(l)
	t.Cleanup(func() { e.srv.Close() })
	return e
}

type fakeRemote struct{ net.Listener }

func (l fakeRemote) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000} }

// client is a raw ManageSieve client.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (e *testEnv) dial(t *testing.T) *client {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	return c
}

// send writes raw text (with its CRLFs).
func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads lines up to and including an OK, NO or BYE line and
// returns them joined with "\n" (literals are read whole).
func (c *client) response() string {
	c.t.Helper()
	var out []string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (so far %q)", err, out)
		}
		line = strings.TrimRight(line, "\r\n")
		if n, ok := literalLen(line); ok {
			buf := make([]byte, n)
			if _, err := io.ReadFull(c.br, buf); err != nil {
				c.t.Fatal(err)
			}
			line += "\n" + string(buf)
			rest, _ := c.br.ReadString('\n')
			line += strings.TrimRight(rest, "\r\n")
		}
		out = append(out, line)
		for _, k := range []string{"OK", "NO", "BYE"} {
			if line == k || strings.HasPrefix(line, k+" ") {
				return strings.Join(out, "\n")
			}
		}
	}
}

func literalLen(line string) (int, bool) {
	i := strings.LastIndex(line, "{")
	if i < 0 || !strings.HasSuffix(line, "}") {
		return 0, false
	}
	n, err := strconv.Atoi(line[i+1 : len(line)-1])
	return n, err == nil
}

// cmd sends a command line and returns the response.
func (c *client) cmd(s string) string {
	c.t.Helper()
	c.send(s + "\r\n")
	return c.response()
}

// last is the final line of a response.
func last(resp string) string {
	if i := strings.LastIndex(resp, "\n"); i >= 0 {
		return resp[i+1:]
	}
	return resp
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// login authenticates as alice with PLAIN and an initial response.
func (c *client) login() {
	c.t.Helper()
	if r := c.cmd(fmt.Sprintf(`AUTHENTICATE "PLAIN" "%s"`, plain("alice@example.org", "secret"))); !strings.HasPrefix(r, "OK") {
		c.t.Fatalf("login: %s", r)
	}
}

// lit is a client literal for s.
func lit(s string) string { return fmt.Sprintf("{%d+}\r\n%s", len(s), s) }
