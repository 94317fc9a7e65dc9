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

// PipeListener is a net.Listener whose connections are net.Pipe ends
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
// listener accepts.
func (l *PipeListener) Dial() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- pipeConn{server}:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *PipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *PipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *PipeListener) Addr() net.Addr { return pipeAddr{} }

// pipeConn reports a loopback TCP address, as the servers expect one.
type pipeConn struct{ net.Conn }

func (pipeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 12345} }

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

// RunSession plays session (then QUIT) against the server behind l and
// fails the test unless it was greeted and log shows no recovered panic:
// the body of the whole-session fuzz targets.
func RunSession(t testing.TB, l *PipeListener, log *LockedBuffer, session []byte) {
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
	c.Write([]byte("\r\nQUIT\r\n"))
	reply := <-out
	if !bytes.HasPrefix(reply, []byte("220 ")) {
		t.Fatalf("no greeting: %q", reply)
	}
	if strings.Contains(log.String(), "panic") {
		t.Fatalf("a handler panicked:\n%s", log.String())
	}
}
