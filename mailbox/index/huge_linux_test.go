package index

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestMakeAdvisesHugePages checks that a large snapshot array is marked
// for transparent huge pages: the "hg" flag of its mapping in smaps.
func TestMakeAdvisesHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skip("this kernel has no transparent huge pages:", err)
	}
	const n = 100_000
	msgs := Make(n)
	if len(msgs) != n || cap(msgs) != growCap(n) {
		t.Fatalf("Make(%d): len %d cap %d, want %d and %d", n, len(msgs), cap(msgs), n, growCap(n))
	}
	// The first huge page boundary inside the array.
	addr := (uintptr(unsafe.Pointer(unsafe.SliceData(msgs))) + hugePage - 1) &^ (hugePage - 1)
	flags, err := vmFlags(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Errorf("Make(%d): the mapping at %#x has VmFlags %q, without hg", n, addr, flags)
	}
}

// vmFlags returns the VmFlags line of the mapping of this process that
// holds addr.
func vmFlags(addr uintptr) (string, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:")), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no mapping holds %#x", addr)
}
