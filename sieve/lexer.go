package sieve

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Pos is a place in a script: line and column, both counted from 1, the
// column in characters (not octets), as an editor shows it.
type Pos struct {
	Line, Col int
}

// String is "line:column", as errors and logs show a place.
func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

type tokenKind int

const (
	tEOF tokenKind = iota
	tIdent
	tTag
	tNumber
	tString
	tLBracket
	tRBracket
	tLParen
	tRParen
	tLBrace
	tRBrace
	tComma
	tSemicolon
)

var tokenNames = [...]string{
	tEOF:       "end of script",
	tIdent:     "identifier",
	tTag:       "tag",
	tNumber:    "number",
	tString:    "string",
	tLBracket:  "'['",
	tRBracket:  "']'",
	tLParen:    "'('",
	tRParen:    "')'",
	tLBrace:    "'{'",
	tRBrace:    "'}'",
	tComma:     "','",
	tSemicolon: "';'",
}

func (k tokenKind) String() string { return tokenNames[k] }

type token struct {
	kind tokenKind
	pos  Pos
	text string // identifier or tag name (without the colon), string value
	num  uint64
	// multiline marks a text: string, whose value keeps its line ends.
	multiline bool
}

// describe names a token in an error message.
func (t token) describe() string {
	switch t.kind {
	case tIdent:
		return fmt.Sprintf("identifier %q", t.text)
	case tTag:
		return fmt.Sprintf("tag :%s", t.text)
	case tNumber:
		return fmt.Sprintf("number %d", t.num)
	case tString:
		return "string"
	}
	return t.kind.String()
}

// lexer turns a script into tokens (RFC 5228 §2 and §8.1). It works on
// the whole script in memory: scripts are bounded by Limits.MaxScriptSize.
type lexer struct {
	src  string
	off  int
	line int
	col  int // column of src[off]
}

func newLexer(src string) *lexer { return &lexer{src: src, line: 1, col: 1} }

func (l *lexer) pos() Pos { return Pos{l.line, l.col} }

// advance moves past n octets that hold no line end.
func (l *lexer) advance(n int) {
	l.col += utf8.RuneCountInString(l.src[l.off : l.off+n])
	l.off += n
}

// newline moves past a line end of n octets (CRLF or LF).
func (l *lexer) newline(n int) {
	l.off += n
	l.line++
	l.col = 1
}

func (l *lexer) errorf(p Pos, format string, args ...any) error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// skip passes white space and comments (RFC 5228 §2.2, §2.3).
func (l *lexer) skip() error {
	for l.off < len(l.src) {
		switch c := l.src[l.off]; {
		case c == '\n':
			l.newline(1)
		case c == '\r' && l.off+1 < len(l.src) && l.src[l.off+1] == '\n':
			l.newline(2)
		case c == ' ' || c == '\t' || c == '\r':
			l.advance(1)
		case c == '#':
			end := strings.IndexByte(l.src[l.off:], '\n')
			if end < 0 {
				l.advance(len(l.src) - l.off)
			} else {
				l.advance(end)
			}
		case c == '/' && l.off+1 < len(l.src) && l.src[l.off+1] == '*':
			start := l.pos()
			l.advance(2)
			for {
				i := strings.IndexAny(l.src[l.off:], "*\n")
				if i < 0 {
					return l.errorf(start, "unterminated comment")
				}
				if l.src[l.off+i] == '\n' {
					l.advance(i)
					l.newline(1)
					continue
				}
				l.advance(i + 1)
				if l.off < len(l.src) && l.src[l.off] == '/' {
					l.advance(1)
					break
				}
			}
		default:
			return nil
		}
	}
	return nil
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// next returns the next token.
func (l *lexer) next() (token, error) {
	if err := l.skip(); err != nil {
		return token{}, err
	}
	p := l.pos()
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: p}, nil
	}
	c := l.src[l.off]
	if k := punctuation(c); k != tEOF {
		l.advance(1)
		return token{kind: k, pos: p}, nil
	}
	switch {
	case c == '"':
		s, err := l.quoted()
		return token{kind: tString, pos: p, text: s}, err
	case c == ':':
		l.advance(1)
		if l.off >= len(l.src) || !isIdentStart(l.src[l.off]) {
			return token{}, l.errorf(p, "':' must be followed by a tag name")
		}
		name := l.ident()
		return token{kind: tTag, pos: p, text: strings.ToLower(name)}, nil
	case c >= '0' && c <= '9':
		n, err := l.number(p)
		return token{kind: tNumber, pos: p, num: n}, err
	case isIdentStart(c):
		name := l.ident()
		if strings.EqualFold(name, "text") && l.off < len(l.src) && l.src[l.off] == ':' {
			l.advance(1)
			s, err := l.multiline(p)
			return token{kind: tString, pos: p, text: s, multiline: true}, err
		}
		return token{kind: tIdent, pos: p, text: strings.ToLower(name)}, nil
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.off:])
	return token{}, l.errorf(p, "unexpected character %q", r)
}

func punctuation(c byte) tokenKind {
	switch c {
	case '[':
		return tLBracket
	case ']':
		return tRBracket
	case '(':
		return tLParen
	case ')':
		return tRParen
	case '{':
		return tLBrace
	case '}':
		return tRBrace
	case ',':
		return tComma
	case ';':
		return tSemicolon
	}
	return tEOF
}

func (l *lexer) ident() string {
	start := l.off
	end := start
	for end < len(l.src) && isIdentChar(l.src[end]) {
		end++
	}
	l.advance(end - start)
	return l.src[start:end]
}

// number reads a number with an optional K, M or G quantifier
// (RFC 5228 §2.4.1); one that does not fit in 63 bits is an error.
func (l *lexer) number(p Pos) (uint64, error) {
	const max = 1<<63 - 1
	var n uint64
	for l.off < len(l.src) && l.src[l.off] >= '0' && l.src[l.off] <= '9' {
		d := uint64(l.src[l.off] - '0')
		if n > (max-d)/10 {
			return 0, l.errorf(p, "number too large")
		}
		n = n*10 + d
		l.advance(1)
	}
	if l.off < len(l.src) {
		shift := 0
		switch l.src[l.off] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		}
		if shift > 0 {
			if n > max>>shift {
				return 0, l.errorf(p, "number too large")
			}
			n <<= shift
			l.advance(1)
		}
	}
	if l.off < len(l.src) && isIdentChar(l.src[l.off]) {
		return 0, l.errorf(l.pos(), "unexpected %q after a number", l.src[l.off])
	}
	return n, nil
}

// quoted reads a quoted string: \" and \\ stand for " and \, and a
// backslash before any other character is dropped (RFC 5228 §2.4.2).
func (l *lexer) quoted() (string, error) {
	start := l.pos()
	l.advance(1)
	var b strings.Builder
	for {
		i := strings.IndexAny(l.src[l.off:], "\"\\\n")
		if i < 0 {
			return "", l.errorf(start, "unterminated string")
		}
		b.WriteString(l.src[l.off : l.off+i])
		l.advance(i)
		switch l.src[l.off] {
		case '"':
			l.advance(1)
			s := b.String()
			if !utf8.ValidString(s) {
				return "", l.errorf(start, "string is not valid UTF-8")
			}
			return s, nil
		case '\n':
			b.WriteByte('\n')
			l.newline(1)
		case '\\':
			if l.off+1 >= len(l.src) {
				return "", l.errorf(start, "unterminated string")
			}
			c := l.src[l.off+1]
			if c == '\n' {
				l.advance(1)
				l.newline(1)
				continue
			}
			_, n := utf8.DecodeRuneInString(l.src[l.off+1:])
			b.WriteString(l.src[l.off+1 : l.off+1+n])
			l.advance(1 + n)
		}
	}
}

// multiline reads the rest of a text: string (RFC 5228 §2.4.2): after
// "text:", white space and an optional comment up to the line end, then
// lines up to one that holds a single ".", with a leading "." removed
// from the others (dot-stuffing). Line ends are kept as LF.
func (l *lexer) multiline(start Pos) (string, error) {
	for l.off < len(l.src) && (l.src[l.off] == ' ' || l.src[l.off] == '\t') {
		l.advance(1)
	}
	if l.off < len(l.src) && l.src[l.off] == '#' {
		end := strings.IndexByte(l.src[l.off:], '\n')
		if end < 0 {
			return "", l.errorf(start, "unterminated text: string")
		}
		l.advance(end)
	}
	if l.off < len(l.src) && l.src[l.off] == '\r' {
		l.advance(1)
	}
	if l.off >= len(l.src) || l.src[l.off] != '\n' {
		return "", l.errorf(l.pos(), "text: must be followed by the end of the line")
	}
	l.newline(1)
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return "", l.errorf(start, "unterminated text: string (no line with a single \".\")")
		}
		end := strings.IndexByte(l.src[l.off:], '\n')
		var line string
		if end < 0 {
			line = l.src[l.off:]
		} else {
			line = l.src[l.off : l.off+end]
		}
		content := strings.TrimSuffix(line, "\r")
		if content == "." {
			l.advance(len(line))
			if end >= 0 {
				l.newline(1)
			}
			s := b.String()
			if !utf8.ValidString(s) {
				return "", l.errorf(start, "string is not valid UTF-8")
			}
			return s, nil
		}
		if end < 0 {
			return "", l.errorf(start, "unterminated text: string (no line with a single \".\")")
		}
		content = strings.TrimPrefix(content, ".")
		b.WriteString(content)
		b.WriteByte('\n')
		l.advance(len(line))
		l.newline(1)
	}
}
