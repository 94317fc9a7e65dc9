package mbox

import "golang.org/x/sys/unix"

// ofdLock is the open file description lock command (Linux 3.15+);
// classicLock the POSIX one every system has.
const (
	ofdLock     = unix.F_OFD_SETLK
	classicLock = unix.F_SETLK
)
