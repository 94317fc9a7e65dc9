package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestSpoolKeepsEveryByte(t *testing.T) {
	for _, size := range []int{0, 10, MemLimit, MemLimit + 1, 3*MemLimit + 7} {
		dir := t.TempDir()
		in := bytes.Repeat([]byte("ab\r\ncd\n\r"), size/8+1)[:size]
		s := New(dir, 0)
		if _, err := s.ReadFrom(bytes.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		if s.Size() != int64(size) {
			t.Errorf("size %d: Size = %d", size, s.Size())
		}
		for _, off := range []int64{0, int64(size / 2)} {
			got, _ := io.ReadAll(s.Reader(off))
			if !bytes.Equal(got, in[off:]) {
				t.Errorf("size %d: read from %d differs", size, off)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("size %d: %d files left in the spool directory (want them unlinked at once)", size, len(entries))
		}
		s.Close()
	}
}

func TestSpoolLimit(t *testing.T) {
	s := New(t.TempDir(), 100)
	if _, err := s.ReadFrom(strings.NewReader(strings.Repeat("x", 101))); !errors.Is(err, ErrTooBig) {
		t.Errorf("101 octets into a 100-octet spool: %v, want ErrTooBig", err)
	}
	boom := errors.New("boom")
	if _, err := New("", 0).ReadFrom(io.MultiReader(strings.NewReader("x"), errReader{boom})); !errors.Is(err, boom) {
		t.Errorf("a failing reader's error became %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
