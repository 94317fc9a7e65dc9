package managesieve

// The wire format (RFC 5804 §4): a command is an atom followed by strings
// (quoted, or literals) and numbers, ending in CRLF; a response is OK, NO
// or BYE with an optional response code and string.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	// maxLine bounds the parts of a command outside its literals.
	maxLine = 8 << 10
	// maxQuoted is RFC 5804 §4's bound on a quoted string.
	maxQuoted = 1024
	// maxDiscard is the largest literal that is read and thrown away
	// when it is over the script size limit, so that the session stays
	// in step; a larger one ends the connection.
	maxDiscard = 16 << 20
)

// argKind says what an argument was on the wire.
type argKind int

const (
	argString argKind = iota
	argNumber
)

// arg is one argument of a command.
type arg struct {
	kind    argKind
	s       string // a string's value
	n       uint64 // a number's value
	literal bool   // the string came as a literal
}

// command is a command as read.
type command struct {
	name string // upper case
	args []arg
}

// syntaxError is a malformed command: answered NO, and the session goes
// on once the rest of the line is skipped.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

// tooBigError is a literal over the limit: answered NO (QUOTA/MAXSIZE)
// once the literal has been skipped.
type tooBigError struct{ size uint64 }

func (e *tooBigError) Error() string {
	return fmt.Sprintf("a literal of %d octets is too large", e.size)
}

// errLineTooLong ends a connection whose command line never ends.
var errLineTooLong = errors.New("command line too long")

// decoder reads commands.
type decoder struct {
	br *bufio.Reader
	// maxLiteral bounds one literal (a script).
	maxLiteral int
	// line counts the octets of the command read outside literals.
	line int
	// last is the last octet readByte returned.
	last byte
}

func (d *decoder) readByte() (byte, error) {
	b, err := d.br.ReadByte()
	if err != nil {
		return 0, err
	}
	d.line++
	if d.line > maxLine {
		return 0, errLineTooLong
	}
	d.last = b
	return b, nil
}

func (d *decoder) peek() (byte, error) {
	b, err := d.br.Peek(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// readCommand reads a command. A *syntaxError or *tooBigError leaves
// the decoder at the end of the bad command's line; any other error
// ends the connection.
func (d *decoder) readCommand() (command, error) {
	d.line, d.last = 0, 0
	var cmd command
	name, err := d.atom()
	if err != nil {
		return cmd, d.resync(err)
	}
	if name == "" {
		return cmd, d.resync(&syntaxError{"Expected a command name"})
	}
	cmd.name = strings.ToUpper(name)
	for {
		b, err := d.readByte()
		if err != nil {
			return cmd, err
		}
		switch b {
		case '\r':
			if err := d.expect('\n'); err != nil {
				return cmd, d.resync(err)
			}
			return cmd, nil
		case '\n':
			// A bare LF ends a line too, as Pigeonhole accepts.
			return cmd, nil
		case ' ':
		default:
			return cmd, d.resync(&syntaxError{fmt.Sprintf("Expected a space or the end of the line after %s", cmd.name)})
		}
		a, err := d.arg()
		if err != nil {
			return cmd, d.resync(err)
		}
		cmd.args = append(cmd.args, a)
	}
}

// resync skips the rest of a bad command's line so that the next one
// is read from its start, and returns err; a connection error or a line
// that never ends replaces it.
func (d *decoder) resync(err error) error {
	var se *syntaxError
	var tb *tooBigError
	if !errors.As(err, &se) && !errors.As(err, &tb) {
		return err
	}
	if d.last == '\n' {
		return err // the error was found at the end of the line
	}
	for {
		b, rerr := d.readByte()
		if rerr != nil {
			return rerr
		}
		if b == '\n' {
			return err
		}
	}
}

func (d *decoder) expect(want byte) error {
	b, err := d.readByte()
	if err != nil {
		return err
	}
	if b != want {
		return &syntaxError{fmt.Sprintf("Expected %q", want)}
	}
	return nil
}

// atom reads letters (a command name).
func (d *decoder) atom() (string, error) {
	var b strings.Builder
	for {
		c, err := d.peek()
		if err != nil {
			return "", err
		}
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return b.String(), nil
		}
		d.readByte()
		b.WriteByte(c)
		if b.Len() > 32 {
			return "", &syntaxError{"Command name too long"}
		}
	}
}

// arg reads a string or a number.
func (d *decoder) arg() (arg, error) {
	c, err := d.peek()
	if err != nil {
		return arg{}, err
	}
	switch {
	case c == '"':
		d.readByte()
		s, err := d.quoted()
		return arg{kind: argString, s: s}, err
	case c == '{':
		d.readByte()
		s, err := d.literal()
		return arg{kind: argString, s: s, literal: true}, err
	case c >= '0' && c <= '9':
		n, err := d.number()
		return arg{kind: argNumber, n: n}, err
	}
	return arg{}, &syntaxError{"Expected a string or a number"}
}

// quoted reads a quoted string after its opening quote (RFC 5804 §4:
// at most 1024 characters, \ escapes only " and \, no CR or LF).
func (d *decoder) quoted() (string, error) {
	var b strings.Builder
	for {
		c, err := d.readByte()
		if err != nil {
			return "", err
		}
		switch c {
		case '"':
			s := b.String()
			if !utf8.ValidString(s) {
				return "", &syntaxError{"A string is not valid UTF-8"}
			}
			if utf8.RuneCountInString(s) > maxQuoted {
				return "", &syntaxError{"A quoted string is longer than 1024 characters: send a literal"}
			}
			return s, nil
		case '\\':
			c, err = d.readByte()
			if err != nil {
				return "", err
			}
			if c != '"' && c != '\\' {
				return "", &syntaxError{"Only \\\" and \\\\ may be escaped in a quoted string"}
			}
		case '\r', '\n', 0:
			return "", &syntaxError{"A quoted string may not hold CR, LF or NUL"}
		}
		b.WriteByte(c)
	}
}

// literal reads "n+}" CRLF and n octets after the "{" (RFC 5804 §4's
// literal-c2s; the synchronizing form "{n}" is taken as well, since the
// protocol has no continuation to wait for).
func (d *decoder) literal() (string, error) {
	n, err := d.number()
	if err != nil {
		return "", err
	}
	c, err := d.readByte()
	if err != nil {
		return "", err
	}
	if c == '+' {
		if c, err = d.readByte(); err != nil {
			return "", err
		}
	}
	if c != '}' {
		return "", &syntaxError{"Expected } after the literal's length"}
	}
	if c, err = d.readByte(); err != nil {
		return "", err
	}
	if c == '\r' {
		if c, err = d.readByte(); err != nil {
			return "", err
		}
	}
	if c != '\n' {
		return "", &syntaxError{"Expected CRLF after the literal's length"}
	}
	if n > uint64(d.maxLiteral) {
		if n > maxDiscard {
			return "", fmt.Errorf("a literal of %d octets: %w", n, errLineTooLong)
		}
		if _, err := io.CopyN(io.Discard, d.br, int64(n)); err != nil {
			return "", err
		}
		d.last = 0
		return "", &tooBigError{n}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(d.br, buf); err != nil {
		return "", err
	}
	d.last = 0
	return string(buf), nil
}

// number reads 1*DIGIT, at most 4294967295 (RFC 5804 §4).
func (d *decoder) number() (uint64, error) {
	var digits []byte
	for {
		c, err := d.peek()
		if err != nil {
			return 0, err
		}
		if c < '0' || c > '9' {
			break
		}
		d.readByte()
		digits = append(digits, c)
		if len(digits) > 10 {
			return 0, &syntaxError{"Number too large"}
		}
	}
	if len(digits) == 0 {
		return 0, &syntaxError{"Expected a number"}
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil || n > 4294967295 {
		return 0, &syntaxError{"Number too large"}
	}
	return n, nil
}

// encoder writes responses.
type encoder struct {
	bw  *bufio.Writer
	err error
}

func (e *encoder) raw(s string) *encoder {
	if e.err == nil {
		_, e.err = e.bw.WriteString(s)
	}
	return e
}

// str writes s as a quoted string where it can be one, else as a
// literal (RFC 5804 §4: a server sends "{n}" literals).
func (e *encoder) str(s string) *encoder {
	if quotable(s) {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(s); i++ {
			if s[i] == '"' || s[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[i])
		}
		b.WriteByte('"')
		return e.raw(b.String())
	}
	return e.raw("{" + strconv.Itoa(len(s)) + "}\r\n").raw(s)
}

func quotable(s string) bool {
	if len(s) > maxQuoted || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsAny(s, "\r\n\x00")
}

// response writes OK, NO or BYE with an optional code (without its
// parentheses) and text.
func (e *encoder) response(kind, code, text string) *encoder {
	e.raw(kind)
	if code != "" {
		e.raw(" (" + code + ")")
	}
	if text != "" {
		e.raw(" ").str(text)
	}
	return e.raw("\r\n")
}

func (e *encoder) flush() error {
	if e.err == nil {
		e.err = e.bw.Flush()
	}
	return e.err
}
