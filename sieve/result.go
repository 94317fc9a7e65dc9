package sieve

import (
	"context"
	"time"
)

// Envelope is the SMTP envelope of the delivery a script runs for.
type Envelope struct {
	// From is the envelope sender, "" for the null sender <>.
	From string
	// To is the recipient this delivery is for (RFC 5228 §5.4: the
	// final recipient, after aliases).
	To string
}

// Environment answers the questions a script asks of the world beyond
// the message. A nil Environment answers no to both.
type Environment interface {
	// MailboxExists reports whether the user has the folder (RFC 5490
	// §3.1, mailboxexists).
	MailboxExists(ctx context.Context, name string) (bool, error)
	// Duplicate reports whether key was recorded (by a delivery that
	// succeeded) and has not expired (RFC 7352).
	Duplicate(ctx context.Context, key string) (bool, error)
}

// RunOptions give a run its envelope and surroundings.
type RunOptions struct {
	Envelope Envelope
	Env      Environment
	// Now is the time for currentdate; zero means time.Now().
	Now time.Time
	// Location is the local time zone of date tests without :zone
	// (RFC 5260 §4.1); nil means time.Local.
	Location *time.Location
}

// Action is something a script decided to do with the message. The
// concrete types are Keep, FileInto, Redirect, Discard, Reject and
// Vacation; Run returns them in the order the script took them, with
// duplicates merged (RFC 5228 §2.10.3).
type Action interface{ action() }

// Keep stores the message in INBOX (RFC 5228 §4.3). Implicit marks the
// implicit keep, taken because no action cancelled it.
type Keep struct {
	Flags    []string // IMAP flags and keywords (RFC 5232); nil for none
	Implicit bool
}

// FileInto stores the message in a folder (RFC 5228 §4.1), whose name
// is in UTF-8 with "/" between levels as IMAP shows it here.
type FileInto struct {
	Mailbox string
	Create  bool // RFC 5490 §3.2: create the folder if it is missing
	Copy    bool // RFC 3894: did not cancel the implicit keep
	Flags   []string
	// At is the fileinto that decided it (the first, when several name
	// the folder), so that a folder that cannot be used is logged with
	// the script, line and column to fix.
	At Origin
}

// Origin is a place in a script: the script's name and a line and
// column.
type Origin struct {
	Script string
	Pos    Pos
}

// Redirect sends the message on to another address (RFC 5228 §4.2).
type Redirect struct {
	Address string
	Copy    bool
}

// Discard drops the message silently (RFC 5228 §4.4). It is returned
// only when nothing else happens to the message.
type Discard struct{}

// Reject refuses the message (RFC 5429): at SMTP/LMTP time where the
// protocol allows it, else by a DSN. Extended marks ereject.
type Reject struct {
	Reason   string
	Extended bool
}

// Vacation asks for an automatic reply (RFC 5230). Whether one is sent
// is for the caller to decide, with ShouldReply and its memory of
// earlier replies.
type Vacation struct {
	Period    time.Duration // :days or :seconds, bounded
	Subject   string        // "" for the default
	From      string        // "" for the recipient's address
	Addresses []string      // :addresses
	MIME      bool          // Reason is a MIME entity
	Handle    string        // identifies this vacation for the memory
	Reason    string
}

func (Keep) action()     {}
func (FileInto) action() {}
func (Redirect) action() {}
func (Discard) action()  {}
func (Reject) action()   {}
func (Vacation) action() {}

// DuplicateMark is an identifier the duplicate test asks to remember
// (RFC 7352 §3), once the delivery has succeeded.
type DuplicateMark struct {
	// Key is the SHA-256, in hex, of the handle and the id: 64
	// characters however long the id.
	Key    string
	Period time.Duration
}

// Result is what a run decided: the actions to take, in order, ending
// in the implicit keep (a Keep with Implicit set) if nothing cancelled
// it, and the identifiers to remember once the message is delivered.
type Result struct {
	Actions    []Action
	Duplicates []DuplicateMark
}
