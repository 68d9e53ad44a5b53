package pebblestate

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// BenchmarkCheckpoint10MKeys1PctChanged is issue 16's checkpoint benchmark
// on pebble: 10 M keys (int64 -> int64) at 128 key groups, 1 % of them
// written at random between checkpoints, stored to a directory storage
// both ways a pebble job can checkpoint:
//
//   - full: the common state file, from a Pebble snapshot (what
//     --incremental=false and every savepoint write);
//   - incremental: a native checkpoint (a flush and a Pebble checkpoint
//     in the synchronous part) uploading only the SSTs the previous one
//     did not, streamed from disk, over several intervals.
//
// Metrics: full-bytes and full-s (the file and its encoding plus upload);
// incr-bytes (the mean bytes an incremental checkpoint uploads) and
// incr-pct-of-full (against full-bytes); incr-sync-ms-max (the longest
// synchronous part); incr-upload-s (the mean upload); full-alloc-MB and
// incr-alloc-MB-max (bytes allocated while writing and uploading: the
// full file is built in memory, SSTs stream).
func BenchmarkCheckpoint10MKeys1PctChanged(b *testing.B) {
	if testing.Short() {
		b.Skip("10 M keys")
	}
	const keys, groups, intervals = 10_000_000, 128, 8
	ctx := context.Background()
	r := statebackend.KeyGroupRange{First: 0, Last: groups - 1}
	for range b.N {
		dir := b.TempDir()
		s, err := Open(Options{Dir: filepath.Join(dir, "db"), KeyGroups: r})
		if err != nil {
			b.Fatal(err)
		}
		t, err := NewValueTable[int64, int64](s, "v", i64{}, i64{})
		if err != nil {
			b.Fatal(err)
		}
		for k := range int64(keys) {
			t.Put(int(k%groups), k, k)
		}
		st, err := storage.Open(filepath.Join(dir, "store"), storage.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var ms runtime.MemStats
		allocated := func() uint64 {
			runtime.ReadMemStats(&ms)
			return ms.TotalAlloc
		}
		uploaded := map[string]bool{}
		native := func(id int64) (bytes int64, sync, async time.Duration, alloc uint64) {
			start := time.Now()
			cp, err := s.Checkpoint(id)
			if err != nil {
				b.Fatal(err)
			}
			sync = time.Since(start)
			defer cp.Release()
			a0 := allocated()
			live := map[string]bool{}
			for _, f := range files(b, cp) {
				if Shared(f) {
					live[f] = true
					if uploaded[f] {
						continue
					}
				}
				n, err := storage.PutFile(ctx, st, filepath.ToSlash(filepath.Join("chk", f)), filepath.Join(cp.Dir(), f))
				if err != nil {
					b.Fatal(err)
				}
				bytes += n
			}
			uploaded = live
			return bytes, sync, time.Since(start) - sync, allocated() - a0
		}
		rng := rand.New(rand.NewPCG(1, 2))
		touch := func() {
			for range keys / 100 {
				k := rng.Int64N(keys)
				t.Put(int(k%groups), k, rng.Int64())
			}
		}
		first, _, _, _ := native(1)
		var incr int64
		var syncMax, upload time.Duration
		var allocMax uint64
		for i := range int64(intervals) {
			touch()
			n, sync, async, alloc := native(2 + i)
			b.Logf("interval %d: uploaded %d bytes, sync %v, upload %v, allocated %d", i, n, sync, async, alloc)
			incr += n
			syncMax, upload, allocMax = max(syncMax, sync), upload+async, max(allocMax, alloc)
		}
		touch()
		a0 := allocated()
		start := time.Now()
		secs, err := s.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		data, err := statebackend.WriteStateFile(r, secs, nil)
		for _, sec := range secs {
			sec.(*section).Release()
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Put(ctx, "full.state", data); err != nil {
			b.Fatal(err)
		}
		fullTime, fullAlloc := time.Since(start), allocated()-a0
		full := int64(len(data))
		data = nil
		b.Logf("first native checkpoint %d bytes; full state file %d bytes in %v", first, full, fullTime)
		b.ReportMetric(float64(full), "full-bytes")
		b.ReportMetric(fullTime.Seconds(), "full-s")
		b.ReportMetric(float64(fullAlloc)/(1<<20), "full-alloc-MB")
		b.ReportMetric(float64(first), "native-first-bytes")
		b.ReportMetric(float64(incr)/intervals, "incr-bytes")
		b.ReportMetric(100*float64(incr)/intervals/float64(full), "incr-pct-of-full")
		b.ReportMetric(float64(syncMax.Microseconds())/1000, "incr-sync-ms-max")
		b.ReportMetric(upload.Seconds()/intervals, "incr-upload-s")
		b.ReportMetric(float64(allocMax)/(1<<20), "incr-alloc-MB-max")
		s.Close()
	}
}
