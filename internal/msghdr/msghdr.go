// Package msghdr reads and edits a message's header as the raw fields it
// arrived with (RFC 5322 §2.2): signing, checking and milters all need to
// see, remove or insert whole fields without touching the bytes of the
// others, which a parsed and re-formatted header would change.
package msghdr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
)

// Field is one header field exactly as it appeared, continuation lines and
// line ends included ("Subject: hi\r\n\tthere\r\n"), or a line of the
// header that is not a field (Name "", see Header.Check).
type Field struct {
	// Name is as written, without the colon and the white space RFC
	// 5322 §4.5.8's obsolete syntax allows before it ("Subject :").
	Name string
	Raw  []byte
}

// Value is the field's body, unfolded (RFC 5322 §2.2.3) and trimmed.
func (f Field) Value() string {
	_, v, _ := bytes.Cut(f.Raw, []byte{':'})
	s := strings.ReplaceAll(string(v), "\r\n", "")
	s = strings.ReplaceAll(s, "\n", "")
	return strings.TrimSpace(s)
}

// Is reports whether the field is named name (case-insensitively).
func (f Field) Is(name string) bool { return f.Name != "" && strings.EqualFold(f.Name, name) }

// New builds a field from a name and an unfolded value, ending in CRLF.
// Line breaks in value are folded (a CRLF followed by a tab), so that the
// result is always one field.
func New(name, value string) Field {
	value = strings.ReplaceAll(value, "\r\n", "\n")
	value = strings.ReplaceAll(value, "\r", "\n")
	lines := strings.Split(value, "\n")
	for i := 1; i < len(lines); i++ {
		lines[i] = "\t" + strings.TrimLeft(lines[i], " \t")
	}
	return Field{Name: name, Raw: []byte(name + ": " + strings.Join(lines, "\r\n") + "\r\n")}
}

// Header is a message header: its fields in order.
type Header []Field

// ErrTooLong is a header longer than the limit given to Read.
var ErrTooLong = errors.New("message header too long")

// ErrNotAField is a header with a line that is neither a field nor the
// continuation of one (Header.Check).
var ErrNotAField = errors.New("a line of the message header is not a header field")

// Read reads a header from r up to and including the empty line that ends
// it (or the end of the message), at most max octets (0: no limit), and
// returns it with the number of octets it consumed (the body starts
// there). Lines end in CRLF or a bare LF; both are kept as they were.
//
// The header ends only at the empty line, as every other reader of the
// message (go-msgauth's DKIM verifier, mail readers, Dovecot) takes it: a
// line before it that is not a field is kept in the header as a Field
// without a Name, so that a From: or DKIM-Signature: after such a line is
// seen here as there (Check reports the line). Nothing of the message is
// lost or changed.
func Read(r *bufio.Reader, max int) (Header, int, error) {
	var h Header
	n := 0
	for {
		line, err := peekLine(r)
		if len(line) == 0 && err != nil {
			if err == io.EOF {
				return h, n, nil
			}
			return h, n, fmt.Errorf("read header: %w", err)
		}
		if max > 0 && n+len(line) > max {
			return h, n, ErrTooLong
		}
		switch {
		case isBlank(line):
			r.Discard(len(line))
			return h, n + len(line), nil
		case (line[0] == ' ' || line[0] == '\t') && len(h) > 0:
			h[len(h)-1].Raw = append(h[len(h)-1].Raw, line...)
		default:
			name, _ := fieldName(line)
			h = append(h, Field{Name: name, Raw: append([]byte(nil), line...)})
		}
		n += len(line)
		r.Discard(len(line))
	}
}

// FieldError is the line of a header that is not a field; it wraps
// ErrNotAField.
type FieldError struct {
	Line int    // counted from 1, the first line of the header
	Text string // the line, without its line end
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("line %d %.40q: %v", e.Line, e.Text, ErrNotAField)
}

func (e *FieldError) Unwrap() error { return ErrNotAField }

// Check reports the first line of h that is not a header field (RFC 5322
// §2.2: a name, a colon, a body; continuation lines start with white
// space) as a *FieldError. Readers disagree on such a header (some end
// it at that line), so what checks and filters judge must not depend on
// one.
func (h Header) Check() error {
	line := 1
	for _, f := range h {
		if f.Name == "" {
			first, _, _ := bytes.Cut(f.Raw, []byte{'\n'})
			return &FieldError{Line: line, Text: string(bytes.TrimRight(first, "\r"))}
		}
		line += bytes.Count(f.Raw, []byte{'\n'})
	}
	return nil
}

// peekLine returns the next line of r with its line end (or the rest of
// r if no line end follows), without consuming it. A line longer than r's
// buffer is ErrTooLong.
func peekLine(r *bufio.Reader) ([]byte, error) {
	for n := min(256, r.Size()); ; n = min(n*2, r.Size()) {
		b, err := r.Peek(n)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i+1], nil
		}
		if err != nil {
			return b, err
		}
		if n == r.Size() {
			return nil, ErrTooLong
		}
	}
}

func isBlank(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}

// fieldName returns the name of a field line: printable ASCII other than
// the colon (RFC 5322 §2.2), at least one, then a colon, with white space
// allowed before the colon (RFC 5322 §4.5.8, obs-optional), as
// go-msgauth and go-message also read it.
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return "", false
	}
	for _, c := range name {
		if c <= ' ' || c > '~' {
			return "", false
		}
	}
	return string(name), true
}

// WriteTo writes the fields, then the empty line that ends the header.
func (h Header) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, f := range h {
		m, err := w.Write(f.Raw)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	m, err := io.WriteString(w, "\r\n")
	return n + int64(m), err
}

// Bytes is the header as written by WriteTo.
func (h Header) Bytes() []byte {
	var b bytes.Buffer
	h.WriteTo(&b)
	return b.Bytes()
}

// Get returns the value of the first field named name, or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if f.Is(name) {
			return f.Value()
		}
	}
	return ""
}

// Count is how many fields are named name.
func (h Header) Count(name string) int {
	n := 0
	for _, f := range h {
		if f.Is(name) {
			n++
		}
	}
	return n
}

// FromAddresses returns every address of the From: fields (RFC 5322
// §3.6.2), as written (local part and domain), in order. An unparsable
// field is an error.
func (h Header) FromAddresses() ([]string, error) {
	var addrs []string
	for _, f := range h {
		if !f.Is("From") {
			continue
		}
		list, err := mail.ParseAddressList(f.Value())
		if err != nil {
			return nil, fmt.Errorf("from field: %w", err)
		}
		for _, a := range list {
			addrs = append(addrs, a.Address)
		}
	}
	return addrs, nil
}

// FromDomains returns the domain of each address of the From: fields
// (RFC 5322 §3.6.2), lower-cased: what DKIM signing and DMARC (RFC 7489
// §6.6.1, the RFC5322.From domain) are about. An unparsable field is an
// error.
func (h Header) FromDomains() ([]string, error) {
	var domains []string
	for _, f := range h {
		if !f.Is("From") {
			continue
		}
		list, err := mail.ParseAddressList(f.Value())
		if err != nil {
			return nil, fmt.Errorf("from field: %w", err)
		}
		for _, a := range list {
			at := strings.LastIndexByte(a.Address, '@')
			if at < 0 {
				return nil, fmt.Errorf("from field: %q has no domain", a.Address)
			}
			domains = append(domains, strings.ToLower(strings.TrimSuffix(a.Address[at+1:], ".")))
		}
	}
	return domains, nil
}

// AuthorDomains returns the domains of the From: fields (RFC 7489 §6.6.1,
// the Author Domains DMARC evaluates), lower-cased, each once, in order,
// and whether a field could not be read as RFC 5322 §3.6.2 has it. Of a
// field net/mail cannot read, every domain after an "@" in it is taken
// (a malformed From: must not be a way around the policy of the domain a
// mail reader shows); of one it can, each address's. None at all means
// the message names no author.
func (h Header) AuthorDomains() (domains []string, malformed bool) {
	add := func(d string) {
		d = strings.ToLower(strings.Trim(d, "."))
		if d != "" && !slices.Contains(domains, d) {
			domains = append(domains, d)
		}
	}
	for _, f := range h {
		if !f.Is("From") {
			continue
		}
		list, err := mail.ParseAddressList(f.Value())
		if err == nil {
			for _, a := range list {
				at := strings.LastIndexByte(a.Address, '@')
				if at < 0 {
					malformed = true
					continue
				}
				add(a.Address[at+1:])
			}
			continue
		}
		malformed = true
		for _, d := range atDomains(f.Value()) {
			add(d)
		}
	}
	return domains, malformed
}

// atDomains finds every "@domain" in s: the run of characters after an
// "@" up to one that cannot be part of a domain name (white space and
// RFC 5322's specials, §3.2.3).
func atDomains(s string) []string {
	var out []string
	for {
		at := strings.IndexByte(s, '@')
		if at < 0 {
			return out
		}
		s = s[at+1:]
		end := strings.IndexFunc(s, func(r rune) bool {
			return r <= ' ' || r == 0x7f || strings.ContainsRune("()<>[]:;@\\,\"", r)
		})
		if end < 0 {
			end = len(s)
		}
		if end > 0 {
			out = append(out, s[:end])
		}
		s = s[end:]
	}
}
