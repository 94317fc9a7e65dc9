package index

// Pieces of the index records that both stores write the same way: a
// folder's counters at the head of its meta record, and the keywords of
// a message in its record.

import "encoding/binary"

// CountersSize is the length of the counters in a folder's record.
const CountersSize = 16

// AppendCounters appends c to a folder's record: UIDVALIDITY and UIDNEXT
// (4 bytes each), then HIGHESTMODSEQ (8), big-endian.
func AppendCounters(b []byte, c Counters) []byte {
	b = binary.BigEndian.AppendUint32(b, c.UIDValidity)
	b = binary.BigEndian.AppendUint32(b, c.UIDNext)
	return binary.BigEndian.AppendUint64(b, c.ModSeq)
}

// ReadCounters reads the counters AppendCounters wrote at the start of b.
// ok is false if b is too short or the numbers cannot be a folder's
// (UIDVALIDITY or UIDNEXT zero): the folder's index is then rebuilt.
func ReadCounters(b []byte) (c Counters, ok bool) {
	if len(b) < CountersSize {
		return Counters{}, false
	}
	c = Counters{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint64(b[8:])}
	return c, c.UIDValidity != 0 && c.UIDNext != 0
}

// Holds reports whether a message record of uid and modSeq can belong to
// a folder with counters c: a UID of 0 or at or above UIDNEXT, or a modseq
// above HIGHESTMODSEQ, means a damaged index (RFC 9051 §2.3.1.1: UIDs
// below UIDNEXT are the ones handed out).
func (c Counters) Holds(uid uint32, modSeq uint64) bool {
	return uid != 0 && uid < c.UIDNext && modSeq <= c.ModSeq
}

// AppendKeywords appends a message's keywords to its record, each as its
// length (uvarint) and its bytes.
func AppendKeywords(b []byte, kws []string) []byte {
	for _, k := range kws {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

// ReadKeyword reads one keyword that AppendKeywords wrote at the start of
// b and returns the rest of b; ok is false if b is cut short.
func ReadKeyword(b []byte) (kw string, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return "", b, false
	}
	b = b[n:]
	return string(b[:l]), b[l:], true
}
