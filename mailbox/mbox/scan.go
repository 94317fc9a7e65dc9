package mbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Reading an mbox written by anyone, without holding it in memory: Scan
// walks the file once, line by line, and reports where each message is,
// which is what an index needs (offsets, sizes, a fingerprint of each
// message's start, the flags other programs wrote into its header).
//
// What separates messages: a line starting with "From " at the start of
// the file or after an empty line, as every mbox variant writes it
// (mboxrd and mboxo quote body lines that would look like one; mboxcl
// does too, and adds Content-Length). A Content-Length header is used only
// where it is confirmed: the bytes it names end at the end of the file or
// just before an empty line and a "From " line. Otherwise (a wrong or
// hostile length, mboxcl2 that does not quote) the lines decide, as
// Dovecot does; such a body is Verbatim (mboxcl2 does not quote, so no
// '>' is taken off). Lines may end in LF or CRLF. A file that does not start
// with "From " has its leading bytes reported as Junk, not as a message,
// so that nothing in it is lost or served as mail.

// Span is one message as Scan found it in the file.
type Span struct {
	// Offset is where its "From " line starts; Start where the message
	// itself (its header) starts, after that line; Body where the empty
	// line that ends its header is (End if it has none); End where it ends,
	// before the empty line that separates it from the next message (or
	// at the end of the file).
	Offset, Start, Body, End int64
	// FromLine is the "From " line without its line end.
	FromLine []byte
	// Hash is SHA-256 of the From line and the header block but for its
	// hidden fields, which identifies a message across rewrites by other
	// programs (they keep both, but move messages and change Status:).
	Hash [sha256.Size]byte
	// Quoted counts the lines matching ^>+From , from each of which a
	// reader removes one '>' (mboxrd).
	Quoted int64
	// BareLF counts the line ends that are a lone LF, each served as CRLF.
	BareLF int64
	// Hidden is the served size (CRLF line ends) of the header fields
	// that hold a mail store's state rather than the message's
	// (hiddenFields). They are not served, as Dovecot does not serve
	// them, so that rewriting them (a flag change) never changes a
	// message.
	Hidden int64
	// Status, XStatus and XKeywords are the values of the Status:,
	// X-Status: and X-Keywords: header fields (mutt's and Dovecot's
	// flags), nil where absent.
	Status, XStatus, XKeywords []byte
	// XUID and XIMAPBase are the values of X-UID: and X-IMAPbase: (the
	// UIDs Dovecot and UW-IMAP keep in the file), nil where absent.
	XUID, XIMAPBase []byte
	// Verbatim: the body's length is a Content-Length the file
	// confirms (mboxcl), so "From " lines inside it are text and no
	// quoting is undone (mboxcl2 does not quote); Quoted is then the
	// header's count only.
	Verbatim bool
	// Truncated: the file ended inside the message's header, so that it
	// lacks the empty line ending its header (a writer that crashed, a
	// file cut short).
	Truncated bool

	lastField byte // 'k' while reading X-Keywords (continueField)
}

// Served is the size of the message as IMAP serves it: mboxrd quoting
// undone, every line end CRLF.
func (s *Span) Served() int64 { return s.End - s.Start - s.Quoted + s.BareLF - s.Hidden }

// hiddenFields are the header fields that mail stores keep their state
// in (mutt's and Dovecot's flags, Dovecot's and UW-IMAP's UIDs, the
// Content-Length of mboxcl that Dovecot adds): not part of the message
// as served, nor of its fingerprint, and dropped from messages written
// into a store (a sender cannot set a flag). Dovecot hides the same.
var hiddenFields = []string{"Status", "X-Status", "X-Keywords", "X-UID", "X-IMAP", "X-IMAPbase", "Content-Length"}

// unhashedFields are served but not part of a message's fingerprint:
// mutt adds Lines: (beside Content-Length:) to every message after the
// first one it changes when it rewrites a file, and a message must keep
// its UID through that (its served size grows by the line, as in
// Dovecot, which serves it too).
var unhashedFields = []string{"Lines"}

// isUnhashed reports whether a header line (its start) is one of
// unhashedFields.
func isUnhashed(line []byte) bool {
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return false
	}
	name = bytes.TrimRight(name, " \t")
	for _, h := range unhashedFields {
		if bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

// isLength reports whether a header line is a Content-Length field.
func isLength(line []byte) bool {
	name, _, ok := bytes.Cut(line, []byte(":"))
	return ok && bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("Content-Length"))
}

// isHidden reports whether a header line (its start) is one of
// hiddenFields.
func isHidden(line []byte) bool {
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return false
	}
	name = bytes.TrimRight(name, " \t")
	for _, h := range hiddenFields {
		if bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

// isContinuation reports whether a header line continues the field
// before it (RFC 5322 folding).
func isContinuation(line []byte) bool { return len(line) > 0 && (line[0] == ' ' || line[0] == '\t') }

// ScanResult is what Scan reports of the file besides its messages.
type ScanResult struct {
	// Junk is the number of bytes before the first "From " line (0 for a
	// well-formed mbox).
	Junk int64
	// End is the offset Scan stopped at: the end of the file.
	End int64
}

// maxLine bounds the part of a line Scan holds at once; longer lines are
// read through in pieces (a binary message may have no line ends at all).
const maxLine = 64 << 10

// Scan reads the mbox in f (size bytes) from offset start, which is 0 or
// where a message's "From " line begins (the end of what an earlier Scan
// saw, for a file that grew), and calls fn for each message in file
// order; an error from fn stops it and is returned. It reads the file
// once, holding at most a line's head in memory, with a few small reads
// at the offsets Content-Length headers name.
func Scan(f io.ReaderAt, start, size int64, fn func(*Span) error) (ScanResult, error) {
	sc := &scanner{
		f:     f,
		size:  size,
		br:    bufio.NewReaderSize(io.NewSectionReader(f, start, size-start), maxLine),
		off:   start,
		begin: start,
	}
	return sc.run(fn)
}

type scanner struct {
	f     io.ReaderAt
	size  int64
	begin int64 // where the Scan began
	br    *bufio.Reader
	off   int64 // offset of the next byte to read
}

// line is one line as read: its head (at most maxLine bytes, the rest
// skipped), its length and how it ends.
type line struct {
	off  int64
	head []byte // the line's first bytes, without the line end if it fits
	n    int64  // bytes of the line, line end included
	crlf bool   // ended in CRLF
	lf   bool   // ended in LF (CRLF included)
}

func (l *line) empty() bool { return l.lf && len(l.head) == 0 }

// next reads one line; io.EOF only when nothing is left.
func (sc *scanner) next(l *line) error {
	*l = line{off: sc.off}
	first := true
	for {
		chunk, err := sc.br.ReadSlice('\n')
		sc.off += int64(len(chunk))
		l.n += int64(len(chunk))
		if first {
			l.head = append(l.head[:0], chunk...)
			first = false
		}
		if err == nil {
			l.lf = true
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a long line: only its head is kept
		}
		if errors.Is(err, io.EOF) {
			if l.n == 0 {
				return io.EOF
			}
			break
		}
		return err
	}
	if l.lf && len(l.head) > 0 && l.head[len(l.head)-1] == '\n' {
		l.head = l.head[:len(l.head)-1]
		if len(l.head) > 0 && l.head[len(l.head)-1] == '\r' {
			l.head = l.head[:len(l.head)-1]
			l.crlf = true
		}
	}
	return nil
}

func isFromLine(l *line) bool { return bytes.HasPrefix(l.head, []byte(fromPrefix)) }

func (sc *scanner) run(fn func(*Span) error) (ScanResult, error) {
	res := ScanResult{End: sc.off}
	var (
		l        line
		prevEmpt = true // the start counts as following an empty line
		cur      *Span
		inHeader bool
		hiding   bool  // the header field being read is hidden
		unhashed bool  // the header field being read is not fingerprinted
		hash           = sha256.New()
		cl       int64 = -1 // Content-Length of cur, -1 if none
		clEnd    int64 = -1 // where a confirmed Content-Length ends cur's body
		pending  bool       // the last line was empty: perhaps the separator
		pendLine line
		sawFirst bool
	)
	finish := func(end int64) error {
		if cur == nil {
			return nil
		}
		cur.End = end
		if inHeader {
			cur.Body = end
			cur.Truncated = true
			hash.Sum(cur.Hash[:0])
		}
		err := fn(cur)
		cur = nil
		return err
	}
	for {
		err := sc.next(&l)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("read mbox at byte %d: %w", l.off, err)
		}
		if prevEmpt && isFromLine(&l) && (clEnd < 0 || l.off >= clEnd) {
			// A new message; the empty line before it belongs to neither.
			end := l.off
			if pending {
				end = pendLine.off
			}
			if !sawFirst {
				res.Junk = l.off - sc.begin
				sawFirst = true
			}
			if err := finish(end); err != nil {
				return res, err
			}
			cur = &Span{Offset: l.off, Start: l.off + l.n, FromLine: bytes.Clone(l.head)}
			hash.Reset()
			hash.Write(l.head)
			hash.Write([]byte{'\n'})
			inHeader, cl, clEnd, pending, prevEmpt, hiding, unhashed = true, -1, -1, false, false, false, false
			continue
		}
		if cur == nil {
			prevEmpt = l.empty()
			continue // junk before the first message
		}
		if pending {
			// The empty line held back was content after all.
			cur.BareLF += bareLF(&pendLine)
			pending = false
		}
		if l.empty() {
			prevEmpt = true
			if inHeader {
				inHeader = false
				cur.Body = l.off
				hash.Sum(cur.Hash[:0])
				if cl >= 0 {
					clEnd = sc.confirm(l.off+l.n, cl)
					cur.Verbatim = clEnd >= 0
				}
			}
			// Held back: if a "From " line follows, it is the
			// separator, not part of the message.
			pendLine, pending = l, true
			continue
		}
		prevEmpt = false
		cur.BareLF += bareLF(&l)
		if inHeader {
			if !isContinuation(l.head) {
				hiding = isHidden(l.head)
				unhashed = isUnhashed(l.head)
			}
			if hiding {
				cur.Hidden += l.n + bareLF(&l)
				if isContinuation(l.head) {
					continueField(cur, &l)
				}
			} else if !unhashed {
				hash.Write(l.head)
				hash.Write([]byte{'\n'})
			}
			headerField(cur, &l, &cl)
		}
		if isQuotedFrom(l.head) && !cur.Verbatim {
			cur.Quoted++
		}
	}
	end := sc.off
	if pending && cur != nil {
		end = pendLine.off // the final separator
	}
	if !sawFirst {
		res.Junk = sc.off - sc.begin
	}
	if err := finish(end); err != nil {
		return res, err
	}
	res.End = sc.off
	return res, nil
}

// bareLF is 1 if the line ends in a lone LF.
func bareLF(l *line) int64 {
	if l.lf && !l.crlf {
		return 1
	}
	return 0
}

// continueField adds a folded line to the X-Keywords value it continues
// (the only one of the flag fields that runs long).
func continueField(cur *Span, l *line) {
	if cur.XKeywords != nil && cur.lastField == 'k' {
		cur.XKeywords = append(append(cur.XKeywords, ' '), bytes.TrimSpace(l.head)...)
	}
}

// headerField records the fields Scan reports.
func headerField(cur *Span, l *line, cl *int64) {
	if isContinuation(l.head) {
		return
	}
	cur.lastField = 0
	name, value, ok := bytes.Cut(l.head, []byte(":"))
	if !ok {
		return
	}
	value = bytes.TrimSpace(value)
	switch {
	case bytes.EqualFold(name, []byte("Status")):
		cur.Status = bytes.Clone(value)
	case bytes.EqualFold(name, []byte("X-Status")):
		cur.XStatus = bytes.Clone(value)
	case bytes.EqualFold(name, []byte("X-Keywords")):
		cur.XKeywords, cur.lastField = bytes.Clone(value), 'k'
	case bytes.EqualFold(name, []byte("X-UID")):
		cur.XUID = bytes.Clone(value)
	case bytes.EqualFold(name, []byte("X-IMAPbase")):
		cur.XIMAPBase = bytes.Clone(value)
	case bytes.EqualFold(name, []byte("Content-Length")):
		if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 {
			*cl = n
		}
	}
}

// confirm returns where a body that starts at body and is n bytes long
// (Content-Length) ends, if the file agrees: the end of the file, or an
// empty line and a "From " line, right there. Otherwise -1: the length is
// wrong and the lines decide.
func (sc *scanner) confirm(body, n int64) int64 {
	end := body + n
	if n > sc.size || end > sc.size {
		return -1
	}
	if end == sc.size {
		return end
	}
	var b [7]byte
	k, _ := sc.f.ReadAt(b[:], end)
	next := b[:k]
	for _, sep := range []string{"\nFrom ", "\r\nFrom "} {
		if bytes.HasPrefix(next, []byte(sep)) {
			return end
		}
	}
	// Only the final separator left.
	if string(next) == "\n" || string(next) == "\r\n" {
		return end
	}
	return -1
}

// NewReader returns the message s of f as IMAP serves it: lines ending
// in CRLF, the hidden header fields left out, and (unless s is Verbatim)
// one '>' taken off each line that matches ^>+From , which undoes the
// mboxrd quoting exactly. It reads through the file, never holding more
// than a buffer.
func NewReader(f io.ReaderAt, s *Span) io.Reader {
	var src io.Reader = io.NewSectionReader(f, s.Start, s.End-s.Start)
	if s.Body > s.Start && s.Body < s.End {
		// The first read stops after the header, which is all that an
		// ENVELOPE or a header SEARCH reads of most messages.
		src = &firstRead{r: src, n: s.Body - s.Start + 2}
	}
	return &servedReader{
		// No bigger than the message (most are far below maxLine): a
		// line longer than the buffer is read through in pieces anyway.
		br:       bufio.NewReaderSize(src, int(min(max(s.End-s.Start, 16), maxLine))),
		verbatim: s.Verbatim,
		header:   true,
		bol:      true,
	}
}

// firstRead limits the first Read of r to n bytes.
type firstRead struct {
	r io.Reader
	n int64
}

func (f *firstRead) Read(p []byte) (int, error) {
	if f.n > 0 && int64(len(p)) > f.n {
		p = p[:f.n]
	}
	f.n = 0
	return f.r.Read(p)
}

type servedReader struct {
	br       *bufio.Reader
	verbatim bool // body lines kept as they are
	header   bool // still in the header (quoting is undone there too)
	bol      bool // at the beginning of a line
	cr       bool // a '\r' ended the last piece of a long line, held back
	hiding   bool // in a hidden header field: its lines are skipped
	skip     bool // the rest of a long hidden line is skipped
	out      []byte
	err      error
}

func (r *servedReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.fill()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// fill turns the next piece of the file into served bytes in r.out.
func (r *servedReader) fill() {
	chunk, err := r.br.ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		r.err = err
	}
	r.out = r.out[:0]
	if len(chunk) == 0 {
		return
	}
	whole := chunk[len(chunk)-1] == '\n'
	if r.skip {
		r.skip, r.bol = !whole, whole
		return
	}
	if r.bol && r.header && !r.cr {
		if !isContinuation(chunk) {
			r.hiding = isHidden(chunk)
		}
		if r.hiding {
			r.skip, r.bol = !whole, whole
			return
		}
	}
	if r.cr {
		r.cr = false
		if chunk[0] == '\n' { // the held '\r' and this '\n' are one CRLF
			r.out = append(r.out, '\r', '\n')
			r.bol = true
			return
		}
		r.out = append(r.out, '\r')
	}
	// The scanner saw the same head of the line (buffers of maxLine).
	if r.bol && (r.header || !r.verbatim) && isQuotedFrom(chunk) {
		chunk = chunk[1:]
	}
	whole = len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
	if whole {
		body := chunk[:len(chunk)-1]
		if r.bol && r.header && (len(body) == 0 || string(body) == "\r") {
			r.header = false
		}
		if len(body) > 0 && body[len(body)-1] == '\r' {
			body = body[:len(body)-1]
		}
		r.out = append(append(r.out, body...), '\r', '\n')
	} else {
		if n := len(chunk); n > 0 && chunk[n-1] == '\r' && r.err == nil {
			chunk, r.cr = chunk[:n-1], true
		}
		r.out = append(r.out, chunk...)
	}
	r.bol = whole
}
