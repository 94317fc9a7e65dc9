package imap

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/imap/internal/wire"
	"mailroom/internal/conns"
)

// The command loop: one goroutine per connection reads a command, runs
// it and writes its responses (docs/design/imap.md says why it is ours
// rather than go-imap's).

const (
	// maxCommand bounds a command: its lines and the literals in it,
	// APPEND's message aside (RFC 7162 §4 asks for at least 8 KiB).
	maxCommand = 64 << 10
	// loginTimeout is how long a client that has not logged in may take
	// to send a command, or the rest of one.
	loginTimeout = 30 * time.Second
	// cmdTimeout is how long a logged-in client may take to finish a
	// command it has started (a literal: literalTimeout).
	cmdTimeout     = time.Minute
	literalTimeout = 5 * time.Minute
	// writeTimeout bounds each write to the socket.
	writeTimeout = 30 * time.Second
)

type connState int

const (
	stateNotAuth connState = iota
	stateAuth
	stateSelected
	stateLogout
)

// conn is one client connection.
type conn struct {
	srv *Server
	ss  *session

	raw net.Conn // the socket, for closing it from other goroutines
	nc  net.Conn // raw, or TLS over it after STARTTLS; the loop's
	br  *bufio.Reader
	dec *wire.Decoder

	// wmu serialises responses: held by the loop while a command runs,
	// by the IDLE goroutine while it writes, and by bye. It guards out
	// (whose LastWords says BYE is being written) and enc over it.
	wmu sync.Mutex
	out conns.Writer
	enc *wire.Encoder

	state   connState
	tls     bool
	rev2    bool // ENABLE IMAP4rev2: no RECENT, no \Recent (RFC 9051 §E)
	tag     string
	cmdName string

	byeOnce sync.Once
}

// serveConn runs the connection until the client logs out or goes away.
func (s *Server) serveConn(nc net.Conn) {
	c := &conn{srv: s, raw: nc, nc: nc}
	if tc, ok := nc.(*tls.Conn); ok {
		c.tls = true
		tc.SetDeadline(time.Now().Add(loginTimeout))
		err := tc.Handshake()
		tc.SetDeadline(time.Time{})
		if err != nil {
			s.log.Debug("TLS handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
			nc.Close()
			return
		}
	}
	c.br = bufio.NewReaderSize(nc, 4096)
	c.dec = wire.NewDecoder(c.br)
	c.dec.Literal = c.acceptLiteral
	c.out = conns.Writer{Conn: &c.nc, Timeout: writeTimeout}
	c.enc = wire.NewEncoder(&c.out)
	c.ss = s.newSession(c)
	defer func() {
		if v := recover(); v != nil {
			// A bug a client can trigger: counted, logged with the
			// command and its stack, and the connection ends.
			s.opts.Panics.Record(c.ss.log, "imap "+c.cmdName, v)
			c.bye("Internal server error")
		}
		c.ss.Close()
		c.raw.Close()
	}()
	if !c.ss.start() {
		c.bye("Server shutting down")
		return
	}
	c.wmu.Lock()
	c.enc.Status("*", goimap.StatusResponseTypeOK, c.capCode(), "mailroom IMAP server ready")
	err := c.enc.Flush()
	c.wmu.Unlock()
	if err != nil {
		return
	}
	for c.state != stateLogout {
		if !c.next() {
			return
		}
	}
}

// next waits for a command and runs it; false ends the connection.
func (c *conn) next() bool {
	wait := loginTimeout
	if c.state != stateNotAuth {
		wait = c.srv.opts.IdleTimeout
	}
	if c.dec.Buffered() == 0 {
		// Pipelined commands are answered together; otherwise the
		// client is waiting for what we have.
		c.wmu.Lock()
		err := c.enc.Flush()
		c.wmu.Unlock()
		if err != nil {
			return false
		}
	}
	c.nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := c.dec.Peek(); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && c.state != stateNotAuth {
			c.ss.log.Info("idle for too long; logging out")
			c.bye("Autologout; idle for too long")
		}
		return false
	}
	if c.state == stateNotAuth {
		c.nc.SetReadDeadline(time.Now().Add(loginTimeout))
	} else {
		c.nc.SetReadDeadline(time.Now().Add(cmdTimeout))
	}
	c.ss.cc.Begin()     // a shutdown lets the command finish,
	defer c.ss.cc.End() // and says BYE then (after the unlock below)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.command() && c.enc.Err() == nil
}

// command reads and runs one command with wmu held; false ends the
// connection.
func (c *conn) command() bool {
	c.dec.Begin(maxCommand)
	c.tag, c.cmdName = "", ""
	tag, err := c.dec.Tag()
	if err == nil {
		c.tag = tag
		err = c.dec.SP()
	}
	var name string
	if err == nil {
		name, err = c.dec.Atom()
		name = strings.ToUpper(name)
	}
	if err != nil {
		if !isSyntax(err) {
			return false
		}
		if c.tag == "" {
			// RFC 9051 §7.1.3: BAD without a tag when there is none.
			return c.reject("*", err)
		}
		return c.reject(c.tag, &wire.SyntaxError{Reason: "Expected a command name after the tag"})
	}
	uid := false
	if name == "UID" {
		uid = true
		if err := c.dec.SP(); err != nil {
			return c.reject(tag, err)
		}
		sub, err := c.dec.Atom()
		if err != nil {
			return c.reject(tag, err)
		}
		name = strings.ToUpper(sub)
	}
	c.cmdName = name
	if uid {
		c.cmdName = "UID " + name
	}
	cmd, ok := commands[name]
	if ok && uid && !cmd.uid {
		ok = false
	}
	if !ok {
		if c.state == stateNotAuth {
			// An unknown command before login is most likely another
			// protocol talking to us (a browser's form post): go.
			c.dec.Skip(maxCommand)
			c.enc.Status(tag, goimap.StatusResponseTypeBad, "", "Unknown command")
			c.byeLocked("Unknown command before login")
			return false
		}
		return c.reject(tag, &wire.SyntaxError{Reason: "Unknown command " + truncate(c.cmdName, 40)})
	}
	if err := c.checkState(cmd.states); err != nil {
		return c.reject(tag, err)
	}
	err = cmd.run(c, tag, uid)
	if err == nil {
		return true
	}
	return c.reject(tag, err)
}

// reject skips the rest of a command that failed and answers it; false
// ends the connection.
func (c *conn) reject(tag string, err error) bool {
	if errors.Is(err, errConnGone) || c.enc.Err() != nil {
		return false
	}
	var (
		syn  *wire.SyntaxError
		name *wire.NameError
		ie   *goimap.Error
	)
	switch {
	case errors.As(err, &syn):
	case errors.As(err, &name):
	case errors.As(err, &ie):
	default:
		if isIOError(err) {
			return false
		}
	}
	if serr := c.dec.Skip(int64(c.srv.opts.AppendLimit) + maxCommand); serr != nil {
		if errors.Is(serr, wire.ErrTooLong) {
			c.enc.Status(tag, goimap.StatusResponseTypeBad, "TOOBIG", "Command too long")
			c.byeLocked("Command too long")
		}
		return false
	}
	switch {
	case syn != nil:
		c.enc.Status(tag, goimap.StatusResponseTypeBad, "", syn.Reason)
	case name != nil:
		c.enc.Status(tag, goimap.StatusResponseTypeNo, string(goimap.ResponseCodeCannot), name.Reason)
	case ie != nil:
		c.enc.Status(tag, ie.Type, string(ie.Code), ie.Text)
	default:
		// RFC 5530 §3: SERVERBUG; the client gets no detail, the log
		// names the command (never its arguments: LOGIN has a password).
		c.ss.log.Error("command failed", "command", c.cmdName, "tag", truncate(tag, 40), "err", err)
		c.enc.Status(tag, goimap.StatusResponseTypeNo, string(goimap.ResponseCodeServerBug), "Internal server error")
	}
	return c.enc.Err() == nil
}

// errConnGone ends the connection without a response.
var errConnGone = errors.New("connection gone")

func isSyntax(err error) bool {
	var syn *wire.SyntaxError
	return errors.As(err, &syn)
}

func isIOError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

func (c *conn) checkState(states []connState) error {
	for _, s := range states {
		if s == c.state || (s == stateAuth && c.state == stateSelected) {
			return nil
		}
	}
	switch c.state {
	case stateNotAuth:
		return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Log in first"}
	case stateAuth:
		if len(states) == 1 && states[0] == stateSelected {
			return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "No mailbox selected"}
		}
	}
	return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Command not valid in this state"}
}

// acceptLiteral is the decoder's LiteralFunc for every literal but
// APPEND's message (see appendLiteral): within the command's limit, and
// a "+" for a synchronising one.
func (c *conn) acceptLiteral(size int64, sync, binary bool) error {
	if size > maxCommand {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "TOOBIG", Text: fmt.Sprintf("Literals are limited to %d bytes in this command", maxCommand)}
	}
	return c.continueLiteral(sync)
}

func (c *conn) continueLiteral(sync bool) error {
	if !sync {
		return nil
	}
	c.enc.Atom("+ Ready for literal data").CRLF()
	return c.enc.Flush()
}

// ok writes a command's tagged OK, after the updates of the selected
// folder (RFC 9051 §7.4.1: not EXPUNGE after FETCH, STORE, SEARCH).
func (c *conn) ok(tag, code, text string) error {
	if c.state == stateSelected {
		allowExpunge := true
		switch c.cmdName {
		case "FETCH", "STORE", "SEARCH":
			allowExpunge = false
		}
		if err := c.ss.update(c.updates(), allowExpunge); err != nil {
			return err
		}
	}
	c.enc.Status(tag, goimap.StatusResponseTypeOK, code, text)
	return c.enc.Err()
}

// bye says BYE and closes the connection (once). It takes wmu: it is
// for goroutines other than the loop, and for the loop between commands.
func (c *conn) bye(text string) {
	c.byeOnce.Do(func() {
		// A command stuck writing to a client that does not read
		// holds wmu; closing the socket frees it.
		cut := time.AfterFunc(writeTimeout, func() { c.raw.Close() })
		c.wmu.Lock()
		c.writeBye(text)
		c.wmu.Unlock()
		cut.Stop()
		c.raw.Close()
	})
}

// byeLocked is bye for the loop while it holds wmu; the loop then ends
// and closes the socket.
func (c *conn) byeLocked(text string) {
	c.byeOnce.Do(func() { c.writeBye(text) })
	c.state = stateLogout
}

func (c *conn) writeBye(text string) {
	c.out.LastWords = true
	c.enc.Status("*", goimap.StatusResponseTypeBye, "", text)
	c.enc.Flush()
}
