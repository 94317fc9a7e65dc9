package lmtp

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// go-smtp v0.25 answers a command given out of sequence (DATA or BDAT with
// no accepted recipient, RCPT before MAIL, MAIL before LHLO) with 502
// "command not implemented". RFC 5321 §4.2.4 and RFC 2033 §4.2 want 503
// "bad sequence of commands". The library offers no hook for those replies,
// so the connection rewrites exactly these lines on their way out; every
// other byte passes through untouched. Drop this when the library is fixed.
var sequenceReplies = [][]byte{
	[]byte("502 5.5.1 Missing RCPT TO command."),
	[]byte("502 5.5.1 Missing MAIL FROM command."),
	[]byte("502 5.5.1 Please introduce yourself first."),
}

// connSet tracks open connections so that Shutdown can close the idle ones
// at once and let the busy ones finish their delivery first; go-smtp's own
// Shutdown would wait for idle clients to hang up by themselves.
type connSet struct {
	// sizeLimit is announced in the LHLO reply's SIZE line (see Write).
	sizeLimit int64

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing atomic.Bool
}

// shutdown closes every connection that is not delivering a message now.
func (cs *connSet) shutdown() {
	cs.closing.Store(true)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c := range cs.conns {
		if !c.busy.Load() {
			c.Conn.Close()
		}
	}
}

type listener struct {
	net.Listener
	set *connSet
}

func (l listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, set: l.set}
	l.set.mu.Lock()
	if l.set.conns == nil {
		l.set.conns = map[*conn]struct{}{}
	}
	l.set.conns[c] = struct{}{}
	l.set.mu.Unlock()
	return c, nil
}

// conn is a server connection: it fixes the sequence replies and knows
// whether a delivery is in progress.
type conn struct {
	net.Conn
	set  *connSet
	busy atomic.Bool
}

// Write sees one whole reply line per call: go-smtp writes through
// textproto, which flushes after every line.
func (c *conn) Write(p []byte) (int, error) {
	q := c.fixReply(p)
	if q == nil {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

// fixReply returns the corrected form of a reply line, or nil if it is
// right as it is.
func (c *conn) fixReply(p []byte) []byte {
	for _, r := range sequenceReplies {
		if bytes.HasPrefix(p, r) {
			q := bytes.Clone(p)
			copy(q, "503")
			return q
		}
	}
	// go-smtp v0.25 refuses a message of exactly MaxMessageBytes (its data
	// reader gives up at the limit before seeing the final dot), although
	// RFC 1870 says the announced size is accepted. So the library runs
	// without a limit, mda enforces it, and the bare "SIZE" the library
	// then announces gets our number.
	if c.set.sizeLimit > 0 && len(p) > 4 && bytes.Equal(p[4:], []byte("SIZE\r\n")) {
		return fmt.Appendf(nil, "%sSIZE %d\r\n", p[:4], c.set.sizeLimit)
	}
	return nil
}

func (c *conn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// begin marks a delivery in progress.
func (c *conn) begin() { c.busy.Store(true) }

// end marks the delivery answered; if the server is shutting down, the
// connection is closed now that its client has its replies.
func (c *conn) end() {
	c.busy.Store(false)
	if c.set.closing.Load() {
		c.Conn.Close()
	}
}
