package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/account"
	"mailroom/internal/address"
	"mailroom/internal/conns"
	"mailroom/internal/smtpconn"
	"mailroom/mda"
	"mailroom/mda/alias"
	"mailroom/milter"
)

// session is one SMTP connection.
type session struct {
	srv      *Server
	conn     *conns.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	helo     string
	addr     string // "[192.0.2.1]"
	ip       net.IP // the client's address, nil for a pipe
	client   string // conns.ClientKey: what AUTH failures are counted by
	loopback bool
	tls      *tls.ConnectionState
	log      *slog.Logger

	port     int    // the client's port, 0 for a pipe
	authMech string // the SASL mechanism of the last AUTH
	// clientName and clientPTR are the client's verified host name and
	// its PTR name, looked up once, for the milters (names).
	clientName, clientPTR string
	namesDone             bool

	user      *account.Account // after AUTH
	authFails int              // failed or refused AUTH attempts

	// mu guards env: with BDAT, go-smtp runs Data in a goroutine of its
	// own while RSET may call Reset.
	mu  sync.Mutex
	env *envelope // the transaction since MAIL; nil outside one
}

// envelope is one transaction.
type envelope struct {
	txn    *mda.Txn
	from   string
	local  []string // recipients mda accepted
	remote []string // recipients for the queue (submission only)
	// milter is the milters' part of the transaction, if any.
	milter *milter.Txn
	// rebuild is set when a recipient mda took was refused later (by a
	// milter): the mda transaction is made anew before delivery.
	rebuild bool
	// quarantine, if set, sends the mailbox copies to Junk (DMARC
	// policy, a milter).
	quarantine string
	// queueID is the outbound queue's id of a submitted message that
	// went there (else the mda transaction's id names it).
	queueID string
}

// applyQuarantine tells the mda transaction, once it is final.
func (e *envelope) applyQuarantine() {
	if e.quarantine != "" {
		e.txn.Quarantine(e.quarantine)
	}
}

func (s *session) current() *envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.env
}

var (
	_ gosmtp.Session     = (*session)(nil)
	_ gosmtp.AuthSession = (*session)(nil)
)

var errBadHelo = &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 5, 2}, Message: "Invalid HELO/EHLO argument"}

// newSession is called by go-smtp at HELO/EHLO, and again after STARTTLS.
func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	if err := s.CheckLine("EHLO ", c.Hostname()); err != nil {
		return nil, err
	}
	if strings.ContainsFunc(c.Hostname(), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, errBadHelo
	}
	base := s.NewSession(c)
	sess := &session{srv: s, conn: base.Conn, ctx: base.Ctx, cancel: base.Done, helo: c.Hostname(), addr: base.Remote}
	if base.IP != nil {
		sess.ip = base.IP
		sess.client = conns.ClientKey(base.IP)
		sess.loopback = base.IP.IsLoopback()
	}
	if a, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		sess.port = a.Port
	}
	if st, ok := c.TLSConnectionState(); ok {
		sess.tls = &st
	}
	sess.log = base.Log.With("helo", sess.helo, "tls", sess.tls != nil)
	return sess, nil
}

// info describes the session for Received: (RFC 3848 protocol names).
func (s *session) info() mda.Info {
	proto := "ESMTP"
	if s.tls != nil {
		proto += "S"
	}
	if s.user != nil {
		proto += "A"
	}
	info := mda.Info{Proto: proto, Helo: s.helo, RemoteAddr: s.addr}
	if s.tls != nil {
		info.TLS = fmt.Sprintf("using %s with cipher %s", tls.VersionName(s.tls.Version), tls.CipherSuiteName(s.tls.CipherSuite))
	}
	return info
}

// Reset is called by the library on RSET, after every DATA (once the reply
// is written) and at the end.
func (s *session) Reset() {
	s.mu.Lock()
	if s.env != nil {
		s.env.txn.Abort()
		if s.env.milter != nil {
			s.env.milter.Close()
		}
	}
	s.env = nil
	s.mu.Unlock()
	s.conn.End()
}

func (s *session) Logout() error {
	s.Reset()
	s.cancel()
	return nil
}

var (
	errAuthRequired  = &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errNotOwner      = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Sender address not owned by the authenticated user"}
	errNoTransaction = &gosmtp.SMTPError{Code: 503, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1}, Message: "No transaction in progress"}
	errRelayDenied   = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
)

func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if err := s.srv.CheckLine("MAIL FROM:<>", from); err != nil {
		return err
	}
	log := s.log.With("from", from)
	if s.srv.opts.Role == Submission && s.user == nil {
		return smtpconn.Rejected(log, errAuthRequired)
	}
	// RFC 1870 §6.2: a declared size over the limit is refused at MAIL.
	if max := s.srv.opts.MaxMessageBytes; max > 0 && opts.Size > max {
		return smtpconn.Rejected(log, smtpconn.Answer(log, s.conn, mda.ErrTooBig))
	}
	if s.srv.opts.Role == Submission && !s.owns(from) {
		s.log.Info("sender refused", "event", "rejected", "user", s.user.Address.String(), "from", from)
		return errNotOwner
	}
	info := s.info()
	info.Internal = s.holds()
	txn, err := s.srv.opts.Deliverer.Begin(s.ctx, from, info)
	if err != nil {
		return smtpconn.Rejected(log, smtpconn.Answer(log, s.conn, err))
	}
	mt, err := s.beginMilters(txn, from)
	if err != nil {
		txn.Abort()
		return err
	}
	s.mu.Lock()
	s.env = &envelope{txn: txn, from: from, milter: mt}
	s.mu.Unlock()
	// From MAIL on, a shutdown lets the transaction finish (see lmtp).
	s.conn.Begin()
	return nil
}

// owns reports whether the authenticated user may use from as envelope
// sender: its own address, that address with a recipient_delimiter
// extension, or an address of a local domain whose aliases deliver to the
// user's mailbox (sales@ for a member of sales). A catch-all does not
// count (it would make the user anybody@ the domain who has no account),
// nor does another account's .forward that names the user (that is
// where the other reads mail, not leave to send as them).
func (s *session) owns(from string) bool {
	a, err := address.Parse(from)
	if err != nil || s.user == nil {
		return false
	}
	own := s.user.Address
	base, _ := address.StripExtension(a.Local, s.srv.opts.Delimiter)
	if a.Domain == own.Domain && (strings.EqualFold(a.Local, own.Local) || strings.EqualFold(base, own.Local)) {
		return true
	}
	rc, err := s.srv.opts.Deliverer.Resolve(s.ctx, from)
	return err == nil && s.reaches(rc.Route)
}

// reaches reports whether the expansion n delivers to the user's mailbox
// through the administrator's aliases or the user's own .forward.
func (s *session) reaches(n *alias.Node) bool {
	if n == nil {
		return false
	}
	switch n.Via {
	case alias.ViaCatchAll:
		return false
	case alias.ViaForward:
		if !s.isOwn(n.Address) {
			return false
		}
	case alias.ViaDuplicate:
		// Expanded elsewhere in the tree (perhaps below a branch
		// skipped here): the user's own address named by a rule
		// counts.
		return s.isOwn(n.Address)
	}
	if l := n.Leaf; l != nil && l.Kind == alias.Mailbox && l.Err == nil && l.Home == s.user.Home() {
		return true
	}
	return slices.ContainsFunc(n.Children, s.reaches)
}

// isOwn reports whether addr is the user's address, with or without an
// extension.
func (s *session) isOwn(addr string) bool {
	a, err := address.Parse(addr)
	if err != nil {
		return false
	}
	own := s.user.Address
	base, _ := address.StripExtension(a.Local, s.srv.opts.Delimiter)
	return a.Domain == own.Domain && strings.EqualFold(base, own.Local)
}

func (s *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if err := s.srv.CheckLine("RCPT TO:<>", to); err != nil {
		return err
	}
	env := s.current()
	err := env.txn.AddRcpt(s.ctx, to)
	switch {
	case err == nil:
		env.local = append(env.local, to)
		return s.milterRcpt(env, to)
	case errors.Is(err, mda.ErrNotLocal) && s.srv.opts.Role == Submission:
		// An authenticated user may send anywhere: the queue takes it.
		env.remote = append(env.remote, to)
		return s.milterRcpt(env, to)
	case errors.Is(err, mda.ErrNotLocal):
		// Never an open relay, whatever HELO or MAIL FROM said.
		s.log.Info("relay denied", "event", "rejected", "from", env.from, "rcpt", to)
		return errRelayDenied
	}
	log := s.log.With("from", env.from, "rcpt", to)
	return smtpconn.Rejected(log, smtpconn.Answer(log, s.conn, err))
}

// Data delivers to every recipient or to none: SMTP has one reply for the
// whole transaction, so a partial success would make the sender's retry
// duplicate what already landed.
func (s *session) Data(r io.Reader) error {
	env := s.current()
	if env == nil {
		// A RSET ended the transaction first: go-smtp runs a BDAT
		// transfer in a goroutine of its own, so a pipelined "BDAT 0"
		// then RSET can reach Data after Reset.
		return errNoTransaction
	}
	defer s.srv.Working()()
	cr := &smtpconn.Counter{R: r}
	var err error
	if s.srv.opts.Role == MX {
		err = s.receive(env, cr)
	} else {
		err = s.submit(env, cr)
	}
	if err == nil {
		id := env.queueID
		if id == "" {
			id = env.txn.ID()
		}
		smtpconn.Received(s.log, id, env.from, len(env.local)+len(env.remote), cr.N)
	}
	return err
}

// submit completes a submitted message (Message-ID, Date) and hands it to
// mda when every recipient is local, or to the queue, which also delivers
// the local ones, so that one durable write covers the whole reply.
func (s *session) submit(env *envelope, r io.Reader) error {
	br := bufio.NewReaderSize(r, maxHeaderBytes)
	added, err := missingHeaders(br, s.srv.opts.Hostname, s.srv.opts.Now())
	if err != nil {
		return s.reply(err)
	}
	var msg io.Reader = io.MultiReader(strings.NewReader(added), br)
	a := s.srv.opts.Auth
	if a.Signer != nil || env.milter != nil || env.rebuild || a.AuthServID != "" {
		m, err := s.hold(msg)
		if err != nil {
			return s.reply(err)
		}
		defer m.close()
		if err := s.wellFormed(env, m); err != nil {
			return err
		}
		s.stripForged(env, m)
		if err := s.filter(env, m); err != nil {
			return s.finish(err)
		}
		// Every submitted message is signed, local recipients' copies
		// too: one of them may forward it, and the signature must be
		// made here, where the author is known, not by the forwarder.
		// After the milters, so that it covers what they changed;
		// only a From: that the user owns (authorOwned).
		sig := ""
		if s.srv.opts.Auth.Signer != nil {
			if err := s.authorOwned(env, m.h); err != nil {
				return err
			}
			if sig, err = s.signature(m); err != nil {
				return s.reply(err)
			}
		}
		msg = io.MultiReader(strings.NewReader(sig), m.reader())
	}
	env.applyQuarantine()
	if len(env.remote) == 0 {
		return s.reply(env.txn.DeliverAll(s.ctx, msg))
	}
	if s.srv.opts.Queue == nil {
		return s.reply(errNoQueue)
	}
	rcpts := append(append([]string(nil), env.local...), env.remote...)
	rcvd := mda.ReceivedHeader(s.info(), s.srv.opts.Hostname, env.txn.ID(), oneOf(rcpts), s.srv.opts.Now())
	id, err := s.srv.opts.Queue.Enqueue(s.ctx, env.from, rcpts, io.MultiReader(strings.NewReader(crlf(rcvd)), msg))
	if err != nil {
		return s.reply(err)
	}
	// The queue logs the message as queued; Data logs it as received.
	env.queueID = id
	return nil
}

var errNoQueue = errors.New("no outbound queue configured")

func oneOf(rcpts []string) string {
	if len(rcpts) == 1 {
		return rcpts[0]
	}
	return ""
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// reply maps an error to the SMTP reply (smtpconn.Answer).
func (s *session) reply(err error) error { return smtpconn.Answer(s.log, s.conn, err) }
