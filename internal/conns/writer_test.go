package conns

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestWriter: a write to a client that does not read fails at the
// deadline (Timeout, or a second after LastWords) instead of blocking,
// and the Writer follows the connection it points at (STARTTLS).
func TestWriter(t *testing.T) {
	a, b := net.Pipe() // b is never read
	defer a.Close()
	defer b.Close()
	nc := net.Conn(a)
	w := &Writer{Conn: &nc, Timeout: 20 * time.Millisecond}
	if _, err := w.Write([]byte("* OK\r\n")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a client that does not read: %v, want a deadline error", err)
	}
	w.Timeout = time.Hour
	w.LastWords = true
	done := make(chan error, 1)
	go func() { _, err := w.Write([]byte("* BYE\r\n")); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("last words to a client that does not read: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("last words still blocked after 10 s (Timeout used instead of a second)")
	}

	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	nc = c // as STARTTLS replaces the connection
	w.LastWords = false
	go w.Write([]byte("* OK\r\n"))
	d.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 6)
	if _, err := io.ReadFull(d, got); err != nil || string(got) != "* OK\r\n" {
		t.Fatalf("read from the replaced connection: %q, %v", got, err)
	}
}
