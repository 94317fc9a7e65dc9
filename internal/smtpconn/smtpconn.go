// Package smtpconn is the connection layer under mailroom's SMTP and LMTP
// servers, for what go-smtp does not do itself: know which connections are
// idle so a shutdown can close them at once and let busy ones finish,
// limit connections overall and per client address, put an idle timeout
// on every read (go-smtp only sets one per command line, so a whole DATA
// would otherwise have to arrive within it), and correct a few replies of
// go-smtp v0.25 on their way out.
package smtpconn

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Listener.
type Options struct {
	// Hostname goes in the 421 sent to a connection over a limit.
	Hostname string
	// MaxConns and MaxConnsPerIP refuse connections beyond them with 421
	// (0: no limit).
	MaxConns, MaxConnsPerIP int
	// IdleTimeout bounds each read (0: none).
	IdleTimeout time.Duration
	// SizeLimit, if set, replaces the bare "SIZE" keyword go-smtp announces
	// when it runs without a limit (see fixReply).
	SizeLimit int64
}

// Set tracks the connections of one server.
type Set struct {
	opts      Options
	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*Conn]struct{}
	perIP     map[string]int
	closing   atomic.Bool
	// inflight counts deliveries running now (StartDelivery..EndDelivery),
	// guarded by mu; idle is signalled when it drops to zero.
	inflight int
	idle     *sync.Cond
}

// StartDelivery is called by a session before it hands a message to mda or
// the queue, EndDelivery when that returns. A forced Close closes the
// connections (and go-smtp then resets the sessions) while deliveries may
// still be in their fsyncs; WaitIdle waits for those.
func (s *Set) StartDelivery() {
	s.mu.Lock()
	s.inflight++
	s.mu.Unlock()
}

// EndDelivery ends what StartDelivery began.
func (s *Set) EndDelivery() {
	s.mu.Lock()
	if s.inflight--; s.inflight == 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// WaitIdle waits until no delivery is running, or d has passed, so that
// the stores are not closed under one. It reports whether all finished.
func (s *Set) WaitIdle(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		for s.inflight > 0 {
			s.idle.Wait()
		}
		s.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// NewSet returns an empty Set.
func NewSet(opts Options) *Set {
	s := &Set{opts: opts, conns: map[*Conn]struct{}{}, perIP: map[string]int{}}
	s.idle = sync.NewCond(&s.mu)
	return s
}

// Listen wraps l so that its connections are tracked by s. A listener
// added after Shutdown is closed at once: go-smtp's Server.Serve registers
// its listener only when its goroutine runs, so a shutdown that comes
// first would otherwise leave that Serve accepting for ever.
func (s *Set) Listen(l net.Listener) net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		l.Close()
	}
	s.listeners = append(s.listeners, l)
	return &listener{Listener: l, set: s}
}

// Shutdown closes the listeners and every connection that is not
// delivering a message now; busy ones close as soon as their delivery is
// answered (End).
func (s *Set) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for _, l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		if !c.busy.Load() {
			c.Conn.Close()
		}
	}
}

type listener struct {
	net.Listener
	set *Set
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.set.admit(nc); c != nil {
			return c, nil
		}
	}
}

// admit registers nc, or answers 421 and closes it if a limit is reached.
func (s *Set) admit(nc net.Conn) *Conn {
	ip := ""
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ip = ClientKey(a.IP)
	}
	s.mu.Lock()
	if s.closing.Load() {
		// Accepted just as Shutdown ran: it would never be closed as idle.
		s.mu.Unlock()
		nc.Close()
		return nil
	}
	over := s.opts.MaxConns > 0 && len(s.conns) >= s.opts.MaxConns ||
		ip != "" && s.opts.MaxConnsPerIP > 0 && s.perIP[ip] >= s.opts.MaxConnsPerIP
	if over {
		s.mu.Unlock()
		// RFC 5321 §3.1: a server may answer 421 instead of 220.
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(nc, "421 4.7.0 %s Too many connections, try again later\r\n", s.opts.Hostname)
		nc.Close()
		return nil
	}
	c := &Conn{Conn: nc, set: s, ip: ip}
	s.conns[c] = struct{}{}
	if ip != "" {
		s.perIP[ip]++
	}
	s.mu.Unlock()
	return c
}

// Conn is a server connection.
type Conn struct {
	net.Conn
	set         *Set
	ip          string
	busy        atomic.Bool
	closed      atomic.Bool
	closeOnSend atomic.Bool
}

// From finds the Conn under a connection go-smtp hands a session, which
// may be a *tls.Conn after STARTTLS or on an implicit-TLS port.
func From(nc net.Conn) *Conn {
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	c, _ := nc.(*Conn)
	return c
}

func (c *Conn) Read(p []byte) (int, error) {
	if d := c.set.opts.IdleTimeout; d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	return c.Conn.Read(p)
}

// Write sees one whole reply line per call (go-smtp writes through
// textproto, which flushes after every line), except under TLS, where it
// sees records and leaves them alone.
func (c *Conn) Write(p []byte) (int, error) {
	if c.closeOnSend.Load() {
		defer c.Conn.Close()
	}
	q := c.set.fixReply(p)
	if q == nil {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseAfterReply closes the connection once the next reply is written:
// for a client that timed out in the middle of a message, which is told
// why and then let go rather than waited for again.
func (c *Conn) CloseAfterReply() {
	if c != nil {
		c.closeOnSend.Store(true)
	}
}

// go-smtp v0.25 answers a command given out of sequence (DATA or BDAT with
// no accepted recipient, RCPT before MAIL, MAIL before HELO/LHLO) with 502
// "command not implemented". RFC 5321 §4.2.4 and RFC 2033 §4.2 want 503
// "bad sequence of commands". The library offers no hook for those replies,
// so they are corrected here. Drop this when the library is fixed.
var sequenceReplies = [][]byte{
	[]byte("502 5.5.1 Missing RCPT TO command."),
	[]byte("502 5.5.1 Missing MAIL FROM command."),
	[]byte("502 5.5.1 Please introduce yourself first."),
}

// go-smtp answers undecodable base64 in AUTH with 454 4.7.0 (try later);
// RFC 4954 §4 wants 501 5.5.2. Like the others, this can be corrected only
// outside TLS.
var (
	base64Reply      = []byte("454 4.7.0 Invalid base64 data")
	base64ReplyFixed = []byte("501 5.5.2 Invalid base64 data")
)

// fixReply returns the corrected form of a reply line, or nil if it is
// right as it is.
func (s *Set) fixReply(p []byte) []byte {
	for _, r := range sequenceReplies {
		if bytes.HasPrefix(p, r) {
			q := bytes.Clone(p)
			copy(q, "503")
			return q
		}
	}
	if bytes.HasPrefix(p, base64Reply) {
		q := bytes.Clone(p)
		copy(q, base64ReplyFixed)
		return q
	}
	// go-smtp v0.25 refuses a message of exactly MaxMessageBytes (its data
	// reader gives up at the limit before seeing the final dot), although
	// RFC 1870 says the announced size is accepted. A server that can
	// rewrite its replies (no TLS: LMTP) runs the library without a limit,
	// enforces the limit itself, and gets its number announced here.
	if s.opts.SizeLimit > 0 && len(p) > 4 && bytes.Equal(p[4:], []byte("SIZE\r\n")) {
		return fmt.Appendf(nil, "%sSIZE %d\r\n", p[:4], s.opts.SizeLimit)
	}
	return nil
}

// Close unregisters the connection and closes it.
func (c *Conn) Close() error {
	if !c.closed.Swap(true) {
		c.set.mu.Lock()
		delete(c.set.conns, c)
		if c.ip != "" {
			if c.set.perIP[c.ip]--; c.set.perIP[c.ip] <= 0 {
				delete(c.set.perIP, c.ip)
			}
		}
		c.set.mu.Unlock()
	}
	return c.Conn.Close()
}

// Begin marks a transaction in progress: Shutdown leaves the connection
// open until End.
// Like End, it does nothing on a nil Conn (a connection smtpconn did not
// accept, as in some tests).
func (c *Conn) Begin() {
	if c != nil {
		c.busy.Store(true)
	}
}

// End marks the delivery answered; if the server is shutting down, the
// connection is closed now that its client has its replies.
func (c *Conn) End() {
	if c == nil {
		return
	}
	c.busy.Store(false)
	if c.set.closing.Load() {
		c.Conn.Close()
	}
}

// IP is the client's key for limits ("" for a unix socket); see ClientKey.
func (c *Conn) IP() string { return c.ip }

// ClientKey is what per-client limits count by: the IPv4 address, or the
// /64 of an IPv6 address, since one IPv6 client usually has a whole /64 to
// rotate through.
func ClientKey(ip net.IP) string {
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
