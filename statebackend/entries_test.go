package statebackend

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestWordTablesAgainstModel churns two word tables sharing the entry
// table, with snapshots in between, against plain maps; then writes one
// snapshot's state file after further writes and restores it whole, into
// ValueTables (the sections have the value format), split over three
// subtasks, and merged back from their own snapshots: every restore holds
// exactly its key groups' entries at the snapshot, and entries left empty
// are dropped.
func TestWordTablesAgainstModel(t *testing.T) {
	const groups = 64
	all := KeyGroupRange{First: 0, Last: groups - 1}
	kc := hashedInt64Codec{}
	kgOf := func(k int64) int { return int(uint64(k)*0x9e3779b97f4a7c15>>40) % groups }
	b := NewBackend(all)
	flag, ok, err := NewWordTable[int64, bool](b, "flag", kc, boolCodec{})
	if err != nil || !ok {
		t.Fatalf("flag: %v %v", ok, err)
	}
	num, ok, err := NewWordTable[int64, int64](b, "num", kc, int64Codec{})
	if err != nil || !ok {
		t.Fatalf("num: %v %v", ok, err)
	}
	if _, ok, err := NewWordTable[int64, int64](b, "third", kc, int64Codec{}); ok || err != nil {
		t.Fatalf("a third word table: %v %v, want no room", ok, err)
	}
	if _, ok, _ := NewWordTable[int64, string](b, "text", kc, stringCodec{}); ok {
		t.Fatal("a string is not word-sized")
	}
	if again, ok, err := NewWordTable[int64, bool](b, "flag", kc, boolCodec{}); !ok || err != nil || again != flag {
		t.Fatalf("reopening flag: %v %v", ok, err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	flags, nums := map[int64]bool{}, map[int64]int64{}
	var secs []Section
	var wantFlags map[int64]bool
	var wantNums map[int64]int64
	for op := range 100_000 {
		k := int64(r.IntN(20_000)) - 10_000
		kg, h := kgOf(k), kc.Hash(k)
		switch r.IntN(6) {
		case 0:
			flag.DeleteHashed(kg, h, k)
			delete(flags, k)
		case 1:
			num.DeleteHashed(kg, h, k)
			delete(nums, k)
		case 2, 3:
			v := r.IntN(2) == 0
			flag.PutHashed(kg, h, k, v)
			flags[k] = v
		default:
			num.PutHashed(kg, h, k, int64(op)-50_000)
			nums[k] = int64(op) - 50_000
		}
		if v, ok := flag.GetHashed(kg, h, k); ok != hasKey(flags, k) || v != flags[k] {
			t.Fatalf("op %d: flag of %d = %v %v, want %v", op, k, v, ok, flags[k])
		}
		if v, ok := num.Get(kg, k); ok != hasKey(nums, k) || v != nums[k] {
			t.Fatalf("op %d: num of %d = %v %v, want %v", op, k, v, ok, nums[k])
		}
		if op == 60_000 {
			secs, wantFlags, wantNums = b.Snapshot(), maps.Clone(flags), maps.Clone(nums)
		} else if op%7_000 == 0 {
			b.Snapshot()
		}
	}
	entries, err := EntriesOf(b, Codec[int64](kc))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for kg := range groups {
		n += entries.Len(kg)
	}
	union := maps.Clone(nums)
	for k := range flags {
		union[k] = 0
	}
	if n != len(union) {
		t.Fatalf("%d entries, want %d (keys with a flag or a number)", n, len(union))
	}

	data := writeSnapshot(t, secs, all)
	restore := func(r KeyGroupRange, files ...[]byte) *Backend {
		t.Helper()
		nb := NewBackend(r)
		for i, d := range files {
			f, _ := openMem(t, "f"+strconv.Itoa(i), d)
			ks, err := f.ReadKeyGroups(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			if err := nb.Restore(ks); err != nil {
				t.Fatal(err)
			}
		}
		return nb
	}
	check := func(name string, r KeyGroupRange, nb *Backend) int {
		t.Helper()
		f, ok, err := NewWordTable[int64, bool](nb, "flag", kc, boolCodec{})
		if err != nil || !ok {
			t.Fatalf("%s: flag: %v %v", name, ok, err)
		}
		nt, ok, err := NewWordTable[int64, int64](nb, "num", kc, int64Codec{})
		if err != nil || !ok {
			t.Fatalf("%s: num: %v %v", name, ok, err)
		}
		count := 0
		for k, v := range wantFlags {
			if r.Contains(kgOf(k)) {
				count++
				if got, ok := f.GetHashed(kgOf(k), kc.Hash(k), k); !ok || got != v {
					t.Fatalf("%s: flag of %d = %v %v, want %v", name, k, got, ok, v)
				}
			}
		}
		nn := 0
		for k, v := range wantNums {
			if r.Contains(kgOf(k)) {
				nn++
				if got, ok := nt.GetHashed(kgOf(k), kc.Hash(k), k); !ok || got != v {
					t.Fatalf("%s: num of %d = %v %v, want %v", name, k, got, ok, v)
				}
			}
		}
		keys, nkeys := 0, 0
		for kg := r.First; kg <= r.Last; kg++ {
			keys += f.KeysInGroup(kg)
			nkeys += nt.KeysInGroup(kg)
		}
		if keys != count || nkeys != nn {
			t.Fatalf("%s: %d flags and %d numbers, want %d and %d", name, keys, nkeys, count, nn)
		}
		return count
	}
	check("whole", all, restore(all, data))

	// The same file read as plain value tables.
	vb := restore(all, data)
	vt, err := NewValueTable[int64, int64](vb, "num", kc, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range wantNums {
		if got, ok := vt.Get(kgOf(k), k); !ok || got != v {
			t.Fatalf("as a value table: num of %d = %v %v, want %v", k, got, ok, v)
		}
	}

	var parts [][]byte
	total := 0
	for i := range 3 {
		r := KeyGroupRange{First: i * groups / 3, Last: (i+1)*groups/3 - 1}
		pb := restore(r, data)
		total += check("subtask "+strconv.Itoa(i), r, pb)
		parts = append(parts, writeSnapshot(t, pb.Snapshot(), r))
	}
	if total != len(wantFlags) {
		t.Fatalf("the three subtasks hold %d flags, want %d", total, len(wantFlags))
	}
	check("merged", all, restore(all, parts...))
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}

// TestWordTableSteadyStateAllocs: writing and clearing word states of
// existing keys allocates nothing, snapshots in between aside.
func TestWordTableSteadyStateAllocs(t *testing.T) {
	b := NewBackend(KeyGroupRange{First: 0, Last: 7})
	kc := hashedInt64Codec{}
	flag, _, _ := NewWordTable[int64, bool](b, "flag", kc, boolCodec{})
	num, _, _ := NewWordTable[int64, int64](b, "num", kc, int64Codec{})
	for k := range int64(4096) {
		flag.Put(int(k%8), k, true)
	}
	i := int64(0)
	allocs := testing.AllocsPerRun(50, func() {
		for range 1000 {
			k := (i * 7919) % 4096
			i++
			kg, h := int(k%8), kc.Hash(k)
			flag.DeleteHashed(kg, h, k)
			num.PutHashed(kg, h, k, i)
			num.DeleteHashed(kg, h, k)
			flag.PutHashed(kg, h, k, true)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per 1000 records, want 0", allocs)
	}
}

// TestEntriesViewSharedPerRound: the sections of one Backend.Snapshot
// share one view of the entries, which walks a key group once for all of
// them, in whatever order they are read; the next round takes a new view.
func TestEntriesViewSharedPerRound(t *testing.T) {
	r := KeyGroupRange{First: 0, Last: 7}
	b := NewBackend(r)
	kc := hashedInt64Codec{}
	flag, _, _ := NewWordTable[int64, bool](b, "flag", kc, boolCodec{})
	num, _, _ := NewWordTable[int64, int64](b, "num", kc, int64Codec{})
	for k := range int64(2000) {
		if k%3 != 0 {
			flag.Put(int(k%8), k, k%2 == 0)
		}
		if k%5 != 0 {
			num.Put(int(k%8), k, -k)
		}
	}
	secs := b.Snapshot()
	e, _ := EntriesOf(b, Codec[int64](kc))
	if e.Snapshot() != secs[0].(*wordSection[int64, bool]).view || secs[0].(*wordSection[int64, bool]).view != secs[1].(*wordSection[int64, int64]).view {
		t.Fatal("one round's sections do not share the entries' view")
	}
	// Key group order, section inner (as a state file), and section
	// order, key group inner, give the same bytes.
	want := map[[2]int]string{}
	for kg := range 8 {
		for i, s := range secs {
			d, n := s.AppendGroup(nil, kg)
			want[[2]int{i, kg}] = fmt.Sprint(n, d)
		}
	}
	for i, s := range secs {
		for kg := range 8 {
			d, n := s.AppendGroup(nil, kg)
			if got := fmt.Sprint(n, d); got != want[[2]int{i, kg}] {
				t.Fatalf("section %d key group %d read in another order differs", i, kg)
			}
		}
	}
	next := b.Snapshot()
	if next[0].(*wordSection[int64, bool]).view == secs[0].(*wordSection[int64, bool]).view {
		t.Fatal("the next round reuses the previous view")
	}
	flag.Put(0, 8, true)
	if e.Snapshot() == next[0].(*wordSection[int64, bool]).view {
		t.Fatal("a view is reused after a write")
	}
}

// TestEntryCacheAcrossSnapshots: the entry table keeps a pointer to the
// entry last found, which a record's accesses reuse. Runs of writes to one
// key with snapshots in between must copy the entry's page rather than
// write through the pointer into a snapshot's page, and a write to the
// cached key after a snapshot must count as a change. Every snapshot, read
// at the end, holds its own moment's values.
func TestEntryCacheAcrossSnapshots(t *testing.T) {
	const groups = 4
	b := NewBackend(KeyGroupRange{First: 0, Last: groups - 1})
	kc := hashedInt64Codec{}
	num, _, _ := NewWordTable[int64, int64](b, "num", kc, int64Codec{})
	e, _ := EntriesOf(b, Codec[int64](kc))
	r := rand.New(rand.NewPCG(7, 8))
	model := map[int64]int64{}
	type snap struct {
		view EntriesView[int64]
		want map[int64]int64
	}
	var snaps []snap
	k := int64(0)
	for op := range 20_000 {
		if r.IntN(3) == 0 { // runs of accesses to one key, as a record makes
			k = int64(r.IntN(200))
		}
		kg, h := int(k%groups), kc.Hash(k)
		if r.IntN(4) == 0 {
			num.DeleteHashed(kg, h, k)
			delete(model, k)
		} else {
			num.PutHashed(kg, h, k, int64(op))
			model[k] = int64(op)
		}
		if v, ok := num.GetHashed(kg, h, k); ok != hasKey(model, k) || v != model[k] {
			t.Fatalf("op %d: key %d = %d %v, want %d", op, k, v, ok, model[k])
		}
		if r.IntN(50) == 0 {
			before := e.Snapshot()
			if again := e.Snapshot(); again != before {
				t.Fatalf("op %d: a second snapshot without a write is a new view", op)
			}
			snaps = append(snaps, snap{before, maps.Clone(model)})
			num.PutHashed(kg, h, k, -1) // the cached key, right after the snapshot
			if e.Snapshot() == before {
				t.Fatalf("op %d: a write to the cached key after a snapshot is not a change", op)
			}
			num.PutHashed(kg, h, k, model[k])
			if !hasKey(model, k) {
				num.DeleteHashed(kg, h, k)
			}
		}
	}
	for i, s := range snaps {
		got := map[int64]int64{}
		for kg := range groups {
			s.view.Each(kg, func(k int64, en *Entry) {
				if en.has(0) {
					got[k] = fromWord[int64](&en.words[0])
				}
			})
		}
		if !maps.Equal(got, s.want) {
			t.Fatalf("snapshot %d: %d keys, want %d, or values differ", i, len(got), len(s.want))
		}
	}
}
