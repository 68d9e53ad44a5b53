package pebblestate

import (
	"context"
	"math/rand/v2"
	"os"
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
//   - incremental: a native checkpoint (write-back, flush and Pebble
//     checkpoint in its asynchronous part, while the task writes the
//     next half interval's keys) uploading only the SSTs the previous
//     one did not, streamed from disk, over several intervals.
//
// Metrics: full-bytes and full-s (the file and its encoding plus upload);
// incr-bytes (the mean bytes an incremental checkpoint uploads) and
// incr-pct-of-full (against full-bytes); incr-sync-ms-max and
// incr-sync-ms-mean (the synchronous part: the task's stall at the
// barrier), incr-prep-s (the mean asynchronous write-back, memtable flush
// and Pebble checkpoint), incr-upload-s (the mean upload after it),
// settle-ms-max (the longest time the task spent ending a barrier's
// asynchronous part: waiting for it if it had to, and committing the
// writes held back meanwhile), full-sync-ms (the full snapshot's
// synchronous part); full-alloc-MB and
// incr-alloc-MB-max (bytes allocated while writing and uploading: the
// full file is built in memory, SSTs stream; the incremental figure
// includes the task's writes meanwhile, which fill a fresh value cache).
func BenchmarkCheckpoint10MKeys1PctChanged(b *testing.B) {
	if testing.Short() {
		b.Skip("10 M keys")
	}
	const keys, groups, intervals = 10_000_000, 128, 8
	ctx := context.Background()
	r := statebackend.KeyGroupRange{First: 0, Last: groups - 1}
	for range b.N {
		dir := b.TempDir()
		s, t, st := openBenchStore(b, dir, r, keys, nil)
		var ms runtime.MemStats
		allocated := func() uint64 {
			runtime.ReadMemStats(&ms)
			return ms.TotalAlloc
		}
		up := &benchUploader{b: b, s: s, st: st, uploaded: map[string]bool{}}
		// native takes checkpoint id and uploads it while during runs (see
		// benchUploader), with the bytes allocated meanwhile.
		native := func(id int64, during func()) (bytes int64, sync, prep, upload time.Duration, alloc uint64) {
			a0 := allocated()
			bytes, sync, prep, upload = up.take(ctx, id, during)
			return bytes, sync, prep, upload, allocated() - a0
		}
		rng := rand.New(rand.NewPCG(1, 2))
		// touch writes n random keys, 1 % of the keys in all.
		touch := func(n int) {
			for range n {
				k := rng.Int64N(keys)
				t.Put(int(k%groups), k, rng.Int64())
			}
		}
		first, _, _, _, _ := native(1, func() {})
		var incr int64
		var syncMax, syncSum, prepSum, upload time.Duration
		var allocMax uint64
		for i := range int64(intervals) {
			// Half of an interval's writes come before the barrier, half
			// while its asynchronous part runs.
			touch(keys / 200)
			n, sync, prep, async, alloc := native(2+i, func() { touch(keys / 200) })
			b.Logf("interval %d: uploaded %d bytes, sync %v, write-back and Pebble checkpoint %v, upload %v, allocated %d", i, n, sync, prep, async, alloc)
			incr += n
			syncMax, syncSum, prepSum, upload, allocMax = max(syncMax, sync), syncSum+sync, prepSum+prep, upload+async, max(allocMax, alloc)
		}
		b.Logf("the task ended %d write-backs, waited for %d, at most %v (waiting and committing the writes held back)", s.settles.n, s.settles.waited, s.settles.max)
		touch(keys / 100)
		a0 := allocated()
		start := time.Now()
		secs, err := s.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		fullSync := time.Since(start)
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
		b.Logf("first native checkpoint %d bytes; full state file %d bytes in %v (sync %v)", first, full, fullTime, fullSync)
		b.ReportMetric(float64(full), "full-bytes")
		b.ReportMetric(fullTime.Seconds(), "full-s")
		b.ReportMetric(float64(fullAlloc)/(1<<20), "full-alloc-MB")
		b.ReportMetric(float64(first), "native-first-bytes")
		b.ReportMetric(float64(incr)/intervals, "incr-bytes")
		b.ReportMetric(100*float64(incr)/intervals/float64(full), "incr-pct-of-full")
		b.ReportMetric(float64(syncMax.Microseconds())/1000, "incr-sync-ms-max")
		b.ReportMetric(float64(syncSum.Microseconds())/1000/intervals, "incr-sync-ms-mean")
		b.ReportMetric(prepSum.Seconds()/intervals, "incr-prep-s")
		b.ReportMetric(float64(fullSync.Microseconds())/1000, "full-sync-ms")
		b.ReportMetric(float64(s.settles.max.Microseconds())/1000, "settle-ms-max")
		b.ReportMetric(upload.Seconds()/intervals, "incr-upload-s")
		b.ReportMetric(float64(allocMax)/(1<<20), "incr-alloc-MB-max")
		s.Close()
	}
}

// BenchmarkChangelogCheckpoint10MKeys1PctChanged is the benchmark above
// with changelog checkpoints (Options.Changelog at its defaults): 10 M
// keys, 1 % of them written at random per interval, over enough
// intervals for several materializations. A checkpoint's asynchronous
// part writes back and cuts the changelog segment; a materialization
// (flush, Pebble checkpoint, new SSTs) comes when the changelog since the
// last one passes DefaultMaterializeRatio of the store.
//
// Metrics: incr-bytes and incr-pct-of-full (the mean upload per
// checkpoint over all intervals, materializations amortised, against the
// full state file), cycle-pct-of-full (the same over the intervals up to
// the upload of the last materialization: whole cycles only),
// log-pct-of-full (the mean of the checkpoints that upload segments
// only), incr-pct-max (the largest single upload), materializations, incr-sync-ms-max (the task's stall at the barrier),
// incr-prep-ms (the mean time until a checkpoint's files are listed: the
// write-back and the segment's cut), settle-ms-max (as above), and
// restore-s with replay-MB (opening the last checkpoint, whose changelog
// is the longest of its materialization, into a new store: the
// materialization's files are moved in and the segments replayed).
func BenchmarkChangelogCheckpoint10MKeys1PctChanged(b *testing.B) {
	if testing.Short() {
		b.Skip("10 M keys")
	}
	const keys, groups, intervals = 10_000_000, 128, 160
	ctx := context.Background()
	r := statebackend.KeyGroupRange{First: 0, Last: groups - 1}
	for range b.N {
		dir := b.TempDir()
		s, t, st := openBenchStore(b, dir, r, keys, &ChangelogOptions{})
		up := &benchUploader{b: b, s: s, st: st, uploaded: map[string]bool{}}
		checkpoint := func(id int64, during func()) (bytes int64, sync, prep time.Duration) {
			bytes, sync, prep, _ = up.take(ctx, id, during)
			return bytes, sync, prep
		}
		rng := rand.New(rand.NewPCG(1, 2))
		touch := func(n int) {
			for range n {
				k := rng.Int64N(keys)
				t.Put(int(k%groups), k, rng.Int64())
			}
		}
		first, _, _ := checkpoint(1, func() {})
		var incr, incrMax, logBytes, cycleBytes int64
		var logN, cycleN int
		uploadAt := int64(-1)
		var syncMax, prepSum time.Duration
		var perInterval []int64
		mats := s.cl.materializations
		for i := range int64(intervals) {
			touch(keys / 200)
			n, sync, prep := checkpoint(2+i, func() { touch(keys / 200) })
			perInterval = append(perInterval, n)
			incr += n
			incrMax = max(incrMax, n)
			syncMax, prepSum = max(syncMax, sync), prepSum+prep
			switch {
			case s.cl.materializations > mats:
				// The next checkpoint uploads the materialization: the
				// complete cycles end there.
				mats = s.cl.materializations
				uploadAt = i + 1
			case i == uploadAt:
				cycleN, cycleBytes = int(i)+1, incr
			default:
				logBytes += n
				logN++
			}
		}
		b.Logf("uploads per interval: %v", perInterval)
		mats = s.cl.materializations - 1 // the first checkpoint's
		// The full state file, for the percentages.
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
		full := int64(len(data))
		data = nil
		// Restore the last checkpoint from the uploaded files.
		restoreDir := filepath.Join(dir, "restore")
		if err := os.MkdirAll(restoreDir, 0o755); err != nil {
			b.Fatal(err)
		}
		var replayBytes int64
		for _, f := range up.last {
			src := filepath.Join(dir, "store", "chk", f)
			if err := os.Link(src, filepath.Join(restoreDir, f)); err != nil {
				b.Fatal(err)
			}
			if isSegment(f) {
				info, err := os.Stat(src)
				if err != nil {
					b.Fatal(err)
				}
				replayBytes += info.Size()
			}
		}
		settles := s.settles
		s.Close()
		start := time.Now()
		rs, err := Open(Options{Dir: filepath.Join(dir, "db2"), KeyGroups: r, Changelog: &ChangelogOptions{}})
		if err != nil {
			b.Fatal(err)
		}
		if err := rs.RestoreNative([]NativeState{{Dir: restoreDir, KeyGroups: r}}); err != nil {
			b.Fatal(err)
		}
		restore := time.Since(start)
		rs.Close()
		b.Logf("first checkpoint %d bytes; full state file %d bytes; %d materializations in %d intervals; restore of the last checkpoint %v replaying %d bytes",
			first, full, mats, intervals, restore, replayBytes)
		b.ReportMetric(float64(full), "full-bytes")
		b.ReportMetric(float64(incr)/intervals, "incr-bytes")
		b.ReportMetric(100*float64(incr)/intervals/float64(full), "incr-pct-of-full")
		b.ReportMetric(100*float64(incrMax)/float64(full), "incr-pct-max")
		b.ReportMetric(float64(mats), "materializations")
		if cycleN > 0 {
			b.ReportMetric(100*float64(cycleBytes)/float64(cycleN)/float64(full), "cycle-pct-of-full")
		}
		if logN > 0 {
			b.ReportMetric(100*float64(logBytes)/float64(logN)/float64(full), "log-pct-of-full")
		}
		b.ReportMetric(float64(syncMax.Microseconds())/1000, "incr-sync-ms-max")
		b.ReportMetric(float64(prepSum.Microseconds())/1000/intervals, "incr-prep-ms")
		b.ReportMetric(float64(settles.max.Microseconds())/1000, "settle-ms-max")
		b.ReportMetric(restore.Seconds(), "restore-s")
		b.ReportMetric(float64(replayBytes)/(1<<20), "replay-MB")
	}
}

// openBenchStore opens a store in dir/db with one int64 value state
// holding keys keys spread over r, and a checkpoint storage in dir/store.
func openBenchStore(b *testing.B, dir string, r statebackend.KeyGroupRange, keys int64, cl *ChangelogOptions) (*Store, *ValueTable[int64, int64], storage.Storage) {
	s, err := Open(Options{Dir: filepath.Join(dir, "db"), KeyGroups: r, Changelog: cl})
	if err != nil {
		b.Fatal(err)
	}
	t, err := NewValueTable[int64, int64](s, "v", i64{}, i64{})
	if err != nil {
		b.Fatal(err)
	}
	groups := int64(r.Last - r.First + 1)
	for k := range keys {
		t.Put(int(r.First)+int(k%groups), k, k)
	}
	st, err := storage.Open(filepath.Join(dir, "store"), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s, t, st
}

// benchUploader takes a store's native checkpoints and uploads each to st
// as the task's upload goroutine would: the shared files the previous
// checkpoint did not upload, and the checkpoint's own files.
type benchUploader struct {
	b  *testing.B
	s  *Store
	st storage.Storage
	// uploaded are the shared files of the latest checkpoint; last its
	// file names.
	uploaded map[string]bool
	last     []string
}

// take takes checkpoint id and uploads it on another goroutine while
// during runs, as the task goes on processing records meanwhile. sync is
// the synchronous part, prep the time until the checkpoint's files exist
// (the barrier's write-back, and the flush and Pebble checkpoint or the
// changelog cut), upload the time after.
func (u *benchUploader) take(ctx context.Context, id int64, during func()) (bytes int64, sync, prep, upload time.Duration) {
	start := time.Now()
	cp, err := u.s.Checkpoint(id)
	if err != nil {
		u.b.Fatal(err)
	}
	sync = time.Since(start)
	defer cp.Release()
	var uerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		names, err := cp.Files(ctx)
		if err != nil {
			uerr = err
			return
		}
		prep = time.Since(start) - sync
		live := map[string]bool{}
		for _, f := range names {
			if Shared(f) {
				live[f] = true
				if u.uploaded[f] {
					continue
				}
			}
			n, err := storage.PutFile(ctx, u.st, filepath.ToSlash(filepath.Join("chk", f)), filepath.Join(cp.Dir(), f))
			if err != nil {
				uerr = err
				return
			}
			bytes += n
		}
		u.uploaded, u.last = live, names
		upload = time.Since(start) - sync - prep
	}()
	during()
	<-done
	if uerr != nil {
		u.b.Fatal(uerr)
	}
	return bytes, sync, prep, upload
}
