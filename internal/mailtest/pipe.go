package mailtest

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// PipeListener is a net.Listener whose connections are in-memory pipes
// handed to it by Dial: for whole-session fuzzing without sockets.
type PipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

// NewPipeListener returns a PipeListener.
func NewPipeListener() *PipeListener {
	return &PipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Dial returns the client end of a new connection whose server end the
// listener accepts. Each direction is a net.Pipe of its own, so that the
// client can end its half (CloseWrite) and still read the replies, as a
// TCP client does: the server reads EOF at the end of the session instead
// of waiting for its idle timeout.
func (l *PipeListener) Dial() (*PipeConn, error) {
	up, upServer := net.Pipe()     // client → server
	downServer, down := net.Pipe() // server → client
	select {
	case l.conns <- &pipeEnd{r: upServer, w: downServer}:
		return &PipeConn{pipeEnd{r: down, w: up}}, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Accept returns the server end of the next connection Dial makes.
func (l *PipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Dial return net.ErrClosed.
func (l *PipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is a placeholder: the listener has no network address.
func (l *PipeListener) Addr() net.Addr { return pipeAddr{} }

// PipeConn is the client end of a PipeListener connection.
type PipeConn struct{ pipeEnd }

// CloseWrite ends what the client sends: the server reads EOF, and the
// client goes on reading what it answers.
func (c *PipeConn) CloseWrite() error { return c.w.Close() }

// pipeEnd is one end of a connection made of two pipes, reading from one
// and writing to the other. It reports a loopback TCP address, as the
// servers expect one.
type pipeEnd struct{ r, w net.Conn }

func (p *pipeEnd) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeEnd) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeEnd) Close() error {
	p.w.Close()
	return p.r.Close()
}
func (p *pipeEnd) LocalAddr() net.Addr { return pipeAddr{} }
func (p *pipeEnd) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 12345}
}
func (p *pipeEnd) SetDeadline(t time.Time) error {
	p.w.SetDeadline(t)
	return p.r.SetDeadline(t)
}
func (p *pipeEnd) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *pipeEnd) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// LockedBuffer collects a server's log written from many goroutines.
type LockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// PlaySession connects to the server behind l, sends session and then
// end (the commands that end a session in any state the session may have
// left it in), ends its half of the connection and returns all the server
// sent until it closed the connection. A server that neither reads nor
// closes is left after 5 seconds.
func PlaySession(t testing.TB, l *PipeListener, session, end []byte) []byte {
	t.Helper()
	c, err := l.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	out := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(c); out <- b }()
	c.Write(session)
	c.Write(end)
	c.CloseWrite()
	return <-out
}

// RunSession plays session (then QUIT) against the SMTP or LMTP server
// behind l and fails the test unless it was greeted and log shows no
// recovered panic: the body of the whole-session fuzz targets.
func RunSession(t testing.TB, l *PipeListener, log *LockedBuffer, session []byte) {
	t.Helper()
	reply := PlaySession(t, l, session, []byte("\r\nQUIT\r\n"))
	if !bytes.HasPrefix(reply, []byte("220 ")) {
		t.Fatalf("no greeting: %q", reply)
	}
	if strings.Contains(log.String(), "panic") {
		t.Fatalf("a handler panicked:\n%s", log.String())
	}
}
