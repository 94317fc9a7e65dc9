// Package outbound is mailroom's SMTP client for mail that leaves the
// server: it implements queue.Transport, delivering to a domain's MX hosts
// (RFC 5321 §5) or to one smarthost, with opportunistic STARTTLS, SIZE,
// 8BITMIME and SMTPUTF8, and per-recipient results. It knows nothing of
// queues or retries: each Send is one attempt, and its errors say whether
// trying again could help.
package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailroom/queue"
)

// Options configure a Transport. Hostname is required.
type Options struct {
	// Hostname is sent in EHLO.
	Hostname string
	// Resolver finds MX hosts and addresses. Default: the system's.
	Resolver Resolver
	// Port is the SMTP port of MX hosts. Default 25.
	Port int
	// Smarthost "host:port" receives every message instead of the MX
	// hosts; "" means MX delivery.
	Smarthost string
	// ImplicitTLS speaks TLS from the first byte to the smarthost (465).
	ImplicitTLS bool
	// Username and Password, if set, authenticate to the smarthost with
	// AUTH PLAIN, only ever over TLS or to a loopback address.
	Username, Password string
	// TLSConfig verifies the smarthost's certificate (RootCAs,
	// ServerName). MX hosts get opportunistic TLS without verification
	// (RFC 7435), as Postfix's "may" level: encryption against passive
	// eavesdroppers, never a reason not to deliver.
	TLSConfig *tls.Config
	// MaxIdle is how many finished sessions per host address are kept for
	// the next message (default 16; negative: none), each for at most
	// IdleTimeout (default 5s).
	MaxIdle     int
	IdleTimeout time.Duration
	// Timeouts, RFC 5321 §4.5.3.2: DialTimeout for the connection,
	// CommandTimeout for the greeting and each reply (5 min), WriteTimeout
	// for each write of the message (3 min), DataTimeout for the reply to
	// the final dot (10 min).
	DialTimeout, CommandTimeout, WriteTimeout, DataTimeout time.Duration
	Logger                                                 *slog.Logger
}

// Transport delivers messages by SMTP. It is safe for concurrent use.
type Transport struct {
	opts Options
	res  Resolver
	log  *slog.Logger
	pool *pool
}

var _ queue.Transport = (*Transport)(nil)

// New returns a Transport.
func New(opts Options) *Transport {
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Port == 0 {
		opts.Port = 25
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 30 * time.Second
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = 5 * time.Minute
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 3 * time.Minute
	}
	if opts.DataTimeout == 0 {
		opts.DataTimeout = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxIdle == 0 {
		opts.MaxIdle = 16
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 5 * time.Second
	}
	return &Transport{opts: opts, res: opts.Resolver, log: opts.Logger, pool: newPool(opts.MaxIdle, opts.IdleTimeout)}
}

// Send makes one delivery attempt of msg to its recipients (all of one
// domain): every address of every MX host in order until one of them
// takes the transaction. See queue.Transport.
func (t *Transport) Send(ctx context.Context, msg *queue.Message) error {
	if len(msg.To) == 0 {
		return nil
	}
	var hosts []host
	var err error
	if t.opts.Smarthost != "" {
		hosts, err = t.smarthost(ctx)
	} else {
		dctx, cancel := context.WithTimeout(ctx, dnsTimeout)
		domain := msg.To[0][strings.LastIndexByte(msg.To[0], '@')+1:]
		hosts, err = t.route(dctx, domain)
		cancel()
	}
	if err != nil {
		return err
	}
	var lastErr error
	for _, h := range hosts {
		for _, ip := range h.addrs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res, err := t.try(ctx, h, ip, msg)
			if err == nil {
				return res
			}
			t.log.Debug("host failed, trying the next", "queue_id", msg.ID, "host", h.name, "addr", ip, "err", err)
			lastErr = err
			var qe *queue.Error
			if errors.As(err, &qe) && qe.Perm {
				// The peer refused the message itself (sender, size,
				// extension): another MX would say the same.
				return err
			}
		}
	}
	return lastErr
}

// smarthost resolves the smarthost's address.
func (t *Transport) smarthost(ctx context.Context) ([]host, error) {
	name, portStr, err := net.SplitHostPort(t.opts.Smarthost)
	if err != nil {
		return nil, &queue.Error{Status: "4.3.5", Err: fmt.Errorf("smarthost %q: %w", t.opts.Smarthost, err)}
	}
	port, _ := strconv.Atoi(portStr)
	dctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	addrs, err := t.lookupHost(dctx, name)
	if err != nil {
		// A smarthost that cannot be found is a configuration problem:
		// keep the mail until it is fixed.
		var qe *queue.Error
		if errors.As(err, &qe) {
			qe.Perm, qe.Status = false, "4.4.3"
		}
		return nil, err
	}
	return []host{{name: name, port: port, addrs: addrs}}, nil
}

// try runs one SMTP session with ip, on a cached session if there is
// one. A nil error means the session got as far as the recipients, and res
// (nil or queue.RcptErrors) is the answer; an error means this host did
// not take the message (nothing was delivered) and the next one may.
func (t *Transport) try(ctx context.Context, h host, ip string, msg *queue.Message) (res error, err error) {
	addr := net.JoinHostPort(ip, strconv.Itoa(h.port))
	key := h.name + " " + addr
	log := t.log.With("queue_id", msg.ID, "host", h.name, "addr", addr)
	if c := t.pool.take(key); c != nil {
		c.bind(ctx)
		res, err, reuse := t.transact(c, h, msg)
		if err == nil {
			t.release(key, c, reuse)
			return res, nil
		}
		// The peer may have closed the idle session; nothing was
		// delivered, so a fresh one can do the same transaction.
		c.Close()
		log.Debug("cached session failed; connecting again", "err", err)
	}
	c, tlsOn, err := t.connect(ctx, h, addr, true)
	if err != nil && errors.Is(err, errTLSFailed) && t.opts.Smarthost == "" {
		// RFC 7435: to an MX, TLS is opportunistic and unauthenticated,
		// so a failed handshake is no reason to keep the mail; deliver in
		// clear as if TLS had not been offered. A smarthost is a relay
		// we chose and whose certificate we verify: falling back to
		// clear text there would let anyone in the path read the mail.
		log.Debug("STARTTLS failed; retrying without TLS", "err", err)
		c, tlsOn, err = t.connect(ctx, h, addr, false)
	}
	if err != nil {
		return nil, err
	}
	log.Debug("connected", "tls", tlsOn)
	res, err, reuse := t.transact(c, h, msg)
	if err != nil {
		c.Close()
		return nil, err
	}
	t.release(key, c, reuse)
	return res, nil
}

// release caches a session that can take another transaction, or ends it.
func (t *Transport) release(key string, c *client, reuse bool) {
	if !c.unbind() || !reuse {
		c.Client.Close()
		return
	}
	t.pool.put(key, c)
}

// Close ends the cached sessions. The queue calls it when it stops; the
// Transport stays usable.
func (t *Transport) Close() error {
	t.pool.closeAll()
	return nil
}

var errTLSFailed = errors.New("TLS handshake failed")

// client is one SMTP session and the raw connection under it.
type client struct {
	*gosmtp.Client
	raw  net.Conn
	stop func() bool // stops closing raw when ctx ends
}

func (c *client) Close() error {
	c.stop()
	return c.Client.Close()
}

// connect dials addr, reads the greeting, says EHLO, and upgrades to TLS
// if the peer offers it (and useTLS). For a smarthost with a password it
// also authenticates.
func (t *Transport) connect(ctx context.Context, h host, addr string, useTLS bool) (*client, bool, error) {
	d := net.Dialer{Timeout: t.opts.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, t.connErr(h, "connect", err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(err error) (*client, bool, error) {
		stop()
		raw.Close()
		return nil, false, err
	}
	conn := net.Conn(&writeDeadlineConn{Conn: raw, timeout: t.opts.WriteTimeout})
	smarthost := t.opts.Smarthost != ""
	tlsConfig := t.tlsConfig(h.name)
	tlsOn := false
	if smarthost && t.opts.ImplicitTLS {
		tc := tls.Client(conn, tlsConfig)
		tc.SetDeadline(time.Now().Add(t.opts.CommandTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(&queue.Error{Status: "4.7.0", RemoteMTA: h.name, Err: fmt.Errorf("%s: TLS: %w", h.name, err)})
		}
		tc.SetDeadline(time.Time{})
		conn, tlsOn = tc, true
	}
	c := t.newClient(conn)
	if err := c.Hello(t.opts.Hostname); err != nil {
		return fail(t.connErr(h, "greeting or EHLO", err))
	}
	if ok, _ := c.Extension("STARTTLS"); ok && !tlsOn && useTLS {
		// go-smtp's client says EHLO localhost before its STARTTLS, so
		// the command goes out here: nothing is buffered after the EHLO
		// reply, and the TLS session then begins on the raw connection.
		tc, err := t.startTLS(conn, tlsConfig, h)
		if err != nil {
			return fail(err)
		}
		c = t.newClient(&greetedConn{Conn: tc})
		if err := c.Hello(t.opts.Hostname); err != nil {
			return fail(t.connErr(h, "EHLO after STARTTLS", err))
		}
		tlsOn = true
	}
	if smarthost && t.opts.Username != "" {
		if !tlsOn && !isLoopback(raw.RemoteAddr()) {
			return fail(&queue.Error{Status: "4.7.10", RemoteMTA: h.name,
				Err: fmt.Errorf("%s offers no TLS: refusing to send the password in clear", h.name)})
		}
		if err := c.Auth(sasl.NewPlainClient("", t.opts.Username, t.opts.Password)); err != nil {
			// A refused password is the administrator's to fix: temporary,
			// so that nothing bounces meanwhile.
			qe := replyError(h.name, "AUTH", err)
			qe.Perm = false
			return fail(qe)
		}
	}
	return &client{Client: c, raw: raw, stop: stop}, tlsOn, nil
}

func (t *Transport) newClient(conn net.Conn) *gosmtp.Client {
	c := gosmtp.NewClient(conn)
	c.CommandTimeout = t.opts.CommandTimeout
	c.SubmissionTimeout = t.opts.DataTimeout
	return c
}

func (t *Transport) tlsConfig(name string) *tls.Config {
	if t.opts.Smarthost != "" && t.opts.TLSConfig != nil {
		cfg := t.opts.TLSConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = name
		}
		return cfg
	}
	if t.opts.Smarthost != "" {
		return &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
	}
	// Opportunistic TLS to MX hosts: unauthenticated (RFC 7435).
	return &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}

// startTLS sends STARTTLS on conn (after EHLO) and returns the TLS
// connection.
func (t *Transport) startTLS(conn net.Conn, cfg *tls.Config, h host) (*tls.Conn, error) {
	conn.SetDeadline(time.Now().Add(t.opts.CommandTimeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return nil, t.connErr(h, "STARTTLS", err)
	}
	// Read the reply a byte at a time, so that no TLS bytes are consumed.
	tr := textproto.NewReader(bufio.NewReaderSize(oneByteReader{conn}, 16))
	code, msg, err := tr.ReadResponse(220)
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%w: %s said %d %s", errTLSFailed, h.name, code, msg)
		}
		return nil, t.connErr(h, "STARTTLS", err)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errTLSFailed, h.name, err)
	}
	return tc, nil
}

// oneByteReader reads at most one byte per call.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// greetedConn supplies the greeting that go-smtp's client waits for: after
// STARTTLS the server sends none (RFC 3207 §4.2), and the session goes on
// with EHLO.
type greetedConn struct {
	net.Conn
	done bool
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if !g.done {
		g.done = true
		return copy(p, "220 TLS session started\r\n"), nil
	}
	return g.Conn.Read(p)
}

// writeDeadlineConn bounds each write (RFC 5321 §4.5.3.2.5: 3 minutes per
// data block), which go-smtp's client leaves unbounded while it streams
// the message.
type writeDeadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (w *writeDeadlineConn) Write(p []byte) (int, error) {
	w.Conn.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.Conn.Write(p)
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
