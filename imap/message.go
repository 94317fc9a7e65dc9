package imap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Reading stored messages for FETCH and SEARCH. The library's extractors
// give up on a header that go-message cannot parse (a line without a
// colon, a key with 8-bit bytes, a leading space): BODY[] would come back
// empty. So the header is split off and parsed here, leniently, and the
// library sees a cleaned copy; the raw bytes are served for BODY[],
// BODY[HEADER] and BODY[TEXT], and a message whose structure cannot be
// parsed is one text/plain part.

// field is one header field: its name and its raw bytes, continuation
// lines and line ending included.
type field struct {
	key string
	raw []byte
}

// splitHeader reads the header block of a message: every line up to and
// including the first empty one (or everything, if there is none).
func splitHeader(br *bufio.Reader) ([]byte, error) {
	var raw []byte
	for {
		line, err := br.ReadSlice('\n')
		raw = append(raw, line...)
		if err == bufio.ErrBufferFull {
			continue // a long line: keep reading it
		}
		if err == io.EOF {
			return raw, nil
		}
		if err != nil {
			return raw, err
		}
		if isBlank(line) && (len(raw) == len(line) || raw[len(raw)-len(line)-1] == '\n') {
			return raw, nil
		}
	}
}

func isBlank(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}

// parseFields splits a header block into fields. Lines that are neither
// "name: value" with a printable-ASCII name nor a continuation of such a
// field are skipped, as is a continuation with no field before it. The
// fields' raw bytes are slices of raw, not copies.
func parseFields(raw []byte) []field {
	fields := make([]field, 0, 16)
	cur := -1
	curStart := 0 // offset in raw of the current field's first line
	off := 0
	for off < len(raw) {
		n := bytes.IndexByte(raw[off:], '\n') + 1
		if n == 0 {
			n = len(raw) - off
		}
		line := raw[off : off+n]
		if isBlank(line) {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur >= 0 { // continuation lines follow their field
				fields[cur].raw = raw[curStart : off+n : off+n]
			}
			off += n
			continue
		}
		cur = -1
		if colon := bytes.IndexByte(line, ':'); colon > 0 {
			if key := keyString(bytes.TrimRight(line[:colon], " \t")); validKey(key) {
				fields = append(fields, field{key: key, raw: line[:n:n]})
				cur, curStart = len(fields)-1, off
			}
		}
		off += n
	}
	for i := range fields { // a last line without its line ending
		if r := fields[i].raw; r[len(r)-1] != '\n' {
			fields[i].raw = append(r, '\r', '\n') // capacity is len: copies
		}
	}
	return fields
}

// commonKeys are field names as most messages spell them, which
// keyString returns without a copy: a cached header block is parsed for
// every FETCH ENVELOPE of its message.
var commonKeys = [...]string{"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
	"In-Reply-To", "Message-ID", "References", "Received", "Return-Path", "Delivered-To",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "DKIM-Signature"}

// keyString is the field name b as a string.
func keyString(b []byte) string {
	for _, k := range commonKeys {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] >= 0x7f || k[i] == ':' {
			return false
		}
	}
	return true
}

// content is one opened message, read lazily.
type content struct {
	r      io.ReadSeeker
	size   int64 // of the whole message, as stored
	raw    []byte
	fields []field
	hdr    *textproto.Header
	// br has read r up to the end of the header block; while atBody is
	// true, r has not been moved since, and the body is read on from br
	// rather than by seeking back (a Maildir's CRLF-converted message
	// seeks by reading again from the start).
	br     *bufio.Reader
	atBody bool
	// onPanic records a panic of go-message's parsing (catch).
	onPanic func(where string, v any)
}

// headerReaders recycles newContent's buffered readers (see release).
var headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func newContent(r io.ReadSeeker, size int64) (*content, error) {
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(io.LimitReader(r, size))
	raw, err := splitHeader(br)
	if err != nil {
		br.Reset(nil)
		headerReaders.Put(br)
		return nil, fmt.Errorf("read header: %w", err)
	}
	return &content{r: r, size: size, raw: raw, fields: parseFields(raw), br: br, atBody: true}, nil
}

// release gives the buffered reader back when the message is done with;
// c must not be used after.
func (c *content) release() {
	if c != nil && c.br != nil {
		c.br.Reset(nil)
		headerReaders.Put(c.br)
		c.br, c.atBody = nil, false
	}
}

// seek moves r for a direct read; the body can no longer be read on
// from br.
func (c *content) seek(off int64) error {
	c.atBody = false
	_, err := c.r.Seek(off, io.SeekStart)
	return err
}

// bodyLen is the size of everything after the header block.
func (c *content) bodyLen() int64 { return c.size - int64(len(c.raw)) }

// clean is the header block rebuilt from the fields that parse.
func (c *content) clean() []byte {
	var b bytes.Buffer
	for _, f := range c.fields {
		b.Write(f.raw)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// header is the parsed header for the library's extractors.
func (c *content) header() textproto.Header {
	if c.hdr == nil {
		h := headerOf(c.fields, nil)
		c.hdr = &h
	}
	return *c.hdr
}

// headerOf is the header go-message's ReadHeader gives for these fields
// (those keep reports true for, or all with keep nil), built without
// reading them again. A field's raw bytes are kept, not copied.
func headerOf(fields []field, keep func(string) bool) textproto.Header {
	var h textproto.Header
	for i := len(fields) - 1; i >= 0; i-- { // the header keeps fields last first
		if keep == nil || keep(fields[i].key) {
			h.AddRaw(fields[i].raw)
		}
	}
	return h
}

// entity is the message for go-message, with the header as parsed here.
func (c *content) entity() (*gomessage.Entity, error) {
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	return gomessage.New(gomessage.Header{Header: c.header()}, b)
}

// body returns a reader of the body, from its start.
func (c *content) body() (io.Reader, error) {
	if c.atBody && c.br != nil {
		c.atBody = false
		return c.br, nil // limited to size already
	}
	if err := c.seek(int64(len(c.raw))); err != nil {
		return nil, err
	}
	return io.LimitReader(c.r, c.bodyLen()), nil
}

// message returns the message with the cleaned header, for the library.
func (c *content) message() (io.Reader, error) {
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	return io.MultiReader(bytes.NewReader(c.clean()), b), nil
}

// span is a byte range of the stored message served as it is.
type span struct{ off, n int64 }

// partial narrows a span to a client's <offset.size> (RFC 9051 §6.4.5).
func partial(s span, p *goimap.SectionPartial) span {
	if p == nil {
		return s
	}
	if p.Offset >= s.n {
		return span{s.off + s.n, 0}
	}
	return span{s.off + p.Offset, min(p.Size, s.n-p.Offset)}
}

// rawSection says where a body section lies in the stored message when it
// can be served from the file without parsing MIME: BODY[], BODY[TEXT]
// and BODY[HEADER] of the message itself.
func (c *content) rawSection(item *goimap.FetchItemBodySection) (span, bool) {
	if len(item.Part) > 0 || len(item.HeaderFields) > 0 || len(item.HeaderFieldsNot) > 0 {
		return span{}, false
	}
	switch item.Specifier {
	case goimap.PartSpecifierNone:
		return partial(span{0, c.size}, item.Partial), true
	case goimap.PartSpecifierText:
		return partial(span{int64(len(c.raw)), c.bodyLen()}, item.Partial), true
	case goimap.PartSpecifierHeader, goimap.PartSpecifierMIME:
		return partial(span{0, int64(len(c.raw))}, item.Partial), true
	}
	return span{}, false
}

// headerFields serves BODY[HEADER.FIELDS (...)] and HEADER.FIELDS.NOT of
// the message itself from the raw fields.
func (c *content) headerFields(item *goimap.FetchItemBodySection) []byte {
	var b bytes.Buffer
	for _, f := range c.fields {
		in := false
		for _, k := range item.HeaderFields {
			in = in || strings.EqualFold(k, f.key)
		}
		out := false
		for _, k := range item.HeaderFieldsNot {
			out = out || strings.EqualFold(k, f.key)
		}
		if (len(item.HeaderFields) > 0 && !in) || out {
			continue
		}
		b.Write(f.raw)
	}
	b.WriteString("\r\n")
	return partialBytes(b.Bytes(), item.Partial)
}

func partialBytes(b []byte, p *goimap.SectionPartial) []byte {
	s := partial(span{0, int64(len(b))}, p)
	return b[s.off : s.off+s.n]
}

// section returns any body section that is not a raw span.
func (c *content) section(item *goimap.FetchItemBodySection) (b []byte, err error) {
	if len(item.Part) == 0 {
		return c.headerFields(item), nil
	}
	defer c.catch("FETCH BODY[] section", &err)
	m, err := c.message()
	if err != nil {
		return nil, err
	}
	return imapserver.ExtractBodySection(m, item), nil
}

func (c *content) binary(item *goimap.FetchItemBinarySection) (b []byte, err error) {
	defer c.catch("FETCH BINARY[] section", &err)
	m, err := c.message()
	if err != nil {
		return nil, err
	}
	return imapserver.ExtractBinarySection(m, item), nil
}

// bodyStructure is the library's, made safe to write: a part with no
// type is application/octet-stream, an empty multipart an empty text
// part, and a message it cannot parse at all a single text/plain part.
func (c *content) bodyStructure() (goimap.BodyStructure, error) {
	var bs goimap.BodyStructure
	err := func() (err error) {
		defer c.catch("FETCH BODYSTRUCTURE", &err)
		m, err := c.message()
		if err != nil {
			return err
		}
		bs = imapserver.ExtractBodyStructure(m)
		return nil
	}()
	if err == nil {
		if mp, ok := bs.(*goimap.BodyStructureMultiPart); !ok || len(mp.Children) > 0 {
			return sanitize(bs), nil
		}
	}
	return c.textPart()
}

// textPart describes the whole body as one text/plain part.
func (c *content) textPart() (goimap.BodyStructure, error) {
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	lines, err := countLines(b)
	if err != nil {
		return nil, err
	}
	return &goimap.BodyStructureSinglePart{
		Type: "text", Subtype: "plain",
		Params:   map[string]string{"charset": "us-ascii"},
		Encoding: "7bit",
		Size:     uint32(c.bodyLen()),
		Text:     &goimap.BodyStructureText{NumLines: lines},
		Extended: &goimap.BodyStructureSinglePartExt{},
	}, nil
}

func countLines(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func sanitize(bs goimap.BodyStructure) goimap.BodyStructure {
	switch p := bs.(type) {
	case *goimap.BodyStructureMultiPart:
		if len(p.Children) == 0 {
			return &goimap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain", Encoding: "7bit",
				Text:     &goimap.BodyStructureText{},
				Extended: &goimap.BodyStructureSinglePartExt{},
			}
		}
		for i, ch := range p.Children {
			p.Children[i] = sanitize(ch)
		}
		if p.Subtype == "" {
			p.Subtype = "mixed"
		}
		if p.Extended == nil {
			p.Extended = &goimap.BodyStructureMultiPartExt{}
		}
	case *goimap.BodyStructureSinglePart:
		if p.Type == "" || p.Subtype == "" {
			p.Type, p.Subtype = "application", "octet-stream"
			p.Text = nil
		}
		if p.Type == "text" && p.Text == nil {
			p.Text = &goimap.BodyStructureText{}
		}
		if m := p.MessageRFC822; m != nil {
			if m.BodyStructure == nil {
				p.MessageRFC822 = nil
				p.Type, p.Subtype = "application", "octet-stream"
			} else {
				m.BodyStructure = sanitize(m.BodyStructure)
			}
		}
		if p.Extended == nil {
			p.Extended = &goimap.BodyStructureSinglePartExt{}
		}
	}
	return bs
}

// catch turns a panic in go-message's parsing of one message into an
// error, so that one bad message cannot end the session; the panic is
// recorded (logged with its stack and counted: it is a bug a message can
// trigger). It must be deferred directly, for recover to see the panic.
func (c *content) catch(where string, err *error) {
	if v := recover(); v != nil {
		if c.onPanic != nil {
			c.onPanic(where, v)
		}
		*err = fmt.Errorf("parsing panicked: %v", v)
	}
}
