package imap

import (
	"context"
	"errors"
	"log/slog"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/account"
	"mailroom/internal/authdelay"
	"mailroom/internal/conns"
	"mailroom/mailbox"
)

// session is what one connection knows of its account and its selected
// folder. The connection's loop calls its methods one at a time (Idle
// runs in a goroutine of its own while the loop waits for DONE).
type session struct {
	srv  *Server
	conn *conn
	cc   *conns.Conn // under conn: busy marks, the client's key
	log  *slog.Logger
	key  string // client address for the login delay
	// flagBuf is flagsOf's scratch list.
	flagBuf []goimap.Flag
	ctx     context.Context
	cancel  context.CancelFunc

	folders   Folders // nil until login
	home      string  // the account's mail home, once logged in
	authFails int     // failed or refused logins

	// The selected folder: its name, and view, the snapshot last reported
	// to the client, which gives sequence numbers their meaning. Views are
	// shared between sessions and never modified.
	name     string
	readOnly bool
	view     *mailbox.Snapshot
	// reported holds the ModSeq of flag changes this session has already
	// told the client (STORE, FETCH setting \Seen), so the next poll does
	// not repeat them. Reset whenever the view is replaced.
	reported map[uint32]uint64
	// keywords announced in the last FLAGS response.
	keywords []string
	// searchRes is the saved SEARCH result (RFC 5182 "$"), as UIDs.
	searchRes []uint32
	// recent is which messages are \Recent for this session (recent.go).
	recent recentSet
}

func (s *Server) newSession(c *conn) *session {
	cc := conns.From(c.nc)
	ss := &session{
		srv:  s,
		conn: c,
		cc:   cc,
		key:  cc.Client(),
		log:  s.log.With("conn", s.connID.Add(1), "remote", c.nc.RemoteAddr().String()),
	}
	ss.ctx, ss.cancel = context.WithCancel(s.ctx)
	ss.log.Debug("connected")
	return ss
}

// start says whether the session may begin (the server is not shutting
// down), and arranges that a shutdown says BYE when the connection is
// idle: at once, or after the command that runs (conn.next marks
// commands with cc.Begin and cc.End).
func (s *session) start() bool {
	select {
	case <-s.srv.conns.ShuttingDown():
		return false
	default:
	}
	s.cc.OnShutdown(func() {
		s.cancel() // a login waiting out its failure delay, IDLE
		s.conn.bye("Server shutting down")
	})
	return true
}

func (s *session) bye(text string) { s.conn.bye(text) }

// recordPanic records a panic recovered in this session (message
// parsing), with its stack; it must be called from the deferred function
// that recovered.
func (s *session) recordPanic(where string, v any) {
	s.srv.opts.Panics.Record(s.log, "imap "+where, v)
}

// Close releases the session when its connection ends.
func (s *session) Close() error {
	s.cancel()
	var err error
	if s.folders != nil {
		s.unselect()
		err = s.folders.Close()
	}
	s.log.Debug("disconnected")
	return err
}

// errThrottled answers a login from an address that must still wait
// after its failures (RFC 5530 UNAVAILABLE: a temporary failure).
var errThrottled = no(goimap.ResponseCodeUnavailable, "Too many failed logins from your address, try again later")

// Login checks the password with the Authenticator and opens the mail
// home; the caller has refused it where plaintext passwords are not
// allowed (LOGINDISABLED). An address the shared throttle holds back
// after its failures is refused at once without a look at the password,
// so a right one is answered as a wrong one; after a few failed attempts
// the connection is closed. The password is never logged. While the
// password is checked, the account's INBOX is read ahead (prefetch.go).
func (s *session) Login(username, password string) error {
	if wait, ok := s.srv.throttle.Allow(s.key, username); !ok {
		s.log.Warn("authentication refused: too many failures from this address", "event", "auth_throttled", "user", truncate(username, 200), "wait", wait.Round(time.Millisecond))
		s.attemptFailed()
		return errThrottled
	}
	s.srv.prefetch(username)
	home, err := s.srv.opts.Auth.Authenticate(s.ctx, username, password)
	if errors.Is(err, account.ErrAuthFailed) {
		wait := s.srv.throttle.Fail(s.key, username)
		s.log.Warn("authentication failed", "event", "auth_failed", "user", truncate(username, 200), "wait", wait)
		s.attemptFailed()
		return errAuthFailed
	}
	if err != nil {
		return s.fail("authenticate", err)
	}
	s.srv.prefetches.awaitPrefetch(s.ctx, home)
	f, err := s.srv.opts.Store.Open(s.ctx, home)
	if err != nil {
		return s.fail("open mail home", err)
	}
	s.folders, s.home = f, home
	s.log = s.log.With("user", username)
	s.log.Info("authenticated", "event", "auth")
	return nil
}

// attemptFailed counts a failed or refused login on the connection and
// closes it after the reply to the last one allowed (as Dovecot does).
func (s *session) attemptFailed() {
	s.authFails++
	if s.authFails >= authdelay.MaxPerConn {
		s.cc.CloseAfterWrite()
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
