package conns

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first fails Accepts with err, then accepts
// from the real listener (or fails for good with final).
type failingListener struct {
	net.Listener
	fails atomic.Int32
	err   error
	final error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, l.err
	}
	if l.final != nil {
		return nil, l.final
	}
	return l.Listener.Accept()
}

// TestServe: the shared accept loop retries temporary failures (a server
// out of descriptors must neither stop nor spin), runs each connection's
// handler, returns a permanent failure, and returns nil on Shutdown.
func TestServe(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	for _, tc := range []struct {
		name      string
		fails     int32
		err       error
		final     error
		wantServe bool // a connection is served
	}{
		{"serves", 0, nil, nil, true},
		{"retries EMFILE", 3, emfile, nil, true},
		{"retries a client gone before accept", 2, os.NewSyscallError("accept4", syscall.ECONNABORTED), nil, true},
		{"returns a permanent failure", 0, nil, errors.New("listener broken"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			real, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			fl := &failingListener{Listener: real, err: tc.err, final: tc.final}
			fl.fails.Store(tc.fails)
			served := make(chan error, 1)
			go func() {
				served <- s.Serve(s.Listen(fl), func(c net.Conn) {
					defer c.Close()
					io.WriteString(c, "hello\r\n")
				})
			}()
			if !tc.wantServe {
				select {
				case err := <-served:
					if err == nil || err.Error() != tc.final.Error() {
						t.Errorf("Serve returned %v, want %v", err, tc.final)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Serve still running 10s after a permanent failure")
				}
				return
			}
			c, err := net.Dial("tcp", real.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 7)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello\r\n" {
				t.Errorf("read %q, %v; want the handler's hello", buf, err)
			}
			c.Close()
			s.Shutdown()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve after Shutdown: %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve still running 10s after Shutdown")
			}
		})
	}
}
