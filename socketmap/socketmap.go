// Package socketmap serves Postfix's socketmap lookup tables
// (socketmap_table(5), Postfix 2.10 and later), so that Postfix in front
// of mailroom asks mailroom itself which domains are local and which
// addresses exist, and rejects the others at RCPT time instead of
// accepting them and bouncing later (backscatter). It knows the protocol
// only: what a key means is up to the Table it is given.
package socketmap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"mailroom/internal/conns"
	"mailroom/internal/panics"
)

// ErrNotFound is a Table's answer for a key it does not hold: the reply
// is NOTFOUND, which Postfix takes as a definite no.
var ErrNotFound = errors.New("not found")

// Table is one named map. Lookup returns the value for key, ErrNotFound,
// or another error, which is answered TEMP so that Postfix defers (451)
// rather than rejects.
type Table interface {
	Lookup(ctx context.Context, key string) (string, error)
}

// TableFunc is a Table made of a function.
type TableFunc func(ctx context.Context, key string) (string, error)

// Lookup calls f.
func (f TableFunc) Lookup(ctx context.Context, key string) (string, error) { return f(ctx, key) }

// Options configure a Server.
type Options struct {
	// Tables are the maps by the name Postfix gives in
	// socketmap:unix:PATH:NAME.
	Tables map[string]Table
	// IdleTimeout closes a connection that sends no request for this
	// long (Postfix keeps its connection open between lookups, and
	// reconnects). Default 5 minutes.
	IdleTimeout time.Duration
	// MaxConns bounds the connections at once (each Postfix process that
	// looks something up keeps one); more are closed at once, which
	// Postfix takes as a temporary lookup failure. 0: no limit.
	MaxConns int
	// Logger gets one Debug record per lookup and Warn for failures.
	Logger *slog.Logger
	// Panics counts a panic in a lookup, which is recovered: that
	// connection ends, the server goes on. Nil: logged only.
	Panics *panics.Recorder
}

// maxRequest bounds a request: a map name and a key (an address is at
// most 320 octets; keys Postfix sends are short).
const maxRequest = 4096

// maxReply is the longest reply Postfix's client takes (socketmap_table(5)).
const maxReply = 100000

// writeTimeout bounds the write of one reply.
const writeTimeout = 30 * time.Second

// Server answers socketmap requests on the listeners given to Serve. Its
// connections are admitted, timed out and shut down by the shared
// connection layer (internal/conns), like every other mailroom server's.
type Server struct {
	opts  Options
	log   *slog.Logger
	ctx   context.Context // conns.Context, cancelled by Close: lookups in progress end
	conns *conns.Set
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("socketmap: server closed")

// New returns a Server for opts.
func New(opts Options) *Server {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("proto", "socketmap")
	cs := conns.New(conns.Options{MaxConns: opts.MaxConns, IdleTimeout: opts.IdleTimeout, Logger: log})
	return &Server{opts: opts, log: log, ctx: cs.Context(), conns: cs}
}

// Serve accepts connections on l until Shutdown or Close, and returns
// ErrServerClosed then.
func (s *Server) Serve(l net.Listener) error {
	if err := s.conns.Serve(s.conns.Listen(l), s.handle); err != nil {
		return err
	}
	return ErrServerClosed
}

// Shutdown stops accepting, closes connections between requests at once
// and the others when their answer is written, and waits for them until
// ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.conns.Shutdown()
	return s.conns.Wait(ctx)
}

// Close stops at once: lookups in progress are cancelled and every
// connection is closed.
func (s *Server) Close() error {
	s.conns.Close()
	return nil
}

// handle answers the requests of one connection until it ends. Each
// request is marked busy, so that a shutdown lets its answer out.
func (s *Server) handle(c net.Conn) {
	defer c.Close()
	cc := conns.From(c)
	log := s.log.With("remote", remoteName(c))
	defer s.opts.Panics.Recover(log, "socketmap lookup")
	br := bufio.NewReader(c)
	var out []byte
	for {
		req, err := readNetstring(br, maxRequest)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Info("socketmap connection ended", "err", err)
			}
			return
		}
		cc.Begin()
		out = appendNetstring(out[:0], s.answer(log, string(req)))
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err = c.Write(out)
		cc.End()
		if err != nil {
			return
		}
	}
}

// answer is the reply to one request, "name key" (socketmap_table(5)
// REQUEST FORMAT).
func (s *Server) answer(log *slog.Logger, req string) string {
	name, key, ok := strings.Cut(req, " ")
	if !ok {
		return "PERM request is not \"name key\""
	}
	t := s.opts.Tables[name]
	if t == nil {
		log.Warn("socketmap request for an unknown map", "map", printable(name))
		return "PERM no such map: " + printable(name)
	}
	v, err := t.Lookup(s.ctx, key)
	switch {
	case err == nil:
		log.Debug("socketmap lookup", "map", name, "key", key, "found", true)
		if strings.ContainsAny(v, "\r\n") || len(v) > maxReply-3 {
			log.Warn("socketmap value cannot be sent", "map", name, "key", key)
			return "PERM value cannot be sent"
		}
		return "OK " + v
	case errors.Is(err, ErrNotFound):
		log.Debug("socketmap lookup", "map", name, "key", key, "found", false)
		// The space is part of the reply (socketmap_table(5)).
		return "NOTFOUND "
	default:
		// Not err's text, which may name files: TEMP's reason goes to
		// Postfix's log and maybe a client's 451.
		id := fmt.Sprintf("%08x", time.Now().UnixNano()&0xffffffff)
		log.Warn("socketmap lookup failed", "map", name, "key", key, "err", err, "err_id", id)
		return "TEMP lookup failed, try again later (ref " + id + ")"
	}
}

// printable makes a client's bytes safe to echo and log.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

func remoteName(c net.Conn) string {
	if c.RemoteAddr() == nil || c.RemoteAddr().Network() == "unix" {
		return "unix socket"
	}
	return c.RemoteAddr().String()
}
