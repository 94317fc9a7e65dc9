// Package smtp is mailroom's SMTP server, in two roles: the domain's MX
// (port 25: mail for the local domains only, from anyone) and submission
// (587 with STARTTLS, 465 with implicit TLS: authenticated users may send
// anywhere). It adapts github.com/emersion/go-smtp to mda (local
// recipients) and to an outbound queue (remote recipients), and holds the
// policy: no open relay, AUTH only over TLS or loopback, sender ownership,
// limits. It knows nothing of files.
package smtp

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"time"

	"mailroom/account"
	"mailroom/internal/authdelay"
	"mailroom/internal/panics"
	"mailroom/internal/smtpconn"
	"mailroom/mda"
)

// Role is what a listener is for.
type Role int

const (
	// MX receives mail for the local domains from anyone, without AUTH.
	MX Role = iota
	// Submission receives mail from authenticated users for anywhere.
	Submission
)

func (r Role) String() string {
	if r == Submission {
		return "submission"
	}
	return "smtp"
}

// Accounts is what the server needs of the account store.
type Accounts interface {
	Authenticate(addr, password string) (account.Account, error)
}

// Queue takes mail for remote recipients. Enqueue returns once the message
// is durable: only then does the client get its 250.
type Queue interface {
	Enqueue(ctx context.Context, from string, to []string, r io.Reader) (id string, err error)
}

// Deliverer is what the server needs of mda (*mda.Deliverer): the
// delivery transactions, and how an address resolves, for the sender
// ownership check of submission.
type Deliverer interface {
	Begin(ctx context.Context, from string, info mda.Info) (*mda.Txn, error)
	Resolve(ctx context.Context, addr string) (mda.Recipient, error)
}

var _ Deliverer = (*mda.Deliverer)(nil)

// Options configure a Server.
type Options struct {
	Role      Role
	Hostname  string
	Deliverer Deliverer
	Accounts  Accounts // Submission only
	// Queue takes remote recipients of submitted mail. Without one,
	// submission to remote recipients is refused with 451 (try later).
	Queue Queue
	// Delimiter is recipient_delimiter, for the sender ownership check.
	Delimiter string
	// TLS enables STARTTLS; nil disables it (and with it AUTH, except on
	// loopback or with AllowInsecureAuth).
	TLS *tls.Config
	// AllowInsecureAuth permits AUTH without TLS from anywhere.
	AllowInsecureAuth bool

	MaxMessageBytes int64
	MaxRecipients   int
	// MaxLineLength bounds a line with its CRLF; zero means go-smtp's
	// 2000.
	MaxLineLength int
	// MaxConns and MaxConnsPerIP bound concurrent connections (421 beyond).
	MaxConns, MaxConnsPerIP int
	// IdleTimeout bounds each read, commands and DATA alike;
	// RFC 5321 §4.5.3.2 suggests 5 minutes.
	IdleTimeout time.Duration
	// MinDataRate (bytes per second) bounds each command and each
	// message as a whole: it must arrive within IdleTimeout plus a
	// second per MinDataRate bytes (Postfix's smtpd_min_data_rate), so
	// that a client trickling bytes cannot hold a connection. 0: each
	// read only.
	MinDataRate int
	// Throttle holds back addresses after failed logins; one per process,
	// shared with IMAP (nil: one of the server's own, with
	// AuthFailureDelay).
	Throttle *authdelay.Throttle
	// AuthFailureDelay is the wait after the first failed AUTH from an
	// address; it doubles with each further failure, up to a minute.
	// Zero means one second; a negative value turns the throttle off
	// (for tests and fuzzing, which fail logins by the thousand).
	AuthFailureDelay time.Duration
	Logger           *slog.Logger
	// Panics counts the panics recovered in sessions (nil: the server's
	// own count).
	Panics *panics.Recorder
	// Auth is DKIM signing, checks and milters (mailauth.go).
	Auth MailAuth
	// Now is time.Now unless a test fixes the clock.
	Now func() time.Time
}

// Server serves one role on any number of listeners: Serve (STARTTLS
// where configured) and ServeTLS (implicit TLS), then Shutdown or Close.
type Server struct {
	*smtpconn.Server
	opts     Options
	throttle *authdelay.Throttle
}

// New returns a Server; call Serve (or ServeTLS) for each listener.
func New(opts Options) *Server {
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, throttle: opts.Throttle}
	if s.throttle == nil && opts.AuthFailureDelay > 0 {
		s.throttle = authdelay.New(opts.AuthFailureDelay, opts.Now)
	}
	so := smtpconn.Options{
		Proto:         opts.Role.String(),
		Hostname:      opts.Hostname,
		MaxRecipients: opts.MaxRecipients,
		MaxLineLength: opts.MaxLineLength,
		MaxConns:      opts.MaxConns,
		MaxConnsPerIP: opts.MaxConnsPerIP,
		IdleTimeout:   opts.IdleTimeout,
		MinDataRate:   opts.MinDataRate,
		WriteTimeout:  opts.IdleTimeout,
		TLS:           opts.TLS,
		// Whether plaintext AUTH is allowed depends on the connection
		// (loopback is fine), so the library allows it and the session
		// decides which mechanisms to offer (auth.go).
		AllowInsecureAuth: true,
		Logger:            opts.Logger,
		Panics:            opts.Panics,
	}
	// go-smtp v0.26 refuses a message of exactly MaxMessageBytes (its data
	// reader stops at the limit before it sees the final dot). Giving it
	// one byte more makes it accept exactly our limit; mda refuses
	// anything larger, and Mail refuses a larger declared SIZE. The
	// announced SIZE is then one more than what is accepted: a one-byte
	// overstatement that TLS stops us from rewriting (see smtpconn).
	if opts.MaxMessageBytes > 0 {
		so.MaxMessageBytes = opts.MaxMessageBytes + 1
	}
	s.Server = smtpconn.NewServer(so, s.newSession)
	return s
}
