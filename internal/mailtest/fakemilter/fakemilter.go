// Package fakemilter is a milter for tests: it speaks the protocol
// (version 6) on a unix socket, with scripted answers, so that tests can
// make a filter that modifies, refuses, hangs, dies in the middle of a
// message or sends garbage.
package fakemilter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"mailroom/internal/mailtest"
)

// Milter is a running fake milter. For each command, its answer function
// returns the packets to send back (nil: the usual "continue", or
// nothing for commands that get no reply), or act "hang" (read and never
// answer) or "close" (drop the connection).
type Milter struct {
	// Addr is "unix:/path", as the milters settings take it.
	Addr   string
	answer func(code byte, data []byte) (packets [][]byte, act string)

	mu      sync.Mutex
	headers []string
	body    []byte
	conns   int
}

// Conns is how many connections the milter has taken.
func (f *Milter) Conns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// Packet builds a packet: the command or reply code and its data.
func Packet(code byte, data ...string) []byte {
	p := append([]byte{code}, strings.Join(data, "")...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

// Start serves a fake milter until cleanup.
func Start(t testing.TB, answer func(code byte, data []byte) (packets [][]byte, act string)) *Milter {
	t.Helper()
	path := filepath.Join(mailtest.ShortTempDir(t), "m.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &Milter{Addr: "unix:" + path, answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			wg.Go(func() { f.serve(c) })
		}
	})
	return f
}

func (f *Milter) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil || n == 0 || n > 1<<20 {
			return
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		code, data := p[0], p[1:]
		switch code {
		case 'L':
			name, value, _ := bytes.Cut(data, []byte{0})
			f.mu.Lock()
			f.headers = append(f.headers, string(name)+": "+string(bytes.TrimSuffix(value, []byte{0})))
			f.mu.Unlock()
		case 'B':
			f.mu.Lock()
			f.body = append(f.body, data...)
			f.mu.Unlock()
		}
		var packets [][]byte
		act := ""
		if f.answer != nil {
			packets, act = f.answer(code, data)
		}
		switch act {
		case "hang":
			io.Copy(io.Discard, r) // until the client gives up
			return
		case "close":
			return
		}
		if packets == nil {
			switch code {
			case 'O':
				opt := binary.BigEndian.AppendUint32(nil, 6)
				opt = binary.BigEndian.AppendUint32(opt, 0x1ff)
				opt = binary.BigEndian.AppendUint32(opt, 0)
				packets = [][]byte{Packet('O', string(opt))}
			case 'D', 'A':
			case 'Q':
				return
			default:
				packets = [][]byte{Packet('c')}
			}
		}
		for _, pk := range packets {
			if _, err := c.Write(pk); err != nil {
				return
			}
		}
	}
}

// Received returns the header fields ("Name: value") and the body the
// milter was sent, over all connections.
func (f *Milter) Received() ([]string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.headers), string(f.body)
}
