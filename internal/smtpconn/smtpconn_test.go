package smtpconn

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestListenAfterShutdown: a listener handed over after Shutdown must be
// closed, or its Accept would block for ever.
func TestListenAfterShutdown(t *testing.T) {
	s := NewSet(Options{})
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

func TestLimits(t *testing.T) {
	s := NewSet(Options{Hostname: "mx.test", MaxConnsPerIP: 2})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	wl := s.Listen(l)
	defer s.Shutdown()
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

func TestFixReply(t *testing.T) {
	s := NewSet(Options{SizeLimit: 1000})
	cases := map[string]string{
		"502 5.5.1 Missing RCPT TO command.\r\n":   "503 5.5.1 Missing RCPT TO command.\r\n",
		"502 5.5.1 Missing MAIL FROM command.\r\n": "503 5.5.1 Missing MAIL FROM command.\r\n",
		"250-SIZE\r\n": "250-SIZE 1000\r\n",
		"250 SIZE\r\n": "250 SIZE 1000\r\n",
		"502 5.5.1 HELP command not implemented\r\n": "",
		"454 4.7.0 Invalid base64 data\r\n":          "501 5.5.2 Invalid base64 data\r\n",
		"250-SIZE 5\r\n":                             "",
	}
	for in, want := range cases {
		if got := string(s.fixReply([]byte(in))); got != want {
			t.Errorf("fixReply(%q) = %q, want %q", in, got, want)
		}
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

func TestWaitIdle(t *testing.T) {
	s := NewSet(Options{})
	s.StartDelivery()
	s.StartDelivery()
	if s.WaitIdle(10 * time.Millisecond) {
		t.Fatal("WaitIdle returned true during deliveries")
	}
	s.EndDelivery()
	if s.WaitIdle(10 * time.Millisecond) {
		t.Fatal("WaitIdle returned true with one delivery left")
	}
	s.EndDelivery()
	if !s.WaitIdle(10 * time.Second) {
		t.Fatal("WaitIdle false after the last delivery ended")
	}
}
