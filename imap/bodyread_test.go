package imap

import (
	"bytes"
	"io"
	"testing"
)

// seekCounter counts Seek calls on a message reader.
type seekCounter struct {
	*bytes.Reader
	seeks int
}

func (s *seekCounter) Seek(off int64, whence int) (int64, error) {
	s.seeks++
	return s.Reader.Seek(off, whence)
}

// The body is read on from where the header ended, without seeking back;
// a second read, or one after a span was served, seeks and gives the same.
func TestContentBodyReadsOn(t *testing.T) {
	t.Parallel()
	msg := []byte(multipartMsg)
	r := &seekCounter{Reader: bytes.NewReader(msg)}
	c, err := newContent(r, int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	want := msg[len(c.raw):]
	for i := range 3 {
		if i == 2 {
			c.seek(0) // as writeSpan does
		}
		b, err := c.body()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(b)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %d: body %q, %v; want %q", i, got, err, want)
		}
		if i == 0 && r.seeks != 0 {
			t.Errorf("the first body read seeked %d times", r.seeks)
		}
	}
}
