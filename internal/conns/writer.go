package conns

import (
	"net"
	"time"
)

// Writer bounds each write of a server that runs its own sessions (IMAP,
// ManageSieve) with a write deadline, so that a client that stops
// reading cannot hold a session: Timeout per write, or a second once
// LastWords is set (the BYE to a client that may be gone).
//
// Conn points at the session's connection, which STARTTLS replaces; the
// Writer follows it. As the connection itself, a Writer is for one
// writer at a time: the session's write lock guards LastWords too.
type Writer struct {
	Conn      *net.Conn
	Timeout   time.Duration
	LastWords bool
}

// lastWordsTimeout bounds the writes after LastWords.
const lastWordsTimeout = time.Second

// Write sets the write deadline and writes p to *w.Conn.
func (w *Writer) Write(p []byte) (int, error) {
	d := w.Timeout
	if w.LastWords {
		d = lastWordsTimeout
	}
	nc := *w.Conn
	nc.SetWriteDeadline(time.Now().Add(d))
	return nc.Write(p)
}
