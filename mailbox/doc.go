// Package mailbox is the home of mailroom's mail storage. It knows nothing of
// sockets or protocols: its subpackages turn "put these bytes in that mail
// home" into files that other tools (mutt, Dovecot, mblaze) can read.
//
//   - maildir: Maildir++ under <mail home>/Maildir, with mailroom's own
//     fsync discipline (go-maildir does not fsync).
//   - mbox: mboxrd files, INBOX in <mail home>/mbox and folders under
//     <mail home>/mail/ as Dovecot lays them out, locked as Postfix and
//     Dovecot lock them; with [delivery] format = "mbox".
//
// Every store delivers in two steps, Stage and Commit, so that a caller with
// several recipients can make the message durable for all of them before
// making it visible for any, and undo the visible ones if one fails (the
// "nothing delivered twice" rule of `mailroom deliver` and SMTP).
package mailbox

import (
	"context"
)

// Staged is a message written durably for one mail home but not yet
// visible to readers. Commit makes it visible and durable; Abort removes it,
// whether or not it was committed.
type Staged interface {
	Commit(ctx context.Context) error
	Abort() error
}

// Delivery says where in a mail home a message goes and how it starts:
// the folder ("" for INBOX), whether a missing folder is made, and its
// IMAP flags and keywords (a Sieve fileinto or keep, RFC 5232 §5).
type Delivery struct {
	Folder string
	Create bool
	Flags  []string
}
