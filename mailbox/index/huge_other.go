//go:build !linux

package index

import "unsafe"

// hugePage is the size from which adviseHuge is worth calling.
const hugePage = 2 << 20

// adviseHuge does nothing where madvise(MADV_HUGEPAGE) is not known.
func adviseHuge(unsafe.Pointer, uintptr) {}
