package sieve

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"

	"mailroom/internal/msghdr"
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
	hdrLen int
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
	br := bufio.NewReaderSize(open(), 4096)
	h, n, err := msghdr.Read(br, maxHeaderBytes)
	if err != nil && !errors.Is(err, msghdr.ErrTooLong) {
		return nil, fmt.Errorf("read the message header: %w", err)
	}
	m := &Message{size: size, open: open, hdrLen: n, byName: make(map[string][]int, len(h))}
	m.fields = make([]hfield, len(h))
	for i, f := range h {
		m.fields[i] = hfield{name: f.Name, raw: f.Value()}
		k := strings.ToLower(f.Name)
		m.byName[k] = append(m.byName[k], i)
	}
	return m, nil
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

// header returns the raw (unfolded, undecoded) values of name, for
// vacation's checks.
func (m *Message) header(name string) []string {
	var out []string
	for _, i := range m.byName[strings.ToLower(name)] {
		out = append(out, m.fields[i].raw)
	}
	return out
}
