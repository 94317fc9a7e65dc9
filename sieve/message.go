package sieve

import (
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"
)

// maxHeaderBytes bounds the header read into memory; fields beyond it
// are not seen by tests (the message itself is delivered whole).
const maxHeaderBytes = 1 << 20

// Message is the message a script runs on, as tests see it: the header
// read and split once, each field's decoded value and addresses worked
// out the first time a test asks and kept, and the body read only if a
// body test needs it. One Message serves any number of runs (a before
// script, the user's, an after script), but one at a time.
type Message struct {
	fields []hfield
	byName map[string][]int // lower-case name → positions in fields
	size   int64
	open   func() io.Reader
	hdrLen int // octets of the header, with the empty line
	body   *bodyCache
}

type hfield struct {
	name    string // as written
	raw     string // unfolded, trimmed, not decoded
	decoded *string
	addrs   *[]mailAddr
}

// ReadMessage reads the header of the message that open returns (from
// its first octet), which is size octets long. open is called again,
// for a fresh reader, if a body test needs the body.
func ReadMessage(open func() io.Reader, size int64) (*Message, error) {
	hdr, err := readHeader(open())
	if err != nil {
		return nil, err
	}
	m := &Message{size: size, open: open, hdrLen: len(hdr), byName: map[string][]int{}}
	m.fields = splitFields(hdr)
	for i, f := range m.fields {
		k := strings.ToLower(f.name)
		m.byName[k] = append(m.byName[k], i)
	}
	return m, nil
}

// readHeader reads up to and including the empty line that ends the
// header (or the end of the message), at most maxHeaderBytes.
func readHeader(r io.Reader) (string, error) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), maxHeaderBytes)])
		start := max(0, len(buf)-3)
		buf = buf[:len(buf)+n]
		if end := headerEnd(buf, start); end >= 0 {
			return string(buf[:end]), nil
		}
		if len(buf) >= maxHeaderBytes {
			return string(buf), nil
		}
		if err == io.EOF {
			return string(buf), nil
		}
		if err != nil {
			return "", fmt.Errorf("read the message header: %w", err)
		}
	}
}

// headerEnd returns the offset after the empty line that ends the header
// in b, looking from start; or -1. The message may begin with it.
func headerEnd(b []byte, start int) int {
	if len(b) > 0 && b[0] == '\n' {
		return 1
	}
	if len(b) > 1 && b[0] == '\r' && b[1] == '\n' {
		return 2
	}
	for i := start; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// splitFields splits a header into its fields (RFC 5322 §2.2), unfolded
// and trimmed. A line that is neither a field nor a continuation ends
// the header, as in msghdr.
func splitFields(h string) []hfield {
	var out []hfield
	var cur strings.Builder
	name := ""
	flush := func() {
		if name != "" {
			out = append(out, hfield{name: name, raw: strings.TrimSpace(cur.String())})
		}
		name = ""
		cur.Reset()
	}
	for len(h) > 0 {
		line := h
		if i := strings.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			h = ""
		}
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name == "" {
				break
			}
			cur.WriteString(line)
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || strings.ContainsAny(line[:colon], " \t") {
			break
		}
		flush()
		name = line[:colon]
		cur.WriteString(line[colon+1:])
	}
	flush()
	return out
}

// Size is the message's size in octets, as the size test sees it.
func (m *Message) Size() int64 { return m.size }

// values returns the decoded values of every field named name (RFC 5228
// §5.7: unfolded, RFC 2047 decoded).
func (m *Message) values(name string, out []string) []string {
	for _, i := range m.byName[strings.ToLower(name)] {
		out = append(out, m.decoded(i))
	}
	return out
}

func (m *Message) decoded(i int) string {
	f := &m.fields[i]
	if f.decoded == nil {
		d := f.raw
		if strings.Contains(d, "=?") {
			// RFC 2047 encoded words, in any charset go-message knows.
			wd := mime.WordDecoder{CharsetReader: charset.Reader}
			if s, err := wd.DecodeHeader(d); err == nil {
				d = s
			}
		}
		f.decoded = &d
	}
	return *f.decoded
}

// has reports whether a field named name exists.
func (m *Message) has(name string) bool { return len(m.byName[strings.ToLower(name)]) > 0 }

// first returns the raw value of the first field named name.
func (m *Message) first(name string) (string, bool) {
	idx := m.byName[strings.ToLower(name)]
	if len(idx) == 0 {
		return "", false
	}
	return m.fields[idx[0]].raw, true
}

// addresses returns the addresses of every field named name, parsed
// once per field.
func (m *Message) addresses(name string, out []mailAddr) []mailAddr {
	for _, i := range m.byName[strings.ToLower(name)] {
		f := &m.fields[i]
		if f.addrs == nil {
			a := parseAddressList(f.raw)
			f.addrs = &a
		}
		out = append(out, *f.addrs...)
	}
	return out
}
