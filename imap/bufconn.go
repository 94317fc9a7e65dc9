package imap

import (
	"net"
	"sync"
	"time"
)

// Write coalescing. go-imap's server flushes its bufio.Writer after every
// response, so FETCH 1:* costs one write(2) (and two SetWriteDeadline
// calls) per message. bufConn sits under the library (and under TLS, for
// STARTTLS and ServeTLS) and holds what is written until it passes
// bufFlushSize, until the library is about to read the next command (the
// client may be waiting for us then), or for at most bufFlushDelay, so that responses written
// while the reader is blocked (IDLE updates, BYE) still go out at once.
const (
	bufFlushSize  = 32 << 10
	bufFlushDelay = time.Millisecond
	// bufWriteTimeout bounds one write to the socket, as the library's
	// own per-response timeout does; a longer deadline the library asks
	// for (5 minutes for a literal) wins.
	bufWriteTimeout = 30 * time.Second
	// bufCloseTimeout bounds the last flush on Close (a BYE to a client
	// that does not read must not hold Server.Close up).
	bufCloseTimeout = 200 * time.Millisecond
)

// bufPool holds the write buffers of all connections: a connection has
// one only while it has something to send.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, bufFlushSize+8<<10)
	return &b
}}

// bufConn is a net.Conn whose writes are coalesced. Write never fails for
// a socket error the moment it happens: the error is sticky and returned
// by the next Write or Read, which ends the library's session.
type bufConn struct {
	net.Conn

	wmu sync.Mutex // held while writing to the socket; taken before mu

	mu       sync.Mutex
	buf      []byte // from bufPool; nil when empty, so that an idle connection holds none
	err      error  // first write error, sticky
	armed    bool   // timer pending
	timer    *time.Timer
	deadline time.Time // the library's write deadline (zero: none)
	closing  bool

	writeTimeout time.Duration // bufWriteTimeout; shorter in tests
	flushDelay   time.Duration // bufFlushDelay; longer in tests that count writes
}

func newBufConn(c net.Conn) *bufConn {
	b := &bufConn{Conn: c, writeTimeout: bufWriteTimeout, flushDelay: bufFlushDelay}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.mu.Lock()
		b.armed = false
		b.mu.Unlock()
		b.flush()
	})
	b.timer.Stop()
	return b
}

// Write appends p to the buffer, or writes it when the buffer grows past
// bufFlushSize.
// NetConn returns the connection under b, for conns.From.
func (b *bufConn) NetConn() net.Conn { return b.Conn }

func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	if b.closing {
		b.mu.Unlock()
		return 0, net.ErrClosed
	}
	if b.buf == nil {
		b.buf = (*bufPool.Get().(*[]byte))[:0]
	}
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= bufFlushSize
	if !full && !b.armed {
		b.armed = true
		b.timer.Reset(b.flushDelay)
	}
	b.mu.Unlock()
	if full {
		if err := b.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Read sends what is buffered first: the client answers only what it has
// seen.
func (b *bufConn) Read(p []byte) (int, error) {
	if err := b.flush(); err != nil {
		return 0, err
	}
	return b.Conn.Read(p)
}

// flush writes the buffer to the socket. Taking wmu before the buffer
// keeps writes in order whichever goroutine flushes.
func (b *bufConn) flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	if b.err != nil || len(b.buf) == 0 {
		err := b.err
		b.mu.Unlock()
		return err
	}
	data := b.buf
	b.buf = nil
	d := time.Now().Add(b.writeTimeout)
	if b.closing {
		d = time.Now().Add(bufCloseTimeout)
	} else if b.deadline.After(d) {
		d = b.deadline
	}
	b.mu.Unlock()

	b.Conn.SetWriteDeadline(d)
	_, err := b.Conn.Write(data)

	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil && b.err == nil {
		b.err = err
	}
	if cap(data) <= 2*bufFlushSize { // not a huge literal's
		data = data[:0]
		bufPool.Put(&data)
	}
	return b.err
}

// SetWriteDeadline records the library's deadline for the next flush;
// setting it on the socket for every response is what we save.
func (b *bufConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	b.deadline = t
	b.mu.Unlock()
	return nil
}

// SetReadDeadline sends what is buffered, then sets the read deadline.
// The library sets it before it reads each command, also when pipelined
// commands are already in its buffer and Read is not called: a pipelining
// client (mbsync sends one UID FETCH per message) gets each command's
// responses at once, in one write.
func (b *bufConn) SetReadDeadline(t time.Time) error {
	b.flush() // an error is sticky: the next Read returns it
	return b.Conn.SetReadDeadline(t)
}

// SetDeadline sets the read deadline and records the write deadline.
func (b *bufConn) SetDeadline(t time.Time) error {
	b.SetWriteDeadline(t)
	return b.SetReadDeadline(t)
}

// Close sends what is buffered (a BYE), waiting at most bufCloseTimeout,
// then closes the socket.
func (b *bufConn) Close() error {
	b.mu.Lock()
	b.closing = true
	pending := len(b.buf) > 0 && b.err == nil
	b.timer.Stop()
	b.armed = false
	b.mu.Unlock()
	if pending {
		// A flush blocked on a client that does not read gives up too.
		b.Conn.SetWriteDeadline(time.Now().Add(bufCloseTimeout))
		b.flush()
	}
	return b.Conn.Close()
}
