package index

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on amd64 and arm64.
const hugePage = 2 << 20

// adviseHuge asks the kernel to back the 2 MiB-aligned interior of
// [p, p+n) with transparent huge pages. A large folder's snapshot array
// is written once from end to end right after it is made; on a VM where
// the first touch of a 4 KiB page costs microseconds, a 100,000-message
// array (about 7.6 MB) took some 1,900 faults, and with huge pages a
// handful. The advice is only a hint: an error (no THP, "never" mode)
// changes nothing but speed, so it is ignored.
func adviseHuge(p unsafe.Pointer, n uintptr) {
	start := (uintptr(p) + hugePage - 1) &^ (hugePage - 1)
	end := (uintptr(p) + n) &^ (hugePage - 1)
	if end <= start {
		return
	}
	// The Go heap owns this memory; MADV_HUGEPAGE changes no contents
	// and no mapping, only how the kernel backs untouched pages.
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_HUGEPAGE)
}
