package mbox

import (
	"bytes"
	"io"
	"strings"

	"mailroom/mailbox/index"
)

// maxFilteredHeader bounds the header a headerFilter holds to filter it;
// a longer one (no real message has it) passes unfiltered.
const maxFilteredHeader = 256 << 10

// headerFilter is the writer a message passes through before the quoter:
// it drops the hidden fields (hiddenFields) from the header, so that a
// sender cannot set a flag, and adds extra (the store's flag fields) at
// the end of the header. A message it has nothing to change passes
// unchanged.
type headerFilter struct {
	w     io.Writer
	extra string
	// keepLength keeps Content-Length (a rewrite of a file, where it
	// may be what delimits an unquoted body).
	keepLength bool
	buf        []byte
	done       bool // the header is behind: bytes pass through
	err        error
}

func (h *headerFilter) Write(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	if h.done {
		return h.pass(p)
	}
	scanned := len(h.buf)
	h.buf = append(h.buf, p...)
	// Where the header ends: an empty line at a line start.
	start := 0
	if scanned > 0 {
		if i := bytes.LastIndexByte(h.buf[:scanned], '\n'); i >= 0 {
			start = i + 1
		} else {
			start = 0
		}
	}
	for start < len(h.buf) {
		nl := bytes.IndexByte(h.buf[start:], '\n')
		if nl < 0 {
			break
		}
		line := h.buf[start : start+nl+1]
		// As the scanner will see it once stored: CRLF becomes LF, so
		// "\r\r\n" is stored as "\r\n", an empty line too.
		if t := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")); len(t) == 0 || string(t) == "\r" {
			rest := bytes.Clone(h.buf[start:])
			h.emit(h.buf[:start], true)
			h.done = true
			h.buf = nil
			if _, err := h.pass(rest); err != nil {
				return 0, err
			}
			return len(p), h.err
		}
		start += nl + 1
	}
	if len(h.buf) > maxFilteredHeader {
		h.done, h.extra = true, ""
		b := h.buf
		h.buf = nil
		if _, err := h.pass(b); err != nil {
			return 0, err
		}
	}
	return len(p), h.err
}

// Close writes a message that is all header (no empty line): filtered,
// with extra after it.
func (h *headerFilter) Close() error {
	if h.err != nil || h.done {
		return h.err
	}
	h.done = true
	if len(h.buf) > 0 && h.extra != "" && h.buf[len(h.buf)-1] != '\n' {
		h.buf = append(h.buf, '\n')
	}
	h.emit(h.buf, h.extra != "")
	return h.err
}

// emit writes the header lines in b without the hidden fields, then extra.
func (h *headerFilter) emit(b []byte, withExtra bool) {
	hiding := false
	for len(b) > 0 && h.err == nil {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
		}
		b = b[len(line):]
		if !isContinuation(line) {
			hiding = isHidden(line) && !(h.keepLength && isLength(line))
		}
		if !hiding {
			h.pass(line)
		}
	}
	if withExtra && h.extra != "" {
		h.pass([]byte(h.extra))
	}
}

func (h *headerFilter) pass(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	n, err := h.w.Write(p)
	h.err = err
	return n, err
}

// flagFields is how a message's flags are written into its header, as
// Dovecot writes them and mutt reads them: Status: R for \Seen (with O,
// "not new"), X-Status: A, F, T, D for \Answered, \Flagged, \Draft,
// \Deleted, X-Keywords: the keywords, separated by spaces. No flags, no
// fields (mutt shows such a message as new).
func flagFields(sys index.Flags, kws []string) string {
	var b strings.Builder
	if sys&index.Seen != 0 {
		b.WriteString("Status: RO\n")
	}
	var x []byte
	for _, f := range xStatus {
		if sys&f.bit != 0 {
			x = append(x, f.letter)
		}
	}
	if len(x) > 0 {
		b.WriteString("X-Status: " + string(x) + "\n")
	}
	if len(kws) > 0 {
		b.WriteString("X-Keywords: " + strings.Join(kws, " ") + "\n")
	}
	return b.String()
}

// xStatus are the letters of X-Status:, in Dovecot's order.
var xStatus = []struct {
	letter byte
	bit    index.Flags
}{{'A', index.Answered}, {'F', index.Flagged}, {'T', index.Draft}, {'D', index.Deleted}}

// SpanFlags reads the flags that mutt, Dovecot or mailroom wrote into a
// message's header (Status:, X-Status:, X-Keywords:; see flagFields).
// Letters it does not know are ignored; so are keywords that are not
// IMAP atoms.
func SpanFlags(s *Span) (index.Flags, []string) {
	var sys index.Flags
	if bytes.IndexByte(s.Status, 'R') >= 0 {
		sys |= index.Seen
	}
	for _, f := range xStatus {
		if bytes.IndexByte(s.XStatus, f.letter) >= 0 {
			sys |= f.bit
		}
	}
	var words []string
	for _, w := range strings.FieldsFunc(string(s.XKeywords), func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		if !strings.HasPrefix(w, `\`) {
			words = append(words, w)
		}
	}
	_, kws := index.ParseFlags(words)
	return sys, kws
}
