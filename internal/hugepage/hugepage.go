// Package hugepage allocates large slices whose memory the kernel may back
// with 2 MiB transparent huge pages.
//
// Why: the state tables of a job with millions of keys are read at random
// addresses. On 4 KiB pages nearly every such read is also a TLB miss, and
// the page walk costs about as much as the cache miss itself (the prefetch
// package's BenchmarkBatch measures 130 ns against 74 ns per random line).
// Go's runtime no longer asks for huge pages, and most distributions set
// transparent huge pages to "madvise", so a large table stays on 4 KiB pages
// unless it asks.
//
// Make over-allocates by up to two huge pages so that the slice covers whole
// aligned huge pages, then advises the kernel (MADV_HUGEPAGE, and
// MADV_COLLAPSE for memory the allocator had already touched). The slice is
// ordinary Go heap memory: the garbage collector frees it, GOMEMLIMIT counts
// it, and it may hold pointers. Where the kernel refuses or the platform has
// no transparent huge pages, the slice is still correct, only on small pages.
package hugepage

import "unsafe"

// Size is the huge page size Make aligns to (x86-64 and arm64 with 4 KiB
// base pages).
const Size = 2 << 20

// MinBytes is the smallest slice Make aligns: below it, the padding would
// cost more than the page walks saved.
const MinBytes = 4 << 20

// Make returns a zeroed slice of n elements of T (len = cap = n). For
// slices of MinBytes or more, the huge pages from the first boundary at or
// before s[0] to past the end of s lie inside one allocation, padded by at
// most two huge pages, and are advised.
func Make[T any](n int) []T {
	var zero T
	sz := uintptr(unsafe.Sizeof(zero))
	if sz == 0 || uintptr(n)*sz < MinBytes {
		return make([]T, n)
	}
	full := make([]T, uintptr(n)+(2*Size+sz-1)/sz+1)
	p := unsafe.Pointer(&full[0])
	lead := (Size - uintptr(p)%Size) % Size // bytes up to the first boundary
	off := (lead + sz - 1) / sz
	span := (off+uintptr(n))*sz - lead
	span = (span + Size - 1) &^ (Size - 1)
	advise(unsafe.Add(p, lead), span)
	return full[off : off+uintptr(n) : off+uintptr(n)]
}

// Advise asks for huge pages for the whole huge pages inside s, for slices
// that Make did not allocate. It reports whether the kernel took the advice.
func Advise[T any](s []T) bool {
	if len(s) == 0 {
		return false
	}
	var zero T
	p := unsafe.Pointer(&s[0])
	n := uintptr(len(s)) * unsafe.Sizeof(zero)
	lead := (Size - uintptr(p)%Size) % Size
	if n < lead+Size {
		return false
	}
	return advise(unsafe.Add(p, lead), (n-lead)&^(Size-1))
}
