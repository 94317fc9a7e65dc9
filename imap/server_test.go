package imap

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"mailroom/internal/mailtest"
	"net"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

func TestLogin(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	for _, tc := range []struct {
		name, user, pass string
		want             string // prefix of the tagged status
	}{
		{"good", "alice", "secret", "OK"},
		{"bad password", "alice", "wrong", "NO [AUTHENTICATIONFAILED]"},
		{"unknown user", "nobody", "secret", "NO [AUTHENTICATIONFAILED]"},
		{"store failure is temporary, no detail", "broken", "x", "NO [UNAVAILABLE] Temporary failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, ts.addr)
			_, st := r.cmd("LOGIN %s %s", tc.user, tc.pass)
			if !strings.HasPrefix(st, tc.want) {
				t.Errorf("LOGIN: %q, want %q", st, tc.want)
			}
			if strings.Contains(st, "fire") || strings.Contains(st, "/var") {
				t.Errorf("internal error text reached the client: %q", st)
			}
		})
	}
	if log := ts.log.String(); strings.Contains(log, "secret") || strings.Contains(log, "wrong") {
		t.Errorf("a password was logged:\n%s", log)
	}
	if !strings.Contains(ts.log.String(), "database on fire") {
		t.Errorf("the real error is not in the log")
	}
}

func TestAuthenticatePlain(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	c := ts.dial(t, nil)
	if err := c.Authenticate(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	r := dialRaw(t, ts.addr)
	ir := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00nope"))
	if _, st := r.cmd("AUTHENTICATE PLAIN %s", ir); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("bad AUTHENTICATE PLAIN: %q", st)
	}
}

// TestLoginThrottle: one mistyped password is retried at once; after a
// second failure the address is refused at once with a temporary error,
// a right password as a wrong one (it used to be answered at once while a
// wrong one waited, which told a guesser the answer), on every connection
// from it; the third failed or refused attempt on a connection closes it.
func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{AuthFailureDelay: time.Minute})
	bob := dialRaw(t, ts.addr)
	if _, st := bob.cmd("LOGIN bob wrong"); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", st)
	}
	if _, st := bob.cmd("LOGIN bob secret"); !strings.HasPrefix(st, "OK") {
		t.Errorf("right password after one mistyped one: %q, want OK", st)
	}

	r := dialRaw(t, ts.addr)
	if _, st := r.cmd("LOGIN alice wrong"); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", st)
	}
	t0 := time.Now()
	if _, st := r.cmd("LOGIN alice wrong"); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("second wrong password: %q", st)
	}
	if _, st := r.cmd("LOGIN alice secret"); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
		t.Errorf("right password from a throttled address: %q, want NO [UNAVAILABLE]", st)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("refusal took %v: a throttled session must not wait holding its slot", d)
	}
	other := dialRaw(t, ts.addr)
	if _, st := other.cmd("LOGIN alice secret"); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
		t.Errorf("another connection from the address: %q, want NO [UNAVAILABLE]", st)
	}
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := r.r.ReadString('\n'); err == nil {
		t.Errorf("connection still open after three failed attempts: %q", l)
	}
}

func capsOf(t *testing.T, r *raw) string {
	t.Helper()
	u := r.ok("CAPABILITY")
	for _, l := range u {
		if strings.HasPrefix(l, "* CAPABILITY ") {
			return l + " "
		}
	}
	t.Fatalf("no CAPABILITY in %q", u)
	return ""
}

func TestPlaintextAuthOnlyOnLoopbackOrTLS(t *testing.T) {
	t.Parallel()
	tlsConf := testTLS(t)
	for _, tc := range []struct {
		name       string
		remote     bool
		allow      bool
		wantLogin  bool
		wantsTLS   bool
		startTLSOK bool
	}{
		{name: "loopback", wantLogin: true},
		{name: "remote", remote: true},
		{name: "remote allowed", remote: true, allow: true, wantLogin: true},
		{name: "remote after STARTTLS", remote: true, startTLSOK: true, wantLogin: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if tc.remote {
				l = fakeRemote{l}
			}
			ts := start(t, Options{TLSConfig: tlsConf, AllowInsecureAuth: tc.allow}, l)
			r := dialRaw(t, ts.addr)
			if tc.startTLSOK {
				r.ok("STARTTLS")
				tc := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				r.conn = tc
				r.r.Reset(tc)
			}
			caps := capsOf(t, r)
			if got := !strings.Contains(caps, " LOGINDISABLED "); got != tc.wantLogin {
				t.Errorf("LOGINDISABLED absent = %v, want %v: %s", got, tc.wantLogin, caps)
			}
			if got := strings.Contains(caps, " AUTH=PLAIN "); got != tc.wantLogin {
				t.Errorf("AUTH=PLAIN = %v, want %v: %s", got, tc.wantLogin, caps)
			}
			_, st := r.cmd("LOGIN alice secret")
			if got := strings.HasPrefix(st, "OK"); got != tc.wantLogin {
				t.Errorf("LOGIN: %q", st)
			}
			if !tc.wantLogin && !strings.Contains(st, "PRIVACYREQUIRED") {
				t.Errorf("refused LOGIN without [PRIVACYREQUIRED]: %q", st)
			}
		})
	}
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	conf := testTLS(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, Options{TLSConfig: conf}, implicitTLS{fakeRemote{l}})
	c, err := imapclient.DialTLS(ts.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("login over implicit TLS from a remote address: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{AppendLimit: 12345})
	r := dialRaw(t, ts.addr)
	r.login()
	caps := capsOf(t, r)
	for _, c := range []string{"IMAP4rev1", "IMAP4rev2", "IDLE", "MOVE", "UIDPLUS", "NAMESPACE", "ESEARCH",
		"SEARCHRES", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CHILDREN", "STATUS=SIZE", "UNSELECT",
		"ENABLE", "SASL-IR", "LITERAL+", "APPENDLIMIT=12345", "UTF8=ACCEPT", "BINARY"} {
		if !strings.Contains(caps, " "+c+" ") {
			t.Errorf("capability %s missing: %s", c, caps)
		}
	}
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, Options{MaxConnsPerIP: 2}, fakeRemote{l})
	dialRaw(t, ts.addr)
	r2 := dialRaw(t, ts.addr)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 200)
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "* BYE") {
		t.Errorf("third connection got %q, want BYE", buf[:n])
	}
	r2.ok("LOGOUT")
	// The slot is given back.
	mailtest.Eventually(t, 5*time.Second, "the slot to be released", func() bool {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		c.Close()
		return strings.HasPrefix(string(buf[:n]), "* OK")
	})
}

// TestLoopbackLimited: loopback clients are not exempt from limits (a
// thousand connections from one place were all accepted): with
// MaxConns 4, a loopback client (a webmail) gets half, and the others
// stay for remote users.
func TestLoopbackLimited(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{MaxConns: 4, MaxConnsPerIP: 1})
	dialRaw(t, ts.addr)
	dialRaw(t, ts.addr)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 200)
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "* BYE [UNAVAILABLE]") {
		t.Errorf("third loopback connection got %q, want BYE", buf[:n])
	}
}

func TestShutdownSaysBye(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	r.login()
	r.ok("SELECT INBOX")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- ts.srv.Shutdown(ctx) }()
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("got %q, want BYE", l)
	}
	if err := <-errc; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Errorf("still accepting after Shutdown")
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{IdleTimeout: 100 * time.Millisecond})
	r := dialRaw(t, ts.addr)
	r.login()
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("got %q, want BYE after idling", l)
	}
}

var _ = goimap.CapIMAP4rev2

// unhashable is a listener that cannot be a map key, as cmd/mailroom's
// namedListener (it holds a func).
type unhashable struct {
	net.Listener
	_ func()
}

func TestUnhashableListener(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, Options{}, unhashable{Listener: l})
	dialRaw(t, ts.addr).login()
}

// Shutdown does not wait for a failed login's delay.
func TestShutdownDuringLoginDelay(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{AuthFailureDelay: time.Minute})
	r := dialRaw(t, ts.addr)
	r.send("a LOGIN alice wrong")
	// auth_failed is logged before the delay starts.
	mailtest.Eventually(t, 10*time.Second, "the failed login to be logged", func() bool {
		return strings.Contains(ts.log.String(), "auth_failed")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
}
