package mailbox

import (
	"context"
	"io"
	"time"
)

// Folders is one account's mail, for one IMAP session. Folder names are
// IMAP names (Folder.Name). Methods are safe for concurrent use;
// several sessions of one account may each hold their own Folders.
type Folders interface {
	List(ctx context.Context) ([]Folder, error)
	Create(ctx context.Context, name string) error
	// Delete removes a folder and its messages (not its children).
	Delete(ctx context.Context, name string) error
	// Rename renames a folder with its children. Renaming INBOX moves its
	// messages to the new folder and leaves INBOX empty (RFC 9051 §6.3.6).
	Rename(ctx context.Context, oldName, newName string) error
	SetSubscribed(ctx context.Context, name string, on bool) error

	// Sync brings the index up to date with the folder on disk (files
	// added, removed or renamed by other programs) and returns its state.
	// It is cheap when nothing changed.
	Sync(ctx context.Context, name string) (*Snapshot, error)
	// Watch returns a channel that is closed at the next change to the
	// folder made through this process (a delivery, another session). It
	// never blocks the one making the change.
	Watch(name string) <-chan struct{}

	// Open returns a message's content with CRLF line endings, as IMAP
	// serves it, and its size.
	Open(ctx context.Context, name string, uid uint32) (io.ReadSeekCloser, int64, error)
	// Append stores a message durably and returns the folder's
	// UIDVALIDITY and the new message's UID.
	Append(ctx context.Context, name string, r io.Reader, flags []string, date time.Time) (uidValidity, uid uint32, err error)
	// SetFlags changes the flags of the messages with the given UIDs
	// (those no longer there are skipped) and returns the new snapshot.
	SetFlags(ctx context.Context, name string, uids []uint32, op FlagOp, flags []string) (*Snapshot, error)
	// Copy copies messages to dest, keeping flags and internal dates; it
	// returns dest's UIDVALIDITY and the UIDs in both folders, pairwise.
	Copy(ctx context.Context, name string, uids []uint32, dest string) (uidValidity uint32, src, dst []uint32, err error)
	// Move is Copy then Expunge of the source messages, done by rename
	// where the folders allow it.
	Move(ctx context.Context, name string, uids []uint32, dest string) (uidValidity uint32, src, dst []uint32, err error)
	// Expunge removes the messages and returns the new snapshot.
	Expunge(ctx context.Context, name string, uids []uint32) (*Snapshot, error)

	Close() error
}
