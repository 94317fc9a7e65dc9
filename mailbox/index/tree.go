package index

// The part of mailroom.db that every store's index has in the same shape,
// under a top-level bucket of the store's own ("imap" for Maildir, "mbox"):
//
//	meta/uidvalidity                last UIDVALIDITY handed out (uint32)
//	homes/<home>/subs/<name>        subscribed folders (IMAP names)
//	homes/<home>/special/<name>     SPECIAL-USE attribute of a folder
//	homes/<home>/folders/<name>/meta     the folder's record (the store's encoding)
//	homes/<home>/folders/<name>/uids/<uid>  one message (the store's encoding)
//
// What a folder's meta and message records hold is the store's: a Maildir
// index keeps file names, an mbox index offsets in the file.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketMeta    = []byte("meta")
	bucketHomes   = []byte("homes")
	bucketSubs    = []byte("subs")
	bucketSpecial = []byte("special")
	bucketFolders = []byte("folders")
	bucketUIDs    = []byte("uids")
	keyMeta       = []byte("meta")
	keyUIDV       = []byte("uidvalidity")
)

// Tree is one store's index in mailroom.db, under its own top-level
// bucket, so that the stores of two formats can share one database
// without sharing UIDVALIDITY counters or folder names.
type Tree struct{ top []byte }

// NewTree returns the tree under the top-level bucket top.
func NewTree(top string) Tree { return Tree{top: []byte(top)} }

// Name is the tree's top-level bucket (for tests that remove it).
func (t Tree) Name() []byte { return bytes.Clone(t.top) }

// Create makes the tree's top-level buckets where missing.
func (t Tree) Create(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(t.top)
	if err == nil {
		_, err = b.CreateBucketIfNotExists(bucketHomes)
	}
	if err == nil {
		_, err = b.CreateBucketIfNotExists(bucketMeta)
	}
	return err
}

// Homes is the bucket of every home, or nil if the tree was never made.
func (t Tree) Homes(tx *bolt.Tx) *bolt.Bucket {
	top := tx.Bucket(t.top)
	if top == nil || top.Bucket(bucketMeta) == nil {
		return nil
	}
	return top.Bucket(bucketHomes)
}

// Home returns home's bucket, or nil if there is none or it lacks one of
// its parts (as a database salvaged after damage may): the account is
// then taken for new, and MakeHome completes it.
func (t Tree) Home(tx *bolt.Tx, home string) *bolt.Bucket {
	hb := tx.Bucket(t.top).Bucket(bucketHomes).Bucket([]byte(home))
	if hb == nil || hb.Bucket(bucketSubs) == nil || hb.Bucket(bucketSpecial) == nil || hb.Bucket(bucketFolders) == nil {
		return nil
	}
	return hb
}

// MakeHome returns home's bucket, made (or completed) where needed.
func (t Tree) MakeHome(tx *bolt.Tx, home string) (*bolt.Bucket, error) {
	hb, err := tx.Bucket(t.top).Bucket(bucketHomes).CreateBucketIfNotExists([]byte(home))
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketSubs, bucketSpecial, bucketFolders} {
		if _, err := hb.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return hb, nil
}

// Subs is a home's bucket of subscribed names (values empty).
func Subs(hb *bolt.Bucket) *bolt.Bucket { return hb.Bucket(bucketSubs) }

// Special is a home's bucket of SPECIAL-USE attributes by folder name.
func Special(hb *bolt.Bucket) *bolt.Bucket { return hb.Bucket(bucketSpecial) }

// Folders is a home's bucket of folder indexes by canonical IMAP name.
func Folders(hb *bolt.Bucket) *bolt.Bucket { return hb.Bucket(bucketFolders) }

// Folder returns the bucket of home's folder name, or nil if there is
// none.
func (t Tree) Folder(tx *bolt.Tx, home, name string) *bolt.Bucket {
	hb := t.Home(tx, home)
	if hb == nil {
		return nil
	}
	return hb.Bucket(bucketFolders).Bucket([]byte(name))
}

// MakeFolder returns the bucket of home's folder name, with its uids
// bucket, made where missing.
func (t Tree) MakeFolder(tx *bolt.Tx, home, name string) (*bolt.Bucket, error) {
	hb, err := t.MakeHome(tx, home)
	if err != nil {
		return nil, err
	}
	fb, err := hb.Bucket(bucketFolders).CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return nil, err
	}
	if _, err := fb.CreateBucketIfNotExists(bucketUIDs); err != nil {
		return nil, err
	}
	return fb, nil
}

// ResetFolder replaces the bucket of home's folder name by an empty one
// holding the record meta: a new index, of which no UID survives.
func (t Tree) ResetFolder(tx *bolt.Tx, home, name string, meta []byte) error {
	if err := t.DropFolder(tx, home, name); err != nil {
		return err
	}
	fb, err := t.MakeFolder(tx, home, name)
	if err != nil {
		return err
	}
	return fb.Put(keyMeta, meta)
}

// DropFolder deletes the index of home's folder name, if any (not its
// subscription or special use).
func (t Tree) DropFolder(tx *bolt.Tx, home, name string) error {
	hb, err := t.MakeHome(tx, home)
	if err != nil {
		return err
	}
	if err := hb.Bucket(bucketFolders).DeleteBucket([]byte(name)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	return nil
}

// UIDs is a folder's bucket of message records by UIDKey.
func UIDs(fb *bolt.Bucket) *bolt.Bucket { return fb.Bucket(bucketUIDs) }

// Meta is a folder's record (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and what
// else the store keeps), nil if there is none.
func Meta(fb *bolt.Bucket) []byte { return fb.Get(keyMeta) }

// PutMeta writes a folder's record.
func PutMeta(fb *bolt.Bucket, meta []byte) error { return fb.Put(keyMeta, meta) }

// UIDKey is the key of a message's record: the UID big-endian, so that
// the records are in UID order.
func UIDKey(uid uint32) []byte { return binary.BigEndian.AppendUint32(nil, uid) }

// NextUIDValidity is the UIDVALIDITY for a new folder index: the time, as
// Dovecot picks it, but above the last one handed out in this tree and
// above hint (the last one the folder had, where the store keeps it), so
// that a folder made again, or an index lost twice, within the same
// second still gets a new one. NoteUIDValidity records it as handed out.
func (t Tree) NextUIDValidity(tx *bolt.Tx, hint uint32) uint32 {
	v := uint32(time.Now().Unix())
	if last := tx.Bucket(t.top).Bucket(bucketMeta).Get(keyUIDV); len(last) == 4 {
		v = max(v, binary.BigEndian.Uint32(last)+1)
	}
	return max(v, hint+1, 1)
}

// NoteUIDValidity records v as handed out, unless a larger one was.
func (t Tree) NoteUIDValidity(tx *bolt.Tx, v uint32) error {
	mb := tx.Bucket(t.top).Bucket(bucketMeta)
	if last := mb.Get(keyUIDV); len(last) == 4 && binary.BigEndian.Uint32(last) >= v {
		return nil
	}
	return mb.Put(keyUIDV, binary.BigEndian.AppendUint32(nil, v))
}

// CopyBucket copies src's keys and sub-buckets into dst. Keys and values
// are copied out of src, which the caller may delete in the same
// transaction.
func CopyBucket(dst, src *bolt.Bucket) error {
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(bytes.Clone(k), bytes.Clone(v))
		}
		d, err := dst.CreateBucketIfNotExists(bytes.Clone(k))
		if err != nil {
			return err
		}
		return CopyBucket(d, src.Bucket(k))
	})
}

// MoveFolder moves the index, subscription and special use of folder
// from to the name to in home's bucket hb (RENAME); an index under to,
// left from a folder that is gone, is replaced.
func MoveFolder(hb *bolt.Bucket, from, to string) error {
	src, dst := []byte(from), []byte(to)
	fb := hb.Bucket(bucketFolders)
	if err := fb.DeleteBucket(dst); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	if sb := fb.Bucket(src); sb != nil {
		db, err := fb.CreateBucket(dst)
		if err != nil {
			return err
		}
		if err := CopyBucket(db, sb); err != nil {
			return err
		}
		if err := fb.DeleteBucket(src); err != nil {
			return err
		}
	}
	for _, b := range []*bolt.Bucket{hb.Bucket(bucketSubs), hb.Bucket(bucketSpecial)} {
		// A cursor, not Get: Get gives nil for a value put as nil in
		// this same transaction (as subscriptions are).
		if k, v := b.Cursor().Seek(src); bytes.Equal(k, src) {
			if err := b.Put(dst, bytes.Clone(v)); err != nil {
				return err
			}
			if err := b.Delete(src); err != nil {
				return err
			}
		}
	}
	return nil
}

// NamesUnder returns the folder names that home's bucket hb holds an
// index, a subscription or a special use of, that are name or below it
// ("name/..."), sorted: what a RENAME of name moves where folders nest.
func NamesUnder(hb *bolt.Bucket, name string) []string {
	set := map[string]bool{}
	for _, b := range []*bolt.Bucket{hb.Bucket(bucketFolders), hb.Bucket(bucketSubs), hb.Bucket(bucketSpecial)} {
		b.ForEach(func(k, _ []byte) error {
			if n := string(k); n == name || strings.HasPrefix(n, name+"/") {
				set[n] = true
			}
			return nil
		})
	}
	return slices.Sorted(maps.Keys(set))
}
