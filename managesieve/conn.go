package managesieve

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailroom/internal/conns"
)

const (
	// loginTimeout is how long a client that has not logged in may take
	// to send a command.
	loginTimeout = 30 * time.Second
	// cmdTimeout is how long a client may take to finish a command it
	// has begun (a script literal included).
	cmdTimeout = 5 * time.Minute
	// writeTimeout bounds each write.
	writeTimeout = 30 * time.Second
	// maxBadCommands ends a session that keeps sending commands that
	// cannot be parsed or are unknown (Pigeonhole's limit is 10 too).
	maxBadCommands = 10
)

// conn is one client connection; its loop runs the commands one at a
// time.
type conn struct {
	srv *Server
	cc  *conns.Conn
	log *slog.Logger
	// connLog is log before authentication.
	connLog *slog.Logger
	ctx     context.Context

	raw net.Conn // the socket
	nc  net.Conn // raw, or TLS over it after STARTTLS
	dec decoder
	// wmu serialises writes: the loop holds it while a command runs,
	// a shutdown's BYE takes it when the connection is idle. It guards
	// out (whose LastWords says BYE is being written) and enc over it.
	wmu sync.Mutex
	out conns.Writer
	enc encoder

	tls       bool
	user      string // once authenticated
	home      string
	authFails int
	bad       int
	// preAuthOctets counts what the client sent before it
	// authenticated (maxPreAuthOctets).
	preAuthOctets int
	done          bool // LOGOUT, BYE: the loop ends
	byeOnce       sync.Once
}

func (s *Server) serveConn(nc net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	c := &conn{srv: s, cc: conns.From(nc), raw: nc, nc: nc, ctx: ctx,
		log: s.log.With("conn", s.connID.Add(1), "remote", nc.RemoteAddr().String())}
	c.connLog = c.log
	c.dec = decoder{br: bufio.NewReaderSize(nc, 4096), maxLiteral: s.opts.MaxScriptSize}
	c.out = conns.Writer{Conn: &c.nc, Timeout: writeTimeout}
	c.enc = encoder{bw: bufio.NewWriterSize(&c.out, 4096)}
	defer func() {
		if v := recover(); v != nil {
			s.opts.Panics.Record(c.log, "managesieve", v)
			c.bye("", "Internal server error")
		}
		c.raw.Close()
		c.log.Debug("disconnected")
	}()
	select {
	case <-s.conns.ShuttingDown():
		c.bye("TRYLATER", "Server shutting down")
		return
	default:
	}
	c.cc.OnShutdown(func() {
		cancel()
		c.bye("TRYLATER", "Server shutting down")
	})
	c.log.Debug("connected")
	c.wmu.Lock()
	c.capabilities()
	c.enc.response("OK", "", "mailroom ManageSieve server ready")
	err := c.enc.flush()
	c.wmu.Unlock()
	if err != nil {
		return
	}
	for !c.done && c.next() {
	}
}

// next reads and runs one command; false ends the connection.
func (c *conn) next() bool {
	wait := loginTimeout
	if c.user != "" {
		wait = c.srv.opts.IdleTimeout
	}
	c.nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := c.dec.br.Peek(1); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.log.Info("idle for too long; logging out", "event", "idle_timeout")
			c.bye("", "Idle for too long")
		}
		return false
	}
	c.nc.SetReadDeadline(time.Now().Add(cmdTimeout))
	c.cc.Begin()     // a shutdown lets the command finish,
	defer c.cc.End() // and says BYE after it
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.dec.preAuth = c.user == ""
	cmd, err := c.dec.readCommand()
	if !c.countPreAuth() {
		c.byeLocked("", "Too much data before authentication")
		return false
	}
	var se *syntaxError
	var tb *tooBigError
	switch {
	case errors.As(err, &tb):
		c.enc.response("NO", "QUOTA/MAXSIZE", "The script is larger than "+strconv.Itoa(c.srv.opts.MaxScriptSize)+" octets")
		return c.enc.flush() == nil
	case errors.As(err, &se):
		return c.badCommand(se.msg)
	case errors.Is(err, errLineTooLong):
		c.byeLocked("", "Command too long")
		return false
	case errors.Is(err, errDesync):
		c.log.Info("malformed literal; closing the connection", "event", "protocol_error", "err", err)
		c.byeLocked("", "Malformed literal")
		return false
	case err != nil:
		return false
	}
	c.run(cmd)
	if c.dec.br.Buffered() == 0 || c.done {
		// Pipelined commands are answered together; otherwise the
		// client is waiting for what we have.
		if err := c.enc.flush(); err != nil {
			return false
		}
	}
	return !c.done
}

// countPreAuth adds the octets of the command just read to those sent
// before authentication; false beyond maxPreAuthOctets, when the
// connection must end.
func (c *conn) countPreAuth() bool {
	if c.user != "" {
		return true
	}
	c.preAuthOctets += c.dec.consumed()
	if c.preAuthOctets <= maxPreAuthOctets {
		return true
	}
	c.log.Info("too much data before authentication; closing the connection", "event", "protocol_error", "octets", c.preAuthOctets)
	return false
}

// badCommand answers a command that cannot be run as written, and ends
// the session after too many.
func (c *conn) badCommand(msg string) bool {
	c.bad++
	if c.bad >= maxBadCommands {
		c.byeLocked("", "Too many invalid commands")
		return false
	}
	c.enc.response("NO", "", msg)
	return c.enc.flush() == nil
}

// handler runs a command whose arguments have been read.
type handler struct {
	fn func(c *conn, args []arg) error
	// auth: only once authenticated; notAuth: only before.
	auth, notAuth bool
	// argument shape: the kinds in order; optional ones at the end
	// from index optFrom on (-1: none optional).
	kinds   []argKind
	optFrom int
}

var handlers map[string]handler

func init() {
	s, n := argString, argNumber
	handlers = map[string]handler{
		"CAPABILITY":     {fn: (*conn).cmdCapability, optFrom: -1},
		"LOGOUT":         {fn: (*conn).cmdLogout, optFrom: -1},
		"NOOP":           {fn: (*conn).cmdNoop, kinds: []argKind{s}, optFrom: 0},
		"STARTTLS":       {fn: (*conn).cmdStartTLS, notAuth: true, optFrom: -1},
		"AUTHENTICATE":   {fn: (*conn).cmdAuthenticate, notAuth: true, kinds: []argKind{s, s}, optFrom: 1},
		"UNAUTHENTICATE": {fn: (*conn).cmdUnauthenticate, auth: true, optFrom: -1},
		"HAVESPACE":      {fn: (*conn).cmdHaveSpace, auth: true, kinds: []argKind{s, n}, optFrom: -1},
		"PUTSCRIPT":      {fn: (*conn).cmdPutScript, auth: true, kinds: []argKind{s, s}, optFrom: -1},
		"CHECKSCRIPT":    {fn: (*conn).cmdCheckScript, auth: true, kinds: []argKind{s}, optFrom: -1},
		"LISTSCRIPTS":    {fn: (*conn).cmdListScripts, auth: true, optFrom: -1},
		"SETACTIVE":      {fn: (*conn).cmdSetActive, auth: true, kinds: []argKind{s}, optFrom: -1},
		"GETSCRIPT":      {fn: (*conn).cmdGetScript, auth: true, kinds: []argKind{s}, optFrom: -1},
		"DELETESCRIPT":   {fn: (*conn).cmdDeleteScript, auth: true, kinds: []argKind{s}, optFrom: -1},
		"RENAMESCRIPT":   {fn: (*conn).cmdRenameScript, auth: true, kinds: []argKind{s, s}, optFrom: -1},
	}
}

// run checks a command's state and arguments and runs it. A handler's
// error is a response already mapped (a *response) or the store's
// trouble, answered NO (TRYLATER) and logged.
func (c *conn) run(cmd command) {
	h, ok := handlers[cmd.name]
	if !ok {
		c.badCommand("Unknown command " + strconv.Quote(cmd.name))
		return
	}
	switch {
	case h.auth && c.user == "":
		c.enc.response("NO", "", "Authenticate first")
		return
	case h.notAuth && c.user != "":
		c.enc.response("NO", "", "Already authenticated")
		return
	}
	if msg := checkArgs(cmd, h); msg != "" {
		c.badCommand(msg)
		return
	}
	err := h.fn(c, cmd.args)
	var r *response
	switch {
	case err == nil:
	case errors.As(err, &r):
		c.enc.response(r.kind, r.code, r.text)
		if r.kind == "BYE" {
			c.done = true
		}
	default:
		c.log.Warn("command failed", "event", "managesieve_error", "cmd", cmd.name, "err", err)
		c.enc.response("NO", "TRYLATER", "Temporary server problem, try again later")
	}
}

func checkArgs(cmd command, h handler) string {
	min, max := len(h.kinds), len(h.kinds)
	if h.optFrom >= 0 {
		min = h.optFrom
	}
	if len(cmd.args) < min || len(cmd.args) > max {
		want := strconv.Itoa(min)
		if max != min {
			want += " to " + strconv.Itoa(max)
		}
		return cmd.name + " takes " + want + " arguments"
	}
	for i, a := range cmd.args {
		if a.kind != h.kinds[i] {
			if h.kinds[i] == argNumber {
				return cmd.name + ": argument " + strconv.Itoa(i+1) + " must be a number"
			}
			return cmd.name + ": argument " + strconv.Itoa(i+1) + " must be a string"
		}
	}
	return ""
}

// response is a command's answer other than a plain OK.
type response struct{ kind, code, text string }

func (r *response) Error() string { return r.kind + " " + r.code + " " + r.text }

func no(code, text string) error { return &response{"NO", code, text} }

// capabilities writes the capability lines (RFC 5804 §1.7) for the
// connection's state.
func (c *conn) capabilities() {
	o := c.srv.opts
	c.enc.str("IMPLEMENTATION").raw(" ").str("mailroom").raw("\r\n")
	if c.user == "" {
		mechs := ""
		if c.canAuth() {
			mechs = "PLAIN LOGIN"
		}
		// RFC 5804 §1.7: an empty SASL list before STARTTLS when
		// passwords may not be sent in clear.
		c.enc.str("SASL").raw(" ").str(mechs).raw("\r\n")
	}
	c.enc.str("SIEVE").raw(" ").str(strings.Join(o.Extensions, " ")).raw("\r\n")
	if o.TLSConfig != nil && !c.tls && c.user == "" {
		c.enc.str("STARTTLS").raw("\r\n")
	}
	if o.MaxRedirects > 0 {
		c.enc.str("MAXREDIRECTS").raw(" ").str(strconv.Itoa(o.MaxRedirects)).raw("\r\n")
	}
	if c.user != "" {
		c.enc.str("OWNER").raw(" ").str(c.user).raw("\r\n")
	}
	c.enc.str("UNAUTHENTICATE").raw("\r\n")
	c.enc.str("VERSION").raw(" ").str("1.0").raw("\r\n")
}

// canAuth says whether a password may be sent: over TLS, from loopback,
// or with AllowInsecureAuth (DESIGN.md).
func (c *conn) canAuth() bool {
	return c.tls || c.srv.opts.AllowInsecureAuth || c.cc.Loopback()
}

func (c *conn) cmdCapability(_ []arg) error {
	c.capabilities()
	c.enc.response("OK", "", "Capability completed")
	return nil
}

func (c *conn) cmdLogout(_ []arg) error {
	c.enc.response("OK", "", "Logout completed")
	c.done = true
	return nil
}

// cmdNoop answers NOOP, echoing its tag (RFC 5804 §2.11.2).
func (c *conn) cmdNoop(args []arg) error {
	code := ""
	if len(args) == 1 {
		var b strings.Builder
		e := encoder{bw: bufio.NewWriter(&b)}
		e.str(args[0].s).flush()
		code = "TAG " + b.String()
	}
	c.enc.response("OK", code, "Done")
	return nil
}

// cmdStartTLS begins TLS (RFC 5804 §2.2); the capabilities follow under
// TLS, and whatever the client sent in clear after the command is
// dropped (the STARTTLS command injection of CVE-2011-0411).
func (c *conn) cmdStartTLS(_ []arg) error {
	if c.srv.opts.TLSConfig == nil {
		return no("", "STARTTLS is not available")
	}
	if c.tls {
		return no("", "TLS is already on")
	}
	c.enc.response("OK", "", "Begin TLS negotiation now")
	if err := c.enc.flush(); err != nil {
		c.done = true
		return nil
	}
	tc := tls.Server(c.raw, c.srv.opts.TLSConfig)
	tc.SetDeadline(time.Now().Add(loginTimeout))
	if err := tc.Handshake(); err != nil {
		c.log.Debug("TLS handshake failed", "err", err)
		c.done = true
		return nil
	}
	tc.SetDeadline(time.Time{})
	c.nc, c.tls = tc, true
	c.dec.br = bufio.NewReaderSize(tc, 4096)
	c.enc = encoder{bw: bufio.NewWriterSize(&c.out, 4096)}
	c.capabilities()
	c.enc.response("OK", "", "TLS negotiation successful")
	return nil
}

// bye says BYE and closes the connection; from outside the loop (a
// shutdown).
func (c *conn) bye(code, text string) {
	c.byeOnce.Do(func() {
		// A command stuck writing to a client that does not read
		// holds wmu; closing the socket frees it.
		cut := time.AfterFunc(writeTimeout, func() { c.raw.Close() })
		c.wmu.Lock()
		c.writeBye(code, text)
		c.wmu.Unlock()
		cut.Stop()
		c.raw.Close()
	})
}

// byeLocked is bye for the loop, which holds wmu and then ends.
func (c *conn) byeLocked(code, text string) {
	c.byeOnce.Do(func() { c.writeBye(code, text) })
	c.done = true
}

func (c *conn) writeBye(code, text string) {
	c.out.LastWords = true
	c.enc.response("BYE", code, text)
	c.enc.flush()
}
