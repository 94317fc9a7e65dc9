package wire

import (
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	goimap "github.com/emersion/go-imap/v2"
)

// FlushSize is how much an Encoder holds before it writes to the
// connection by itself; below it, bytes go out at Flush.
const FlushSize = 32 << 10

// bufs holds the Encoders' buffers: a connection has one only while it
// has something to send, so an idle one holds none.
var bufs = sync.Pool{New: func() any {
	b := make([]byte, 0, FlushSize+4<<10)
	return &b
}}

// Encoder writes responses. Its methods chain; the first write error is
// kept and returned by Flush and Err, and everything after it is dropped.
// It is not safe for concurrent use: the caller serialises whole
// responses.
type Encoder struct {
	w   io.Writer
	buf *[]byte // nil when empty
	err error
	// UTF8 is set once the client has enabled UTF8=ACCEPT or IMAP4rev2:
	// quoted strings may then hold UTF-8, and mailbox names are sent as
	// UTF-8 rather than modified UTF-7 (RFC 6855 §3, RFC 9051 §5.1).
	UTF8 bool
}

// NewEncoder writes to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Reset points the encoder at w (after STARTTLS); what is buffered is
// dropped.
func (e *Encoder) Reset(w io.Writer) {
	e.release()
	e.w, e.err = w, nil
}

func (e *Encoder) release() {
	if e.buf != nil {
		if cap(*e.buf) <= 2*FlushSize {
			*e.buf = (*e.buf)[:0]
			bufs.Put(e.buf)
		}
		e.buf = nil
	}
}

func (e *Encoder) raw(p []byte) {
	if e.err != nil {
		return
	}
	if e.buf == nil {
		if len(p) >= FlushSize {
			_, e.err = e.w.Write(p)
			return
		}
		e.buf = bufs.Get().(*[]byte)
	}
	*e.buf = append(*e.buf, p...)
	if len(*e.buf) >= FlushSize {
		e.Flush()
	}
}

func (e *Encoder) rawString(s string) {
	if e.err != nil {
		return
	}
	if e.buf == nil {
		e.buf = bufs.Get().(*[]byte)
	}
	*e.buf = append(*e.buf, s...)
	if len(*e.buf) >= FlushSize {
		e.Flush()
	}
}

// Buffered says how many bytes wait for Flush.
func (e *Encoder) Buffered() int {
	if e.buf == nil {
		return 0
	}
	return len(*e.buf)
}

// Flush writes what is buffered.
func (e *Encoder) Flush() error {
	if e.err != nil || e.buf == nil {
		e.release()
		return e.err
	}
	_, e.err = e.w.Write(*e.buf)
	e.release()
	return e.err
}

// Err is the first write error.
func (e *Encoder) Err() error { return e.err }

// Raw writes b as it is: bytes another Encoder wrote (a cached
// BODYSTRUCTURE).
func (e *Encoder) Raw(b []byte) *Encoder { e.raw(b); return e }

// Atom writes s as it is: an atom, a keyword, a number already formatted.
func (e *Encoder) Atom(s string) *Encoder { e.rawString(s); return e }

// SP writes a space.
func (e *Encoder) SP() *Encoder { e.rawString(" "); return e }

// Byte writes one byte ("(", ")", "[", ...).
func (e *Encoder) Byte(c byte) *Encoder {
	if e.err == nil {
		if e.buf == nil {
			e.buf = bufs.Get().(*[]byte)
		}
		*e.buf = append(*e.buf, c)
	}
	return e
}

// CRLF ends a line.
func (e *Encoder) CRLF() *Encoder { e.rawString("\r\n"); return e }

// Number writes n.
func (e *Encoder) Number(n uint32) *Encoder { return e.Number64(int64(n)) }

// Number64 writes n.
func (e *Encoder) Number64(n int64) *Encoder {
	// Formatted straight into the buffer: a [20]byte handed to raw
	// escapes (raw may pass it to the io.Writer), one allocation per
	// number, two per message in a FETCH of UID and FLAGS.
	if e.err == nil {
		if e.buf == nil {
			e.buf = bufs.Get().(*[]byte)
		}
		*e.buf = strconv.AppendInt(*e.buf, n, 10)
		if len(*e.buf) >= FlushSize {
			e.Flush()
		}
	}
	return e
}

// NIL writes NIL.
func (e *Encoder) NIL() *Encoder { return e.Atom("NIL") }

// maxQuoted is the longest string sent quoted; longer ones are literals.
const maxQuoted = 1024

// quotable says whether s can be sent as a quoted string.
func (e *Encoder) quotable(s string) bool {
	if len(s) > maxQuoted {
		return false
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r' || c == '\n' || c == 0:
			return false
		case c >= 0x80:
			ascii = false
		}
	}
	return ascii || (e.UTF8 && utf8.ValidString(s))
}

// Quoted writes s as a quoted string; s must be quotable (the caller
// knows: a delimiter, a fixed word).
func (e *Encoder) Quoted(s string) *Encoder {
	e.Byte('"')
	for {
		i := strings.IndexAny(s, `"\`)
		if i < 0 {
			break
		}
		e.rawString(s[:i])
		e.Byte('\\').Byte(s[i])
		s = s[i+1:]
	}
	e.rawString(s)
	return e.Byte('"')
}

// String writes s quoted where it can be, as a literal otherwise.
func (e *Encoder) String(s string) *Encoder {
	if e.quotable(s) {
		return e.Quoted(s)
	}
	e.Byte('{').Number64(int64(len(s))).Atom("}\r\n")
	e.rawString(s)
	return e
}

// NString writes s, or NIL for "".
func (e *Encoder) NString(s string) *Encoder {
	if s == "" {
		return e.NIL()
	}
	return e.String(s)
}

// Mailbox writes a mailbox name, in modified UTF-7 unless UTF8 is set.
func (e *Encoder) Mailbox(name string) *Encoder {
	if name == "INBOX" {
		return e.Atom(name)
	}
	if !e.UTF8 {
		name = EncodeMUTF7(name)
	}
	return e.String(name)
}

// Literal writes a literal's header ("~{n}" for a literal8) and returns
// where its n bytes go.
func (e *Encoder) Literal(n int64, binary bool) io.Writer {
	if binary {
		e.Byte('~')
	}
	e.Byte('{').Number64(n).Atom("}\r\n")
	return literalWriter{e}
}

type literalWriter struct{ e *Encoder }

func (w literalWriter) Write(p []byte) (int, error) {
	w.e.raw(p)
	if w.e.err != nil {
		return 0, w.e.err
	}
	return len(p), nil
}

// Flags writes a parenthesised list of flags.
func (e *Encoder) Flags(flags []goimap.Flag) *Encoder {
	e.Byte('(')
	for i, f := range flags {
		if i > 0 {
			e.SP()
		}
		e.Atom(string(f))
	}
	return e.Byte(')')
}

// NumSet writes a sequence or UID set ("$" for the saved search result).
func (e *Encoder) NumSet(set goimap.NumSet) *Encoder {
	if goimap.IsSearchRes(set) {
		return e.Atom("$")
	}
	return e.Atom(set.String())
}

// DateTime writes an INTERNALDATE (RFC 9051 §9 date-time).
func (e *Encoder) DateTime(t time.Time) *Encoder {
	return e.Quoted(t.Format("02-Jan-2006 15:04:05 -0700"))
}

// Status writes a status response: tag ("*" for untagged), type (OK, NO,
// BAD, BYE, PREAUTH), an optional response code with its arguments
// already formatted, and text.
func (e *Encoder) Status(tag string, typ goimap.StatusResponseType, code string, text string) *Encoder {
	e.Atom(tag).SP().Atom(string(typ)).SP()
	if code != "" {
		e.Byte('[').Atom(code).Byte(']').SP()
	}
	if text == "" {
		text = string(typ)
	}
	return e.Atom(safeText(text)).CRLF()
}

// safeText is text fit for resp-text: no line breaks, no NUL, no
// leading "[" (it would read as a response code).
func safeText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
	if strings.HasPrefix(s, "[") {
		s = " " + s
	}
	return s
}
