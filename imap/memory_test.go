package imap

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"
)

// An idle IMAP connection (logged in, INBOX selected, in IDLE) costs the
// server under 50 KiB (the goal): its goroutines' stacks, buffers
// and session, the folder's snapshot being shared.
func TestMemoryPerIdleConnection(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector inflates memory")
	}
	ts := start(t, Options{PollInterval: time.Second})
	for i := range 50 {
		ts.deliver(t, "INBOX", msgN(i))
	}
	const n = 300
	measure := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	before := measure()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 4096)
	expect := func(c net.Conn, want string) {
		t.Helper()
		var got []byte
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for !bytes.Contains(got, []byte(want)) {
			k, err := c.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %q: %v (got %q)", want, err, got)
			}
			got = append(got, buf[:k]...)
		}
	}
	for range n {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.Write([]byte("a LOGIN alice secret\r\nb SELECT INBOX\r\nc IDLE\r\n"))
		expect(c, "+ idling")
	}
	after := measure()
	per := (int64(after) - int64(before)) / n
	t.Logf("%d idle connections: %d bytes each (server and client sockets together)", n, per)
	if per > 50<<10 {
		t.Errorf("an idle connection costs %d bytes, want under 50 KiB", per)
	}
}
