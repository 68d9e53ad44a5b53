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
// the evacuation path must run for the test to pass.
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
	al.newSlab = func(s []slot[int64, int64]) {
		lo := uintptr(unsafe.Pointer(&s[0]))
		slabs = append(slabs, span{lo, lo + uintptr(len(s))*sz})
	}
	slabOf := func(p *page[int64, int64]) int {
		// The newest slab holding the address: the garbage collector
		// may reuse a dead slab's memory for a new one.
		a := uintptr(unsafe.Pointer(&p[0]))
		for i := len(slabs) - 1; i >= 0; i-- {
			if s := slabs[i]; a >= s.lo && a < s.hi {
				return i
			}
		}
		t.Fatalf("page at %#x lies in no slab", a)
		return -1
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
			m[slabOf(p)] = true
		}
		return m
	}
	check := func(op int) {
		t.Helper()
		live, pages := 0, []*page[int64, int64]{}
		for i := range tabs {
			for _, p := range tabs[i].pages {
				live += len(p)
				pages = append(pages, p)
			}
		}
		if live != al.live {
			t.Fatalf("op %d: allocator counts %d live slots, tables have %d", op, al.live, live)
		}
		tabSlabs := reach(pages)
		pinned := 0
		for i := range tabSlabs {
			pinned += int(slabs[i].hi - slabs[i].lo)
		}
		// The current slab, the last made, counts even before a page
		// lies in it.
		if len(slabs) > 0 && !tabSlabs[len(slabs)-1] {
			pinned += int(slabs[len(slabs)-1].hi - slabs[len(slabs)-1].lo)
		}
		if pinned != al.pinned*int(sz) {

			t.Fatalf("op %d: allocator counts %d pinned bytes, tables reach %d", op, al.pinned*int(sz), pinned)
		}
		if al.overBound() {
			t.Fatalf("op %d: %d pinned slots over 2 × %d live + %d", op, al.pinned, al.live, al.curSize())
		}
		all := maps.Clone(tabSlabs)
		bound := (2*al.live + al.curSize()) * int(sz)
		for _, s := range snaps {
			maps.Copy(all, s.slabs)
			bound += s.bound
		}
		reached := 0
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
	keys := 64
	for op := range 60_000 {
		if op%5000 == 0 {
			keys = []int{64, 2000, 300, 4000, 100}[op/5000%5]
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
		case x < 996:
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
		default:
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
	t.Logf("%d slabs made, %d pages evacuated, %d snapshots retained at the end", len(slabs), al.moved, len(snaps))
}
