package ctl

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A body travels in chunks, each "<hex length>\n<bytes>", ended by "0\n".
// Without the end marker, a client that died halfway (or whose standard
// input broke) would look to the server like a complete, shorter message,
// and a truncated message would be delivered.

const maxChunk = 64 << 10

// writeChunked copies r to w in chunks and writes the end marker only if r
// was read to its end.
func writeChunked(w io.Writer, r io.Reader) error {
	bw := bufio.NewWriterSize(w, maxChunk+16)
	buf := make([]byte, maxChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			fmt.Fprintf(bw, "%x\n", n)
			bw.Write(buf[:n])
		}
		if err == io.EOF {
			bw.WriteString("0\n")
			return bw.Flush()
		}
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
	}
}

// chunkedReader reads what writeChunked wrote; it returns
// io.ErrUnexpectedEOF if the stream ends before the end marker.
type chunkedReader struct {
	r      *bufio.Reader
	remain int64
	done   bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.remain == 0 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(line, "\n"), 16, 64)
		if err != nil || n < 0 || n > maxChunk {
			return 0, fmt.Errorf("control socket: bad chunk header %q", line)
		}
		if n == 0 {
			c.done = true
			return 0, io.EOF
		}
		c.remain = n
	}
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.r.Read(p)
	c.remain -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
