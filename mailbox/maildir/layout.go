package maildir

import (
	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox/index"
)

// The index: what IMAP needs of each folder (UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ, and per UID the Maildir unique name, flags, internal
// date, size as served and modseq) kept in mailroom.db, so that UIDs stay
// the same across restarts. The Maildir stays the truth: Sync compares the
// index with the directories and takes in what other programs did (files
// added, removed, renamed for their flags). If the index is lost it is
// rebuilt from the Maildir under a new UIDVALIDITY.
//
// bbolt layout, all under the top-level bucket "imap" (index.Tree, the
// shape the mbox index shares under "mbox"):
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

// tree is the Maildir index's part of mailroom.db (mailbox/index holds
// what it shares with the mbox index).
var tree = index.NewTree("imap")

// newUIDValidity picks the UIDVALIDITY of a new index for a folder (see
// index.Tree.NextUIDValidity), hint being the last one this folder had
// (its hint file in the Maildir).
func newUIDValidity(db *bolt.DB, hint uint32) (uint32, error) {
	var v uint32
	err := db.View(func(tx *bolt.Tx) error {
		v = tree.NextUIDValidity(tx, hint)
		return nil
	})
	return v, err
}

type folderMeta struct {
	uidValidity, uidNext uint32
	modSeq               uint64
}

func (m folderMeta) counters() index.Counters {
	return index.Counters{UIDValidity: m.uidValidity, UIDNext: m.uidNext, ModSeq: m.modSeq}
}

// encode is the folder's meta record: its counters alone.
func (m folderMeta) encode() []byte { return index.AppendCounters(nil, m.counters()) }

func decodeMeta(b []byte) (folderMeta, bool) {
	if len(b) != index.CountersSize {
		return folderMeta{}, false
	}
	c, ok := index.ReadCounters(b)
	return folderMeta{c.UIDValidity, c.UIDNext, c.ModSeq}, ok
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
		homes := tree.Homes(tx)
		if homes == nil {
			return nil // no index yet
		}
		next := tree.NextUIDValidity(tx, 0)
		return homes.ForEachBucket(func(home []byte) error {
			fs := index.Folders(homes.Bucket(home))
			if fs == nil {
				return nil
			}
			return fs.ForEachBucket(func(name []byte) error {
				fb := fs.Bucket(name)
				m, ok := decodeMeta(index.Meta(fb))
				if !ok {
					return nil // rebuilt under a new one when opened
				}
				m.uidValidity = max(next, m.uidValidity+1)
				next = m.uidValidity + 1
				if err := index.PutMeta(fb, m.encode()); err != nil {
					return err
				}
				folders++
				return tree.NoteUIDValidity(tx, m.uidValidity)
			})
		})
	})
	return folders, err
}
