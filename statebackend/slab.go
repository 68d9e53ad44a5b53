package statebackend

import (
	"reflect"
	"unsafe"

	"github.com/weirstream/weir/internal/hugepage"
)

// pageAlloc carves the pages of a set of cowTables (one state's key
// groups) from large slabs, so that the slots can lie on transparent huge
// pages: a state with a hundred thousand keys has megabytes of slots read
// at random addresses, and on 4 KiB pages nearly every read also walks the
// page table. Only tables whose slots hold no pointers use slabs (see
// newTables).
//
// A grow takes one run for all the table's new pages from the current
// slab; slabs from hugepage.MinBytes up start and end on huge-page
// boundaries and are advised for huge pages. A copy-on-write copy, and an
// evacuation (below), makes the page a Go allocation of its own, as
// before slabs: carving copies from huge-page slabs made the writes after
// a checkpoint fault in 2 MiB pages, with THP's "madvise" defrag setting
// compacting memory first (BenchmarkWriteAfterSnapshot at 1 M keys: 7.8 µs
// a write and stalls of 90 ms), and copies carved from small-page slabs
// gain nothing over their own allocations but pin memory. So a table is
// on huge pages from its last grow until copy-on-write after checkpoints
// has copied its pages, and a page left nowhere is freed by the garbage
// collector as soon as no snapshot holds it.
//
// A slab lives as long as any table or snapshot holds one of its pages,
// so one surviving page keeps its whole slab alive. The allocator counts,
// per slab, the slots of pages the tables still have in it, and keeps the
// bound
//
//	pinned + spare ≤ 2 × live + current
//
// where live is the slots of the tables' pages in slabs, pinned the slots
// of every slab holding one of them, spare those of the spares (below) and
// current the slab being carved. When a page leaves a slab and the bound
// no longer holds, the other slabs are on average less than half used; the
// spares are let go, then the sparsest slab is evacuated: its live pages
// are copied out, as a copy-on-write would, and the tables no longer hold
// it. Snapshots keep the pages they hold, so memory is bounded by the
// bound at the time of each retained snapshot plus the table's own (plus
// one huge page of alignment padding per slab of hugepage.MinBytes or
// more).
//
// A slab whose pages all left the tables while no snapshot could hold them
// (each page was of the table's current version, written since the last
// snapshot) is kept as a spare and reused, cleared, by a later grow: while
// a state grows without checkpoints, each generation of its tables' runs
// then goes to the memory of an earlier one instead of faulting in fresh
// pages.
//
// Evacuation copies less than half a slab, which caps slabs at
// maxSlabBytes so that the stall of a record that triggers one stays in
// milliseconds; it is paid for by the page deaths (copy-on-write copies,
// grows) that made at least as many dead slots.
type pageAlloc[K comparable, V any] struct {
	// tabs are the tables served, for evacuation.
	tabs []cowTable[K, V]
	// grow is the slab being carved.
	grow stream[K, V]
	// slabs holds, by number, the size and live slots of each slab that
	// pages of the tables lie in; a number is reused once its slab has no
	// live slot left (snapshots may still hold the slab: that is the
	// garbage collector's business).
	slabs []slabStat[K, V]
	free  []uint32
	live  int
	// pinned is the slots of slabs with live pages, or current.
	pinned int
	// spare are emptied grow slabs no snapshot holds, spareSlots their
	// slots.
	spare      [][]slot[K, V]
	spareSlots int
	// moved counts evacuated pages, reused spares taken.
	moved, reused int
	// newSlab, if set, sees every slab made (tests of the bound).
	newSlab func(s []slot[K, V])
}

// stream is a slab being carved: cur is its uncarved rest, id its number
// (noSlab before the first).
type stream[K comparable, V any] struct {
	cur []slot[K, V]
	id  uint32
}

// slabStat is what the allocator knows of a slab. mem is the slab, kept
// so that an emptied one can become a spare; held
// says a page of it left its table while a snapshot may have held it, so
// it may not.
type slabStat[K comparable, V any] struct {
	size, live int
	mem        []slot[K, V]
	held       bool
}

const (
	// noSlab marks a page made without an allocator (a zero cowTable).
	noSlab = ^uint32(0)
	// minSlabBytes and maxSlabBytes bound the slab size, which follows
	// the live bytes: small states get small slabs, and from
	// hugepage.MinBytes a grow slab is advised for huge pages.
	minSlabBytes = 32 << 10
	maxSlabBytes = 16 << 20
)

// newTables makes n empty tables sharing one allocator, if their slots
// hold no pointers. Slots with pointers (string keys, maps, lists) keep one
// allocation per page: a dead page in a slab that live pages keep would
// also keep whatever its slots point to, which the bound on slots does
// not bound.
func newTables[K comparable, V any](n int) []cowTable[K, V] {
	if !pointerFree(reflect.TypeFor[slot[K, V]]()) {
		return make([]cowTable[K, V], n)
	}
	a := &pageAlloc[K, V]{tabs: make([]cowTable[K, V], n), grow: stream[K, V]{id: noSlab}}
	for i := range a.tabs {
		a.tabs[i].al = a
	}
	return a.tabs
}

func slotSize[K comparable, V any]() int {
	var s slot[K, V]
	return int(unsafe.Sizeof(s))
}

// allocRun returns n zeroed slots (len = cap = n), for a grow, and the
// number of their slab.
func (a *pageAlloc[K, V]) allocRun(n int) ([]slot[K, V], uint32) { return a.alloc(&a.grow, n) }

func (a *pageAlloc[K, V]) alloc(st *stream[K, V], n int) ([]slot[K, V], uint32) {
	if len(st.cur) < n {
		a.startSlab(st, n)
	}
	s := st.cur[:n:n]
	st.cur = st.cur[n:]
	a.slabs[st.id].live += n
	a.live += n
	return s, st.id
}

// startSlab retires the stream's slab and makes one for at least n slots.
func (a *pageAlloc[K, V]) startSlab(st *stream[K, V], n int) {
	old := st.id
	st.id = noSlab // retired: release may drop it now
	if old != noSlab && a.slabs[old].live == 0 {
		a.drop(old) // never used: forget it at once
	}
	sz := slotSize[K, V]()
	want := min(max(a.live*sz, minSlabBytes), maxSlabBytes) / sz
	want = max(want, n)
	var s []slot[K, V]
	sp := a.reuse(n)
	switch {
	case sp != nil:
		s = sp
		a.spareSlots -= len(s)
		a.reused++
		clear(s)
		want = len(s)
	case want*sz >= hugepage.MinBytes:
		s = hugeSlab[K, V](want)
		want = len(s)
	default:
		s = make([]slot[K, V], want)
	}
	if a.newSlab != nil {
		a.newSlab(s)
	}
	stat := slabStat[K, V]{size: want, mem: s}
	var id uint32
	if k := len(a.free); k > 0 {
		id, a.free = a.free[k-1], a.free[:k-1]
		a.slabs[id] = stat
	} else {
		id = uint32(len(a.slabs))
		a.slabs = append(a.slabs, stat)
	}
	st.cur, st.id = s, id
	a.pinned += want
}

// hugeSlab makes a slab of at least n slots that starts on a huge-page
// boundary and ends on one when the slot size divides it, so that the
// kernel can back all of it with huge pages; the allocation is padded by
// one huge page for the alignment (at most a third of a slab, as slabs
// this large are at least hugepage.MinBytes). hugepage.Make pads by two
// huge pages, which would cost up to half a slab.
func hugeSlab[K comparable, V any](n int) []slot[K, V] {
	sz := uintptr(slotSize[K, V]())
	bytes := (uintptr(n)*sz + hugepage.Size - 1) &^ (hugepage.Size - 1)
	n = int(bytes / sz)
	full := make([]slot[K, V], uintptr(n)+hugepage.Size/sz+1)
	lead := (hugepage.Size - uintptr(unsafe.Pointer(&full[0]))%hugepage.Size) % hugepage.Size
	off := int((lead + sz - 1) / sz)
	s := full[off : off+n : off+n]
	hugepage.Advise(s)
	return s
}

// reuse takes a spare of at least n slots off the list and returns it,
// or returns nil.
func (a *pageAlloc[K, V]) reuse(n int) []slot[K, V] {
	for i, sp := range a.spare {
		if len(sp) >= n {
			last := len(a.spare) - 1
			a.spare[i], a.spare[last] = a.spare[last], nil
			a.spare = a.spare[:last]
			return sp
		}
	}
	return nil
}

// drop forgets slab id, which has no live slot, keeping it as a spare if
// it may be.
func (a *pageAlloc[K, V]) drop(id uint32) {
	st := &a.slabs[id]
	a.pinned -= st.size
	if st.mem != nil && !st.held {
		a.spare = append(a.spare, st.mem)
		a.spareSlots += len(st.mem)
	}
	*st = slabStat[K, V]{}
	a.free = append(a.free, id)
}

// release records that a page of n slots in slab id left its table;
// private says no snapshot holds the page (it is of the table's current
// version).
func (a *pageAlloc[K, V]) release(id uint32, n int, private bool) {
	if id == noSlab {
		return
	}
	st := &a.slabs[id]
	st.live -= n
	st.held = st.held || !private
	a.live -= n
	if st.live == 0 && id != a.grow.id {
		a.drop(id)
	}
}

// overBound reports whether the pinned slabs and the spares break the
// bound.
func (a *pageAlloc[K, V]) overBound() bool {
	return a.pinned+a.spareSlots > 2*a.live+a.size(a.grow.id)
}

// size is the size of slab id (0 for noSlab).
func (a *pageAlloc[K, V]) size(id uint32) int {
	if id == noSlab {
		return 0
	}
	return a.slabs[id].size
}

// settle evacuates the sparsest slabs until the bound holds; the tables
// call it after their pages changed, when no slot pointer is held.
func (a *pageAlloc[K, V]) settle() {
	if a.overBound() && a.spareSlots > 0 {
		clear(a.spare) // to the garbage collector
		a.spare, a.spareSlots = a.spare[:0], 0
	}
	for a.overBound() {
		id, best := noSlab, 0.0
		for i, st := range a.slabs {
			if uint32(i) == a.grow.id || st.live == 0 {
				continue
			}
			if f := float64(st.live) / float64(st.size); id == noSlab || f < best {
				id, best = uint32(i), f
			}
		}
		if id == noSlab {
			return
		}
		a.evacuate(id)
	}
}

// evacuate copies the live pages of slab id out of it.
func (a *pageAlloc[K, V]) evacuate(id uint32) {
	for ti := range a.tabs {
		t := &a.tabs[ti]
		for pi := range t.meta {
			if t.meta[pi].slab != id {
				continue
			}
			t.movePage(uint32(pi))
			a.moved++
			if a.slabs[id].live == 0 {
				return // dropped, and its number may be reused
			}
		}
	}
}
