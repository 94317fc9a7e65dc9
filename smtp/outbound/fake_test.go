package outbound

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailroom/queue"
)

// received is one message a fake MTA accepted.
type received struct {
	From string
	To   []string
	Data string
	TLS  bool
	Helo string
	User string
	Opts gosmtp.MailOptions
}

// fakeMTA is a go-smtp server on 127.0.0.N standing in for a remote MX.
type fakeMTA struct {
	Addr string
	IP   string
	Port int
	srv  *gosmtp.Server

	mu   sync.Mutex
	msgs []received
	// rcpt, if set, answers RCPT TO (nil accepts).
	rcpt func(to string) error
	// data, if set, answers the end of DATA (nil accepts).
	data func() error
	// users are accepted by AUTH PLAIN.
	users map[string]string
}

func (m *fakeMTA) got() []received {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.msgs)
}

type fakeSession struct {
	m    *fakeMTA
	c    *gosmtp.Conn
	cur  received
	user string
}

func (s *fakeSession) Reset()        { s.cur = received{} }
func (s *fakeSession) Logout() error { return nil }
func (s *fakeSession) Mail(from string, opts *gosmtp.MailOptions) error {
	s.cur = received{From: from}
	if opts != nil {
		s.cur.Opts = *opts
	}
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.m.rcpt != nil {
		if err := s.m.rcpt(to); err != nil {
			return err
		}
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.m.data != nil {
		if err := s.m.data(); err != nil {
			return err
		}
	}
	_, s.cur.TLS = s.c.TLSConnectionState()
	s.cur.Helo = s.c.Hostname()
	s.cur.Data = string(b)
	s.cur.User = s.user
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, s.cur)
	s.m.mu.Unlock()
	return nil
}

func (s *fakeSession) AuthMechanisms() []string {
	if s.m.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if s.m.users[username] != password || password == "" {
			return gosmtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

// startMTA starts a fake MTA on ip:port (port 0: any).
func startMTA(t *testing.T, ip string, port int, adjust func(*fakeMTA)) *fakeMTA {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMTA{Addr: l.Addr().String(), IP: ip, Port: l.Addr().(*net.TCPAddr).Port}
	m.srv = gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		return &fakeSession{m: m, c: c}, nil
	}))
	m.srv.Domain = "fake.test"
	m.srv.AllowInsecureAuth = true
	m.srv.EnableSMTPUTF8 = true
	if adjust != nil {
		adjust(m)
	}
	go m.srv.Serve(l)
	t.Cleanup(func() { m.srv.Close() })
	return m
}

// rawServer serves each connection with handle, for peers that misbehave
// in ways go-smtp's server will not.
func rawServer(t *testing.T, ip string, port int, handle func(c net.Conn)) (addr string) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

// fakeDNS is a Resolver from maps; a name it does not know does not exist.
type fakeDNS struct {
	mx    map[string][]*net.MX
	ips   map[string][]string
	fails map[string]error // name -> error for any lookup
}

func (f *fakeDNS) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	name = strings.TrimSuffix(name, ".")
	if err := f.fails[name]; err != nil {
		return nil, err
	}
	if mx, ok := f.mx[name]; ok {
		return slices.Clone(mx), nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (f *fakeDNS) LookupIPAddr(ctx context.Context, name string) ([]net.IPAddr, error) {
	name = strings.TrimSuffix(name, ".")
	if err := f.fails[name]; err != nil {
		return nil, err
	}
	var out []net.IPAddr
	for _, s := range f.ips[name] {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return out, nil
}

// testCert is a self-signed certificate for mx.test and 127.0.0.1.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"mx.test", "relay.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// msg builds a queue.Message with CRLF line ends.
func msg(from string, to []string, body string) *queue.Message {
	body = strings.ReplaceAll(body, "\n", "\r\n")
	r := strings.NewReader(body)
	eight := strings.IndexFunc(body, func(r rune) bool { return r >= 0x80 }) >= 0
	return &queue.Message{ID: "TESTID00", From: from, To: to, Size: int64(len(body)), EightBit: eight, Body: r}
}

const body = "From: a@example.org\nTo: b@example.net\nSubject: test\n\nhello\n.leading dot\n"

func asQueueError(t *testing.T, err error) *queue.Error {
	t.Helper()
	var qe *queue.Error
	if !errors.As(err, &qe) {
		t.Fatalf("error %v (%T) is not a *queue.Error", err, err)
	}
	return qe
}
