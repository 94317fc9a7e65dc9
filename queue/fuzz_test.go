package queue

import (
	"bytes"
	"hash/crc32"
	"testing"
	"time"
)

// FuzzDecodeRecord: any stored bytes either decode to a record that
// round-trips and satisfies what the queue relies on, or are refused as
// corrupt; never a panic.
func FuzzDecodeRecord(f *testing.F) {
	good := &record{V: 1, ID: "0123456789ABCDEF", From: "a@example.org", Created: time.Unix(1e9, 0).UTC(), Size: 3,
		Rcpts: []rcptState{{Addr: "b@example.net", State: StatePending, Next: time.Unix(1e9, 0).UTC()}}}
	f.Add(good.encode())
	f.Add([]byte(`{"v":1,"id":"../../etc/passwd","rcpts":[]}`))
	f.Add([]byte(`{"v":1}{"v":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		if !validID(rec.ID) || len(rec.Rcpts) == 0 || rec.Size < 0 {
			t.Fatalf("accepted a record the queue cannot use: %+v", rec)
		}
		again, err := decodeRecord(rec.encode())
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(again.encode(), rec.encode()) {
			t.Fatalf("round trip changed the record")
		}
	})
}

// FuzzBodyWriter: the stored body has only CRLF line ends, ends with one,
// keeps every other byte, and its recorded size and checksum match.
func FuzzBodyWriter(f *testing.F) {
	f.Add([]byte("Subject: x\n\nbody\n"), 3)
	f.Add([]byte("a\r\nb\rc\n\n\xc3\xa9"), 1)
	f.Add([]byte(""), 7)
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		if chunk <= 0 {
			chunk = 1
		}
		var out bytes.Buffer
		bw := newBodyWriter(&out)
		for p := in; len(p) > 0; {
			n := min(chunk, len(p))
			bw.Write(p[:n])
			p = p[n:]
		}
		if err := bw.finish(); err != nil {
			t.Fatal(err)
		}
		o := out.Bytes()
		if int64(len(o)) != bw.n || crc32.Checksum(o, crcTable) != bw.crc.Sum32() {
			t.Fatalf("size or checksum disagree with the output")
		}
		if !bytes.HasSuffix(o, []byte("\r\n")) {
			t.Fatalf("output %q does not end with CRLF", o)
		}
		for i, c := range o {
			if c == '\n' && (i == 0 || o[i-1] != '\r') {
				t.Fatalf("lone LF at %d in %q", i, o)
			}
		}
		if got := bytes.ReplaceAll(bytes.ReplaceAll(o, []byte("\r\n"), []byte("\n")), []byte("\r"), nil); !bytes.Equal(got,
			append(bytes.ReplaceAll(bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n")), []byte("\r"), nil), []byte("\n")...)[:len(got)]) {
			t.Fatalf("content changed: %q -> %q", in, o)
		}
		if bytes.ContainsFunc(in, func(r rune) bool { return r >= 0x80 || r == 0xfffd }) != bw.eightBit {
			t.Fatalf("eightBit %v for %q", bw.eightBit, in)
		}
	})
}
