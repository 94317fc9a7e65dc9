package maildir

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// crlfRef is the plain definition: a bare LF becomes CRLF.
func crlfRef(in []byte) []byte {
	var out []byte
	for i, b := range in {
		if b == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, b)
	}
	return out
}

// FuzzCRLFReader compares crlfReader with crlfRef, reading in steps of
// step bytes, then seeking back to back and reading the rest again.
func FuzzCRLFReader(f *testing.F) {
	f.Add([]byte("Subject: x\n\nbody\r\nline\n"), uint16(3), uint16(12))
	f.Add(bytes.Repeat([]byte("a\r\n\n\r"), 5000), uint16(4096), uint16(9000))
	f.Add(append(bytes.Repeat([]byte{'x'}, crlfChunk-1), "\r\nz\n"...), uint16(100), uint16(crlfChunk))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, step, back uint16) {
		name := filepath.Join(dir, "m")
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
		want := crlfRef(data)
		fh, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		r := newCRLFReader(fh, int64(len(want)))
		defer r.Close()
		buf := make([]byte, int(step)+1)
		var got []byte
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %q, want %q", got, want)
		}
		off := int64(back) % (int64(len(want)) + 1)
		if p, err := r.Seek(off, io.SeekStart); err != nil || p != off {
			t.Fatalf("Seek(%d) = %d, %v", off, p, err)
		}
		rest, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(rest, want[off:]) {
			t.Fatalf("after Seek(%d): %q, %v; want %q", off, rest, err, want[off:])
		}
	})
}

// FuzzLFWriter checks lfWriter's counts against crlfRef and its output
// against the input (or the input with CRLF turned into LF), written in
// pieces of step bytes so that a CRLF may straddle two writes.
func FuzzLFWriter(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\r\r\n\n"), uint16(1), false)
	f.Add([]byte("a\r\nb\nc\r\r\n\n"), uint16(2), true)
	f.Add(bytes.Repeat([]byte("x\r\n\n\r"), 3000), uint16(4095), false)
	f.Fuzz(func(t *testing.T, data []byte, step uint16, toLF bool) {
		var out bytes.Buffer
		l := &lfWriter{w: &out, toLF: toLF}
		for p := data; len(p) > 0; {
			n := min(len(p), int(step)+1)
			if w, err := l.Write(p[:n]); err != nil || w != n {
				t.Fatalf("Write = %d, %v", w, err)
			}
			p = p[n:]
		}
		if err := l.flush(); err != nil {
			t.Fatal(err)
		}
		want := data
		if toLF {
			want = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("wrote %q, want %q", out.Bytes(), want)
		}
		if l.n != int64(len(want)) || l.served() != int64(len(crlfRef(want))) {
			t.Fatalf("counted %d bytes, %d served; want %d, %d", l.n, l.served(), len(want), len(crlfRef(want)))
		}
	})
}
