package imap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailroom/internal/memfolders"
)

// countingConn counts writes to the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestBufConnCoalescesUntilRead(t *testing.T) {
	t.Parallel()
	s, c := tcpPair(t)
	cc := &countingConn{Conn: s}
	b := newBufConn(cc)
	// No timer flush in this test (a loaded machine could fire it between
	// two writes): only the Read may send.
	b.flushDelay = time.Hour
	var want bytes.Buffer
	for i := range 200 {
		line := strings.Repeat("x", i%50) + "\r\n"
		want.WriteString(line)
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	go c.Write([]byte("a NOOP\r\n"))
	buf := make([]byte, 64)
	if _, err := b.Read(buf); err != nil {
		t.Fatal(err)
	}
	// 200 responses of under 6 KiB in all: one write, by the Read.
	if n := cc.writes.Load(); n != 1 {
		t.Errorf("%d writes to the socket for 200 small writes, want 1", n)
	}
	got := make([]byte, want.Len())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Error("the client did not get the bytes written, in order")
	}
	b.mu.Lock()
	held := cap(b.buf)
	b.mu.Unlock()
	if held != 0 {
		t.Errorf("an idle connection holds a %d-byte buffer", held)
	}
}

func TestBufConnLargeWritesGoOut(t *testing.T) {
	t.Parallel()
	s, c := tcpPair(t)
	cc := &countingConn{Conn: s}
	b := newBufConn(cc)
	const total = 1 << 20
	done := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(io.LimitReader(c, total))
		done <- got
	}()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	var want bytes.Buffer
	for want.Len() < total {
		want.Write(chunk)
		if _, err := b.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	b.flush()
	got := <-done
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes, not the %d written", len(got), want.Len())
	}
	if n := cc.writes.Load(); n > total/bufFlushSize+8 {
		t.Errorf("%d writes to the socket for 1 MiB, want about %d", n, total/bufFlushSize)
	}
}

// An IDLE update is written by another goroutine while the connection's
// reader is blocked in Read: it must reach the client at once (RFC 9051
// wants it well within a second), not when the client next sends.
func TestBufConnDeliversWhileReaderBlocked(t *testing.T) {
	t.Parallel()
	s, c := tcpPair(t)
	b := newBufConn(s)
	go func() {
		buf := make([]byte, 64)
		b.Read(buf) // blocked until the client says DONE
	}()
	var wg sync.WaitGroup
	for range 4 { // concurrent writers, as the race detector should see
		wg.Go(func() { b.Write([]byte("* 1 EXISTS\r\n")) })
	}
	wg.Wait()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(time.Second))
	br := bufio.NewReader(c)
	for range 4 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("update not delivered within 1 s: %v", err)
		}
		if line != "* 1 EXISTS\r\n" {
			t.Fatalf("got %q", line)
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("update took %v", d)
	}
	c.Write([]byte("DONE\r\n"))
}

// A client that stops reading: the write fails after the timeout, the
// error comes back from the next Write or Read, and Close does not hang.
func TestBufConnClientStopsReading(t *testing.T) {
	t.Parallel()
	s, c := tcpPair(t)
	_ = c // never read
	b := newBufConn(s)
	b.writeTimeout = 200 * time.Millisecond
	chunk := make([]byte, 64<<10)
	start := time.Now()
	var err error
	for err == nil && time.Since(start) < 20*time.Second {
		_, err = b.Write(chunk)
	}
	if err == nil {
		t.Fatal("writing to a client that does not read never failed")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("write error %v, want a timeout", err)
	}
	if _, rerr := b.Read(make([]byte, 10)); rerr == nil {
		t.Error("Read after a failed write succeeded")
	}
	if _, werr := b.Write([]byte("x")); werr == nil {
		t.Error("Write after a failed write succeeded")
	}
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
}

// Close while a flush is blocked on a client that does not read ends it.
func TestBufConnCloseUnblocksFlush(t *testing.T) {
	t.Parallel()
	s, _ := tcpPair(t)
	stuck := newStuckConn(s)
	b := newBufConn(stuck)
	werr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := b.Write(chunk); err != nil {
				werr <- err
				return
			}
		}
	}()
	<-stuck.entered // a flush is now blocked in Write
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung behind a blocked flush")
	}
	select {
	case <-werr:
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked writer was not released by Close")
	}
}

func TestBufConnCloseSendsPending(t *testing.T) {
	t.Parallel()
	s, c := tcpPair(t)
	b := newBufConn(s)
	b.Write([]byte("* BYE Server shutting down\r\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "* BYE Server shutting down\r\n" {
		t.Errorf("client got %q before EOF", got)
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestServeTLS(t *testing.T) {
	t.Parallel()
	conf := testTLS(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{TLSConfig: conf, Store: memfolders.New(), Auth: testAuth{}})
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(fakeRemote{l}) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	c, err := imapclient.DialTLS(l.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("login over ServeTLS from a remote address: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Caps()["STARTTLS"]; ok {
		t.Error("STARTTLS offered on a TLS connection")
	}
}

// The library sets the read deadline before each command, also a
// pipelined one it already has: what is buffered goes out then.
func TestBufConnFlushesBeforeNextCommand(t *testing.T) {
	t.Parallel()
	s, c := tcpPair(t)
	cc := &countingConn{Conn: s}
	b := newBufConn(cc)
	b.flushDelay = time.Hour // only SetReadDeadline may send
	b.Write([]byte("T1 OK done\r\n"))
	if n := cc.writes.Load(); n != 0 {
		t.Fatalf("%d writes before SetReadDeadline, want 0", n)
	}
	b.SetReadDeadline(time.Now().Add(time.Minute))
	if n := cc.writes.Load(); n != 1 {
		t.Fatalf("%d writes after SetReadDeadline, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "T1 OK done\r\n" {
		t.Fatalf("got %q, %v", line, err)
	}
}

// stuckConn is a connection to a client that never reads: a Write says so
// on entered, then blocks, as a write into full socket buffers does, until
// the write deadline passes or the connection is closed.
type stuckConn struct {
	net.Conn
	entered chan struct{}

	mu       sync.Mutex
	deadline time.Time
	closed   bool
	wake     chan struct{} // closed at each change of deadline or closed
}

func newStuckConn(c net.Conn) *stuckConn {
	return &stuckConn{Conn: c, entered: make(chan struct{}, 1), wake: make(chan struct{})}
}

func (c *stuckConn) Write(p []byte) (int, error) {
	select {
	case c.entered <- struct{}{}:
	default:
	}
	for {
		c.mu.Lock()
		closed, deadline, wake := c.closed, c.deadline, c.wake
		c.mu.Unlock()
		if closed {
			return 0, net.ErrClosed
		}
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-wake:
		case <-expired:
		}
	}
}

// change applies fn under the lock and wakes a blocked Write.
func (c *stuckConn) change(fn func()) {
	c.mu.Lock()
	fn()
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

func (c *stuckConn) SetWriteDeadline(t time.Time) error {
	c.change(func() { c.deadline = t })
	return nil
}

func (c *stuckConn) SetDeadline(t time.Time) error {
	c.change(func() { c.deadline = t })
	return c.Conn.SetReadDeadline(t)
}

func (c *stuckConn) Close() error {
	c.change(func() { c.closed = true })
	return c.Conn.Close()
}
