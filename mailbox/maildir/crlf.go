package maildir

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
)

// Messages are stored with LF line endings and served with CRLF. The size
// as served is the size on disk plus one byte per bare LF; lfWriter counts
// those while a message is written, and crlfReader does the conversion
// when it is read.

// lfWriter writes to w, optionally turning CRLF into LF (for messages that
// arrive with the wire's line endings), and counts the bytes written and
// the LFs not preceded by CR in what was written.
type lfWriter struct {
	w      io.Writer
	toLF   bool // turn CRLF into LF
	n      int64
	bareLF int64
	lastCR bool // the last byte written was CR
	heldCR bool // toLF: a CR not yet written, in case LF follows
	buf    []byte
}

func (l *lfWriter) Write(p []byte) (int, error) {
	if !l.toLF {
		return l.count(p)
	}
	out := l.buf[:0]
	for _, c := range p {
		if l.toLF {
			if l.heldCR {
				l.heldCR = false
				if c == '\n' {
					out = l.emit(out, '\n')
					continue
				}
				out = l.emit(out, '\r')
			}
			if c == '\r' {
				l.heldCR = true
				continue
			}
		}
		out = l.emit(out, c)
	}
	l.buf = out
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// count is Write without conversion: it counts p's bare LFs with two
// scans for the whole slice (rather than a loop over its bytes) and
// writes p itself.
func (l *lfWriter) count(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	lfs := bytes.Count(p, []byte{'\n'}) - bytes.Count(p, []byte("\r\n"))
	if l.lastCR && p[0] == '\n' {
		lfs-- // the CR ended the previous write
	}
	l.bareLF += int64(lfs)
	l.n += int64(len(p))
	l.lastCR = p[len(p)-1] == '\r'
	if _, err := l.w.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (l *lfWriter) emit(out []byte, c byte) []byte {
	if c == '\n' && !l.lastCR {
		l.bareLF++
	}
	l.lastCR = c == '\r'
	l.n++
	return append(out, c)
}

// flush writes a CR held back at the end of the message.
func (l *lfWriter) flush() error {
	if !l.heldCR {
		return nil
	}
	l.heldCR = false
	_, err := l.w.Write(l.emit(l.buf[:0], '\r'))
	return err
}

// served is the size with CRLF line endings.
func (l *lfWriter) served() int64 { return l.n + l.bareLF }

// countServed reads r to its end and returns its size as served.
func countServed(r io.Reader) (disk, served int64, err error) {
	l := &lfWriter{w: io.Discard}
	_, err = io.CopyBuffer(l, r, make([]byte, 32<<10))
	return l.n, l.served(), err
}

// crlfReader serves a file stored with LF endings with CRLF endings: a
// bare LF becomes CRLF, an existing CRLF stays. Seeking to the start
// rewinds the file; a seek back within the last chunk read (such as to
// the body after the header was read) moves in memory; any other seek
// reads forward from the start. Its buffers come from a pool and go back
// at Close.
type crlfReader struct {
	f    *os.File
	size int64 // size as served, for io.SeekEnd
	pos  int64 // offset in the served stream
	bufs *crlfBufs
	// chunk is the last chunk converted, starting at offset chunkAt of
	// the served stream; out is its part not yet returned.
	chunk   []byte
	chunkAt int64
	out     []byte
	lastCR  bool
	eof     bool
}

const crlfChunk = 8 << 10

// crlfBufs are one reader's buffers: a chunk of the file, and room for
// it converted (at worst every byte an LF).
type crlfBufs struct {
	in  [crlfChunk]byte
	out [2 * crlfChunk]byte
}

var crlfPool = sync.Pool{New: func() any { return new(crlfBufs) }}

func newCRLFReader(f *os.File, size int64) *crlfReader {
	return &crlfReader{f: f, size: size, bufs: crlfPool.Get().(*crlfBufs)}
}

// Read serves exactly the size the index gave (which the IMAP server
// announces before the bytes): a file edited behind the index's back is
// cut there, or fails with io.ErrUnexpectedEOF if it is shorter, rather
// than breaking the protocol stream.
func (c *crlfReader) Read(p []byte) (int, error) {
	if c.bufs == nil {
		return 0, os.ErrClosed
	}
	if c.pos >= c.size {
		return 0, io.EOF
	}
	if rest := c.size - c.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	for len(c.out) == 0 {
		if c.eof {
			return 0, io.ErrUnexpectedEOF
		}
		n, err := c.f.Read(c.bufs.in[:])
		c.chunk = c.convert(c.bufs.in[:n])
		c.chunkAt = c.pos
		c.out = c.chunk
		if errors.Is(err, io.EOF) {
			c.eof = true
		} else if err != nil {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	c.pos += int64(n)
	return n, nil
}

// convert turns in into CRLF form in the output buffer, a line at a
// time.
func (c *crlfReader) convert(in []byte) []byte {
	out := c.bufs.out[:0]
	for len(in) > 0 {
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			out = append(out, in...)
			c.lastCR = in[len(in)-1] == '\r'
			break
		}
		cr := c.lastCR
		if i > 0 {
			cr = in[i-1] == '\r'
		}
		out = append(out, in[:i]...)
		if !cr {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		c.lastCR = false
		in = in[i+1:]
	}
	return out
}

func (c *crlfReader) Seek(offset int64, whence int) (int64, error) {
	if c.bufs == nil {
		return c.pos, os.ErrClosed
	}
	var target int64
	switch whence {
	case io.SeekStart:
		target = offset
	case io.SeekCurrent:
		target = c.pos + offset
	case io.SeekEnd:
		target = c.size + offset
	default:
		return c.pos, errors.New("maildir: seek: invalid whence")
	}
	if target < 0 {
		return c.pos, errors.New("maildir: seek before the start")
	}
	if target < c.pos {
		if target >= c.chunkAt && target <= c.chunkAt+int64(len(c.chunk)) {
			c.out = c.chunk[target-c.chunkAt:]
			c.pos = target
			return target, nil
		}
		if _, err := c.f.Seek(0, io.SeekStart); err != nil {
			return c.pos, err
		}
		c.pos, c.out, c.chunk, c.chunkAt, c.lastCR, c.eof = 0, nil, nil, 0, false, false
	}
	if skip := target - c.pos; skip > 0 {
		if _, err := io.CopyN(io.Discard, c, skip); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return c.pos, err
		}
	}
	return target, nil
}

// Close closes the file and gives the buffers back.
func (c *crlfReader) Close() error {
	if c.bufs == nil {
		return os.ErrClosed
	}
	b := c.bufs
	c.bufs, c.chunk, c.out = nil, nil, nil
	crlfPool.Put(b)
	return c.f.Close()
}
