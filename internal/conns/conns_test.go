package conns

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
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

// TestStop: Stop, as IMAP and ManageSieve shut down, ends the idle
// connection at once, waits for the busy one until its deadline, then
// closes it and cancels Context; CloseWait waits for the session that
// still holds its connection and gives up after its bound.
func TestStop(t *testing.T) {
	s := New(Options{})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	accepted := accepting(t, s.Listen(l))
	var server [2]*Conn
	for i := range server {
		c, _ := net.Dial("tcp", l.Addr().String())
		defer c.Close()
		server[i] = (<-accepted).(*Conn)
	}
	server[0].OnShutdown(func() { server[0].Close() })
	server[1].Begin()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Stop(ctx, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a busy connection = %v, want the deadline's error", err)
	}
	// The busy session never unregistered its connection: CloseWait
	// waited its bound for it.
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("Stop returned after %v, before its deadline and CloseWait's bound", d)
	}
	if s.Context().Err() == nil {
		t.Fatal("Context not cancelled by Stop's Close")
	}
	// Close cut the busy connection below the session.
	server[1].Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := server[1].Conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of the busy connection after Stop: %v, want it closed", err)
	}
	if s.Len() != 1 {
		t.Fatalf("Len = %d, want the busy session's connection still registered", s.Len())
	}
	server[1].Close()
	if s.Len() != 0 {
		t.Fatalf("Len = %d after the session closed its connection", s.Len())
	}
}

// TestStopIdle: with only idle connections, Stop returns nil as soon as
// their sessions have closed them.
func TestStopIdle(t *testing.T) {
	s := New(Options{})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	accepted := accepting(t, s.Listen(l))
	c, _ := net.Dial("tcp", l.Addr().String())
	defer c.Close()
	sc := (<-accepted).(*Conn)
	sc.OnShutdown(func() { sc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx, 10*time.Second); err != nil {
		t.Fatalf("Stop with an idle connection: %v", err)
	}
	if s.Context().Err() == nil {
		t.Fatal("Context not cancelled by Stop")
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

// dialFrom connects to addr from the local address ip (127.0.0.x: every
// loopback address is this machine's, and each is a client of its own).
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether the server answered c with the refusal.
func refused(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.HasPrefix(line, "421")
}

// dial is one connection of TestLimitPolicy: from which client, and
// whether it must be admitted.
type dial struct {
	ip    string
	admit bool
}

// repeat is n dials of d.
func repeat(n int, d dial) []dial {
	ds := make([]dial, n)
	for i := range ds {
		ds[i] = d
	}
	return ds
}

// TestLimitPolicy: per-client limits (a loopback client's own), and the
// last slots of a nearly full server kept for clients that hold none.
func TestLimitPolicy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		dials []dial
	}{
		{"per client", Options{MaxConnsPerClient: 2},
			[]dial{{"127.0.0.2", true}, {"127.0.0.2", true}, {"127.0.0.2", false}, {"127.0.0.3", true}}},
		{"loopback limit of its own", Options{MaxConnsPerClient: 1, MaxConnsLoopback: 3},
			append(repeat(3, dial{"127.0.0.2", true}), dial{"127.0.0.2", false})},
		// 10 slots, the last kept for clients with none: .2 gets 9, not
		// the tenth, which .3 (holding none) gets; then the server is
		// full for everyone.
		{"slots kept for new clients", Options{MaxConns: 10},
			append(repeat(9, dial{"127.0.0.2", true}), dial{"127.0.0.2", false}, dial{"127.0.0.3", true}, dial{"127.0.0.4", false})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Refusal = []byte("421 too many\r\n")
			s := New(tc.opts)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			accepted := accepting(t, s.Listen(l))
			defer s.Close()
			for i, d := range tc.dials {
				c := dialFrom(t, d.ip, l.Addr().String())
				if d.admit {
					select {
					case <-accepted:
					case <-time.After(10 * time.Second):
						t.Fatalf("connection %d from %s not admitted", i, d.ip)
					}
				} else if !refused(t, c) {
					t.Fatalf("connection %d from %s admitted, want refused", i, d.ip)
				}
			}
		})
	}
}

// TestRequestDeadline: with MinDataRate, a request that trickles in is
// cut off after IdleTimeout (plus its small credit) although every read
// is quick; the timeout is final; a reply starts a new request.
func TestRequestDeadline(t *testing.T) {
	s := New(Options{IdleTimeout: 300 * time.Millisecond, MinDataRate: 1000})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := accepting(t, s.Listen(l))
	defer s.Close()
	client := dialFrom(t, "127.0.0.1", l.Addr().String())
	server := <-accepted
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte every 50 ms: each read well within 300 ms
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := client.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	start := time.Now()
	buf := make([]byte, 10)
	var err2 error
	for err2 == nil {
		_, err2 = server.Read(buf)
	}
	if !errors.Is(err2, os.ErrDeadlineExceeded) {
		t.Fatalf("read error %v, want a deadline", err2)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("cut off after %v, want about 300 ms", d)
	}
	if _, err := server.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read after the timeout: %v, want the timeout again", err)
	}
}
