// Package prefetch asks the CPU to start loading a cache line that the
// caller will read soon, without waiting for it.
//
// Go exposes no prefetch instruction to user code, and an ordinary early
// load (the trick this replaces) stalls the CPU's reorder window once a
// few misses are outstanding, so a batch of them overlaps only partly. A
// prefetch retires at once: the loads of a whole batch of records are in
// flight together, and later accesses find their lines in the cache.
//
// Line is a small assembly function on amd64 (PREFETCHT0) and arm64
// (PRFM PLDL1KEEP); elsewhere it does nothing, which is correct, only
// slower. A prefetch never faults, so any address is safe, but the caller
// must pass a pointer into a live object for the hint to be worth its few
// nanoseconds.
package prefetch
