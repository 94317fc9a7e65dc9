package imap

import (
	"context"

	"mailroom/mailbox"
)

// Store gives the IMAP server the mail of one account at a time. The IMAP
// package knows nothing of files: maildir.Index implements this.
type Store interface {
	// Open returns the folders of the account whose mail home is home
	// (account.Account.Home()), creating INBOX and the special-use folders
	// (Sent, Drafts, Trash, Junk, Archive) for a new account.
	Open(ctx context.Context, home string) (Folders, error)
}

// Folders is one account's mail, for one IMAP session. It is declared in
// package mailbox (as an alias here) so that a store such as maildir.Index
// can return it without importing this package.
type Folders = mailbox.Folders
