package imap

import (
	"bytes"
	"strconv"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/imap/internal/wire"
)

// ENVELOPE and BODYSTRUCTURE in the header cache: once computed, a
// message's ENVELOPE, and its BODYSTRUCTURE and BODY (the message opened
// and its MIME structure parsed, every part read through), are kept, as
// the response bytes, in its HeaderCache entry after the header block and
// an empty line, which the block's readers (fieldsOf) stop at:
//
//	<cached header fields>\r\n
//	ENVELOPE1 <length> <ENVELOPE>BODYSTRUCTURE1 <length of the first> <BODYSTRUCTURE><BODY>
//
// either record may be absent. Dovecot keeps both in its cache file the
// same way ("imap.envelope", "imap.bodystructure"); under imaptest's
// stress, FETCH BODYSTRUCTURE of messages fetched before was 13 % of the
// server's CPU, and a FETCH 1:* (ENVELOPE) answered from the header
// block spent most of its time parsing the address lists and encoding
// them again. The "1"s are the versions of how they are computed: a
// change to that (envelopeOf, the address parser, bodyStructure,
// sanitize, the encoder) changes them, so that no entry shows an old
// form. They are encoded without UTF8=ACCEPT (8-bit strings as literals,
// UTF-8 text as encoded-words), which every session may be sent; a
// session with UTF8=ACCEPT enabled computes its own.

const (
	envelopeTag  = "ENVELOPE1 "
	structureTag = "BODYSTRUCTURE1 "
)

// cachedStructure is a message's BODYSTRUCTURE and BODY, encoded.
type cachedStructure struct{ ext, basic []byte }

// encodeStructure encodes bs for the cache.
func encodeStructure(bs goimap.BodyStructure) *cachedStructure {
	var b bytes.Buffer
	e := wire.NewEncoder(&b)
	e.BodyStructure(bs, true)
	n := b.Len() + e.Buffered() // the encoder flushes past FlushSize
	e.BodyStructure(bs, false)
	if e.Flush() != nil {
		return nil
	}
	all := b.Bytes()
	return &cachedStructure{ext: all[:n:n], basic: all[n:]}
}

// encodeEnvelope encodes env for the cache (nil if the encoder fails).
func encodeEnvelope(env *wire.Envelope) []byte {
	return appendEnvelope(make([]byte, 0, 512), env)
}

// appender is an io.Writer that appends to a slice.
type appender []byte

func (a *appender) Write(p []byte) (int, error) {
	*a = append(*a, p...)
	return len(p), nil
}

// appendEnvelope appends env, encoded for the cache, to b; nil if the
// encoder fails.
func appendEnvelope(b []byte, env *wire.Envelope) []byte {
	a := appender(b)
	e := wire.NewEncoder(&a)
	e.Envelope(env)
	if e.Flush() != nil {
		return nil
	}
	return a
}

// newEntry is the HeaderCache entry of a message with these fields: its
// header block and encoded ENVELOPE, and its structure if cs is not nil.
func newEntry(fields []field, cs *cachedStructure) []byte {
	entry, _ := buildEntry(fields, nil, envelopeOf(fields), cs)
	return entry
}

// envLenDigits is how many digits the length of an ENVELOPE record is
// written with (zero-padded, so that the record is written in place).
const envLenDigits = 8

// buildEntry builds a HeaderCache entry in one buffer: the header block
// of fields, the ENVELOPE as env encodes (or envRaw, already encoded, if
// not nil), and cs if not nil. It returns the entry and the encoded
// ENVELOPE within it (nil if it could not be encoded: the entry has
// none then).
func buildEntry(fields []field, envRaw []byte, env *wire.Envelope, cs *cachedStructure) ([]byte, []byte) {
	n := 2 + len(envelopeTag) + envLenDigits + 1 + 512
	for _, f := range fields {
		if isCachedKey(f.key) {
			n += len(f.raw)
		}
	}
	if cs != nil {
		n += len(structureTag) + 11 + len(cs.ext) + len(cs.basic)
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		if isCachedKey(f.key) {
			b = append(b, f.raw...)
		}
	}
	b = append(b, "\r\n"...)
	head := len(b)
	b = append(b, envelopeTag...)
	at := len(b)
	b = append(b, "00000000 "...)
	start := len(b)
	var e []byte
	if envRaw != nil {
		e = append(b, envRaw...)
	} else {
		e = appendEnvelope(b, env)
	}
	var raw []byte
	if l := len(e) - start; e != nil && l > 0 && l < 1e8 {
		b = e
		for i, v := at+envLenDigits-1, l; i >= at; i, v = i-1, v/10 {
			b[i] = byte('0' + v%10)
		}
		raw = b[start:len(b):len(b)]
	} else {
		b = b[:head]
	}
	if cs != nil {
		b = append(b, structureTag...)
		b = strconv.AppendInt(b, int64(len(cs.ext)), 10)
		b = append(b, ' ')
		b = append(b, cs.ext...)
		b = append(b, cs.basic...)
	}
	if raw == nil && cs == nil {
		b = b[:head-2]
	}
	return b, raw
}

// entryWith is a HeaderCache entry: the header block, and env and cs
// where not nil.
func entryWith(block, env []byte, cs *cachedStructure) []byte {
	if env == nil && cs == nil {
		return block
	}
	var ne, ns string
	n := len(block) + 2
	if env != nil {
		ne = strconv.Itoa(len(env))
		n += len(envelopeTag) + len(ne) + 1 + len(env)
	}
	if cs != nil {
		ns = strconv.Itoa(len(cs.ext))
		n += len(structureTag) + len(ns) + 1 + len(cs.ext) + len(cs.basic)
	}
	b := make([]byte, 0, n)
	b = append(b, block...)
	b = append(b, "\r\n"...)
	if env != nil {
		b = append(b, envelopeTag...)
		b = append(b, ne...)
		b = append(b, ' ')
		b = append(b, env...)
	}
	if cs != nil {
		b = append(b, structureTag...)
		b = append(b, ns...)
		b = append(b, ' ')
		b = append(b, cs.ext...)
		b = append(b, cs.basic...)
	}
	return b
}

// splitEntry parts a HeaderCache entry into its header block, its
// cached ENVELOPE and its cached structure (nil where there is none, or
// not of this version).
func splitEntry(entry []byte) ([]byte, []byte, *cachedStructure) {
	off := 0
	for off < len(entry) {
		if entry[off] == '\r' && off+1 < len(entry) && entry[off+1] == '\n' {
			env, rest := parseRecord(entry[off+2:], envelopeTag)
			return entry[:off], env, parseStructure(rest)
		}
		n := bytes.IndexByte(entry[off:], '\n')
		if n < 0 {
			break
		}
		off += n + 1
	}
	return entry, nil, nil
}

// parseRecord reads a "<tag><length> <bytes>" record at the start of t:
// the bytes, and what follows them; nil and t if there is none.
func parseRecord(t []byte, tag string) ([]byte, []byte) {
	rest, ok := bytes.CutPrefix(t, []byte(tag))
	if !ok {
		return nil, t
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 || sp > 10 {
		return nil, t
	}
	n := 0
	for _, c := range rest[:sp] {
		if c < '0' || c > '9' {
			return nil, t
		}
		n = n*10 + int(c-'0')
	}
	rest = rest[sp+1:]
	if n <= 0 || n > len(rest) {
		return nil, t
	}
	return rest[:n:n], rest[n:]
}

func parseStructure(t []byte) *cachedStructure {
	b, rest := parseRecord(t, structureTag)
	if b == nil || len(rest) == 0 {
		return nil
	}
	return &cachedStructure{ext: b, basic: rest}
}
