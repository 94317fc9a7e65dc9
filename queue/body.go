package queue

import (
	"hash"
	"hash/crc32"
	"io"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// bodyWriter stores a message as it will go on the wire: lone LFs become
// CRLF (so the file's size is the SIZE= the peer is told), and it notes
// what the message needs of the peer (8BITMIME for octets above 127,
// SMTPUTF8 for UTF-8 in the header) and a checksum that later tells a
// damaged file from a good one.
type bodyWriter struct {
	w        io.Writer
	crc      hash.Hash32
	n        int64
	buf      []byte
	prevCR   bool
	lineLen  int  // octets on the current line, CR excluded
	inBody   bool // past the empty line that ends the header
	eightBit bool
	utf8Hdr  bool
}

func newBodyWriter(w io.Writer) *bodyWriter {
	return &bodyWriter{w: w, crc: crc32.New(crcTable), buf: make([]byte, 0, 64<<10)}
}

func (b *bodyWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		chunk := p[:min(len(p), 32<<10)]
		p = p[len(chunk):]
		out := b.buf[:0]
		for _, c := range chunk {
			if c == '\n' && !b.prevCR {
				out = append(out, '\r')
			}
			out = append(out, c)
			switch {
			case c == '\n':
				if b.lineLen == 0 {
					b.inBody = true
				}
				b.lineLen = 0
			case c != '\r':
				b.lineLen++
			}
			if c >= 0x80 {
				b.eightBit = true
				if !b.inBody {
					b.utf8Hdr = true
				}
			}
			b.prevCR = c == '\r'
		}
		if err := b.emit(out); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// finish ends the last line if the message did not.
func (b *bodyWriter) finish() error {
	if b.n == 0 || b.lineLen > 0 || b.prevCR {
		if b.prevCR {
			return b.emit([]byte("\n"))
		}
		return b.emit([]byte("\r\n"))
	}
	return nil
}

func (b *bodyWriter) emit(out []byte) error {
	b.crc.Write(out)
	b.n += int64(len(out))
	_, err := b.w.Write(out)
	return err
}

// copyBody is io.Copy into a bodyWriter, returning the count read from r.
func copyBody(b *bodyWriter, r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += int64(n)
			if _, werr := b.Write(buf[:n]); werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, b.finish()
		}
		if err != nil {
			return total, err
		}
	}
}
