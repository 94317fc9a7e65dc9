package imap

import (
	"bytes"
	"strconv"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/imap/internal/wire"
)

// BODYSTRUCTURE in the header cache: once computed (the message opened
// and its MIME structure parsed, every part read through), a message's
// BODYSTRUCTURE and BODY are kept, as the response bytes, in its
// HeaderCache entry after the header block and an empty line, which the
// block's readers (fieldsOf) stop at:
//
//	<cached header fields>\r\n
//	BODYSTRUCTURE1 <length of the first> <BODYSTRUCTURE><BODY>
//
// Dovecot keeps BODYSTRUCTURE in its cache file the same way; under
// imaptest's stress, FETCH BODYSTRUCTURE of messages fetched before was
// 13 % of the server's CPU. The "1" is the version of how they are
// computed: a change to that (bodyStructure, sanitize, the encoder)
// changes it, so that no entry shows an old form. They are encoded
// without UTF8=ACCEPT (8-bit strings as literals), which every session
// may be sent; a session with UTF8=ACCEPT enabled computes its own.

const structureTag = "BODYSTRUCTURE1 "

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

// entryWith is a HeaderCache entry: the header block, and cs if not nil.
func entryWith(block []byte, cs *cachedStructure) []byte {
	if cs == nil {
		return block
	}
	n := strconv.Itoa(len(cs.ext))
	b := make([]byte, 0, len(block)+2+len(structureTag)+len(n)+1+len(cs.ext)+len(cs.basic))
	b = append(b, block...)
	b = append(b, "\r\n"...)
	b = append(b, structureTag...)
	b = append(b, n...)
	b = append(b, ' ')
	b = append(b, cs.ext...)
	return append(b, cs.basic...)
}

// splitEntry parts a HeaderCache entry into its header block and its
// cached structure (nil if none, or not of this version).
func splitEntry(entry []byte) ([]byte, *cachedStructure) {
	off := 0
	for off < len(entry) {
		if bytes.HasPrefix(entry[off:], []byte("\r\n")) {
			return entry[:off], parseStructure(entry[off+2:])
		}
		n := bytes.IndexByte(entry[off:], '\n')
		if n < 0 {
			break
		}
		off += n + 1
	}
	return entry, nil
}

func parseStructure(t []byte) *cachedStructure {
	rest, ok := bytes.CutPrefix(t, []byte(structureTag))
	if !ok {
		return nil
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return nil
	}
	n, err := strconv.Atoi(string(rest[:sp]))
	rest = rest[sp+1:]
	if err != nil || n <= 0 || n >= len(rest) {
		return nil
	}
	return &cachedStructure{ext: rest[:n:n], basic: rest[n:]}
}
