package statebackend

import (
	"slices"
	"unsafe"
)

// cowTable is the hash table behind every table (ValueTable, MapTable,
// ListTable, Entries): one per key group, open addressing with linear
// probing over fixed-size slots, and copy-on-write by page for snapshots.
//
// Why not a Go map: the state-heavy fraud job spends most of its time in
// map probing and hashing, and a snapshot of a Go map can only be shared
// whole, so the first write after a checkpoint cloned the whole key group.
// Here the caller passes the key's hash, computed once per record by the
// runtime (it needs it for the key group anyway), deletes shift the
// following entries back instead of leaving tombstones, so churn never
// lengthens probes, and the slots live in pages of pageSlots entries that
// carry the version of the table they were written under.
//
// Copy-on-write follows Flink's CopyOnWriteStateMap, at page rather than
// entry granularity: snapshot hands the page directory to the snapshot and
// bumps the table's version, in O(1). A write then goes to a page of the
// current version only: an older page (and, once, the directory) is copied
// first, so the snapshot's pages are never written again. The first write
// after a checkpoint copies one page of a few kilobytes, never a key group,
// and the synchronous part of a checkpoint does not depend on the number
// of entries.
type cowTable[K comparable, V any] struct {
	// pages is the directory; meta holds each page's version and slab
	// apart, so a read goes from the directory straight to the slot.
	pages []*page[K, V]
	meta  []pageMeta
	// al carves the pages from slabs shared by the state's key groups
	// (see pageAlloc); nil for a table made as a zero value, whose pages
	// are allocated one by one.
	al *pageAlloc[K, V]
	// mask is capacity-1; capacity is a power of two.
	mask  uint32
	shift uint8 // 32 - log2(capacity), for Fibonacci hashing
	n     int
	ver   uint32
	// sharedDir: pages is also a snapshot's directory; copy it before
	// replacing a page.
	sharedDir bool
}

const (
	pageBits  = 5
	pageSlots = 1 << pageBits
	pageMask  = pageSlots - 1
	// minCap is one page: pages are whole, so that the slot index within
	// one needs no bounds check.
	minCap = pageSlots
)

// page is pageSlots slots. The directory points at whole pages rather than
// holding slices: 8 bytes a page, and an index masked to the page's length
// needs no bounds check.
type page[K comparable, V any] [pageSlots]slot[K, V]

// pageMeta is what the table knows of one of its pages: the version it
// was written under and the slab it lies in.
type pageMeta struct{ ver, slab uint32 }

type slot[K comparable, V any] struct {
	key  K
	val  V
	hash uint32
	full bool
}

// home is the first slot probed for hash h: the top bits of a mix of h,
// so that neither bits shared by a key group's keys (the key group is
// derived from the same hash) nor runs of consecutive keys (an int64 key's
// hash is the key) cluster the keys.
//
// The mix is the MurmurHash3 finalizer, written out here: the compiler did
// not inline it as a function into the generic table code, and find and
// Prefetch run it on every record.
func (t *cowTable[K, V]) home(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	return (h ^ h>>16) >> t.shift
}

// at is slot i. The address is computed rather than indexed: indexing
// through the page pointer makes the compiler check it for nil by loading
// from the page's first line, a cache miss of its own, and one that would
// stall Entries.Prefetch, which must not touch the slot. The slot lies in
// the page's allocation, so the arithmetic is valid.
func (t *cowTable[K, V]) at(i uint32) *slot[K, V] {
	p := unsafe.Pointer(t.pages[i>>pageBits])
	return (*slot[K, V])(unsafe.Add(p, uintptr(i&pageMask)*unsafe.Sizeof(slot[K, V]{})))
}

// find returns the slot index of k, or -1.
func (t *cowTable[K, V]) find(h uint32, k K) int {
	if t.n == 0 {
		return -1
	}
	for i := t.home(h); ; i = (i + 1) & t.mask {
		s := t.at(i)
		if !s.full {
			return -1
		}
		if s.hash == h && s.key == k {
			return int(i)
		}
	}
}

func (t *cowTable[K, V]) get(h uint32, k K) (V, bool) {
	if i := t.find(h, k); i >= 0 {
		return t.at(uint32(i)).val, true
	}
	var zero V
	return zero, false
}

// writable returns slot i ready for writing, copying its page first if a
// snapshot shares it.
func (t *cowTable[K, V]) writable(i uint32) *slot[K, V] {
	if t.meta[i>>pageBits].ver != t.ver {
		t.copyPage(i >> pageBits)
	}
	return t.at(i)
}

// copyPage is the rare part of writable: the first write to a page since
// a snapshot.
func (t *cowTable[K, V]) copyPage(pi uint32) {
	t.movePage(pi)
	if t.al != nil {
		t.al.settle()
	}
}

// movePage replaces page pi by a copy of the current version, leaving the
// old page to whoever else holds it (a snapshot, or nobody). The copy is a
// page of its own, not in a slab (see pageAlloc).
func (t *cowTable[K, V]) movePage(pi uint32) {
	if t.sharedDir {
		t.pages = slices.Clone(t.pages)
		t.sharedDir = false
	}
	old, m := t.pages[pi], t.meta[pi]
	p := new(page[K, V])
	*p = *old
	t.pages[pi] = p
	t.meta[pi] = pageMeta{ver: t.ver, slab: noSlab}
	if t.al != nil {
		t.al.release(m.slab, pageSlots, m.ver == t.ver)
	}
}

// ref returns k's value for reading (nil if absent); the pointer is valid
// until the next write to the table.
func (t *cowTable[K, V]) ref(h uint32, k K) *V {
	if i := t.find(h, k); i >= 0 {
		return &t.at(uint32(i)).val
	}
	return nil
}

// upsert returns k's value ready for writing, inserting the zero value if
// k is absent; the pointer is valid until the next write to the table.
func (t *cowTable[K, V]) upsert(h uint32, k K) *V {
	if i := t.find(h, k); i >= 0 {
		return &t.writable(uint32(i)).val
	}
	return &t.writable(t.insert(h, k)).val
}

// insert adds k, which must be absent, with the zero value and returns
// its slot index. Only a grow moves other entries.
func (t *cowTable[K, V]) insert(h uint32, k K) uint32 {
	if t.pages == nil || (t.n+1)*4 > int(t.mask+1)*3 {
		t.grow(t.n + 1)
	}
	i := t.home(h)
	for t.at(i).full {
		i = (i + 1) & t.mask
	}
	*t.writable(i) = slot[K, V]{key: k, hash: h, full: true}
	t.n++
	return i
}

func (t *cowTable[K, V]) put(h uint32, k K, v V) {
	if i := t.find(h, k); i >= 0 {
		t.writable(uint32(i)).val = v
		return
	}
	if t.pages == nil || (t.n+1)*4 > int(t.mask+1)*3 {
		t.grow(t.n + 1)
	}
	i := t.home(h)
	for t.at(i).full {
		i = (i + 1) & t.mask
	}
	*t.writable(i) = slot[K, V]{key: k, val: v, hash: h, full: true}
	t.n++
}

// del removes k and shifts later entries of its probe run back into the
// gap (backward-shift deletion), so that no tombstone is left.
func (t *cowTable[K, V]) del(h uint32, k K) bool {
	f := t.find(h, k)
	if f < 0 {
		return false
	}
	gap := uint32(f)
	for j := (gap + 1) & t.mask; ; j = (j + 1) & t.mask {
		s := t.at(j)
		if !s.full {
			break
		}
		// s may move into the gap if its home is not cyclically in
		// (gap, j]: then the gap lies on its probe path.
		if (j-t.home(s.hash))&t.mask >= (j-gap)&t.mask {
			*t.writable(gap) = *s
			gap = j
		}
	}
	*t.writable(gap) = slot[K, V]{}
	t.n--
	return true
}

// grow makes room for at least n entries at a load of at most 3/4. The
// new pages are written in the current version; the old ones stay intact
// for any snapshot holding them.
func (t *cowTable[K, V]) grow(n int) {
	c := uint32(minCap)
	for int(c)*3 < n*4 {
		c <<= 1
	}
	if t.pages != nil && c <= t.mask+1 {
		return
	}
	old, oldMeta, oldCap := t.pages, t.meta, t.mask+1
	if old == nil {
		oldCap = 0
	}
	np := c / pageSlots
	t.pages = make([]*page[K, V], np)
	t.meta = make([]pageMeta, np)
	// The pages are carved from one run of slots, so a grown table lies
	// contiguously in one slab.
	var run []slot[K, V]
	id := noSlab
	if t.al != nil {
		run, id = t.al.allocRun(int(c))
	} else {
		run = make([]slot[K, V], c)
	}
	for i := range t.pages {
		t.pages[i] = (*page[K, V])(run[i*pageSlots:])
		t.meta[i] = pageMeta{ver: t.ver, slab: id}
	}
	t.mask = c - 1
	t.shift = uint8(32 - bitsLen(c-1))
	t.sharedDir = false
	for i := uint32(0); i < oldCap; i++ {
		s := &old[i>>pageBits][i&pageMask]
		if !s.full {
			continue
		}
		j := t.home(s.hash)
		for t.at(j).full {
			j = (j + 1) & t.mask
		}
		*t.at(j) = *s
	}
	if t.al != nil {
		for _, m := range oldMeta {
			t.al.release(m.slab, pageSlots, m.ver == t.ver)
		}
		t.al.settle()
	}
}

// bitsLen is the number of bits needed for x (0 for 0).
func bitsLen(x uint32) int {
	n := 0
	for x != 0 {
		x >>= 1
		n++
	}
	return n
}

// cowView is a snapshot of a cowTable: its directory at the time, whose
// pages nobody writes again.
type cowView[K comparable, V any] struct {
	pages []*page[K, V]
	n     int
}

// snapshot freezes t in O(1) and returns its view.
func (t *cowTable[K, V]) snapshot() cowView[K, V] {
	if t.n == 0 {
		return cowView[K, V]{}
	}
	t.ver++
	t.sharedDir = true
	return cowView[K, V]{pages: t.pages, n: t.n}
}

// each calls f for every entry of the view, in slot order.
func (v cowView[K, V]) each(f func(k K, v V)) {
	for _, p := range v.pages {
		for i := range p {
			if s := &p[i]; s.full {
				f(s.key, s.val)
			}
		}
	}
}
