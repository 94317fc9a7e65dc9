// Package smtpconn is what mailroom's SMTP and LMTP servers share over
// github.com/emersion/go-smtp: the library server with the settings both
// give it, its connections (internal/conns: limits, idle timeout,
// two-phase shutdown), the start of every session, the one table that maps
// delivery errors to replies, and the corrections of a few go-smtp v0.26
// replies on their way out. It knows nothing of the policy of either
// protocol.
package smtpconn

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/conns"
	"mailroom/internal/panics"
)

// Options configure a Server.
type Options struct {
	// Proto names the server in logs ("smtp", "submission", "lmtp").
	Proto string
	// LMTP runs the library in LMTP mode (RFC 2033).
	LMTP bool
	// Hostname is announced in the greeting and in the 421 to a client
	// over a connection limit.
	Hostname string
	// MaxMessageBytes is the library's own limit (0: none).
	MaxMessageBytes int64
	// AnnounceSize, if set, is announced as SIZE where the library, run
	// without a limit, would announce a bare SIZE (see fixReply).
	AnnounceSize int64
	// MaxRecipients per transaction (0: the library's default).
	MaxRecipients int
	// MaxLineLength bounds a command line with its CRLF (0: 2000); a
	// message line may be longer (see NewServer).
	MaxLineLength int
	// MaxConns and MaxConnsPerIP bound concurrent connections (421
	// beyond; 0: no limit).
	MaxConns, MaxConnsPerIP int
	// IdleTimeout bounds each read, commands and DATA alike; go-smtp
	// would otherwise bound a whole DATA by one command's timeout.
	IdleTimeout time.Duration
	// MinDataRate bounds each command and each message as a whole (see
	// conns.Options.MinDataRate; 0: each read only).
	MinDataRate int
	// WriteTimeout bounds each reply.
	WriteTimeout time.Duration
	// TLS enables STARTTLS (nil: none).
	TLS *tls.Config
	// AllowInsecureAuth is the library's: whether it lets AUTH happen
	// without TLS at all (the session still decides what it offers).
	AllowInsecureAuth bool
	Logger            *slog.Logger
	// Panics counts the panics go-smtp recovers in sessions (nil: a
	// Recorder of the server's own).
	Panics *panics.Recorder
}

// libraryPanic is how go-smtp v0.26 begins the ErrorLog message of a
// panic it recovered in a session (conn.go); TestPanicIsRecorded pins it.
const libraryPanic = "panic serving "

// Server is a go-smtp server with its connection set.
type Server struct {
	lib     *gosmtp.Server
	maxLine int
	conns   *conns.Set
	tls     *tls.Config
	log     *slog.Logger
	ctx     context.Context // parent of every session's context
	cancel  context.CancelFunc
	connID  atomic.Uint64
}

// NewServer returns a Server whose sessions come from newSession.
func NewServer(opts Options, newSession func(*gosmtp.Conn) (gosmtp.Session, error)) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Panics == nil {
		opts.Panics = new(panics.Recorder)
	}
	if opts.MaxLineLength <= 0 {
		opts.MaxLineLength = defaultMaxLine
	}
	s := &Server{tls: opts.TLS, log: opts.Logger.With("proto", opts.Proto), maxLine: opts.MaxLineLength}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	announce := opts.AnnounceSize
	s.conns = conns.New(conns.Options{
		MaxConns:          opts.MaxConns,
		MaxConnsPerClient: opts.MaxConnsPerIP,
		IdleTimeout:       opts.IdleTimeout,
		MinDataRate:       opts.MinDataRate,
		// RFC 5321 §3.1: a server may answer 421 instead of 220.
		Refusal: []byte("421 4.7.0 " + opts.Hostname + " Too many connections, try again later\r\n"),
		Rewrite: func(p []byte) []byte { return fixReply(p, announce) },
		// go-smtp answers the commands in its buffer after it closed
		// the connection, without a session (docs/upstream/go-smtp.md, 6).
		LinePerRead: true,
		Logger:      s.log,
	})
	gs := gosmtp.NewServer(gosmtp.BackendFunc(newSession))
	gs.LMTP = opts.LMTP
	gs.Domain = opts.Hostname
	gs.MaxMessageBytes = opts.MaxMessageBytes
	gs.MaxRecipients = opts.MaxRecipients
	// The library's line limit ends the session: a longer command line
	// is answered "500 Too long line" and the connection closed with the
	// rest of the line unread (the client may see a reset instead of the
	// reply), and a longer line in DATA fails the message and then every
	// later read, so the session is out of step. It has one limit for
	// both, and sits above TLS, where nothing of ours can see lines. So
	// it gets a generous one (libraryLineLimit), which only bounds the
	// memory one line may take: message lines up to that pass as they
	// are, as Postfix accepts them (it splits long lines only to store
	// them and joins them again on delivery), and a longer command line
	// is read to its end and answered 500 5.5.2 by the session
	// (CheckLine), which goes on. See docs/upstream/go-smtp.md (1).
	gs.MaxLineLength = max(opts.MaxLineLength, libraryLineLimit)
	// The idle timeout is set per read by conns, so that a long DATA is
	// bounded per read rather than as a whole.
	gs.WriteTimeout = opts.WriteTimeout
	gs.TLSConfig = opts.TLS
	gs.EnableSMTPUTF8 = true
	gs.AllowInsecureAuth = opts.AllowInsecureAuth
	gs.ErrorLog = opts.Panics.LibraryLogger(s.log, slog.LevelError, opts.Proto+" session", libraryPanic)
	s.lib = gs
	return s
}

// Serve accepts plain connections on l (STARTTLS where configured) until
// Shutdown or Close. It always returns a non-nil error; after Shutdown or
// Close it is gosmtp.ErrServerClosed or net.ErrClosed.
func (s *Server) Serve(l net.Listener) error {
	return s.lib.Serve(s.conns.Listen(l))
}

// ServeTLS accepts implicit-TLS connections on l (port 465).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.tls == nil {
		l.Close()
		return errors.New("implicit TLS listener without a certificate")
	}
	return s.lib.Serve(s.conns.ListenTLS(l, s.tls, nil))
}

// Shutdown stops accepting connections, closes idle ones, and waits until
// ctx ends for the others to finish the delivery in progress and answer.
// A delivery cut short by ctx is never acknowledged.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.lib.Shutdown(ctx) }()
	s.conns.Shutdown()
	err := <-done
	if errors.Is(err, net.ErrClosed) {
		// The listeners were closed first.
		err = nil
	}
	s.cancel()
	return err
}

// Close closes every listener and connection at once, then waits (up to
// closeWait) for deliveries cut off in their fsyncs, which are not
// cancelled, so that the caller can close the stores safely.
func (s *Server) Close() error {
	s.cancel()
	s.conns.Shutdown()
	err := s.lib.Close()
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	if s.conns.WaitWorking(ctx) != nil {
		s.log.Warn("deliveries still running after Close")
	}
	return err
}

// closeWait bounds how long Close waits for deliveries in progress.
const closeWait = 10 * time.Second

const (
	// defaultMaxLine is max_line_length's default.
	defaultMaxLine = 2000
	// libraryLineLimit is the longest line, command or message, that
	// go-smtp reads: the memory one connection's line may take.
	libraryLineLimit = 256 << 10
)

// errLineTooLong answers a command line longer than max_line_length
// (RFC 5321 §4.5.3.1.10: "500 Line too long").
var errLineTooLong = &gosmtp.SMTPError{Code: 500, EnhancedCode: gosmtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}

// CheckLine refuses a command whose line (verb, the argument the session
// sees, CRLF) is longer than max_line_length, with 500 5.5.2 rather than
// the end of the session; the library has read the line to its end, so
// the session stays in step. Sessions call it for the commands whose
// arguments they see: HELO/EHLO/LHLO, MAIL and RCPT.
func (s *Server) CheckLine(verb, arg string) error {
	if len(verb)+len(arg)+2 > s.maxLine {
		return errLineTooLong
	}
	return nil
}

// Working marks a delivery under way (see conns.Set.Working): defer
// s.Working()().
func (s *Server) Working() (done func()) { return s.conns.Working() }

// Session is what every session of the server starts with.
type Session struct {
	// Conn is the connection under the session (nil only for one that
	// conns did not admit, as in some tests).
	Conn *conns.Conn
	// Ctx is the session's context, a child of the server's: cancelled
	// by Done, Shutdown and Close.
	Ctx context.Context
	// Done ends the session's context (at Logout).
	Done context.CancelFunc
	// Remote is "[192.0.2.1]" for a TCP client, "unix socket" for a
	// unix-socket one, as Received: fields write it.
	Remote string
	// IP is the client's address (nil for a unix-socket client).
	IP net.IP
	// Log carries conn (a number unique in the server) and remote.
	Log *slog.Logger
}

// NewSession returns the start of a session on c.
func (s *Server) NewSession(c *gosmtp.Conn) Session {
	ss := Session{Conn: conns.From(c.Conn())}
	switch a := c.Conn().RemoteAddr().(type) {
	case *net.TCPAddr:
		ss.IP = a.IP
		ss.Remote = "[" + a.IP.String() + "]"
	case *net.UnixAddr:
		ss.Remote = "unix socket"
	}
	ss.Ctx, ss.Done = context.WithCancel(s.ctx)
	ss.Log = s.log.With("conn", s.connID.Add(1), "remote", ss.Remote)
	return ss
}
