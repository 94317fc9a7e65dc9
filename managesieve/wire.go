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
	// maxPreAuthLiteral bounds a literal before authentication: enough
	// for a SASL response, far less than a script. A larger one ends
	// the connection instead of being read or skipped.
	maxPreAuthLiteral = 4 << 10
	// maxPreAuthOctets bounds everything a client sends before it
	// authenticates, so that no one without a password can hold a
	// connection busy with endless commands.
	maxPreAuthOctets = 64 << 10
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

// errLineTooLong ends a connection whose command line never ends, or
// whose literals are too large to skip.
var errLineTooLong = errors.New("command line too long")

// errDesync ends a connection whose literal cannot be read as one: after
// a malformed literal header nothing says where the literal's octets
// end, and reading them as commands would run what the client meant as
// a script's text.
var errDesync = errors.New("malformed literal")

// decoder reads commands.
type decoder struct {
	br *bufio.Reader
	// maxLiteral bounds the literals of one command together (a
	// script); preAuth, before authentication, bounds them to
	// maxPreAuthLiteral and refuses to skip a larger one.
	maxLiteral int
	preAuth    bool
	// line counts the octets of the command read outside literals;
	// literals the octets of its literals.
	line, literals int
	// last is the last octet readByte returned; tail the last octets of
	// the line, in which resync looks for a literal's header.
	last byte
	tail []byte
}

// maxTail is enough of a line's end to hold a literal header
// ("{4294967295+}\r\n").
const maxTail = 16

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
	if len(d.tail) == maxTail {
		d.tail = append(d.tail[:0], d.tail[1:]...)
	}
	d.tail = append(d.tail, b)
	return b, nil
}

// begin starts a command (or a SASL response line).
func (d *decoder) begin() {
	d.line, d.literals, d.last, d.tail = 0, 0, 0, d.tail[:0]
}

// consumed is what the command took from the connection.
func (d *decoder) consumed() int { return d.line + d.literals }

// literalLimit is the most the literals of one command may hold: a
// script and, as some clients send names as literals too, room for
// names (of at most maxQuoted characters).
func (d *decoder) literalLimit() int {
	if d.preAuth {
		return min(d.maxLiteral, maxPreAuthLiteral)
	}
	return d.maxLiteral + 2*4*maxQuoted
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
	d.begin()
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

// resync skips the rest of a bad command so that the next one is read
// from its start, and returns err; a connection error or a line that
// never ends replaces it. The rest of the command includes the literals
// announced at the ends of its lines (RFC 5804 §4: a literal's octets
// follow its header's CRLF at once), which are skipped unread, as
// their text is no command.
func (d *decoder) resync(err error) error {
	var se *syntaxError
	var tb *tooBigError
	if !errors.As(err, &se) && !errors.As(err, &tb) {
		return err
	}
	for {
		if d.last != '\n' {
			b, rerr := d.readByte()
			if rerr != nil {
				return rerr
			}
			if b != '\n' {
				continue
			}
		}
		n, ok := literalHeader(d.tail)
		if !ok {
			return err
		}
		if rerr := d.skip(n); rerr != nil {
			return rerr
		}
	}
}

// literalHeader reports whether a line ends with a literal's header,
// "{n+}" or "{n}" before its CRLF (or LF), and its length.
func literalHeader(line []byte) (uint64, bool) {
	s := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
	if !strings.HasSuffix(s, "}") {
		return 0, false
	}
	s = strings.TrimSuffix(strings.TrimSuffix(s, "}"), "+")
	i := strings.LastIndexByte(s, '{')
	if i < 0 || i == len(s)-1 {
		return 0, false
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 64)
	return n, err == nil
}

// skip throws away a literal's n octets, if it is small enough to be
// worth it; a larger one, or any before authentication over
// maxPreAuthLiteral, ends the connection.
func (d *decoder) skip(n uint64) error {
	limit := uint64(maxDiscard)
	if d.preAuth {
		limit = maxPreAuthLiteral
	}
	if n > limit || uint64(d.literals)+n > limit {
		return fmt.Errorf("a literal of %d octets: %w", n, errLineTooLong)
	}
	if _, err := io.CopyN(io.Discard, d.br, int64(n)); err != nil {
		return err
	}
	d.literals += int(n)
	d.last, d.tail = 0, d.tail[:0]
	return nil
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
// protocol has no continuation to wait for). A malformed header is
// errDesync: the octets that follow cannot be told from commands.
func (d *decoder) literal() (string, error) {
	n, err := d.number()
	if err != nil {
		return "", desync(err)
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
		return "", fmt.Errorf("expected } after the literal's length: %w", errDesync)
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
		return "", fmt.Errorf("expected CRLF after the literal's length: %w", errDesync)
	}
	if n > uint64(min(d.maxLiteral, d.literalLimit())) || uint64(d.literals)+n > uint64(d.literalLimit()) {
		if err := d.skip(n); err != nil {
			return "", err
		}
		return "", &tooBigError{uint64(d.literals)}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(d.br, buf); err != nil {
		return "", err
	}
	d.literals += int(n)
	d.last, d.tail = 0, d.tail[:0]
	return string(buf), nil
}

// desync makes a syntax error in a literal's header errDesync.
func desync(err error) error {
	var se *syntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w", se.msg, errDesync)
	}
	return err
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
