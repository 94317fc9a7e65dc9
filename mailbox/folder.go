package mailbox

import (
	"errors"
	"time"
)

// Errors a folder store returns, so that a reader (the IMAP server) can
// answer with the right response code without knowing how mail is kept.
var (
	// ErrNoFolder is a folder that does not exist (IMAP NONEXISTENT or
	// TRYCREATE).
	ErrNoFolder = errors.New("no such folder")
	// ErrFolderExists is CREATE or RENAME onto an existing folder.
	ErrFolderExists = errors.New("folder already exists")
	// ErrBadFolderName is a name that cannot be stored safely ("..", "/"
	// at either end, NUL, control characters, invalid UTF-8, a "." where
	// Maildir++ uses it as the separator, or too long).
	ErrBadFolderName = errors.New("invalid folder name")
	// ErrNotAllowed is an operation the folder cannot undergo (deleting
	// INBOX, renaming a folder into a child of itself).
	ErrNotAllowed = errors.New("operation not allowed on this folder")
	// ErrNoMessage is a message removed (by another session or another
	// program) since the caller's snapshot.
	ErrNoMessage = errors.New("no such message")
)

// Standard flags, spelled as IMAP spells them. Other flags are keywords.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Folder describes one folder of an account.
type Folder struct {
	// Name is the IMAP name: UTF-8, "/" between levels, "INBOX" for the
	// inbox.
	Name string
	// SpecialUse is the RFC 6154 attribute (`\Sent`, `\Drafts`, `\Trash`,
	// `\Junk`, `\Archive`), or "".
	SpecialUse string
	Subscribed bool
	// NoSelect is a folder that can hold folders but no messages (in
	// mbox, a directory; IMAP's \Noselect).
	NoSelect bool
}

// Message is what the index keeps of one message.
type Message struct {
	UID   uint32
	Flags []string // sorted, no duplicates
	// InternalDate is zero where a LazyDates store has not read it yet.
	InternalDate time.Time
	Size         int64 // bytes as served (CRLF line endings)
	// ModSeq is the modification sequence of the last change to the
	// message (RFC 7162); it grows with every flag change in the folder.
	ModSeq uint64
}

// Snapshot is the state of a folder at one moment. It is immutable once
// returned: sessions share it, and a change makes a new one.
type Snapshot struct {
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Messages      []Message // ascending UID; sequence number i+1 is Messages[i]
}

// FlagOp says how SetFlags applies its flags.
type FlagOp int

const (
	FlagsSet    FlagOp = iota // replace
	FlagsAdd                  // +FLAGS
	FlagsRemove               // -FLAGS
)
