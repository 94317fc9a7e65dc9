package memfolders_test

import (
	"testing"

	"mailroom/internal/memfolders"
	"mailroom/mailbox/mailboxtest"
)

// The in-memory fake keeps the contract of the real stores.
func TestConformance(t *testing.T) {
	mailboxtest.Run(t, func(*testing.T) mailboxtest.Opener { return memfolders.New() })
}
