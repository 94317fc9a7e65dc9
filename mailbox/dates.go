package mailbox

import (
	"context"
	"time"
)

// LazyDates is an optional extension of Folders for stores that read a
// message's internal date only when it is asked for: a Maildir keeps it
// as the file's mtime, and a stat of every file would be most of the
// first SELECT of a large folder (Dovecot too reads it on the first
// FETCH INTERNALDATE or SEARCH SINCE and caches it). In their snapshots,
// Message.InternalDate is zero until read; a reader that needs it calls
// InternalDates.
type LazyDates interface {
	// InternalDates returns the internal dates of those of the given UIDs
	// that are in the folder (read now where not known yet, and kept).
	InternalDates(ctx context.Context, name string, uids []uint32) (map[uint32]time.Time, error)
}
