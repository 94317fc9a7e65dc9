// Package managesieve is a ManageSieve server (RFC 5804): mail clients
// (Thunderbird, Roundcube, K-9/FairEmail, sieve-connect) log in with the
// account's password and upload, check, list, fetch, rename, delete and
// activate the user's Sieve scripts. It speaks the protocol only: the
// scripts are kept by a Scripts (sieve/sievestore), passwords checked by
// an Authenticator; it knows nothing of files or of delivery.
package managesieve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"mailroom/internal/authdelay"
	"mailroom/internal/conns"
	"mailroom/internal/panics"
	"mailroom/sieve/sievestore"
)

// Scripts keeps each mail home's scripts. *sievestore.Store implements
// it; its errors (sievestore.ErrNoScript, *sievestore.QuotaError, a
// *sieve.Error for a script that does not compile, ...) become the
// response codes of RFC 5804 §1.3.
type Scripts interface {
	List(home string) ([]sievestore.Script, error)
	Get(home, name string) ([]byte, error)
	Put(home, name string, src []byte) error
	Check(home, name string, src []byte) error
	HaveSpace(home, name string, size int64) error
	SetActive(home, name string) error
	Delete(home, name string) error
	Rename(home, oldName, newName string) error
}

// Authenticator checks a password and returns the account's mail home;
// a wrong user or password is account.ErrAuthFailed.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string) (home string, err error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, username, password string) (string, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, username, password string) (string, error) {
	return f(ctx, username, password)
}

// Options configure a Server.
type Options struct {
	Scripts Scripts
	Auth    Authenticator
	// TLSConfig enables STARTTLS (RFC 5804 §2.2).
	TLSConfig *tls.Config
	// AllowInsecureAuth permits AUTHENTICATE without TLS from any
	// address; without it only loopback clients may (DESIGN.md).
	AllowInsecureAuth bool
	// Extensions are announced in the SIEVE capability: the
	// extensions scripts may require (sieve.Extensions()).
	Extensions []string
	// MaxRedirects is announced as MAXREDIRECTS (0: not announced).
	MaxRedirects int
	// MaxScriptSize bounds an uploaded script, in octets; a larger one
	// is refused with QUOTA/MAXSIZE. Zero means 256 KiB.
	MaxScriptSize int
	// MaxConns and MaxConnsPerIP bound concurrent connections (0: no
	// limit); beyond them a client gets BYE (TRYLATER).
	MaxConns, MaxConnsPerIP int
	// IdleTimeout logs out an authenticated client that sends nothing
	// for this long (zero: 30 minutes). Before login a client has 30 s
	// per command.
	IdleTimeout time.Duration
	// Throttle holds back addresses after failed logins; one per
	// process, shared with IMAP and submission (nil: none).
	Throttle *authdelay.Throttle
	Logger   *slog.Logger
	// Panics counts the panics recovered in sessions (nil: the server's
	// own count).
	Panics *panics.Recorder
}

// Server serves ManageSieve on any number of listeners.
type Server struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context // conns.Context, cancelled by Close
	connID atomic.Uint64
	conns  *conns.Set
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("managesieve: server closed")

const (
	defaultMaxScriptSize = 256 << 10
	// closeWait bounds how long Close waits for sessions to finish the
	// command they are in.
	closeWait = 10 * time.Second
)

// New returns a Server; call Serve for each listener.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxScriptSize <= 0 {
		opts.MaxScriptSize = defaultMaxScriptSize
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.Panics == nil {
		opts.Panics = new(panics.Recorder)
	}
	s := &Server{opts: opts, log: opts.Logger.With("proto", "managesieve")}
	s.conns = conns.New(conns.Options{
		MaxConns:          opts.MaxConns,
		MaxConnsPerClient: opts.MaxConnsPerIP,
		Refusal:           []byte("BYE (TRYLATER) \"Too many connections, try later\"\r\n"),
		Logger:            s.log,
	})
	s.ctx = s.conns.Context()
	return s
}

// Serve accepts connections on l until Shutdown or Close, and returns
// ErrServerClosed then.
func (s *Server) Serve(l net.Listener) error {
	if err := s.conns.Serve(s.conns.Listen(l), s.serveConn); err != nil {
		return fmt.Errorf("managesieve: accept: %w", err)
	}
	return ErrServerClosed
}

// Shutdown stops accepting, lets the commands running now finish, says
// BYE to each client and waits for the connections to end or ctx to
// expire, when it closes them as Close does.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.conns.Stop(ctx, closeWait)
}

// Close closes every listener and connection at once, then gives the
// sessions up to closeWait to finish the command they are in.
func (s *Server) Close() error {
	s.conns.CloseWait(closeWait)
	return nil
}
