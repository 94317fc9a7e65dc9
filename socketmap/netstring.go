package socketmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ErrMalformed is a request that is not a netstring, or is one longer
// than the server accepts: the connection cannot be resynchronised and is
// closed.
var ErrMalformed = errors.New("malformed netstring")

// maxDigits bounds the length prefix: no request of ours is near 10^7.
const maxDigits = 7

// readNetstring reads one netstring ("5:hello,", per
// http://cr.yp.to/proto/netstrings.txt, which socketmap_table(5) cites) of
// at most max bytes of data. io.EOF before its first byte is a clean end
// of the connection.
func readNetstring(r *bufio.Reader, max int) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: %q in the length", ErrMalformed, c)
		}
		// Netstrings forbid leading zeros ("0:," is the empty string).
		if digits == 1 && n == 0 {
			return nil, fmt.Errorf("%w: leading zero in the length", ErrMalformed)
		}
		digits++
		if digits > maxDigits {
			return nil, fmt.Errorf("%w: length has more than %d digits", ErrMalformed, maxDigits)
		}
		n = n*10 + int(c-'0')
	}
	if digits == 0 {
		return nil, fmt.Errorf("%w: no length", ErrMalformed)
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, n, max)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if buf[n] != ',' {
		return nil, fmt.Errorf("%w: no comma after %d bytes", ErrMalformed, n)
	}
	return buf[:n], nil
}

// appendNetstring appends s as a netstring.
func appendNetstring(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	b = append(b, s...)
	return append(b, ',')
}
