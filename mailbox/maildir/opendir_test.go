//go:build !linux

package maildir

import "sync/atomic"

// noOpenat2 exists on every platform so that the tests compile; only Linux
// has openat2.
var noOpenat2 atomic.Bool
