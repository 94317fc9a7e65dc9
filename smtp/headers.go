package smtp

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"
)

// maxHeaderBytes bounds how much of a submitted message is examined for
// its header; the reader must buffer at least this much.
const maxHeaderBytes = 64 << 10

// missingHeaders looks at the header of the message in br without
// consuming it and returns the Message-ID: and Date: fields to add (CRLF
// lines), as RFC 6409 §8 lets a submission server do. The message itself is
// not changed: the fields go at the top, where their order does not matter.
func missingHeaders(br *bufio.Reader, hostname string, now time.Time) (string, error) {
	buf, err := br.Peek(maxHeaderBytes)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return "", err
	}
	// A header longer than the window is examined as far as it goes.
	if end := headerEnd(buf); end >= 0 {
		buf = buf[:end]
	}
	hasID, hasDate := fieldsIn(buf)
	var b bytes.Buffer
	if !hasID {
		fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", rand.Text(), hostname)
	}
	if !hasDate {
		fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	return b.String(), nil
}

// headerEnd returns the offset of the empty line that ends the header, or
// -1 if buf does not contain it. A message may start with the empty line.
func headerEnd(buf []byte) int {
	if bytes.HasPrefix(buf, []byte("\n")) || bytes.HasPrefix(buf, []byte("\r\n")) {
		return 0
	}
	for i := 0; i+1 < len(buf); i++ {
		if buf[i] != '\n' {
			continue
		}
		if rest := buf[i+1:]; rest[0] == '\n' || bytes.HasPrefix(rest, []byte("\r\n")) {
			return i + 1
		}
	}
	return -1
}

// fieldsIn reports whether the header lines in h have the Message-ID and
// Date fields (names are case-insensitive; continuation lines start with
// white space and are skipped).
func fieldsIn(h []byte) (hasID, hasDate bool) {
	for line := range bytes.Lines(h) {
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Message-ID")):
			hasID = true
		case bytes.EqualFold(name, []byte("Date")):
			hasDate = true
		}
	}
	return hasID, hasDate
}
