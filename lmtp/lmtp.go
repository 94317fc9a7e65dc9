// Package lmtp is mailroom's LMTP server (RFC 2033): the way another MTA
// (Postfix, Exim) hands mail over for final delivery. It adapts
// github.com/emersion/go-smtp in LMTP mode to an mda.Deliverer and reports
// one result per recipient after DATA. It knows nothing of files.
package lmtp

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/conns"
	"mailroom/internal/panics"
	"mailroom/internal/smtpconn"
	"mailroom/mda"
)

// Deliverer starts the delivery transactions of the sessions
// (*mda.Deliverer).
type Deliverer interface {
	Begin(ctx context.Context, from string, info mda.Info) (*mda.Txn, error)
}

var _ Deliverer = (*mda.Deliverer)(nil)

// Options configure a Server.
type Options struct {
	// Hostname is announced in the greeting and in Received: headers.
	Hostname  string
	Deliverer Deliverer
	// MaxMessageBytes is announced with SIZE and checked against MAIL's
	// SIZE parameter; the Deliverer enforces it on the data itself.
	MaxMessageBytes int64
	// MaxRecipients per transaction; more get 452 4.5.3.
	MaxRecipients int
	// MaxLineLength bounds a line with its CRLF; zero means go-smtp's
	// 2000.
	MaxLineLength int
	// ReadTimeout and WriteTimeout bound each command and reply; zero
	// means the RFC 5321 §4.5.3.2 defaults (5 and 10 minutes).
	ReadTimeout, WriteTimeout time.Duration
	// MinDataRate bounds each command and each message as a whole, as in
	// smtp.Options (0: each read only).
	MinDataRate int
	Logger      *slog.Logger
	// Panics counts the panics recovered in sessions (nil: the server's
	// own count).
	Panics *panics.Recorder
}

// Server serves LMTP on any number of listeners: Serve, then Shutdown
// (a delivery cut short by its ctx is never acknowledged) or Close.
type Server struct {
	*smtpconn.Server
	opts Options
}

// New returns a Server; call Serve for each listener.
func New(opts Options) *Server {
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 10 * time.Minute
	}
	s := &Server{opts: opts}
	s.Server = smtpconn.NewServer(smtpconn.Options{
		Proto:    "lmtp",
		LMTP:     true,
		Hostname: opts.Hostname,
		// No library limit: see smtpconn's fixReply. mda enforces the
		// size.
		AnnounceSize:  opts.MaxMessageBytes,
		MaxRecipients: opts.MaxRecipients,
		MaxLineLength: opts.MaxLineLength,
		IdleTimeout:   opts.ReadTimeout,
		MinDataRate:   opts.MinDataRate,
		WriteTimeout:  opts.WriteTimeout,
		Logger:        opts.Logger,
		Panics:        opts.Panics,
	}, s.newSession)
	return s
}

func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	if err := s.CheckLine("LHLO ", c.Hostname()); err != nil {
		return nil, err
	}
	base := s.NewSession(c)
	return &session{
		srv:    s,
		conn:   base.Conn,
		ctx:    base.Ctx,
		cancel: base.Done,
		info:   mda.Info{Proto: "LMTP", Helo: c.Hostname(), RemoteAddr: base.Remote},
		log:    base.Log,
	}, nil
}

// session is one LMTP connection.
type session struct {
	srv    *Server
	conn   *conns.Conn
	ctx    context.Context
	cancel context.CancelFunc
	info   mda.Info
	log    *slog.Logger
	// mu guards txn and rcpts: with BDAT, go-smtp runs LMTPData in a
	// goroutine of its own while RSET may call Reset.
	mu    sync.Mutex
	txn   *mda.Txn
	from  string
	rcpts []string // as the client wrote them: StatusCollector's keys
}

// current returns the transaction, its recipients and its sender.
func (s *session) current() (*mda.Txn, []string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txn, s.rcpts, s.from
}

var _ gosmtp.LMTPSession = (*session)(nil)

// Reset is called by the library after every DATA, once the replies are
// written, as well as on RSET.
func (s *session) Reset() {
	s.mu.Lock()
	if s.txn != nil {
		s.txn.Abort()
	}
	s.txn, s.rcpts = nil, nil
	s.mu.Unlock()
	s.conn.End()
}

func (s *session) Logout() error {
	s.Reset()
	s.cancel()
	return nil
}

func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if err := s.srv.CheckLine("MAIL FROM:<>", from); err != nil {
		return err
	}
	log := s.log.With("from", from)
	// RFC 1870 §6.2: a declared size over the limit is refused at MAIL.
	if max := s.srv.opts.MaxMessageBytes; max > 0 && opts.Size > max {
		return smtpconn.Rejected(log, smtpconn.Answer(log, s.conn, mda.ErrTooBig))
	}
	txn, err := s.srv.opts.Deliverer.Begin(s.ctx, from, s.info)
	if err != nil {
		return smtpconn.Rejected(log, smtpconn.Answer(log, s.conn, err))
	}
	s.mu.Lock()
	s.txn, s.rcpts, s.from = txn, nil, from
	s.mu.Unlock()
	// From MAIL on, a shutdown lets the transaction finish (within its
	// grace period): go-smtp sends 354 before it calls Data, so marking
	// only Data would leave a window where the client is sending a
	// message on a connection we think idle.
	s.conn.Begin()
	return nil
}

func (s *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if err := s.srv.CheckLine("RCPT TO:<>", to); err != nil {
		return err
	}
	txn, _, from := s.current()
	if err := txn.AddRcpt(s.ctx, to); err != nil {
		log := s.log.With("from", from, "rcpt", to)
		return smtpconn.Rejected(log, smtpconn.Answer(log, s.conn, err))
	}
	s.mu.Lock()
	s.rcpts = append(s.rcpts, to)
	s.mu.Unlock()
	return nil
}

// Data is used only if the library does not use LMTPData; it delivers to
// all or none.
func (s *session) Data(r io.Reader) error {
	txn, rcpts, from := s.current()
	if txn == nil {
		return errNoTransaction
	}
	defer s.srv.Working()()
	cr := &smtpconn.Counter{R: r}
	err := txn.DeliverAll(s.ctx, cr)
	if err == nil {
		smtpconn.Received(s.log, txn.ID(), from, len(rcpts), cr.N)
	}
	return s.reply(err)
}

// errNoTransaction answers a message whose transaction a RSET ended
// first: go-smtp runs a BDAT transfer in a goroutine of its own, so a
// pipelined "BDAT 0" then RSET can reach Data after Reset.
var errNoTransaction = &gosmtp.SMTPError{Code: 503, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1}, Message: "No transaction in progress"}

// LMTPData delivers and reports one status per RCPT, in order
// (RFC 2033 §4.2), including a recipient given twice.
func (s *session) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	txn, rcpts, from := s.current()
	if txn == nil {
		return errNoTransaction
	}
	defer s.srv.Working()()
	cr := &smtpconn.Counter{R: r}
	results, err := txn.Deliver(s.ctx, cr)
	if err != nil {
		return s.reply(err)
	}
	smtpconn.Received(s.log, txn.ID(), from, len(rcpts), cr.N)
	for i, rcpt := range rcpts {
		status.SetStatus(rcpt, s.reply(results[i]))
	}
	return nil
}

// reply maps an mda error to the LMTP reply (smtpconn.Answer).
func (s *session) reply(err error) error { return smtpconn.Answer(s.log, s.conn, err) }
