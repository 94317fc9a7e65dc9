package smtp

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"mailroom/account"
	"mailroom/internal/smtpconn"
)

// TestAuthOnlyOverTLSOrLoopback covers the non-loopback cases that tests,
// which run on loopback only, cannot reach over the network.
func TestAuthOnlyOverTLSOrLoopback(t *testing.T) {
	srv := New(Options{Role: Submission, Accounts: nopAccounts{}})
	cases := []struct {
		name     string
		sess     *session
		insecure bool
		offered  bool
	}{
		{"remote, no TLS", &session{}, false, false},
		{"remote, no TLS, allow_insecure_auth", &session{}, true, true},
		{"loopback, no TLS", &session{loopback: true}, false, true},
	}
	for _, c := range cases {
		srv.opts.AllowInsecureAuth = c.insecure
		c.sess.srv = srv
		if got := len(c.sess.AuthMechanisms()) > 0; got != c.offered {
			t.Errorf("%s: AUTH offered = %v", c.name, got)
		}
		_, err := c.sess.Auth("PLAIN")
		if (err == nil) != c.offered {
			t.Errorf("%s: Auth = %v", c.name, err)
		}
	}
	mx := New(Options{Role: MX, Accounts: nopAccounts{}})
	if m := (&session{srv: mx, loopback: true}).AuthMechanisms(); m != nil {
		t.Errorf("MX offers %v", m)
	}
}

func TestMissingHeaders(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		msg              string
		wantID, wantDate bool
	}{
		{"Subject: x\r\n\r\nbody", true, true},
		{"Message-ID: <a@b>\r\nDate: x\r\n\r\n", false, false},
		{"message-id : <a@b>\r\n\r\nDate: in body\r\n", false, true},
		{"Subject: x\r\n folded\r\n Date: not a field\r\n\r\n", true, true},
		{"\r\nMessage-ID: <in body>", true, true},
		{"Date: x\n\nbare LF", true, false},
		{"", true, true},
		{"Subject: " + strings.Repeat("x", 100000) + "\r\nMessage-ID: <late@x>\r\n\r\n", true, true},
	}
	for _, c := range cases {
		br := bufio.NewReaderSize(strings.NewReader(c.msg), maxHeaderBytes)
		got, err := missingHeaders(br, "mx.test", now)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got, "Message-ID: <") != c.wantID || strings.Contains(got, "Date: Fri, 02 Jan 2026") != c.wantDate {
			t.Errorf("%.40q: added %q", c.msg, got)
		}
		restB, _ := io.ReadAll(br)
		rest := string(restB)
		if rest != c.msg {
			t.Errorf("%.40q: message consumed or changed", c.msg)
		}
	}
}

func FuzzMissingHeaders(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody"))
	f.Add([]byte("\n\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(msg)), maxHeaderBytes)
		added, err := missingHeaders(br, "mx.test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if added != "" && !strings.HasSuffix(added, "\r\n") {
			t.Fatalf("added %q", added)
		}
		restB, _ := io.ReadAll(br)
		rest := string(restB)
		if rest != string(msg) {
			t.Fatal("message changed")
		}
	})
}

type nopAccounts struct{}

func (nopAccounts) Authenticate(addr, password string) (account.Account, error) {
	return account.Account{}, account.ErrAuthFailed
}

// TestDataAfterReset: go-smtp runs a BDAT transfer in a goroutine of its
// own, so a pipelined "BDAT 0" then RSET can call Data after Reset ended
// the transaction; Data must answer, not dereference nil.
func TestDataAfterReset(t *testing.T) {
	srv := New(Options{Role: MX})
	s := &session{srv: srv}
	if err := s.Data(strings.NewReader("x")); err != errNoTransaction {
		t.Fatalf("Data with no transaction = %v", err)
	}
}

// TestHeldHeaderErrors: a header too long for the checks is the client's
// doing (552 5.3.4); a failure to read the spooled message back is ours
// and temporary (451), never a permanent refusal.
func TestHeldHeaderErrors(t *testing.T) {
	s := &session{srv: New(Options{Role: MX}), log: slog.New(slog.DiscardHandler)}
	for _, c := range []struct {
		name string
		r    io.Reader
		code int
	}{
		{"header too long", strings.NewReader("Subject: " + strings.Repeat("x", 60000) + "\r\n" + strings.Repeat("X-Many: field\r\n", maxCheckedHeader/15)), 552},
		{"spool read error", io.MultiReader(strings.NewReader("Subject: x\r\n"), iotest.ErrReader(errors.New("input/output error"))), 451},
	} {
		_, _, err := s.header(c.r)
		if r := smtpconn.Reply(err); err == nil || r.Code != c.code {
			t.Errorf("%s: %v gives %v, want %d", c.name, err, r, c.code)
		}
	}
}
