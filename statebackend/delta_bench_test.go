package statebackend

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// The checkpoint benchmark of issue 16: 10 M keys, of which 1 % change
// between two checkpoints, written in full and as a delta. ns/op is the
// asynchronous part (encoding the file; the upload is the same bytes
// over the wire), file-bytes its size, pct-of-full the delta's size
// against the full file of the same state.
const (
	checkpointBenchKeys   = 10_000_000
	checkpointBenchGroups = 128 // the shipped jobs' maxParallelism
)

var checkpointBench struct {
	once sync.Once
	b    *Backend
	t    *ValueTable[int64, int64]
	rng  *rand.Rand
	full int // bytes of the last full file
}

func checkpointBenchTable(b *testing.B) *ValueTable[int64, int64] {
	cb := &checkpointBench
	cb.once.Do(func() {
		cb.b = NewBackend(KeyGroupRange{First: 0, Last: checkpointBenchGroups - 1})
		var err error
		if cb.t, err = NewValueTable[int64, int64](cb.b, "v", int64Codec{}, int64Codec{}); err != nil {
			b.Fatal(err)
		}
		for k := range int64(checkpointBenchKeys) {
			cb.t.Put(int(k%checkpointBenchGroups), k, k)
		}
		cb.rng = rand.New(rand.NewPCG(1, 2))
	})
	return cb.t
}

// touch changes 1 % of the keys, at random, as an interval of a job would.
func touchOnePercent(t *ValueTable[int64, int64], rng *rand.Rand) {
	for range checkpointBenchKeys / 100 {
		k := rng.Int64N(checkpointBenchKeys)
		t.Put(int(k%checkpointBenchGroups), k, rng.Int64())
	}
}

func BenchmarkCheckpoint10MKeys1PctChanged(b *testing.B) {
	if testing.Short() {
		b.Skip("10 M keys")
	}
	t := checkpointBenchTable(b)
	cb := &checkpointBench
	r := cb.b.KeyGroups()
	b.Run("full", func(b *testing.B) {
		var n int
		for range b.N {
			b.StopTimer()
			touchOnePercent(t, cb.rng)
			cur := cb.b.Snapshot()
			b.StartTimer()
			data, err := WriteStateFile(r, cur, nil)
			if err != nil {
				b.Fatal(err)
			}
			n = len(data)
		}
		cb.full = n
		b.ReportMetric(float64(n), "file-bytes")
	})
	b.Run("incremental", func(b *testing.B) {
		prev := cb.b.Snapshot()
		var n int
		for range b.N {
			b.StopTimer()
			touchOnePercent(t, cb.rng)
			cur := cb.b.Snapshot()
			b.StartTimer()
			data, err := WriteDeltaFile(r, prev, cur, nil)
			if err != nil {
				b.Fatal(err)
			}
			n, prev = len(data), cur
		}
		b.ReportMetric(float64(n), "file-bytes")
		if cb.full > 0 {
			b.ReportMetric(100*float64(n)/float64(cb.full), "pct-of-full")
		}
	})
}
