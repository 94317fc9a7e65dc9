package conns

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestListenAfterShutdown: a listener handed over after Shutdown must be
// closed, or its Accept would block for ever.
func TestListenAfterShutdown(t *testing.T) {
	s := New(Options{})
	s.Shutdown()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	wl := s.Listen(l)
	done := make(chan error, 1)
	go func() { _, err := wl.Accept(); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept succeeded after Shutdown")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still blocked 10s after Shutdown")
	}
}

// accepting serves wl, handing each connection to the returned channel.
func accepting(t *testing.T, wl net.Listener) <-chan net.Conn {
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := wl.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return accepted
}

func TestLimits(t *testing.T) {
	s := New(Options{MaxConnsPerClient: 2, Refusal: []byte("421 4.7.0 mx.test Too many\r\n")})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	wl := s.Listen(l)
	defer s.Shutdown()
	accepted := accepting(t, wl)
	var server []net.Conn
	for range 2 {
		c, _ := net.Dial("tcp", l.Addr().String())
		defer c.Close()
		server = append(server, <-accepted)
	}
	over, _ := net.Dial("tcp", l.Addr().String())
	over.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(over).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0 mx.test ") {
		t.Fatalf("third connection from one IP got %q, want 421", line)
	}
	// When the server closes one, there is room again.
	server[0].Close()
	c, _ := net.Dial("tcp", l.Addr().String())
	defer c.Close()
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no room after a connection closed")
	}
}

func TestClientKey(t *testing.T) {
	cases := map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ff::1":   "2001:db8:1:2::/64",
	}
	for in, want := range cases {
		if got := ClientKey(net.ParseIP(in)); got != want {
			t.Errorf("ClientKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestWorking(t *testing.T) {
	s := New(Options{})
	done1 := s.Working()
	done2 := s.Working()
	short := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		return s.WaitWorking(ctx)
	}
	if short() == nil {
		t.Fatal("WaitWorking returned nil during work")
	}
	done1()
	done1() // a second call does nothing
	if short() == nil {
		t.Fatal("WaitWorking returned nil with work left")
	}
	done2()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitWorking(ctx); err != nil {
		t.Fatalf("WaitWorking after the last work ended: %v", err)
	}
}

// TestShutdownPhases: Shutdown ends an idle connection at once (through
// its OnShutdown), a busy one only at its End; Wait returns once both
// are gone.
func TestShutdownPhases(t *testing.T) {
	s := New(Options{})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	accepted := accepting(t, s.Listen(l))
	var server [2]*Conn
	for i := range server {
		c, _ := net.Dial("tcp", l.Addr().String())
		defer c.Close()
		server[i] = (<-accepted).(*Conn)
	}
	byed := make(chan struct{})
	server[0].OnShutdown(func() { close(byed); server[0].Close() })
	server[1].Begin()
	s.Shutdown()
	select {
	case <-byed:
	case <-time.After(10 * time.Second):
		t.Fatal("idle connection not ended by Shutdown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); err == nil {
		t.Fatal("Wait returned while a busy connection was open")
	}
	if s.Len() != 1 {
		t.Fatalf("Len = %d after Shutdown with one busy connection, want 1", s.Len())
	}
	server[1].End() // ends it: closed, as it has no OnShutdown
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	// The server side closes the conn; the library would then call Close.
	server[1].Close()
	if err := s.Wait(ctx2); err != nil {
		t.Fatalf("Wait after the busy connection ended: %v", err)
	}
}

func TestFrom(t *testing.T) {
	s := New(Options{})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &Conn{Conn: a, set: s}
	if From(c) != c {
		t.Error("From(conn) is not the conn")
	}
	if From(wrapped{c}) != c {
		t.Error("From does not look below NetConn")
	}
	if From(b) != nil {
		t.Error("From of a foreign connection is not nil")
	}
	var none *Conn
	none.Begin()
	none.End()
	none.CloseAfterWrite()
	if none.Client() != "" || none.Loopback() {
		t.Error("nil Conn reports a client")
	}
}

type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }
