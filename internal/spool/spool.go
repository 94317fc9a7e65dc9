// Package spool keeps one received message while the SMTP session works on
// it before delivery: DKIM signing and checking and milters must read the
// whole message before the header that they add can be written in front
// of it. Small messages stay in memory; larger ones go to a temporary
// file, unlinked as soon as it is made, so that nothing outlives the
// transaction even after a crash.
package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// MemLimit is how much of a message is kept in memory before the spool
// moves it to a file.
const MemLimit = 1 << 20

// ErrTooBig is a message over the spool's limit.
var ErrTooBig = errors.New("message exceeds the size limit")

// Spool holds one message, byte for byte as it was written.
type Spool struct {
	dir  string
	max  int64
	buf  bytes.Buffer
	file *os.File
	size int64
}

// New returns an empty spool whose file, if one is needed, goes in dir
// ("" for the system's temporary directory). max bounds the size (0: no
// limit).
func New(dir string, max int64) *Spool { return &Spool{dir: dir, max: max} }

// Write appends p.
func (s *Spool) Write(p []byte) (int, error) {
	if s.max > 0 && s.size+int64(len(p)) > s.max {
		return 0, ErrTooBig
	}
	if s.file == nil && s.buf.Len()+len(p) > MemLimit {
		f, err := os.CreateTemp(s.dir, "spool-")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		os.Remove(f.Name())
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			f.Close()
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.file = f
		s.buf = bytes.Buffer{}
	}
	var n int
	var err error
	if s.file != nil {
		n, err = s.file.Write(p)
		if err != nil {
			err = fmt.Errorf("spool: %w", err)
		}
	} else {
		n, _ = s.buf.Write(p)
	}
	s.size += int64(n)
	return n, err
}

// ReadFrom appends everything r has. Errors from r are returned as they
// are (an SMTP reader's own "too big" or timeout).
func (s *Spool) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Size is how many octets the spool holds.
func (s *Spool) Size() int64 { return s.size }

// Reader reads the message from offset off; each call starts anew, and
// readers may be used at the same time.
func (s *Spool) Reader(off int64) io.Reader {
	if off > s.size {
		off = s.size
	}
	if s.file != nil {
		return io.NewSectionReader(s.file, off, s.size-off)
	}
	return bytes.NewReader(s.buf.Bytes()[off:])
}

// Close releases the file, if any.
func (s *Spool) Close() error {
	if s.file != nil {
		err := s.file.Close()
		s.file = nil
		return err
	}
	return nil
}
