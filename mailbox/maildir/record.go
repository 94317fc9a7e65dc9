package maildir

// The record of one message in the index (homes/<home>/folders/<name>/
// uids/<uid>): what IMAP shows of it and the Maildir file it is.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"

	"mailroom/mailbox/index"
)

// entry is one message in the index.
type entry struct {
	uid    uint32
	inNew  bool
	flags  sysFlags
	mark   uint32 // scan generation that saw it
	date   int64  // internal date, Unix seconds; noDate until read (dates.go)
	size   int64  // bytes as served (CRLF)
	disk   int64  // bytes on disk
	modSeq uint64
	name   string   // file name in new/ or cur/
	kws    []string // keywords, sorted
}

func (e *entry) key() string {
	if i := strings.IndexByte(e.name, ':'); i >= 0 {
		return e.name[:i]
	}
	return e.name
}

// subdir is "new" or "cur".
func (e *entry) subdir() string {
	if e.inNew {
		return "new"
	}
	return "cur"
}

const entryVersion = 1

// noDate is the date of an entry whose file's mtime (its internal date)
// has not been read yet: a scan trusts the sizes in a file's name and
// stats it only when a client asks for the date (dates.go).
const noDate = math.MinInt64

// encode is the index record of e: a version byte, then modseq, date,
// size, disk size, flags, in-new, keywords (count, then each with its
// length), and the file name to the end.
func (e *entry) encode() []byte { return e.appendTo(make([]byte, 0, 48+len(e.name))) }

// appendTo appends e's record to b.
func (e *entry) appendTo(b []byte) []byte {
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, e.modSeq)
	b = binary.AppendVarint(b, e.date)
	b = binary.AppendUvarint(b, uint64(e.size))
	b = binary.AppendUvarint(b, uint64(e.disk))
	b = append(b, byte(e.flags))
	if e.inNew {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(e.kws)))
	b = index.AppendKeywords(b, e.kws)
	return append(b, e.name...)
}

var errBadRecord = errors.New("bad index record")

func decodeEntry(uid uint32, b []byte) (*entry, error) {
	e := &entry{uid: uid}
	name, err := e.decode(b)
	if err != nil {
		return nil, err
	}
	e.name = string(name)
	return e, nil
}

// decode fills e (but for uid and name) from its index record and
// returns the file name's bytes (in b), so that a caller decoding many
// can keep all names in one string.
func (e *entry) decode(b []byte) ([]byte, error) {
	if len(b) < 1 || b[0] != entryVersion {
		return nil, errBadRecord
	}
	b = b[1:]
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	e.modSeq = uv()
	d, n := binary.Varint(b)
	if n <= 0 {
		return nil, errBadRecord
	}
	e.date, b = d, b[n:]
	e.size = int64(uv())
	e.disk = int64(uv())
	if len(b) < 2 || e.size < 0 || e.disk < 0 || b[0] > 63 {
		return nil, errBadRecord
	}
	e.flags, e.inNew = sysFlags(b[0]), b[1] == 1
	b = b[2:]
	nk := uv()
	if nk > uint64(len(b)) {
		return nil, errBadRecord
	}
	for range nk {
		var k string
		var ok bool
		if k, b, ok = index.ReadKeyword(b); !ok {
			return nil, errBadRecord
		}
		e.kws = append(e.kws, k)
	}
	if len(b) == 0 || b[0] == '.' || bytes.IndexByte(b, '/') >= 0 || bytes.IndexByte(b, 0) >= 0 {
		return nil, errBadRecord
	}
	return b, nil
}
