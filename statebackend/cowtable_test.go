package statebackend

import (
	"context"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
)

// viewMap collects a view's entries, failing on a duplicate key.
func viewMap[K comparable, V any](t *testing.T, v cowView[K, V]) map[K]V {
	t.Helper()
	m := map[K]V{}
	v.each(func(k K, x V) {
		if _, dup := m[k]; dup {
			t.Fatalf("key %v twice in a view", k)
		}
		m[k] = x
	})
	if len(m) != v.n {
		t.Fatalf("view has %d entries, says %d", len(m), v.n)
	}
	return m
}

// TestCOWTableDifferential runs random puts, deletes and gets against a
// cowTable and a Go map, taking snapshots along the way, and checks that
// reads agree and that every snapshot still holds exactly the map's state
// at the time it was taken. Hashes are drawn from few values in one run so
// that long probe runs, wrap-around and backward-shift deletes over
// colliding keys are exercised, and from the full range in the other.
func TestCOWTableDifferential(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keys   int
		hashes uint32
	}{{"colliding", 300, 7}, {"spread", 3000, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.keys)))
			hash := func(k int64) uint32 {
				h := uint32(k) * 2654435761
				if tc.hashes > 0 {
					h %= tc.hashes
				}
				return h
			}
			var tab cowTable[int64, int64]
			want := map[int64]int64{}
			type snap struct {
				v    cowView[int64, int64]
				want map[int64]int64
			}
			var snaps []snap
			for op := range 200_000 {
				k := int64(r.IntN(tc.keys))
				switch x := r.IntN(100); {
				case x < 45:
					tab.put(hash(k), k, int64(op))
					want[k] = int64(op)
				case x < 85:
					_, had := want[k]
					if got := tab.del(hash(k), k); got != had {
						t.Fatalf("op %d: del(%d) = %v, want %v", op, k, got, had)
					}
					delete(want, k)
				case x < 99:
					v, ok := tab.get(hash(k), k)
					wv, wok := want[k]
					if ok != wok || v != wv {
						t.Fatalf("op %d: get(%d) = %d %v, want %d %v", op, k, v, ok, wv, wok)
					}
				default:
					snaps = append(snaps, snap{tab.snapshot(), maps.Clone(want)})
				}
				if tab.n != len(want) {
					t.Fatalf("op %d: %d entries, want %d", op, tab.n, len(want))
				}
			}
			if got := viewMap(t, cowView[int64, int64]{pages: tab.pages, n: tab.n}); !maps.Equal(got, want) {
				t.Fatalf("final table differs from the map")
			}
			if len(snaps) < 100 {
				t.Fatalf("only %d snapshots", len(snaps))
			}
			for i, s := range snaps {
				if got := viewMap(t, s.v); !maps.Equal(got, s.want) {
					t.Fatalf("snapshot %d changed after it was taken: %d entries, want %d", i, len(got), len(s.want))
				}
			}
		})
	}
}

// TestValueTableSnapshotUnderWrites reads a 100k-key snapshot on other
// goroutines while the owner keeps rewriting and deleting every key (run
// with -race): the readers must see the state at the snapshot.
func TestValueTableSnapshotUnderWrites(t *testing.T) {
	r := KeyGroupRange{First: 0, Last: 15}
	b := NewBackend(r)
	tab, err := NewValueTable[int64, int64](b, "v", int64Codec{}, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	for k := range int64(n) {
		tab.Put(int(k)%r.Len(), k, k)
	}
	sec := b.Snapshot()[0]
	var wg sync.WaitGroup
	errs := make(chan error, r.Len())
	for kg := range r.Len() {
		wg.Go(func() {
			data, cnt := sec.AppendGroup(nil, kg)
			seen := 0
			for len(data) > 0 {
				kb, vb, rest, ok := nextEntry(data)
				if !ok {
					errs <- errBadInput
					return
				}
				k, _ := int64Codec{}.Decode(kb)
				v, _ := int64Codec{}.Decode(vb)
				if k != v || int(k)%r.Len() != kg {
					t.Errorf("group %d: entry %d=%d, want the value at the snapshot", kg, k, v)
				}
				seen++
				data = rest
			}
			if seen != cnt || cnt != n/r.Len() {
				t.Errorf("group %d: %d entries, count %d, want %d", kg, seen, cnt, n/r.Len())
			}
		})
	}
	for round := range int64(3) {
		for k := range int64(n) {
			if k%3 == round {
				tab.Delete(int(k)%r.Len(), k)
			} else {
				tab.Put(int(k)%r.Len(), k, -k-round)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := sec.(interface{ Keys() int64 }).Keys(); got != n {
		t.Fatalf("snapshot keys %d, want %d", got, n)
	}
}

// TestValueTableSteadyStateAllocs checks the per-record path of a table
// that has reached its size allocates nothing, snapshots included (a page
// copy after a snapshot allocates, but only once per page).
func TestValueTableSteadyStateAllocs(t *testing.T) {
	b := NewBackend(KeyGroupRange{First: 0, Last: 7})
	tab, err := NewValueTable[int64, int64](b, "v", int64Codec{}, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range int64(10_000) {
		tab.Put(int(k)%8, k, k)
	}
	i := int64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		for range 100 {
			k := i % 10_000
			i++
			tab.Delete(int(k)%8, k)
			tab.Put(int(k)%8, k, i)
			tab.Get(int(k)%8, k)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per 100 records, want 0", allocs)
	}
}

// hashedInt64Codec is an int64 key codec that, like the runtime's key
// types, knows the keys' hash (KeyHasher), so the table uses it.
type hashedInt64Codec struct{ int64Codec }

func (hashedInt64Codec) Hash(k int64) int32 { return int32(k ^ k>>32) }

// TestValueTableRestoreAndRescale churns a value table of 64 key groups
// with snapshots in between, then writes one snapshot's state file after
// further writes and restores it whole, split over three subtasks, and
// merged back from the three subtasks' own snapshots: every restore holds
// exactly the entries of its key groups at the snapshot, findable by the
// hashed path the runtime uses.
func TestValueTableRestoreAndRescale(t *testing.T) {
	const groups = 64
	all := KeyGroupRange{First: 0, Last: groups - 1}
	kc := hashedInt64Codec{}
	kgOf := func(k int64) int { return int(uint64(k)*0x9e3779b97f4a7c15>>40) % groups }
	b := NewBackend(all)
	tab, err := NewValueTable[int64, int64](b, "v", kc, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	model := map[int64]int64{}
	var sec Section
	var want map[int64]int64
	for op := range 100_000 {
		k := int64(r.IntN(20_000)) - 10_000
		if r.IntN(3) == 0 {
			tab.DeleteHashed(kgOf(k), kc.Hash(k), k)
			delete(model, k)
		} else {
			tab.PutHashed(kgOf(k), kc.Hash(k), k, int64(op))
			model[k] = int64(op)
		}
		if op == 60_000 {
			sec, want = b.Snapshot()[0], maps.Clone(model)
		} else if op%7_000 == 0 {
			b.Snapshot()
		}
	}
	data := writeSnapshot(t, []Section{sec}, all)
	restore := func(r KeyGroupRange, files ...[]byte) (*Backend, *ValueTable[int64, int64]) {
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
		nt, err := NewValueTable[int64, int64](nb, "v", kc, int64Codec{})
		if err != nil {
			t.Fatal(err)
		}
		return nb, nt
	}
	check := func(name string, r KeyGroupRange, nt *ValueTable[int64, int64]) int {
		t.Helper()
		n := 0
		for k, v := range want {
			if !r.Contains(kgOf(k)) {
				continue
			}
			n++
			if got, ok := nt.GetHashed(kgOf(k), kc.Hash(k), k); !ok || got != v {
				t.Fatalf("%s: key %d = %d %v, want %d", name, k, got, ok, v)
			}
		}
		keys := 0
		for kg := r.First; kg <= r.Last; kg++ {
			keys += nt.KeysInGroup(kg)
		}
		if keys != n {
			t.Fatalf("%s: %d keys, want %d", name, keys, n)
		}
		return n
	}
	_, whole := restore(all, data)
	check("whole", all, whole)
	var parts [][]byte
	total := 0
	for i := range 3 {
		r := KeyGroupRange{First: i * groups / 3, Last: (i+1)*groups/3 - 1}
		pb, pt := restore(r, data)
		total += check("subtask "+strconv.Itoa(i), r, pt)
		parts = append(parts, writeSnapshot(t, pb.Snapshot(), r))
	}
	if total != len(want) {
		t.Fatalf("the three subtasks hold %d keys, want %d", total, len(want))
	}
	_, merged := restore(all, parts...)
	check("merged", all, merged)
}
