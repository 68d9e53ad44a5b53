package statebackend

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The checkpoint benchmark of issue 16: 10 M keys, of which 1 % change
// between two checkpoints, written in full and as a delta, at the shipped
// jobs' 128 key groups and at the most a job can have. ns/op is the
// asynchronous part (encoding the file; an upload carries the same
// bytes), file-bytes its size, pct-of-full the delta's size against the
// full file of the same state.
const checkpointBenchKeys = 10_000_000

// touchOnePercent changes 1 % of the keys, at random, as an interval of a
// job would.
func touchOnePercent(t *ValueTable[int64, int64], groups int, rng *rand.Rand) {
	for range checkpointBenchKeys / 100 {
		k := rng.Int64N(checkpointBenchKeys)
		t.Put(int(k%int64(groups)), k, rng.Int64())
	}
}

func BenchmarkCheckpoint10MKeys1PctChanged(b *testing.B) {
	if testing.Short() {
		b.Skip("10 M keys")
	}
	for _, groups := range []int{128, MaxKeyGroups} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) { benchCheckpoint(b, groups) })
	}
}

func benchCheckpoint(b *testing.B, groups int) {
	r := KeyGroupRange{First: 0, Last: groups - 1}
	be := NewBackend(r)
	t, err := NewValueTable[int64, int64](be, "v", int64Codec{}, int64Codec{})
	if err != nil {
		b.Fatal(err)
	}
	for k := range int64(checkpointBenchKeys) {
		t.Put(int(k%int64(groups)), k, k)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var full int
	b.Run("full", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			touchOnePercent(t, groups, rng)
			cur := be.Snapshot()
			b.StartTimer()
			data, err := WriteStateFile(r, cur, nil)
			if err != nil {
				b.Fatal(err)
			}
			full = len(data)
		}
		b.ReportMetric(float64(full), "file-bytes")
	})
	b.Run("incremental", func(b *testing.B) {
		prev := be.Snapshot()
		var n int
		for range b.N {
			b.StopTimer()
			touchOnePercent(t, groups, rng)
			cur := be.Snapshot()
			b.StartTimer()
			data, err := WriteDeltaFile(r, prev, cur, nil)
			if err != nil {
				b.Fatal(err)
			}
			n, prev = len(data), cur
		}
		b.ReportMetric(float64(n), "file-bytes")
		if full > 0 {
			b.ReportMetric(100*float64(n)/float64(full), "pct-of-full")
		}
	})
}
