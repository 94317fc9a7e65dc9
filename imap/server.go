// Package imap is mailroom's IMAP4rev1/IMAP4rev2 server over a Store of
// folders. It runs its own command loop over go-imap/v2's types (the
// syntax is in imap/internal/wire; docs/design/imap.md says why), speaks
// the protocol and keeps each session's view of its selected folder; it knows nothing
// of files, Maildir or the bbolt index (maildir.Index implements Store),
// and nothing of password hashes (an Authenticator answers for accounts).
//
// Use it as net/http's server:
//
//	srv := imap.New(imap.Options{Store: index, Auth: auth, TLSConfig: tc, Logger: log})
//	go srv.Serve(plainListener)                    // STARTTLS if TLSConfig is set
//	go srv.ServeTLS(l993)                          // implicit TLS with tc
//	...
//	srv.Shutdown(ctx)                              // BYE to every client
//
// Each session's view is the *mailbox.Snapshot it last reported; the
// snapshots are shared and immutable, so an idle connection costs about
// 25 KiB. Changes reach a session after each command and, in IDLE, at
// once for changes made through this process (Folders.Watch) and within
// Options.PollInterval for changes other programs made on disk.
package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	_ "github.com/emersion/go-message/charset" // charsets for SEARCH and ENVELOPE decoding

	"mailroom/internal/authdelay"
	"mailroom/internal/conns"
	"mailroom/internal/panics"
)

// Authenticator checks a user's password and names the mail home to open
// in the Store. A wrong user or password must be reported as
// account.ErrAuthFailed (answered NO [AUTHENTICATIONFAILED]); any other
// error is a temporary failure (NO [UNAVAILABLE]).
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string) (home string, err error)
}

// AuthenticatorFunc lets a function be an Authenticator; cmd/mailroom
// adapts (*account.Store).Authenticate with it.
type AuthenticatorFunc func(ctx context.Context, username, password string) (home string, err error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, username, password string) (string, error) {
	return f(ctx, username, password)
}

// Options configure a Server. Store and Auth are required.
type Options struct {
	Store Store
	Auth  Authenticator
	// FindHome, if set, lets a login start reading the account's INBOX
	// while its password is checked (prefetch.go).
	FindHome HomeFinder
	// TLSConfig enables STARTTLS on plain listeners (Serve) and is the
	// configuration of implicit TLS (ServeTLS, port 993).
	TLSConfig *tls.Config
	// AllowInsecureAuth permits LOGIN and AUTHENTICATE PLAIN without TLS
	// from any address; without it only loopback clients may (DESIGN.md).
	AllowInsecureAuth bool
	// AppendLimit is the largest message APPEND accepts (APPENDLIMIT,
	// RFC 7889); zero means 100 MiB.
	AppendLimit uint32
	// MaxConns and MaxConnsPerIP bound concurrent connections (0: no
	// limit). A loopback client (a webmail, one client for many users)
	// may hold up to half of MaxConns, or MaxConnsPerIP if that is more.
	// Beyond them a client gets "* BYE" and is disconnected.
	MaxConns, MaxConnsPerIP int
	// IdleTimeout logs out an authenticated client that sends no command
	// for this long (IDLE included); zero means 30 minutes
	// (RFC 9051 §5.4). Before login a client has 30 s per command.
	IdleTimeout time.Duration
	// Throttle holds back addresses after failed logins; one per process,
	// shared with SMTP submission (nil: one of the server's own, with
	// AuthFailureDelay).
	Throttle *authdelay.Throttle
	// AuthFailureDelay is the wait after the first failed login from an
	// address; it doubles with each further failure, up to a minute.
	// Zero means one second; a negative value turns the throttle off
	// (for fuzzing, which fails logins by the thousand).
	AuthFailureDelay time.Duration
	// PollInterval is how often a client in IDLE looks for changes that
	// other programs made on disk; zero means one second.
	PollInterval time.Duration
	Logger       *slog.Logger
	// Panics counts the panics recovered in sessions (nil: the server's
	// own count).
	Panics *panics.Recorder

	// prefetchOneCPU (tests) reads INBOX ahead even with one CPU.
	prefetchOneCPU bool
}

// Server serves IMAP on any number of listeners.
type Server struct {
	opts     Options
	log      *slog.Logger
	throttle *authdelay.Throttle // nil: no throttle (AuthFailureDelay < 0)
	ctx      context.Context     // conns.Context, cancelled by Close: ends logins' delays and IDLE

	connID atomic.Uint64
	recent recentTracker

	// conns admits, counts and stops the connections.
	conns *conns.Set

	prefetches prefetcher
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("imap: server closed")

const defaultAppendLimit = 100 << 20

// closeWait bounds how long Close waits for sessions to finish the store
// operation they are in.
const closeWait = 10 * time.Second

// New returns a Server; call Serve for each listener.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AppendLimit == 0 {
		opts.AppendLimit = defaultAppendLimit
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = time.Second
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Second
	}
	if opts.Panics == nil {
		opts.Panics = new(panics.Recorder)
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("proto", "imap"),
		throttle: opts.Throttle,
	}
	s.prefetches.on = prefetchOn(&opts)
	if s.throttle == nil && opts.AuthFailureDelay > 0 {
		s.throttle = authdelay.New(opts.AuthFailureDelay, nil)
	}
	s.conns = conns.New(conns.Options{
		MaxConns:          opts.MaxConns,
		MaxConnsPerClient: opts.MaxConnsPerIP,
		MaxConnsLoopback:  loopbackLimit(opts.MaxConns, opts.MaxConnsPerIP),
		Refusal:           []byte("* BYE [UNAVAILABLE] Too many connections, try later\r\n"),
		Logger:            s.log,
	})
	s.ctx = s.conns.Context()
	return s
}

// loopbackLimit is how many connections a loopback client may hold: half
// of the server's, so that remote users keep the other half, but no less
// than any other client may (0: no limit, when the server has none).
func loopbackLimit(maxConns, perIP int) int {
	if maxConns <= 0 {
		return 0
	}
	return max(maxConns/2, perIP)
}

// Serve accepts connections on l until Shutdown or Close, and returns
// ErrServerClosed then.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(s.conns.Listen(l))
}

// ServeTLS serves implicit TLS (port 993) with Options.TLSConfig on the
// plain listener l. Serve must not be given a tls.NewListener: its
// connections must be admitted and counted below TLS.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		l.Close()
		return errors.New("imap: ServeTLS without Options.TLSConfig")
	}
	return s.serve(s.conns.ListenTLS(l, s.opts.TLSConfig, nil))
}

func (s *Server) serve(l net.Listener) error {
	if err := s.conns.Serve(l, s.serveConn); err != nil {
		return fmt.Errorf("imap: accept: %w", err)
	}
	return ErrServerClosed
}

// Shutdown stops accepting, lets every command running now finish, says
// BYE to each client and waits for the connections to end or ctx to
// expire, in which case it closes them as Close does. IMAP clients stay
// connected for hours, so Shutdown does not wait for them to leave.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.conns.Stop(ctx, closeWait)
	s.prefetches.wait()
	return err
}

// Close closes every listener and connection at once, then gives the
// sessions up to closeWait to leave the store, which the caller closes
// next.
func (s *Server) Close() error {
	s.conns.CloseWait(closeWait)
	s.prefetches.wait()
	return nil
}
