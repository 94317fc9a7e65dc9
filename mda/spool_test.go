package mda

import (
	"bytes"
	"io"
	"testing"
)

// chunkReader returns data in pieces of the given sizes, so that CRLF pairs
// and the memory-to-file switch fall on piece boundaries.
type chunkReader struct {
	data  []byte
	sizes []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = min(n, int(c.sizes[0])+1)
		c.sizes = c.sizes[1:]
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func FuzzSpool(f *testing.F) {
	f.Add([]byte("a\r\nb\rc\n\r\r\n"), []byte{0, 1, 2})
	f.Add([]byte("\r"), []byte{})
	f.Add(bytes.Repeat([]byte("x\r\n"), 1000), []byte{3, 200})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		sp := &spool{dir: t.TempDir()}
		defer sp.close()
		if err := sp.fill(&chunkReader{data: data, sizes: sizes}); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(sp.withHeader("H: v\n"))
		want := append([]byte("H: v\n"), bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))...)
		if !bytes.Equal(got, want) || sp.size != int64(len(want))-5 || sp.in != int64(len(data)) {
			t.Fatalf("spool(%.100q) = %.100q (size %d), want %.100q", data, got, sp.size, want)
		}
	})
}

func TestSpoolSwitchesToFile(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcde\r\n"), 2*memSpoolLimit/17)
	sp := &spool{dir: t.TempDir()}
	defer sp.close()
	if err := sp.fill(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if sp.file == nil {
		t.Fatal("a message over the memory limit stayed in memory")
	}
	got, _ := io.ReadAll(sp.withHeader(""))
	if !bytes.Equal(got, bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))) {
		t.Fatal("content changed")
	}
}
