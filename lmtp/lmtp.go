// Package lmtp is mailroom's LMTP server (RFC 2033): the way another MTA
// (Postfix, Exim) hands mail over for final delivery. It adapts
// github.com/emersion/go-smtp in LMTP mode to an mda.Deliverer and reports
// one result per recipient after DATA. It knows nothing of files.
package lmtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/smtpconn"
	"mailroom/mda"
)

// Options configure a Server.
type Options struct {
	// Hostname is announced in the greeting and in Received: headers.
	Hostname  string
	Deliverer *mda.Deliverer
	// MaxMessageBytes is announced with SIZE and checked against MAIL's
	// SIZE parameter; the Deliverer enforces it on the data itself.
	MaxMessageBytes int64
	// MaxRecipients per transaction; more get 452 4.5.3.
	MaxRecipients int
	// ReadTimeout and WriteTimeout bound each command and reply; zero
	// means the RFC 5321 §4.5.3.2 defaults (5 and 10 minutes).
	ReadTimeout, WriteTimeout time.Duration
	Logger                    *slog.Logger
}

// Server serves LMTP on any number of listeners.
type Server struct {
	opts   Options
	smtp   *gosmtp.Server
	log    *slog.Logger
	ctx    context.Context // parent of every session's context
	cancel context.CancelFunc
	connID atomic.Uint64
	conns  *smtpconn.Set
}

// New returns a Server; call Serve for each listener.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 10 * time.Minute
	}
	s := &Server{opts: opts, log: opts.Logger.With("proto", "lmtp")}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.conns = smtpconn.NewSet(smtpconn.Options{Hostname: opts.Hostname, IdleTimeout: opts.ReadTimeout, SizeLimit: opts.MaxMessageBytes})
	gs := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	gs.LMTP = true
	gs.Domain = opts.Hostname
	// No library limit: see smtpconn's fixReply. mda enforces the size.
	gs.MaxMessageBytes = 0
	gs.MaxRecipients = opts.MaxRecipients
	// The idle timeout is set per read by smtpconn, so that a long DATA
	// is bounded per read rather than as a whole.
	gs.WriteTimeout = opts.WriteTimeout
	gs.EnableSMTPUTF8 = true
	gs.ErrorLog = slog.NewLogLogger(opts.Logger.Handler(), slog.LevelError)
	s.smtp = gs
	return s
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; after Shutdown or Close it is
// gosmtp.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	return s.smtp.Serve(s.conns.Listen(l))
}

// Shutdown stops accepting connections, closes idle ones, and waits until
// ctx ends for the others to finish the delivery in progress and send its
// replies. A delivery cut short by ctx is never acknowledged.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.smtp.Shutdown(ctx) }()
	s.conns.Shutdown()
	err := <-done
	s.cancel()
	if errors.Is(err, net.ErrClosed) {
		// smtpconn closed the listeners first.
		err = nil
	}
	return err
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	s.cancel()
	return s.smtp.Close()
}

func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	remote := "unix socket"
	if addr, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		remote = "[" + addr.IP.String() + "]"
	}
	ctx, cancel := context.WithCancel(s.ctx)
	return &session{
		srv:    s,
		conn:   smtpconn.From(c.Conn()),
		ctx:    ctx,
		cancel: cancel,
		info:   mda.Info{Proto: "LMTP", Helo: c.Hostname(), RemoteAddr: remote},
		log:    s.log.With("conn", s.connID.Add(1), "remote", remote),
	}, nil
}

// session is one LMTP connection.
type session struct {
	srv    *Server
	conn   *smtpconn.Conn
	ctx    context.Context
	cancel context.CancelFunc
	info   mda.Info
	log    *slog.Logger
	txn    *mda.Txn
	rcpts  []string // as the client wrote them: StatusCollector's keys
}

var _ gosmtp.LMTPSession = (*session)(nil)

// Reset is called by the library after every DATA, once the replies are
// written, as well as on RSET.
func (s *session) Reset() {
	if s.txn != nil {
		s.txn.Abort()
	}
	s.txn, s.rcpts = nil, nil
	s.conn.End()
}

func (s *session) Logout() error {
	s.Reset()
	s.cancel()
	return nil
}

func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	// RFC 1870 §6.2: a declared size over the limit is refused at MAIL.
	if max := s.srv.opts.MaxMessageBytes; max > 0 && opts.Size > max {
		return s.reply(mda.ErrTooBig)
	}
	txn, err := s.srv.opts.Deliverer.Begin(s.ctx, from, s.info)
	if err != nil {
		return s.reply(err)
	}
	s.txn, s.rcpts = txn, nil
	return nil
}

func (s *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if err := s.txn.AddRcpt(s.ctx, to); err != nil {
		return s.reply(err)
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// Data is used only if the library does not use LMTPData; it delivers to
// all or none.
func (s *session) Data(r io.Reader) error {
	s.conn.Begin()
	return s.reply(s.txn.DeliverAll(s.ctx, r))
}

// LMTPData delivers and reports one status per RCPT, in order (RFC 2033
// §4.2), including a recipient given twice.
func (s *session) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	s.conn.Begin()
	results, err := s.txn.Deliver(s.ctx, r)
	if err != nil {
		return s.reply(err)
	}
	for i, rcpt := range s.rcpts {
		status.SetStatus(rcpt, s.reply(results[i]))
	}
	return nil
}

// reply maps an mda error to the LMTP reply, and logs internal errors with
// an id that the reply repeats. Internal error text never reaches the
// client.
func (s *session) reply(err error) error {
	if err == nil {
		return nil
	}
	r := Reply(err)
	if r.Code/100 == 4 && r.EnhancedCode != (gosmtp.EnhancedCode{4, 5, 3}) {
		id := newErrID()
		s.log.Warn("temporary failure", "err", err, "err_id", id)
		r = &gosmtp.SMTPError{Code: r.Code, EnhancedCode: r.EnhancedCode, Message: fmt.Sprintf("%s (ref %s)", r.Message, id)}
	}
	return r
}

var errSeq atomic.Uint64

func newErrID() string { return fmt.Sprintf("E%d-%d", time.Now().Unix(), errSeq.Add(1)) }

// Reply maps a delivery error to its SMTP/LMTP reply. Permanent failures
// are the sender's fault (unknown user, bad address, too big); anything else
// is temporary, because a 5xx for our own trouble would make the sender
// give up on mail we could have taken later.
func Reply(err error) *gosmtp.SMTPError {
	var se *gosmtp.SMTPError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, mda.ErrNoSuchUser):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	case errors.Is(err, mda.ErrNotLocal):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 2}, Message: "Domain not handled here"}
	case errors.Is(err, mda.ErrBadAddress):
		return &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 1, 3}, Message: "Bad address syntax"}
	case errors.Is(err, mda.ErrTooBig):
		return &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4}, Message: "Message too big"}
	case errors.Is(err, gosmtp.ErrTooLongLine):
		// RFC 5321 §4.5.3.1.6 allows 1000 octets a line; we take 2000.
		// Retrying the same message cannot help, so this is permanent.
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Line too long"}
	case errors.Is(err, mda.ErrNoRcpt):
		return &gosmtp.SMTPError{Code: 503, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	case isNoSpace(err):
		return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	case errors.Is(err, context.Canceled):
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "Shutting down, try again later"}
	default:
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	}
}
