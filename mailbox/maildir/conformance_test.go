package maildir

import (
	"testing"

	"mailroom/mailbox/mailboxtest"
)

// The Index keeps the contract of mailbox.Folders.
func TestConformance(t *testing.T) {
	t.Parallel()
	mailboxtest.Run(t, func(t *testing.T) mailboxtest.Opener { return newIndexEnv(t).ix })
}
