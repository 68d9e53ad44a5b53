package hugepage

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// advise marks the n bytes at p (whole huge pages of a live Go allocation)
// for transparent huge pages and collapses what is already faulted in
// 4 KiB pages: memory the Go allocator reuses was zeroed, so touched,
// before the advice, and would otherwise wait for khugepaged. An error
// means only that the kernel declined (THP off, MADV_COLLAPSE before Linux
// 6.1), which costs speed, not correctness.
func advise(p unsafe.Pointer, n uintptr) bool {
	if n == 0 {
		return false
	}
	b := unsafe.Slice((*byte)(p), n)
	if unix.Madvise(b, unix.MADV_HUGEPAGE) != nil {
		return false
	}
	_ = unix.Madvise(b, unix.MADV_COLLAPSE)
	return true
}
