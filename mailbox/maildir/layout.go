package maildir

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The index: what IMAP needs of each folder (UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ, and per UID the Maildir unique name, flags, internal
// date, size as served and modseq) kept in mailroom.db, so that UIDs stay
// the same across restarts. The Maildir stays the truth: Sync compares the
// index with the directories and takes in what other programs did (files
// added, removed, renamed for their flags). If the index is lost it is
// rebuilt from the Maildir under a new UIDVALIDITY.
//
// bbolt layout, all under the top-level bucket "imap":
//
//	meta/uidvalidity                last UIDVALIDITY handed out (uint32)
//	homes/<home>/subs/<name>        subscribed folders (IMAP names)
//	homes/<home>/special/<name>     SPECIAL-USE attribute of a folder
//	homes/<home>/folders/<name>/meta     UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ
//	homes/<home>/folders/<name>/uids/<uid>  one message (see entry.encode)
//	homes/<home>/folders/<name>/cache/<uid> its header fields (cache.go)
//
// Subscriptions live in bbolt rather than in Dovecot's "subscriptions" file:
// they change in the same transaction as the folders they name (RENAME,
// the first Open), and no other program we share the Maildir with writes
// them.

var (
	bucketIMAP    = []byte("imap")
	bucketMeta    = []byte("meta")
	bucketHomes   = []byte("homes")
	bucketSubs    = []byte("subs")
	bucketSpecial = []byte("special")
	bucketFolders = []byte("folders")
	bucketUIDs    = []byte("uids")
	keyMeta       = []byte("meta")
	keyUIDV       = []byte("uidvalidity")
)

// homeBucket returns home's bucket, or nil if there is none or it lacks
// one of its parts (as a database salvaged after damage may): the account
// is then taken for new, and makeHomeBucket completes it.
func homeBucket(tx *bolt.Tx, home string) *bolt.Bucket {
	hb := tx.Bucket(bucketIMAP).Bucket(bucketHomes).Bucket([]byte(home))
	if hb == nil || hb.Bucket(bucketSubs) == nil || hb.Bucket(bucketSpecial) == nil || hb.Bucket(bucketFolders) == nil {
		return nil
	}
	return hb
}

func makeHomeBucket(tx *bolt.Tx, home string) (*bolt.Bucket, error) {
	hb, err := tx.Bucket(bucketIMAP).Bucket(bucketHomes).CreateBucketIfNotExists([]byte(home))
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

// newUIDValidity picks the UIDVALIDITY of a new index for a folder: the
// time, as Dovecot does, but above the last one handed out in this
// database and above the last one this folder had (its hint file), so
// that a folder deleted and made again, or an index lost twice, within
// the same second still gets a new one.
func newUIDValidity(db *bolt.DB, hint uint32) (uint32, error) {
	v := uint32(time.Now().Unix())
	err := db.View(func(tx *bolt.Tx) error {
		if last := tx.Bucket(bucketIMAP).Bucket(bucketMeta).Get(keyUIDV); len(last) == 4 {
			v = max(v, binary.BigEndian.Uint32(last)+1)
		}
		return nil
	})
	v = max(v, hint+1, 1)
	return v, err
}

// noteUIDValidity records v as handed out.
func noteUIDValidity(tx *bolt.Tx, v uint32) error {
	mb := tx.Bucket(bucketIMAP).Bucket(bucketMeta)
	if last := mb.Get(keyUIDV); len(last) == 4 && binary.BigEndian.Uint32(last) >= v {
		return nil
	}
	return mb.Put(keyUIDV, binary.BigEndian.AppendUint32(nil, v))
}

type folderMeta struct {
	uidValidity, uidNext uint32
	modSeq               uint64
}

func (m folderMeta) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, m.uidValidity)
	b = binary.BigEndian.AppendUint32(b, m.uidNext)
	return binary.BigEndian.AppendUint64(b, m.modSeq)
}

func decodeMeta(b []byte) (folderMeta, bool) {
	if len(b) != 16 {
		return folderMeta{}, false
	}
	m := folderMeta{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint64(b[8:])}
	return m, m.uidValidity != 0 && m.uidNext != 0
}

func uidKey(uid uint32) []byte { return binary.BigEndian.AppendUint32(nil, uid) }

// folderBucket returns the folder's bucket, made if missing.
func (f *folder) bucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	hb, err := makeHomeBucket(tx, f.a.home)
	if err != nil {
		return nil, err
	}
	fb, err := hb.Bucket(bucketFolders).CreateBucketIfNotExists([]byte(f.name))
	if err != nil {
		return nil, err
	}
	if _, err := fb.CreateBucketIfNotExists(bucketUIDs); err != nil {
		return nil, err
	}
	return fb, nil
}

// RenewUIDValidity gives every folder of the index in db a new
// UIDVALIDITY, larger than any handed out before, keeping its messages,
// UIDs, flags and keywords. It is for a database put back from a backup:
// clients may have seen UIDs handed out after the backup was taken, to
// mail the backup does not hold, and the restored folder would hand them
// out again to other mail (RFC 9051 §2.3.1.1 forbids that under one
// UIDVALIDITY); under a new one, clients fetch the folder again instead
// of trusting their caches. It returns how many folders it renewed.
func RenewUIDValidity(db *bolt.DB) (folders int, err error) {
	err = db.Update(func(tx *bolt.Tx) error {
		top := tx.Bucket(bucketIMAP)
		if top == nil || top.Bucket(bucketMeta) == nil || top.Bucket(bucketHomes) == nil {
			return nil // no index yet
		}
		homes := top.Bucket(bucketHomes)
		next := uint32(time.Now().Unix())
		if last := top.Bucket(bucketMeta).Get(keyUIDV); len(last) == 4 {
			next = max(next, binary.BigEndian.Uint32(last)+1)
		}
		return homes.ForEachBucket(func(home []byte) error {
			fs := homes.Bucket(home).Bucket(bucketFolders)
			if fs == nil {
				return nil
			}
			return fs.ForEachBucket(func(name []byte) error {
				fb := fs.Bucket(name)
				m, ok := decodeMeta(fb.Get(keyMeta))
				if !ok {
					return nil // rebuilt under a new one when opened
				}
				m.uidValidity = max(next, m.uidValidity+1)
				next = m.uidValidity + 1
				if err := fb.Put(keyMeta, m.encode()); err != nil {
					return err
				}
				folders++
				return noteUIDValidity(tx, m.uidValidity)
			})
		})
	})
	return folders, err
}
