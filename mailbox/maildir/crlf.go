package maildir

import (
	"errors"
	"io"
	"os"
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
// rewinds the file; any other seek reads forward from the start.
type crlfReader struct {
	f      *os.File
	size   int64 // size as served, for io.SeekEnd
	pos    int64 // offset in the served stream
	in     []byte
	out    []byte // converted bytes not yet returned
	outBuf []byte
	lastCR bool
	eof    bool
}

func newCRLFReader(f *os.File, size int64) *crlfReader {
	return &crlfReader{f: f, size: size, in: make([]byte, 8<<10), outBuf: make([]byte, 0, 16<<10)}
}

// Read serves exactly the size the index gave (which the IMAP server
// announces before the bytes): a file edited behind the index's back is
// cut there, or fails with io.ErrUnexpectedEOF if it is shorter, rather
// than breaking the protocol stream.
func (c *crlfReader) Read(p []byte) (int, error) {
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
		n, err := c.f.Read(c.in)
		out := c.outBuf[:0]
		for _, b := range c.in[:n] {
			if b == '\n' && !c.lastCR {
				out = append(out, '\r')
			}
			c.lastCR = b == '\r'
			out = append(out, b)
		}
		c.out = out
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

func (c *crlfReader) Seek(offset int64, whence int) (int64, error) {
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
		if _, err := c.f.Seek(0, io.SeekStart); err != nil {
			return c.pos, err
		}
		c.pos, c.out, c.lastCR, c.eof = 0, nil, false, false
	}
	if skip := target - c.pos; skip > 0 {
		if _, err := io.CopyN(io.Discard, c, skip); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return c.pos, err
		}
	}
	return target, nil
}

func (c *crlfReader) Close() error { return c.f.Close() }
