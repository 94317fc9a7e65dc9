package mda

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// memSpoolLimit is how much of a message is kept in memory before the spool
// moves to a temporary file. Most mail is far smaller; a 25 MiB attachment
// should not sit in RAM once per concurrent session.
const memSpoolLimit = 1 << 20

// spool holds one received message, converted to LF line endings, so that it
// can be read once per recipient. Small messages stay in memory; larger ones
// go to a temporary file in dir, unlinked as soon as it is created.
type spool struct {
	dir  string
	max  int64 // refuse with ErrTooBig beyond this many bytes received (0: no limit)
	buf  bytes.Buffer
	file *os.File
	size int64 // bytes stored (after CRLF conversion)
	in   int64 // bytes received
	cr   bool  // the last byte received was a CR not yet written
}

// fillBufs are fill's buffers: what was read, and it converted (a CR
// held back from the previous read may come first). They are pooled:
// allocating them for every message was two fifths of the bytes the
// delivery path allocated.
type fillBufs struct {
	in  [32 << 10]byte
	out [32<<10 + 1]byte
}

var fillPool = sync.Pool{New: func() any { return new(fillBufs) }}

// fill reads r to the end. The size limit counts bytes as received, which
// is what the client's SIZE and our max_message_bytes refer to.
func (s *spool) fill(r io.Reader) error {
	bufs := fillPool.Get().(*fillBufs)
	defer fillPool.Put(bufs)
	buf, out := bufs.in[:], bufs.out[:0]
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.in += int64(n)
			if s.max > 0 && s.in > s.max {
				return ErrTooBig
			}
			out = s.convert(out[:0], buf[:n])
			if werr := s.write(out); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
	}
	if s.cr {
		s.cr = false
		return s.write([]byte{'\r'})
	}
	return nil
}

// convert appends p to out with every CRLF turned into LF. A bare CR is
// kept, byte for byte; a CR at the end of p waits for the next call. It
// copies the runs between CRs whole.
func (s *spool) convert(out, p []byte) []byte {
	for len(p) > 0 {
		if s.cr {
			s.cr = false
			if p[0] != '\n' {
				out = append(out, '\r')
			}
		}
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			return append(out, p...)
		}
		out = append(out, p[:i]...)
		s.cr = true
		p = p[i+1:]
	}
	return out
}

func (s *spool) write(p []byte) error {
	if s.file == nil && s.buf.Len()+len(p) > memSpoolLimit {
		f, err := os.CreateTemp(s.dir, "spool-*")
		if err != nil {
			return fmt.Errorf("create spool file: %w", err)
		}
		// The name is never needed again; unlinking now means a crash
		// cannot leave spool files behind.
		os.Remove(f.Name())
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			f.Close()
			return fmt.Errorf("write spool file: %w", err)
		}
		s.file = f
		s.buf = bytes.Buffer{}
	}
	s.size += int64(len(p))
	if s.file != nil {
		if _, err := s.file.Write(p); err != nil {
			return fmt.Errorf("write spool file: %w", err)
		}
		return nil
	}
	s.buf.Write(p)
	return nil
}

// withHeader returns a fresh reader over header followed by the whole
// message; several may be in use at once (one per recipient), all sharing
// the one spooled copy.
func (s *spool) withHeader(header string) io.Reader {
	var body io.Reader = bytes.NewReader(s.buf.Bytes())
	if s.file != nil {
		body = io.NewSectionReader(s.file, 0, s.size)
	}
	return io.MultiReader(strings.NewReader(header), body)
}

// close releases the temporary file, if any.
func (s *spool) close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}
