package prefetch

import (
	"runtime"
	"syscall"
	"testing"
	"unsafe"
)

// BenchmarkBatch reads one random cache line per item of a 256 MiB array
// in batches of 16 items, the pattern of a keyed operator's held records:
// each item's line is loaded and then used for a dependent computation.
// cached uses 256 lines only, which stay in the cache: the floor. none
// loads each line when it is used, so every miss stalls in turn;
// touch loads the batch's lines first with ordinary loads (the trick
// prefetch replaces); prefetch issues Line for the batch first. Each use
// is a chain of dependent work, as a record's processing is. cpu-ns/item is
// the CPU time per item.
//
// pages=4k has the array on the Go heap, in 4 KiB pages, so that nearly
// every line is also a TLB miss; pages=huge maps it apart with
// madvise(MADV_HUGEPAGE), which gives it 2 MiB pages where the kernel's
// transparent huge pages are not off: the difference is the page walks.
func BenchmarkBatch(b *testing.B) {
	for _, huge := range []bool{false, true} {
		b.Run(map[bool]string{false: "pages=4k", true: "pages=huge"}[huge], func(b *testing.B) {
			benchBatch(b, huge)
		})
	}
}

func benchBatch(b *testing.B, huge bool) {
	const lines = 1 << 22 // 256 MiB of 64-byte lines: far beyond any cache
	var mem [][8]uint64
	if huge {
		m, err := syscall.Mmap(-1, 0, lines*64, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			b.Fatal(err)
		}
		defer syscall.Munmap(m)
		if err := syscall.Madvise(m, madvHugepage); err != nil {
			b.Skipf("madvise(MADV_HUGEPAGE): %v", err)
		}
		mem = unsafe.Slice((*[8]uint64)(unsafe.Pointer(unsafe.SliceData(m))), lines)
	} else {
		mem = make([][8]uint64, lines)
	}
	for i := range mem {
		mem[i][0] = uint64(i)
	}
	next := func(x uint64) uint64 { // a cheap, well-mixed sequence of indexes
		x ^= x >> 33
		x *= 0xff51afd7ed558ccd
		return x ^ x>>33
	}
	const batch, work = 16, 40
	for _, mode := range []string{"cached", "none", "touch", "prefetch"} {
		b.Run(mode, func(b *testing.B) {
			var idx [batch]uint64
			var sum, seed, touched uint64
			// CPU time of this thread, not wall time: on a shared
			// machine the wall clock counts other processes' turns.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0 := threadCPU(b)
			for b.Loop() {
				for j := range idx {
					seed = next(seed + 1)
					idx[j] = seed % lines
					if mode == "cached" {
						idx[j] %= 256
					}
				}
				switch mode {
				case "touch":
					var t uint64
					for _, i := range idx {
						t += mem[i][0]
					}
					touched += t
				case "prefetch":
					for _, i := range idx {
						Line(unsafe.Pointer(&mem[i]))
					}
				}
				for _, i := range idx {
					// The use: a chain of work on the line's value, as
					// long as a record's processing, so that the CPU's
					// reorder window cannot reach the next item's load.
					x := mem[i][0] + sum
					for k := range uint64(work) {
						x = x*0x9e3779b97f4a7c15 + k
					}
					mem[i][1], sum = x, x&1
				}
			}
			sink = touched
			b.ReportMetric(float64(threadCPU(b)-cpu0)/float64(b.N*batch), "cpu-ns/item")
		})
	}
}

var sink uint64

// threadCPU is the calling thread's CPU time in nanoseconds.
func threadCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// rusageThread is Linux's RUSAGE_THREAD and madvHugepage its
// MADV_HUGEPAGE, which package syscall does not name.
const (
	rusageThread = 1
	madvHugepage = 14
)
