package socketmap

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// FuzzNetstring checks the request parser: no panic, a result no longer
// than the limit, and what parses is what the client would have written.
func FuzzNetstring(f *testing.F) {
	for _, s := range []string{"0:,", "5:hello,", "05:hello,", "3:ab", "x", "", "25:mailbox alice@example.org,"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := readNetstring(bufio.NewReader(bytes.NewReader(in)), 64)
		if err != nil {
			return
		}
		if len(b) > 64 {
			t.Fatalf("%d bytes parsed, limit 64", len(b))
		}
		if enc := appendNetstring(nil, string(b)); !bytes.HasPrefix(in, enc) {
			t.Fatalf("parsed %q from %q, which does not start with its encoding %q", b, in, enc)
		}
	})
}

// FuzzSession feeds whole client streams to a Server's connection
// handler: it must answer each request it reads with one netstring, stop
// at the first malformed one, and never panic.
func FuzzSession(f *testing.F) {
	f.Add([]byte("25:mailbox alice@example.org,18:domain example.org,"))
	f.Add([]byte("3:x y,7:nomap a,"))
	f.Add([]byte("99:short,"))
	srv := New(Options{Tables: map[string]Table{
		"mailbox": TableFunc(func(ctx context.Context, key string) (string, error) {
			if key == "alice@example.org" {
				return key, nil
			}
			return "", ErrNotFound
		}),
	}, Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, in []byte) {
		sc := &streamConn{in: bytes.NewReader(in)}
		srv.handle(sc)
		r := bufio.NewReader(&sc.out)
		for {
			if _, err := readNetstring(r, maxReply); err != nil {
				if err != io.EOF {
					t.Fatalf("reply is not a netstring: %v in %q", err, sc.out.String())
				}
				break
			}
		}
	})
}

// streamConn is a connection whose client sent in and then closed its
// side; what the server writes is kept in out.
type streamConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.UnixAddr{Net: "unix"} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Net: "unix"} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
