//go:build unix && !linux

package mbox

import "golang.org/x/sys/unix"

// ofdLock is 0 where open file description locks are not available;
// classicLock is the POSIX lock command.
const (
	ofdLock     = 0
	classicLock = unix.F_SETLK
)
