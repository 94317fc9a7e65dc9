package maildir

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"mailroom/mailbox/index"
)

// What a scan saw of a folder's new/ and cur/ (dirSeen: device, inode,
// mtime) is kept in the index at Index.Close, under
//
//	homes/<home>/folders/<name>/seen
//
// so that the first SELECT after a restart need not read a large
// directory that did not change: it is a promise that the directory, as
// long as its mtime is the one recorded (and was old enough to be sure
// when recorded), holds the files the index holds. Every change of the
// index's file names comes with a change in the directory (a rename, a
// link, an unlink, or a file another program added, removed or renamed),
// which moves its mtime; a crash after such a change leaves a record that
// no longer matches, and the directory is read as before. The record goes
// with the folder's bucket (a rebuilt index has none).

var keySeen = []byte("seen")

const seenVersion = 1

// loadHint is what load allocates for: the number of messages and the
// bytes of their file names when the record was made.
type loadHint struct{ n, nameBytes uint32 }

// encodeSeen is the record of the two directories: a version byte, then
// for new/ and cur/ a byte (1 if recorded), device, inode, mtime seconds
// and nanoseconds, each 8 bytes big-endian; then the loadHint (two
// 4-byte numbers).
func encodeSeen(newD, curD dirSeen, h loadHint) []byte {
	b := []byte{seenVersion}
	for _, s := range []dirSeen{newD, curD} {
		if !s.valid || !s.sure {
			b = append(b, 0)
			b = append(b, make([]byte, 32)...)
			continue
		}
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, s.dev)
		b = binary.BigEndian.AppendUint64(b, s.ino)
		b = binary.BigEndian.AppendUint64(b, uint64(s.mtime.Sec))
		b = binary.BigEndian.AppendUint64(b, uint64(s.mtime.Nsec))
	}
	b = binary.BigEndian.AppendUint32(b, h.n)
	return binary.BigEndian.AppendUint32(b, h.nameBytes)
}

// decodeSeen reads a record; anything unexpected is "not seen".
func decodeSeen(b []byte) (newD, curD dirSeen, h loadHint) {
	if len(b) != 1+2*33+8 || b[0] != seenVersion {
		return dirSeen{}, dirSeen{}, loadHint{}
	}
	h = loadHint{binary.BigEndian.Uint32(b[67:]), binary.BigEndian.Uint32(b[71:])}
	var out [2]dirSeen
	for i := range out {
		r := b[1+33*i:]
		if r[0] != 1 {
			continue
		}
		out[i] = dirSeen{
			valid: true,
			sure:  true,
			dev:   binary.BigEndian.Uint64(r[1:]),
			ino:   binary.BigEndian.Uint64(r[9:]),
			mtime: unix.Timespec{Sec: int64(binary.BigEndian.Uint64(r[17:])), Nsec: int64(binary.BigEndian.Uint64(r[25:]))},
		}
	}
	return out[0], out[1], h
}

// saveSeen records, in one transaction, what the last scan of each
// loaded folder saw, for the next run.
func (ix *Index) saveSeen() error {
	type rec struct {
		home, name string
		uv         uint32
		val        []byte
	}
	var recs []rec
	for _, a := range ix.accts.All() {
		for _, f := range a.folders.All() {
			f.mu.Lock()
			if f.loaded && (f.seenNew.sure || f.seenCur.sure) {
				h := f.hint // the entries not read since the load
				if !f.lazy {
					h = loadHint{n: uint32(len(f.ents))}
					for _, e := range f.ents {
						h.nameBytes += uint32(len(e.name))
					}
				}
				recs = append(recs, rec{a.home, f.name, f.uidValidity, encodeSeen(f.seenNew, f.seenCur, h)})
			}
			f.mu.Unlock()
		}
	}
	if len(recs) == 0 {
		return nil
	}
	err := ix.db.Update(func(tx *bolt.Tx) error {
		for _, r := range recs {
			fb := tree.Folder(tx, r.home, r.name)
			if fb == nil {
				continue
			}
			// Only over the index the record was made with.
			if meta, ok := decodeMeta(index.Meta(fb)); !ok || meta.uidValidity != r.uv {
				continue
			}
			if err := fb.Put(keySeen, r.val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("maildir: record what was seen of the folders: %w", err)
	}
	return nil
}
