package mailtest

import (
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
)

// Received is one message a test MTA took.
type Received struct {
	From string
	To   []string
	Data string // as on the wire, CRLF line ends
}

// MTA is a remote SMTP server for tests of what mailroom sends: it takes
// every message on 127.0.0.1, refuses the recipients in Reject with 550,
// and keeps what it got.
type MTA struct {
	Addr string // 127.0.0.1:port
	Port int

	mu     sync.Mutex
	got    []Received
	arrive chan struct{}
	reject []string
}

// StartMTA starts a test MTA that refuses the recipients in reject.
func StartMTA(t testing.TB, reject ...string) *MTA {
	t.Helper()
	m := &MTA{arrive: make(chan struct{}, 100), reject: reject}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gosmtp.NewServer(mtaBackend{m})
	srv.Domain = "mta.test"
	srv.AllowInsecureAuth = true
	m.Addr = l.Addr().String()
	m.Port = l.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() {
		srv.Serve(l)
		close(done)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return m
}

// Got returns the messages received so far.
func (m *MTA) Got() []Received {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.got)
}

// Arrived is signalled once per message taken.
func (m *MTA) Arrived() <-chan struct{} { return m.arrive }

type mtaBackend struct{ m *MTA }

func (b mtaBackend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) {
	return &mtaSession{m: b.m}, nil
}

type mtaSession struct {
	m    *MTA
	from string
	to   []string
}

func (s *mtaSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *mtaSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if slices.ContainsFunc(s.m.reject, func(r string) bool { return strings.EqualFold(r, to) }) {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *mtaSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(s.to) == 0 {
		return errors.New("no recipients")
	}
	s.m.mu.Lock()
	s.m.got = append(s.m.got, Received{From: s.from, To: s.to, Data: string(b)})
	s.m.mu.Unlock()
	select {
	case s.m.arrive <- struct{}{}:
	default:
	}
	return nil
}

func (s *mtaSession) Reset()        { s.from, s.to = "", nil }
func (s *mtaSession) Logout() error { return nil }
