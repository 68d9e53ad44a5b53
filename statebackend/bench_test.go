package statebackend

import (
	"fmt"
	"testing"
	"time"
)

const benchKeys = 1 << 20

// benchTable is a value table of benchKeys int64 keys spread over the key
// groups of r.
func benchTable(b *testing.B, r KeyGroupRange) (*Backend, *ValueTable[int64, int64]) {
	be := NewBackend(r)
	t, err := NewValueTable[int64, int64](be, "v", int64Codec{}, int64Codec{})
	if err != nil {
		b.Fatal(err)
	}
	for k := range int64(benchKeys) {
		t.Put(r.First+int(k)%r.Len(), k, k)
	}
	return be, t
}

var benchRange = KeyGroupRange{First: 0, Last: 127}

// BenchmarkValuePut overwrites existing keys: the steady state of a task.
func BenchmarkValuePut(b *testing.B) {
	_, t := benchTable(b, benchRange)
	n := benchRange.Len()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := int64(i & (benchKeys - 1))
		t.Put(int(k)%n, k, int64(i))
	}
}

// BenchmarkSnapshotSync is the synchronous part of a checkpoint of 1M
// keys: O(key groups), independent of the number of keys.
func BenchmarkSnapshotSync(b *testing.B) {
	for _, r := range []KeyGroupRange{benchRange, {First: 0, Last: MaxKeyGroups - 1}} {
		b.Run(fmt.Sprintf("groups=%d", r.Len()), func(b *testing.B) {
			be, _ := benchTable(b, r)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				be.Snapshot()
			}
		})
	}
}

// BenchmarkWriteStateFile serialises a snapshot of 1M keys.
func BenchmarkWriteStateFile(b *testing.B) {
	be, _ := benchTable(b, benchRange)
	sections := be.Snapshot()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		data, err := WriteStateFile(benchRange, sections, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
	}
}

// BenchmarkThawGroup is the copy-on-write cost a snapshot defers: the
// first write to a frozen key group clones it (here 8192 entries).
func BenchmarkThawGroup(b *testing.B) {
	be, t := benchTable(b, benchRange)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		be.Snapshot()
		t.Put(0, 0, int64(i))
	}
}

// BenchmarkMapSnapshotThenWrite is the synchronous stall a checkpoint
// causes with large map state: a snapshot, then the first write to one
// key. 100 k keys of 10 entries each (1 M map entries) over 128 key
// groups; the write copies one page of slots and that key's map.
func BenchmarkMapSnapshotThenWrite(b *testing.B) {
	be := NewBackend(benchRange)
	mt, err := NewMapTable[int64, int64, int64](be, "m", int64Codec{}, int64Codec{}, int64Codec{})
	if err != nil {
		b.Fatal(err)
	}
	const keys = 100_000
	for k := range int64(keys) {
		for uk := range int64(10) {
			mt.Put(int(k%128), k, uk, uk)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		be.Snapshot()
		k := int64(i*7919) % keys
		mt.Put(int(k%128), k, 0, int64(i))
	}
}

// BenchmarkWriteAfterSnapshot is the copy-on-write side of checkpoints on
// an entry table of 1 M and 10 M int64 keys in 128 key groups: each
// iteration snapshots the table, keeps the last two snapshots (as an
// incremental checkpoint's base and the one being uploaded), and writes
// 1 % of the keys, at random, each timed: write-mean-ns is their mean and
// write-max-ms the longest, a write that copied a page or moved a slab's
// live pages (see pageAlloc). slab-MiB is the slab memory the table pins.
func BenchmarkWriteAfterSnapshot(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			be := NewBackend(benchRange)
			e, err := EntriesOf(be, int64Codec{})
			if err != nil {
				b.Fatal(err)
			}
			w, _, err := NewWordTable[int64, int64](be, "w", int64Codec{}, int64Codec{})
			if err != nil {
				b.Fatal(err)
			}
			groups := benchRange.Len()
			for k := range int64(n) {
				w.PutHashed(int(k)%groups, e.Hash(k), k, k)
			}
			var kept [2][]Section
			var total, longest time.Duration
			writes := 0
			x := uint64(1)
			for b.Loop() {
				kept[0], kept[1] = kept[1], be.Snapshot()
				for range n / 100 {
					x ^= x << 13
					x ^= x >> 7
					x ^= x << 17
					k := int64(x % uint64(n))
					start := time.Now()
					w.PutHashed(int(k)%groups, e.Hash(k), k, int64(x))
					d := time.Since(start)
					total, longest = total+d, max(longest, d)
					writes++
				}
			}
			b.ReportMetric(float64(total)/float64(writes), "write-mean-ns")
			b.ReportMetric(float64(longest)/float64(time.Millisecond), "write-max-ms")
			if al := e.gs[0].al; al != nil {
				b.ReportMetric(float64(al.pinned*slotSize[int64, Entry]())/(1<<20), "slab-MiB")
			}
		})
	}
}
