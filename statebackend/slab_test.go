package statebackend

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// TestSlabAllocatorMemoryBound drives the tables of one allocator with
// random puts and deletes across key groups, takes snapshots and releases
// them at random, and checks after every step that
//
//   - the allocator's accounts are right: its live slots are the tables'
//     pages, and its pinned slots the slabs those pages lie in plus the
//     current slab;
//   - the slabs the tables and the retained snapshots still reach, found
//     from the pages' addresses (what the garbage collector must keep),
//     total at most the bound: 2 × live + current slab for the tables,
//     plus for each retained snapshot the slabs pinned when it was taken;
//   - the tables and every retained snapshot read their own contents.
//
// Keys are drawn from ranges that widen and narrow, so tables grow and
// shrink back, and snapshots make copy-on-write replace pages one by one:
// the evacuation path must run for the test to pass, and so must the reuse
// of spare slabs (emptied while no snapshot held them), whose clearing
// would show in a snapshot's contents had a snapshot held one.
func TestSlabAllocatorMemoryBound(t *testing.T) {
	const groups = 16
	r := rand.New(rand.NewPCG(7, 16))
	tabs := newTables[int64, int64](groups)
	al := tabs[0].al
	if al == nil {
		t.Fatal("pointer-free tables got no allocator")
	}
	type span struct{ lo, hi uintptr }
	var slabs []span // every slab made, by address
	sz := uintptr(slotSize[int64, int64]())
	// The test keeps every slab alive, so that no page allocated on its
	// own (a copy) can lie where a freed slab was: which slab a page is in
	// is then plain from its address.
	var keep [][]slot[int64, int64]
	al.newSlab = func(s []slot[int64, int64]) {
		keep = append(keep, s)
		lo := uintptr(unsafe.Pointer(&s[0]))
		slabs = append(slabs, span{lo, lo + uintptr(len(s))*sz})
	}
	slabOf := func(p *page[int64, int64]) int {
		// The newest slab holding the address: a spare reused is made
		// again.
		a := uintptr(unsafe.Pointer(&p[0]))
		for i := len(slabs) - 1; i >= 0; i-- {
			if s := slabs[i]; a >= s.lo && a < s.hi {
				return i
			}
		}
		return -1 // a copy, allocated on its own
	}
	hash := func(k int64) uint32 { return uint32(k) * 2654435761 }
	want := make([]map[int64]int64, groups)
	for i := range want {
		want[i] = map[int64]int64{}
	}
	type snap struct {
		views []cowView[int64, int64]
		want  []map[int64]int64
		bound int          // slab bytes pinned when taken
		slabs map[int]bool // slabs its pages lie in
	}
	var snaps []snap
	reach := func(pages []*page[int64, int64]) map[int]bool {
		m := map[int]bool{}
		for _, p := range pages {
			if sl := slabOf(p); sl >= 0 {
				m[sl] = true
			}
		}
		return m
	}
	check := func(op int) {
		t.Helper()
		// Which slab each page lies in, by address and by the table's
		// record, must agree, and the allocator's counts must be the
		// tables' pages.
		live, pages := 0, []*page[int64, int64]{}
		idOf := map[int]uint32{} // slab (by address) -> allocator's number
		liveIn := map[uint32]int{}
		for i := range tabs {
			for pi, p := range tabs[i].pages {
				id := tabs[i].meta[pi].slab
				if id == noSlab {
					continue // a copy, allocated on its own
				}
				live += pageSlots
				pages = append(pages, p)
				sl := slabOf(p)
				if sl < 0 {
					t.Fatalf("op %d: a page recorded in slab %d lies in none", op, id)
				}
				if old, ok := idOf[sl]; ok && old != id {
					t.Fatalf("op %d: slab %d holds pages recorded in slabs %d and %d", op, sl, old, id)
				}
				idOf[sl] = id
				liveIn[id] += pageSlots
			}
		}
		if live != al.live {
			t.Fatalf("op %d: allocator counts %d live slots, tables have %d", op, al.live, live)
		}
		tabSlabs := reach(pages)
		pinned := 0
		for sl, id := range idOf {
			size := int(slabs[sl].hi-slabs[sl].lo) / int(sz)
			if al.slabs[id].size != size || al.slabs[id].live != liveIn[id] {
				t.Fatalf("op %d: slab %d counted as %+v, holds %d live of %d", op, id, al.slabs[id], liveIn[id], size)
			}
			pinned += size
		}
		// The streams' current slabs count even before a page lies in
		// them.
		if id := al.grow.id; id != noSlab && liveIn[id] == 0 {
			pinned += al.slabs[id].size
		}
		if pinned != al.pinned {
			t.Fatalf("op %d: allocator counts %d pinned slots, tables reach %d", op, al.pinned, pinned)
		}
		current := al.size(al.grow.id)
		if al.pinned+al.spareSlots > 2*al.live+current {
			t.Fatalf("op %d: %d pinned and %d spare slots over 2 × %d live + %d", op, al.pinned, al.spareSlots, al.live, current)
		}
		spare := 0
		for _, sp := range al.spare {
			spare += len(sp)
		}
		if spare != al.spareSlots {
			t.Fatalf("op %d: %d spare slots counted, %d kept", op, al.spareSlots, spare)
		}
		all := maps.Clone(tabSlabs)
		bound := (2*al.live + current) * int(sz)
		for _, s := range snaps {
			maps.Copy(all, s.slabs)
			bound += s.bound
		}
		// Spares are the allocator's memory on top of what the tables
		// and snapshots reach.
		reached := al.spareSlots * int(sz)
		for i := range all {
			reached += int(slabs[i].hi - slabs[i].lo)
		}
		if reached > bound {
			t.Fatalf("op %d: %d slab bytes reachable, bound %d (%d snapshots)", op, reached, bound, len(snaps))
		}
	}
	checkSnap := func(op int, s snap) {
		t.Helper()
		for g, v := range s.views {
			if got := viewMap(t, v); !maps.Equal(got, s.want[g]) {
				t.Fatalf("op %d: snapshot of group %d reads %d entries, want %d", op, g, len(got), len(s.want[g]))
			}
		}
	}
	var keys int
	for op := range 60_000 {
		if op%5000 == 0 {
			keys = []int{64, 2000, 300, 6000, 100, 4000}[op/5000%6]
			if p := op / 5000 % 6; p == 1 || p == 3 {
				// A phase without snapshots starts with every key of
				// its range put: several grows in a row, whose old
				// runs no snapshot holds.
				for k := range int64(keys) {
					g := int(k) % groups
					tabs[g].put(hash(k), k, k)
					want[g][k] = k
				}
				check(op)
			}
		}
		g := r.IntN(groups)
		k := int64(r.IntN(keys))
		switch x := r.IntN(1000); {
		case x < 550:
			tabs[g].put(hash(k), k, int64(op))
			want[g][k] = int64(op)
		case x < 990:
			tabs[g].del(hash(k), k)
			delete(want[g], k)
		case x < 996 && op/5000%6 != 1 && op/5000%6 != 3:
			// Two phases in which tables grow take no snapshot, so
			// that grows empty slabs no snapshot holds: spares.
			s := snap{views: make([]cowView[int64, int64], groups), want: make([]map[int64]int64, groups),
				bound: al.pinned * int(sz)}
			var dirs []*page[int64, int64]
			for i := range tabs {
				s.views[i] = tabs[i].snapshot()
				s.want[i] = maps.Clone(want[i])
				dirs = append(dirs, s.views[i].pages...)
			}
			s.slabs = reach(dirs)
			snaps = append(snaps, s)
		case x >= 996:
			if len(snaps) > 0 {
				i := r.IntN(len(snaps))
				checkSnap(op, snaps[i])
				snaps = slices.Delete(snaps, i, i+1)
			}
		}
		check(op)
	}
	for g := range tabs {
		if got := viewMap(t, cowView[int64, int64]{pages: tabs[g].pages, n: tabs[g].n}); !maps.Equal(got, want[g]) {
			t.Fatalf("group %d differs from its model", g)
		}
	}
	for _, s := range snaps {
		checkSnap(-1, s)
	}
	if al.moved == 0 {
		t.Fatal("no page was evacuated: the bound was never tested")
	}
	if al.reused == 0 {
		t.Fatal("no spare slab was reused: the snapshots' reads never met a reused slab")
	}
	t.Logf("%d slabs made (%d of them spares reused), %d pages evacuated, %d snapshots retained at the end", len(slabs), al.reused, al.moved, len(snaps))
}
