// Package wire is IMAP's syntax (RFC 9051 §9) for mailroom's server: a
// Decoder that reads commands and an Encoder that writes responses, and
// the parsers from command arguments to go-imap/v2's types. It knows
// nothing of mailboxes, sessions or sockets; package imap runs the
// command loop over it (docs/design/imap.md says why it is ours).
//
// Every failure to parse is a *SyntaxError (answered BAD with its
// reason) or a *NameError (a mailbox name that is not valid modified
// UTF-7, answered NO); any other error is the connection's.
package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// SyntaxError is a command that does not follow the grammar. Reason is
// meant for the client.
type SyntaxError struct{ Reason string }

func (e *SyntaxError) Error() string { return e.Reason }

func syntaxf(format string, args ...any) error {
	return &SyntaxError{Reason: fmt.Sprintf(format, args...)}
}

// NameError is a mailbox name that cannot be decoded (RFC 3501 §5.1.3).
type NameError struct{ Reason string }

func (e *NameError) Error() string { return e.Reason }

// ErrTooLong is a command, or a literal the client sends without waiting,
// too long even to read and throw away: the connection cannot be kept in
// step and must end.
var ErrTooLong = errors.New("command too long to skip")

// LiteralFunc is called when a literal's header has been read and before
// its data is: sync says the client waits for a continuation request
// ("+"), which the function sends if it accepts the literal; binary is a
// literal8 (~{n}, RFC 3516). An error refuses the literal: the client of
// a synchronising literal then sends nothing more of the command, and the
// data of a non-synchronising one is skipped by Skip.
type LiteralFunc func(size int64, sync, binary bool) error

// Decoder reads commands from a client.
type Decoder struct {
	r *bufio.Reader
	// Literal accepts or refuses each literal; nil accepts all without
	// a continuation request (for tests of the parsers).
	Literal LiteralFunc
	// UTF8 is set once the client has enabled UTF8=ACCEPT or IMAP4rev2:
	// mailbox names are then UTF-8, not modified UTF-7 (RFC 6855 §3).
	UTF8 bool

	limit   int64 // bytes the command may still take
	ended   bool  // a synchronising literal was refused: the command ends there
	pending int64 // bytes of a refused non-synchronising literal still to skip
}

// NewDecoder reads from r.
func NewDecoder(r *bufio.Reader) *Decoder {
	return &Decoder{r: r}
}

// Reset points the decoder at r (after STARTTLS).
func (d *Decoder) Reset(r *bufio.Reader) { d.r = r }

// Begin starts a command of at most limit bytes: its lines and the
// literals read with Literal (APPEND's message, read with LiteralReader,
// does not count).
func (d *Decoder) Begin(limit int64) {
	d.limit, d.ended, d.pending = limit, false, 0
}

// Buffered says how many bytes the client has sent that are not read yet.
func (d *Decoder) Buffered() int { return d.r.Buffered() }

func (d *Decoder) take(n int64) error {
	if d.limit < n {
		d.limit = 0
		return syntaxf("Command too long")
	}
	d.limit -= n
	return nil
}

func (d *Decoder) peek() (byte, error) {
	b, err := d.r.Peek(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *Decoder) next() (byte, error) {
	if err := d.take(1); err != nil {
		return 0, err
	}
	return d.r.ReadByte()
}

// Peek returns the next byte without reading it.
func (d *Decoder) Peek() (byte, error) { return d.peek() }

// Maybe reads c if it comes next.
func (d *Decoder) Maybe(c byte) (bool, error) {
	b, err := d.peek()
	if err != nil || b != c {
		return false, err
	}
	_, err = d.next()
	return err == nil, err
}

// Expect reads c, which must come next; what names it for the error.
func (d *Decoder) Expect(c byte, what string) error {
	ok, err := d.Maybe(c)
	if err != nil {
		return err
	}
	if !ok {
		return syntaxf("Expected %s", what)
	}
	return nil
}

// SP reads one space.
func (d *Decoder) SP() error { return d.Expect(' ', "a space") }

// AtEnd says whether the line ends next.
func (d *Decoder) AtEnd() (bool, error) {
	b, err := d.peek()
	return b == '\r' || b == '\n', err
}

// CRLF reads the end of the command (a bare LF too, as Dovecot allows):
// Skip has nothing more to skip.
func (d *Decoder) CRLF() error {
	if err := d.lineEnd(); err != nil {
		return err
	}
	d.ended = true
	return nil
}

// lineEnd reads the end of a line.
func (d *Decoder) lineEnd() error {
	b, err := d.peek()
	if err != nil {
		return err
	}
	if b == '\r' {
		d.next()
		b, err = d.peek()
		if err != nil {
			return err
		}
	}
	if b != '\n' {
		return syntaxf("Expected the end of the command")
	}
	_, err = d.next()
	return err
}

// isAtomChar: any CHAR except atom-specials (RFC 9051 §9):
// "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials.
func isAtomChar(c byte) bool {
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return c > 0x1f && c < 0x7f
}

// IsAtomChar reports whether c may appear in an atom.
func IsAtomChar(c byte) bool { return isAtomChar(c) }

func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }

func isListChar(c byte) bool { return isAStringChar(c) || c == '%' || c == '*' }

// readWhile reads the bytes for which ok holds; what names them for the
// error when there are none.
func (d *Decoder) readWhile(ok func(byte) bool, what string) (string, error) {
	var sb strings.Builder
	for {
		b, err := d.peek()
		if err != nil {
			return "", err
		}
		if !ok(b) {
			break
		}
		if _, err := d.next(); err != nil {
			return "", err
		}
		sb.WriteByte(b)
	}
	if sb.Len() == 0 {
		return "", syntaxf("Expected %s", what)
	}
	return sb.String(), nil
}

// Atom reads an atom.
func (d *Decoder) Atom() (string, error) { return d.readWhile(isAtomChar, "an atom") }

// Tag reads a command tag: astring chars other than "+" (RFC 9051 §9).
func (d *Decoder) Tag() (string, error) {
	return d.readWhile(func(c byte) bool { return isAStringChar(c) && c != '+' }, "a tag")
}

// Text reads the rest of the line (resp-text, an AUTHENTICATE response).
func (d *Decoder) Text() (string, error) {
	return d.readWhile(func(c byte) bool { return c != '\r' && c != '\n' }, "text")
}

// Number reads a number (RFC 9051 §9: 32 bits).
func (d *Decoder) Number() (uint32, error) {
	n, err := d.number(1<<32 - 1)
	return uint32(n), err
}

// Number64 reads a number of up to 63 bits (a literal's size).
func (d *Decoder) Number64() (int64, error) {
	n, err := d.number(1<<63 - 1)
	return int64(n), err
}

func (d *Decoder) number(max uint64) (uint64, error) {
	var n uint64
	digits := 0
	for {
		b, err := d.peek()
		if err != nil {
			return 0, err
		}
		if b < '0' || b > '9' {
			break
		}
		if _, err := d.next(); err != nil {
			return 0, err
		}
		digits++
		if n > (max-uint64(b-'0'))/10 {
			// Read the rest of the digits, so the error names the number.
			for {
				b, err := d.peek()
				if err != nil || b < '0' || b > '9' {
					break
				}
				d.next()
			}
			return 0, syntaxf("Number too large")
		}
		n = n*10 + uint64(b-'0')
	}
	if digits == 0 {
		return 0, syntaxf("Expected a number")
	}
	return n, nil
}

// quoted reads a quoted string, its quotes included.
func (d *Decoder) quoted() (string, error) {
	if err := d.Expect('"', "a quoted string"); err != nil {
		return "", err
	}
	var sb strings.Builder
	for {
		b, err := d.next()
		if err != nil {
			return "", err
		}
		switch b {
		case '"':
			return sb.String(), nil
		case '\\':
			b, err = d.next()
			if err != nil {
				return "", err
			}
			if b != '"' && b != '\\' {
				return "", syntaxf(`Only \" and \\ may be escaped in a quoted string`)
			}
		case '\r', '\n', 0:
			return "", syntaxf("Quoted string not closed at the end of the line")
		}
		sb.WriteByte(b)
	}
}

// literalHeader reads "{n}", "{n+}" or "~{n}" (with binary allowed) and
// the CRLF after it, and asks Literal. It returns the size and whether
// the literal was accepted; a refusal's error is returned.
func (d *Decoder) literalHeader(binary bool) (int64, bool, error) {
	tilde, err := d.Maybe('~')
	if err != nil {
		return 0, false, err
	}
	if tilde && !binary {
		return 0, false, syntaxf("A literal8 is not allowed here")
	}
	if err := d.Expect('{', "a literal"); err != nil {
		return 0, false, err
	}
	n, err := d.Number64()
	if err != nil {
		return 0, false, err
	}
	plus, err := d.Maybe('+')
	if err != nil {
		return 0, false, err
	}
	if err := d.Expect('}', "} after the literal's size"); err != nil {
		return 0, false, err
	}
	if err := d.lineEnd(); err != nil {
		return 0, false, err
	}
	if d.Literal != nil {
		if err := d.Literal(n, !plus, tilde); err != nil {
			if plus {
				d.pending = n
			} else {
				d.ended = true
			}
			return n, false, err
		}
	}
	return n, tilde, nil
}

// literal reads a literal's data into memory, within the command's limit.
func (d *Decoder) literal() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	if b != '{' && b != '~' {
		return "", syntaxf("Expected a string")
	}
	n, _, err := d.literalHeader(false)
	if err != nil {
		return "", err
	}
	if n > d.limit {
		// Accepted by Literal (which does not know the command's
		// limit), so the data comes: skip it.
		d.pending = n
		d.limit = 0
		return "", syntaxf("Command too long")
	}
	d.limit -= n
	buf := make([]byte, n)
	if _, err := io.ReadFull(d.r, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// LiteralReader reads the header of a literal whose data the caller
// streams (APPEND's message): r gives exactly size bytes and must be
// read to its end before the decoder is used again. binary allows a
// literal8.
func (d *Decoder) LiteralReader(binary bool) (r io.Reader, size int64, isBinary bool, err error) {
	size, isBinary, err = d.literalHeader(binary)
	if err != nil {
		return nil, 0, false, err
	}
	return io.LimitReader(d.r, size), size, isBinary, nil
}

// String reads a string: quoted or a literal.
func (d *Decoder) String() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	if b == '"' {
		return d.quoted()
	}
	return d.literal()
}

// AString reads an astring: an atom (with "]" allowed) or a string.
func (d *Decoder) AString() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	if b == '"' || b == '{' {
		return d.String()
	}
	// "~" is an atom character: "~foo" is an atom, and only where a
	// literal8 may come is "~{" one (RFC 3516 §4).
	return d.readWhile(isAStringChar, "an atom or a string")
}

// NString reads a string or NIL; ok is false for NIL.
func (d *Decoder) NString() (s string, ok bool, err error) {
	b, err := d.peek()
	if err != nil {
		return "", false, err
	}
	if b == '"' || b == '{' {
		s, err := d.String()
		return s, err == nil, err
	}
	a, err := d.Atom()
	if err != nil {
		return "", false, err
	}
	if !strings.EqualFold(a, "NIL") {
		return "", false, syntaxf("Expected a string or NIL")
	}
	return "", false, nil
}

// List reads a parenthesised list, calling item for each element; it
// reads nothing and returns false if no "(" comes next. An empty list
// is allowed if empty is true.
func (d *Decoder) List(empty bool, item func() error) (bool, error) {
	ok, err := d.Maybe('(')
	if err != nil || !ok {
		return false, err
	}
	if closed, err := d.Maybe(')'); err != nil || closed {
		if closed && !empty {
			return true, syntaxf("Empty list")
		}
		return true, err
	}
	for {
		if err := item(); err != nil {
			return true, err
		}
		b, err := d.peek()
		if err != nil {
			return true, err
		}
		switch b {
		case ' ':
			d.next()
		case ')':
			d.next()
			return true, nil
		default:
			return true, syntaxf("Expected a space or ) in a list")
		}
	}
}

// ExpectList is List where the list must come.
func (d *Decoder) ExpectList(empty bool, item func() error) error {
	ok, err := d.List(empty, item)
	if err == nil && !ok {
		err = syntaxf("Expected a list")
	}
	return err
}

// Mailbox reads a mailbox name: INBOX in any case is "INBOX" (RFC 9051
// §5.1), others are decoded from modified UTF-7 unless UTF8 is set.
func (d *Decoder) Mailbox() (string, error) {
	s, err := d.AString()
	if err != nil {
		return "", err
	}
	return d.mailboxName(s)
}

func (d *Decoder) mailboxName(s string) (string, error) {
	if strings.EqualFold(s, "INBOX") {
		return "INBOX", nil
	}
	if d.UTF8 {
		return s, nil
	}
	name, err := DecodeMUTF7(s)
	if err != nil {
		return "", &NameError{Reason: "Mailbox name is not valid modified UTF-7"}
	}
	return name, nil
}

// ListMailbox reads a LIST pattern (list-mailbox: wildcards allowed). A
// pattern that is not valid modified UTF-7 is taken as it is: it
// matches no name.
func (d *Decoder) ListMailbox() (string, error) {
	b, err := d.peek()
	if err != nil {
		return "", err
	}
	var s string
	if b == '"' || b == '{' {
		s, err = d.String()
	} else {
		s, err = d.readWhile(isListChar, "a mailbox pattern")
	}
	if err != nil {
		return "", err
	}
	if d.UTF8 {
		return s, nil
	}
	if name, err := DecodeMUTF7(s); err == nil {
		return name, nil
	}
	return s, nil
}

// Skip reads and discards the rest of a command the server will not run,
// so that the next command is read from its start: up to the end of the
// line, across every non-synchronising literal the line announces (their
// data follows without waiting), and not past a synchronising one (the
// client waits for a "+" that does not come). At most max bytes are
// thrown away; beyond that ErrTooLong.
func (d *Decoder) Skip(max int64) error {
	if d.ended {
		return nil
	}
	d.ended = true
	var tail []byte // the last bytes of the line, to spot a literal's header
	for {
		if d.pending > 0 {
			if d.pending > max {
				return ErrTooLong
			}
			n, err := d.r.Discard(int(d.pending))
			max -= int64(n)
			if err != nil {
				return err
			}
			d.pending = 0
			tail = tail[:0]
		}
		b, err := d.r.ReadByte()
		if err != nil {
			return err
		}
		if max--; max < 0 {
			return ErrTooLong
		}
		if b != '\n' {
			if len(tail) == 32 {
				copy(tail, tail[1:])
				tail = tail[:31]
			}
			tail = append(tail, b)
			continue
		}
		n, sync, ok := literalAtEnd(tail)
		if !ok || sync {
			return nil
		}
		d.pending = n
	}
}

// literalAtEnd parses a literal header ("{n}", "{n+}", "~{n+}") at the
// end of a line (without its LF).
func literalAtEnd(line []byte) (size int64, sync, ok bool) {
	s := strings.TrimSuffix(string(line), "\r")
	if !strings.HasSuffix(s, "}") {
		return 0, false, false
	}
	open := strings.LastIndexByte(s, '{')
	if open < 0 {
		return 0, false, false
	}
	digits := s[open+1 : len(s)-1]
	sync = true
	if strings.HasSuffix(digits, "+") {
		digits, sync = digits[:len(digits)-1], false
	}
	if digits == "" || len(digits) > 18 {
		return 0, false, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false, false
		}
		size = size*10 + int64(digits[i]-'0')
	}
	return size, sync, true
}

// ReadLine reads up to and including the next LF, at most max bytes
// (IDLE's DONE, an AUTHENTICATE response line); it returns the line
// without its CRLF.
func (d *Decoder) ReadLine(max int) (string, error) {
	var sb strings.Builder
	for {
		b, err := d.r.ReadByte()
		if err != nil {
			return "", err
		}
		if b == '\n' {
			return strings.TrimSuffix(sb.String(), "\r"), nil
		}
		if sb.Len() >= max {
			return "", ErrTooLong
		}
		sb.WriteByte(b)
	}
}
