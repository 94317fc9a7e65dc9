// Package conns is the connection layer under every mailroom server (SMTP,
// LMTP and IMAP; any other server of net.Conns, such as ManageSieve or
// POP3, plugs in the same way). It does what the protocol libraries leave
// to their callers:
//
//   - admit connections under a limit for the whole server and one per
//     client (ClientKey), keeping the last slots for clients that hold
//     none, and answer the rest with the protocol's refusal;
//   - bound each read with an idle timeout, and each request (what the
//     client sends between two replies: a command line, a message) with
//     a deadline that grows with what arrives (MinDataRate), so that a
//     client trickling a byte at a time cannot hold a connection; and,
//     for a server that runs its own sessions, each write (Writer);
//   - know which connections are busy (Conn.Begin, Conn.End), so that a
//     shutdown closes the idle ones at once and lets the busy ones finish;
//   - stop in two phases: Shutdown (stop accepting, end idle connections,
//     end busy ones as they become idle), then Close (cut the rest and
//     cancel Context), with Wait and Working for the caller that must not
//     close its stores under a delivery still in its fsyncs; Stop and
//     CloseWait are both phases as a server that runs its own sessions
//     (IMAP, ManageSieve) offers them.
//
// It knows no protocol: what to write to a refused client is
// Options.Refusal, and how to end an idle connection politely (IMAP's BYE)
// is the server's, through Conn.OnShutdown.
package conns

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Set.
type Options struct {
	// MaxConns bounds the connections of the Set (0: no limit). The last
	// tenth of it (at least one slot) is kept for clients that hold no
	// connection yet: when the server is nearly full, a newcomer is
	// preferred to a client that already has one.
	MaxConns int
	// MaxConnsPerClient bounds the connections of one client, as
	// ClientKey counts them (0: no limit). Unix-socket clients are not
	// counted per client.
	MaxConnsPerClient int
	// MaxConnsLoopback, if set, replaces MaxConnsPerClient for loopback
	// clients (a webmail on this machine is one client for many users).
	MaxConnsLoopback int
	// IdleTimeout bounds each read (0: none, for a protocol library that
	// sets its own read deadlines).
	IdleTimeout time.Duration
	// MinDataRate, with IdleTimeout, bounds each request as a whole
	// (Postfix's smtpd_per_request_deadline and smtpd_min_data_rate):
	// what the client sends after a reply must arrive within IdleTimeout
	// plus one second per MinDataRate bytes received, so that a client
	// that trickles a byte at a time is cut off while one that sends a
	// large message at any sensible speed is not. In bytes per second;
	// 0 bounds each read only.
	MinDataRate int
	// Refusal is written to a connection over a limit before it is
	// closed: "421 4.7.0 ..." for SMTP, "* BYE [UNAVAILABLE] ..." for
	// IMAP. Nil closes without a word.
	Refusal []byte
	// Rewrite, if set, may replace what the server writes: it returns
	// the bytes to send instead of p, or nil to send p as it is. It sees
	// plaintext only on connections without TLS.
	Rewrite func(p []byte) []byte
	// LinePerRead makes each Read return at most one line (up to and
	// including its LF) of what arrived, and nothing once the connection
	// is closed, until TLS starts (a line beginning with a TLS record's
	// first byte, 0x16: from then on reads are whole). It is for go-smtp,
	// which goes on answering the commands already in its buffer after
	// it closed a connection ("Too many errors"), with no session: each
	// such RCPT or MAIL panicked (docs/upstream/go-smtp.md, 6). With one
	// line at a time, its next read after the close fails instead.
	LinePerRead bool
	// Logger receives a record per refused connection.
	Logger *slog.Logger
}

// Set tracks the connections of one server. Its zero value is not
// usable; call New.
type Set struct {
	opts Options
	log  *slog.Logger
	// ctx is the sessions' base context, cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*Conn]struct{}
	perClient map[string]int
	closing   bool
	shutdown  chan struct{} // closed by Shutdown
	gone      *sync.Cond    // signalled when a connection is removed
	// working counts work under way that must finish before the
	// server's stores close (Working); idle is signalled at zero.
	working int
	idle    *sync.Cond

	// refusing bounds the goroutines that answer refused connections.
	refusing chan struct{}
}

// New returns an empty Set.
func New(opts Options) *Set {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Set{
		opts:      opts,
		log:       opts.Logger,
		conns:     map[*Conn]struct{}{},
		perClient: map[string]int{},
		shutdown:  make(chan struct{}),
		refusing:  make(chan struct{}, maxRefusing),
	}
	s.gone = sync.NewCond(&s.mu)
	s.idle = sync.NewCond(&s.mu)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Context is cancelled by Close: the base of the contexts of a server's
// sessions, so that what they wait for (a login's delay, an IDLE, a
// lookup) ends when the server is closed.
func (s *Set) Context() context.Context { return s.ctx }

const (
	// maxRefusing is how many refused TLS connections are answered at
	// once; beyond that a flood is closed without a word.
	maxRefusing = 64
	// refusalTimeout bounds the answer to a refused connection (and its
	// TLS handshake on an implicit-TLS port).
	refusalTimeout = 5 * time.Second
)

// Listen wraps l so that its connections are admitted and tracked by s.
// A listener added after Shutdown is closed at once: a server's Serve may
// register its listener only when its goroutine runs, so a shutdown that
// comes first would otherwise leave that Serve accepting for ever.
func (s *Set) Listen(l net.Listener) net.Listener {
	return s.listen(l, nil, nil)
}

// ListenTLS is Listen for implicit TLS (ports 465, 993): each accepted
// connection is tracked below TLS and handed over as a *tls.Conn (on top
// of wrap(conn), if wrap is set), whose handshake is left to the protocol
// library. A refused client gets its refusal over TLS.
func (s *Set) ListenTLS(l net.Listener, config *tls.Config, wrap func(net.Conn) net.Conn) net.Listener {
	return s.listen(l, config, wrap)
}

func (s *Set) listen(l net.Listener, config *tls.Config, wrap func(net.Conn) net.Conn) net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		l.Close()
	}
	s.listeners = append(s.listeners, l)
	return &listener{Listener: l, set: s, tls: config, wrap: wrap}
}

type listener struct {
	net.Listener
	set  *Set
	tls  *tls.Config
	wrap func(net.Conn) net.Conn
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := l.set.admit(nc, l.tls)
		if c == nil {
			continue
		}
		var out net.Conn = c
		if l.wrap != nil {
			out = l.wrap(out)
		}
		if l.tls != nil {
			out = tls.Server(out, l.tls)
		}
		return out, nil
	}
}

// admit registers nc, or refuses it if a limit is reached.
func (s *Set) admit(nc net.Conn, config *tls.Config) *Conn {
	key, loopback := clientOf(nc.RemoteAddr())
	counted := key != ""
	perClient := s.opts.MaxConnsPerClient
	if loopback && s.opts.MaxConnsLoopback > 0 {
		perClient = s.opts.MaxConnsLoopback
	}
	s.mu.Lock()
	if s.closing {
		// Accepted just as Shutdown ran: it would never be closed as
		// idle.
		s.mu.Unlock()
		nc.Close()
		return nil
	}
	var over string
	switch held := s.perClient[key]; {
	case s.opts.MaxConns > 0 && len(s.conns) >= s.opts.MaxConns:
		over = "max_connections"
	case counted && perClient > 0 && held >= perClient:
		over = "max_connections_per_ip"
	case counted && held > 0 && s.opts.MaxConns > 0 && len(s.conns) >= s.opts.MaxConns-reserve(s.opts.MaxConns):
		// The last slots are for clients that hold none.
		over = "max_connections (slots kept for new clients)"
	}
	if over != "" {
		s.mu.Unlock()
		s.log.Warn("connection refused: too many connections", "event", "refused", "remote", nc.RemoteAddr().String(), "limit", over)
		s.refuse(nc, config)
		return nil
	}
	c := &Conn{Conn: nc, set: s, key: key, counted: counted, loopback: loopback}
	c.reqStart.Store(time.Now().UnixNano())
	s.conns[c] = struct{}{}
	if counted {
		s.perClient[key]++
	}
	s.mu.Unlock()
	return c
}

// reserve is how many of max slots are kept for clients that hold none:
// a tenth, at least one (none when there is only one slot).
func reserve(slots int) int {
	if slots < 2 {
		return 0
	}
	return max(1, slots/10)
}

// refuse answers nc with the refusal and closes it. A plain answer is
// written at once (it fits the empty socket buffer of a new connection);
// one over TLS needs a handshake, which a client could drag out, so it
// runs in a goroutine of its own, at most maxRefusing at once: beyond
// that a flood is closed without a word.
func (s *Set) refuse(nc net.Conn, config *tls.Config) {
	if config == nil {
		nc.SetWriteDeadline(time.Now().Add(refusalTimeout))
		nc.Write(s.opts.Refusal)
		nc.Close()
		return
	}
	select {
	case s.refusing <- struct{}{}:
	default:
		nc.Close()
		return
	}
	go func() {
		defer func() { <-s.refusing }()
		defer nc.Close()
		if len(s.opts.Refusal) == 0 {
			return
		}
		nc.SetDeadline(time.Now().Add(refusalTimeout))
		tls.Server(nc, config).Write(s.opts.Refusal)
	}()
}

// Shutdown is the first phase of a stop: it closes the listeners and
// ends every connection that is idle now (Conn.OnShutdown, or a plain
// close); a busy one ends when its work is done (Conn.End).
func (s *Set) Shutdown() {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.shutdown)
	}
	for _, l := range s.listeners {
		l.Close()
	}
	var idle []*Conn
	for c := range s.conns {
		if !c.busy.Load() {
			idle = append(idle, c)
		}
	}
	s.mu.Unlock()
	for _, c := range idle {
		c.endIdle()
	}
}

// ShuttingDown is closed when Shutdown begins: a session waiting for
// something of its own (a login's failure delay) should stop waiting.
func (s *Set) ShuttingDown() <-chan struct{} { return s.shutdown }

// Close is the second phase: it closes the listeners, cancels Context
// and closes every connection at once.
func (s *Set) Close() {
	s.Shutdown()
	s.cancel()
	s.mu.Lock()
	all := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		c.Conn.Close()
	}
}

// Wait waits until every connection has been closed, or ctx ends.
func (s *Set) Wait(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return len(s.conns) == 0 }, s.gone)
}

// Stop is the Shutdown of a server that runs its own sessions (IMAP,
// ManageSieve): the first phase, a wait for the connections to end until
// ctx ends, then CloseWait for whatever is left. It returns ctx's error
// if connections outlived it. Clients of such servers stay connected for
// hours, so the first phase ends idle ones rather than waiting for them
// to leave.
func (s *Set) Stop(ctx context.Context, closeWait time.Duration) error {
	s.Shutdown()
	err := s.Wait(ctx)
	s.CloseWait(closeWait)
	return err
}

// CloseWait is Close, then a wait of at most d for the sessions to leave
// (their connections are closed and their contexts cancelled; a session
// unregisters its connection when it closes it last), since the caller
// closes its stores next. Sessions still there after d are logged.
func (s *Set) CloseWait(d time.Duration) {
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if s.Wait(ctx) != nil {
		s.log.Warn("sessions still busy after Close", "wait", d)
	}
}

// Working marks work under way that must finish before the server's
// stores close, such as a delivery in its fsyncs: a forced Close cuts the
// connection (and the library then resets the session) while the work
// goes on. It returns the function that ends the mark.
func (s *Set) Working() (done func()) {
	s.mu.Lock()
	s.working++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.working--; s.working == 0 {
				s.idle.Broadcast()
			}
			s.mu.Unlock()
		})
	}
}

// WaitWorking waits until no work marked by Working is under way, or ctx
// ends.
func (s *Set) WaitWorking(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return s.working == 0 }, s.idle)
}

// waitFor waits on cond (whose lock is s.mu) until done holds or ctx ends.
func (s *Set) waitFor(ctx context.Context, done func() bool, cond *sync.Cond) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		cond.Wait()
	}
	return nil
}

// Len is the number of connections open now.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Conn is an admitted connection.
type Conn struct {
	net.Conn
	set      *Set
	key      string
	counted  bool // in set.perClient
	loopback bool

	// reqStart (unix nanoseconds) is when the current request began: at
	// the last write, or at accept; reqBytes is what has arrived since.
	reqStart atomic.Int64
	reqBytes atomic.Int64
	// timedOut makes a read timeout final: bufio and textproto return
	// the part of a line read before the timeout as a whole line and
	// drop the error, so the library would answer it and read on (with
	// a new deadline, since it wrote a reply). Every later read fails.
	timedOut atomic.Bool

	busy        atomic.Bool
	closed      atomic.Bool
	closeOnSend atomic.Bool
	ended       atomic.Bool // endIdle ran

	mu         sync.Mutex
	onShutdown func()

	// Read's buffer for Options.LinePerRead: what arrived and was not
	// handed out yet is rbuf[rpos:rend], then rerr.
	rbuf       []byte
	rpos, rend int
	rerr       error
	midLine    bool // the last byte handed out was not an LF
	whole      bool // TLS started: reads are no longer cut at lines
}

// From finds the Conn under a connection a protocol library hands its
// session: the Conn itself, or one below TLS or below any wrapper that
// has a NetConn method (as *tls.Conn has). It returns nil for a
// connection that no Set admitted (as in some tests); every method of
// Conn does nothing on nil, or reports its zero value.
func From(nc net.Conn) *Conn {
	for nc != nil {
		if c, ok := nc.(*Conn); ok {
			return c
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = u.NetConn()
	}
	return nil
}

func (c *Conn) Read(p []byte) (int, error) {
	if !c.set.opts.LinePerRead || c.whole && c.rpos == c.rend {
		return c.read(p)
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if c.rpos == c.rend {
		if err := c.rerr; err != nil {
			c.rerr = nil
			return 0, err
		}
		if c.rbuf == nil {
			c.rbuf = make([]byte, 16<<10)
		}
		// No more than the caller asked for: a read with no LF in it
		// then gives the caller what a read of its own would have.
		n, err := c.read(c.rbuf[:min(len(c.rbuf), len(p))])
		c.rpos, c.rend, c.rerr = 0, n, err
		if n == 0 {
			c.rerr = nil
			return 0, err
		}
	}
	b := c.rbuf[c.rpos:c.rend]
	if !c.midLine && b[0] == 0x16 {
		c.whole = true
	}
	if !c.whole {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		}
	}
	n := copy(p, b)
	c.rpos += n
	if n > 0 {
		c.midLine = p[n-1] != '\n'
	}
	return n, nil
}

// read is one read of the connection, bounded by the idle timeout and
// the minimum data rate.
func (c *Conn) read(p []byte) (int, error) {
	d := c.set.opts.IdleTimeout
	if d <= 0 {
		return c.Conn.Read(p)
	}
	if c.timedOut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	now := time.Now()
	deadline := now.Add(d)
	if rate := c.set.opts.MinDataRate; rate > 0 {
		budget := time.Unix(0, c.reqStart.Load()).Add(d + time.Duration(c.reqBytes.Load())*time.Second/time.Duration(rate))
		if budget.Before(deadline) {
			deadline = budget
		}
	}
	c.Conn.SetReadDeadline(deadline)
	n, err := c.Conn.Read(p)
	c.reqBytes.Add(int64(n))
	if errors.Is(err, os.ErrDeadlineExceeded) && !c.timedOut.Swap(true) {
		c.set.log.Info("client too slow; dropped", "event", "timeout", "remote", c.RemoteAddr().String(),
			"request_bytes", c.reqBytes.Load(), "request_time", now.Sub(time.Unix(0, c.reqStart.Load())).Round(time.Millisecond))
	}
	return n, err
}

// Write sends p, or what Options.Rewrite makes of it, and closes the
// connection after it if CloseAfterWrite was called.
func (c *Conn) Write(p []byte) (int, error) {
	// A reply ends the request it answers: what comes next is a new one.
	c.reqStart.Store(time.Now().UnixNano())
	c.reqBytes.Store(0)
	if c.closeOnSend.Load() {
		defer c.Conn.Close()
	}
	if rw := c.set.opts.Rewrite; rw != nil {
		if q := rw(p); q != nil {
			if _, err := c.Conn.Write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// CloseAfterWrite closes the connection once the next write is done: for
// a client that is told why it is let go (a timeout in the middle of a
// message, too many failed logins).
func (c *Conn) CloseAfterWrite() {
	if c != nil {
		c.closeOnSend.Store(true)
	}
}

// Close unregisters the connection and closes it.
func (c *Conn) Close() error {
	if !c.closed.Swap(true) {
		s := c.set
		s.mu.Lock()
		delete(s.conns, c)
		if c.counted {
			if s.perClient[c.key]--; s.perClient[c.key] <= 0 {
				delete(s.perClient, c.key)
			}
		}
		s.gone.Broadcast()
		s.mu.Unlock()
	}
	return c.Conn.Close()
}

// OnShutdown sets how the connection is ended when the Set shuts down
// while it is idle (IMAP says BYE); without it, it is closed. f runs at
// most once, from Shutdown or from the End of the work in progress then.
// If the Set is already shutting down and the connection is idle, f runs
// now.
func (c *Conn) OnShutdown(f func()) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.onShutdown = f
	c.mu.Unlock()
	select {
	case <-c.set.shutdown:
		if !c.busy.Load() {
			c.endIdle()
		}
	default:
	}
}

// endIdle ends an idle connection of a Set that is shutting down, once.
func (c *Conn) endIdle() {
	if c.ended.Swap(true) {
		return
	}
	c.mu.Lock()
	f := c.onShutdown
	c.mu.Unlock()
	if f != nil {
		f()
		return
	}
	c.Conn.Close()
}

// Begin marks work in progress that a shutdown lets finish (an SMTP
// transaction from MAIL to its reply, an IMAP command).
func (c *Conn) Begin() {
	if c != nil {
		c.busy.Store(true)
	}
}

// End marks the work done; if the Set is shutting down, the connection
// is ended now that its client has its reply.
func (c *Conn) End() {
	if c == nil {
		return
	}
	c.busy.Store(false)
	select {
	case <-c.set.shutdown:
		c.endIdle()
	default:
	}
}

// Client is the client's key for limits and throttles (ClientKey), or ""
// for a unix-socket client.
func (c *Conn) Client() string {
	if c == nil {
		return ""
	}
	return c.key
}

// Loopback reports whether the client is on this machine (a loopback
// address or a unix socket).
func (c *Conn) Loopback() bool { return c != nil && c.loopback }

// clientOf returns the key a remote address is counted by, and whether it
// is on this machine.
func clientOf(a net.Addr) (key string, loopback bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return ClientKey(a.IP), a.IP.IsLoopback()
	case *net.UnixAddr:
		return "", true
	}
	return "", false
}

// ClientKey is what per-client limits and throttles count by: the IPv4
// address, or the /64 of an IPv6 address, since one IPv6 client usually
// has a whole /64 to rotate through.
func ClientKey(ip net.IP) string {
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
