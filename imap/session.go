package imap

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailroom/account"
	"mailroom/internal/authdelay"
	"mailroom/internal/conns"
	"mailroom/mailbox"
)

// session is one connection. The library calls its methods from the
// connection's goroutine, one at a time (Idle from a helper goroutine while
// the connection waits for DONE); mu guards only what Shutdown and the
// idle timer read from other goroutines.
type session struct {
	srv    *Server
	conn   *imapserver.Conn
	cc     *conns.Conn // under conn: busy marks, the client's key
	log    *slog.Logger
	key    string // client address for the login delay
	ctx    context.Context
	cancel context.CancelFunc

	folders   Folders // nil until login
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

	mu        sync.Mutex
	inCommand bool
	idle      *time.Timer
	shutOnce  sync.Once
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	nc := c.NetConn()
	cc := conns.From(nc)
	ss := &session{
		srv:  s,
		conn: c,
		cc:   cc,
		key:  cc.Client(),
		log:  s.log.With("conn", s.connID.Add(1), "remote", nc.RemoteAddr().String()),
	}
	ss.ctx, ss.cancel = context.WithCancel(s.ctx)
	select {
	case <-s.conns.ShuttingDown():
		ss.cancel()
		return nil, nil, &goimap.Error{Type: goimap.StatusResponseTypeBye, Text: "Server shutting down"}
	default:
	}
	// A shutdown says BYE at once if no command is running, or after the
	// one that is (see enter).
	cc.OnShutdown(ss.shutdown)
	ss.log.Debug("connected")
	return ss, nil, nil
}

// enter marks the session busy for the duration of a command and restarts
// the idle timer: defer s.enter()().
func (s *session) enter() func() {
	s.mu.Lock()
	s.inCommand = true
	if s.idle != nil {
		s.idle.Reset(s.srv.opts.IdleTimeout)
	}
	s.mu.Unlock()
	s.cc.Begin()
	return func() {
		s.cc.End() // calls shutdown if the server is shutting down
		s.mu.Lock()
		s.inCommand = false
		s.mu.Unlock()
	}
}

// shutdown says BYE to a session of a server shutting down, when it is
// idle: at once, or, at the end of a command, once the library has
// written the command's tagged reply.
func (s *session) shutdown() {
	s.mu.Lock()
	inCommand := s.inCommand
	s.mu.Unlock()
	if inCommand {
		time.AfterFunc(50*time.Millisecond, func() { s.bye("Server shutting down") })
		return
	}
	s.bye("Server shutting down")
}

func (s *session) bye(text string) {
	s.shutOnce.Do(func() {
		if err := s.conn.Bye(text); err != nil {
			s.log.Debug("bye", "err", err)
		}
	})
}

func (s *session) Close() error {
	s.cancel()
	s.mu.Lock()
	if s.idle != nil {
		s.idle.Stop()
	}
	s.mu.Unlock()
	var err error
	if s.folders != nil {
		err = s.folders.Close()
	}
	s.log.Debug("disconnected")
	return err
}

// errThrottled answers a login from an address that must still wait
// after its failures (RFC 5530 UNAVAILABLE: a temporary failure).
var errThrottled = &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnavailable, Text: "Too many failed logins from your address, try again later"}

// Login checks the password with the Authenticator and opens the mail
// home. The library has already refused it where plaintext passwords are
// not allowed (LOGINDISABLED). An address the shared throttle holds back
// after its failures is refused at once without a look at the password,
// so a right one is answered as a wrong one; after a few failed attempts
// the connection is closed. The password is never logged.
func (s *session) Login(username, password string) error {
	defer s.enter()()
	if wait, ok := s.srv.throttle.Allow(s.key, username); !ok {
		s.log.Warn("authentication refused: too many failures from this address", "event", "auth_throttled", "user", truncate(username, 200), "wait", wait.Round(time.Millisecond))
		s.attemptFailed()
		return errThrottled
	}
	home, err := s.srv.opts.Auth.Authenticate(s.ctx, username, password)
	if errors.Is(err, account.ErrAuthFailed) {
		wait := s.srv.throttle.Fail(s.key, username)
		s.log.Warn("authentication failed", "event", "auth_failed", "user", truncate(username, 200), "wait", wait)
		s.attemptFailed()
		return imapserver.ErrAuthFailed
	}
	if err != nil {
		return s.fail("authenticate", err)
	}
	f, err := s.srv.opts.Store.Open(s.ctx, home)
	if err != nil {
		return s.fail("open mail home", err)
	}
	s.folders = f
	s.log = s.log.With("user", username)
	s.log.Info("authenticated", "event", "auth")
	s.mu.Lock()
	s.idle = time.AfterFunc(s.srv.opts.IdleTimeout, func() {
		s.log.Info("idle for too long; logging out")
		s.bye("Autologout; idle for too long")
	})
	s.mu.Unlock()
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

func (s *session) AppendLimit() uint32 { return s.srv.opts.AppendLimit }

func (s *session) Namespace() (*goimap.NamespaceData, error) {
	return &goimap.NamespaceData{Personal: []goimap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
