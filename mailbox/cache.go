package mailbox

import "context"

// CachedHeaderFields returns the header fields a HeaderCache keeps: those
// an IMAP ENVELOPE is made of, which are also what clients SEARCH on most
// (SUBJECT, FROM, TO, CC, BCC, HEADER on any of these). Each call returns
// a new slice, so that no caller can change what the others see.
func CachedHeaderFields() []string {
	return []string{"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "Message-ID"}
}

// HeaderCache is an optional extension of Folders for stores that keep
// the CachedHeaderFields of each message, so that a message is parsed
// once rather than on every FETCH ENVELOPE or header SEARCH (Dovecot's
// dovecot.index.cache does the same). A reader checks for it with a type
// assertion and falls back to reading the message.
type HeaderCache interface {
	// CachedFields returns, for those of the given UIDs that have an
	// entry, the cached fields as a header block: "Name: value\r\n" lines
	// (folded lines kept as they were), only the CachedHeaderFields that
	// the message has, in message order, without the final empty line.
	// A message cached without any such field has an empty, non-nil
	// entry. UIDs with no entry are absent from the map.
	CachedFields(ctx context.Context, name string, uids []uint32) (map[uint32][]byte, error)
	// CacheFields records the fields of one message (same form; the
	// IMAP server may add, after an empty line, more of what it computed
	// from the message, such as its BODYSTRUCTURE: a store keeps the
	// bytes as given and returns them as they were). The store may keep
	// fields itself, without a copy: the caller must not change it
	// afterwards. It never waits for the disk: entries may be written
	// later, in batches, and a crash may lose them (they are only a
	// cache). Entries of a message go when the message goes.
	CacheFields(name string, uid uint32, fields []byte)
}
