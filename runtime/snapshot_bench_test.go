package runtime

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkSnapshotTimers measures a snapshot of a keyed operator's
// million timers and the upload's grouping of them by key group. The
// synchronous part alone (the processing stall) is O(1) in the timers
// and is timed apart, in stall-ns.
func BenchmarkSnapshotTimers(b *testing.B) {
	rc := NewRuntimeContext(ContextConfig{MaxParallelism: 128})
	oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: KeyGroupRange{First: 0, Last: 127}}
	op, _ := newProcessOperator[int64, int64, int64](oc, nil, Int64Key, func(v int64) int64 { return v }, discard[int64]{})
	for k := int64(0); k < 1_000_000; k++ {
		h := Int64Key.Hash(k)
		op.ctx.timers.add(timerEntry[int64]{timerKey: timerKey[int64]{ts: k, key: k}, kg: KeyGroupForHash(h, 128), hash: h})
	}
	var stall time.Duration
	for b.Loop() {
		start := time.Now()
		sections, _ := op.snapshot()
		stall += time.Since(start)
		sections[len(sections)-1].AppendGroup(nil, 0)
	}
	b.ReportMetric(float64(stall.Nanoseconds())/float64(b.N), "stall-ns")
}

// BenchmarkSnapshotStall is the fraud detector's state at 1 M and 10 M
// keys (a flag, a timer-state value and a processing-time timer per key)
// and its checkpoints: between two snapshots 1 % of the keys clear and
// set their state and move their timer, as the detector does per record;
// stall-mean-ms and stall-max-ms time the synchronous snapshot alone, the
// processing stall of a checkpoint.
func BenchmarkSnapshotStall(b *testing.B) {
	for _, n := range []int64{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			rc := NewRuntimeContext(ContextConfig{MaxParallelism: 128})
			oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: KeyGroupRange{First: 0, Last: 127}}
			op, _ := newProcessOperator[int64, int64, int64](oc, nil, Int64Key, func(v int64) int64 { return v }, discard[int64]{})
			flag, err := GetValueState(op.ctx, "flag", BoolCodec{})
			if err != nil {
				b.Fatal(err)
			}
			timer, err := GetValueState(op.ctx, "timer-state", Int64Codec{})
			if err != nil {
				b.Fatal(err)
			}
			const base = int64(1) << 40
			write := func(k, ts int64) {
				setBenchKey(op.ctx, k, 128)
				if old, ok := timer.Value(); ok {
					op.ctx.DeleteProcessingTimeTimer(old)
				}
				flag.Update(true)
				op.ctx.RegisterProcessingTimeTimer(ts)
				timer.Update(ts)
			}
			for k := range n {
				write(k, base+k)
			}
			// Each iteration is a checkpoint interval: the writes, the
			// snapshot and the upload's reading of every section (the
			// timers' grouping), so that b.Loop's iteration count stays
			// small; the stall is timed apart.
			var longest, stalls, writing time.Duration
			round := int64(0)
			for b.Loop() {
				round++
				ws := time.Now()
				for i := range n / 100 {
					k := (i*7919 + round*104729) % n
					write(k, base+n*round+i)
				}
				writing += time.Since(ws)
				start := time.Now()
				sections, _ := op.snapshot()
				d := time.Since(start)
				longest, stalls = max(longest, d), stalls+d
				for _, s := range sections {
					s.AppendGroup(nil, 0)
				}
			}
			b.ReportMetric(float64(stalls)/float64(round)/float64(time.Millisecond), "stall-mean-ms")
			b.ReportMetric(float64(longest)/float64(time.Millisecond), "stall-max-ms")
			// The copy-on-write cost lands on the writes after a snapshot.
			b.ReportMetric(float64(writing)/float64(round*(n/100)), "write-after-snapshot-ns/key")
		})
	}
}

// BenchmarkDetectorStatePath is the state and timer work of one record of
// the state-heavy fraud detector (small=large=1000, timeout=1h), without
// the task around it: read the flag, delete the key's timer, clear both
// values, set the flag, register a new timer and store its time. Keys are
// drawn at random from 100 k and 10 M, every one holding state. Timers are
// registered at now+timeout in milliseconds, so records of one
// millisecond share a time: ts-per-ms=1000 is a million records a
// second, ts-per-ms=1 a distinct time per timer (the timer queue's worst
// case: a bucket per timer).
func BenchmarkDetectorStatePath(b *testing.B) {
	for _, c := range []struct{ n, perMs int64 }{{100_000, 1000}, {100_000, 1}, {10_000_000, 1000}} {
		n := c.n
		b.Run(fmt.Sprintf("keys=%d/ts-per-ms=%d", n, c.perMs), func(b *testing.B) {
			rc := NewRuntimeContext(ContextConfig{MaxParallelism: 128})
			oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: KeyGroupRange{First: 0, Last: 127}}
			op, _ := newProcessOperator[int64, int64, int64](oc, nil, Int64Key, func(v int64) int64 { return v }, discard[int64]{})
			flag, err := GetValueState(op.ctx, "flag", BoolCodec{})
			if err != nil {
				b.Fatal(err)
			}
			timer, err := GetValueState(op.ctx, "timer-state", Int64Codec{})
			if err != nil {
				b.Fatal(err)
			}
			ts, i := int64(1)<<40, int64(0)
			record := func(k int64) {
				setBenchKey(op.ctx, k, 128)
				if _, flagged := flag.Value(); flagged {
					if old, ok := timer.Value(); ok {
						op.ctx.DeleteProcessingTimeTimer(old)
					}
					timer.Clear()
					flag.Clear()
				}
				if i++; i%c.perMs == 0 {
					ts++
				}
				flag.Update(true)
				op.ctx.RegisterProcessingTimeTimer(ts)
				timer.Update(ts)
			}
			for k := range n {
				record(k)
			}
			x := uint64(1)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				record(int64(x % uint64(n)))
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "M-records/s")
		})
	}
}

// BenchmarkSnapshotStallPebble is BenchmarkSnapshotStall's detector state
// at 10 M keys on the pebble backend (value states in its write-back
// caches, timers in the store), checkpointed as a pebble job is by
// default: a native checkpoint per round. Half of a round's writes come
// before the barrier, half while its asynchronous part (write-back,
// memtable flush, Pebble checkpoint) runs on another goroutine, which the
// round waits for before its next barrier, as a checkpoint interval
// longer than that part would. stall-mean-ms and stall-max-ms time the
// synchronous part alone; async-mean-s is the asynchronous part.
func BenchmarkSnapshotStallPebble(b *testing.B) {
	const n = 10_000_000
	rc := NewRuntimeContext(ContextConfig{MaxParallelism: 128})
	oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: KeyGroupRange{First: 0, Last: 127},
		stateBackend: StateBackend{Kind: StateBackendPebble, Dir: b.TempDir()}}
	op, err := newProcessOperator[int64, int64, int64](oc, nil, Int64Key, func(v int64) int64 { return v }, discard[int64]{})
	if err != nil {
		b.Fatal(err)
	}
	defer op.lsm.Close()
	flag, err := GetValueState(op.ctx, "flag", BoolCodec{})
	if err != nil {
		b.Fatal(err)
	}
	timer, err := GetValueState(op.ctx, "timer-state", Int64Codec{})
	if err != nil {
		b.Fatal(err)
	}
	const base = int64(1) << 40
	write := func(k, ts int64) {
		setBenchKey(op.ctx, k, 128)
		if old, ok := timer.Value(); ok {
			op.ctx.DeleteProcessingTimeTimer(old)
		}
		flag.Update(true)
		op.ctx.RegisterProcessingTimeTimer(ts)
		timer.Update(ts)
	}
	for k := range int64(n) {
		write(k, base+k)
	}
	round := int64(0)
	writes := func(from, to int64) {
		for i := from; i < to; i++ {
			k := (i*7919 + round*104729) % n
			write(k, base+n*round+i)
		}
	}
	var longest, stalls, async time.Duration
	ctx := context.Background()
	for b.Loop() {
		round++
		writes(0, n/200)
		start := time.Now()
		cp, sections, err := op.nativeSnapshot(round)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		longest, stalls = max(longest, d), stalls+d
		done := make(chan error, 1)
		go func() {
			defer cp.Release()
			_, err := cp.Files(ctx)
			async += time.Since(start) - d
			for _, s := range sections {
				s.AppendGroup(nil, 0)
			}
			done <- err
		}()
		writes(n/200, n/100)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	if err := op.lsm.Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(stalls)/float64(round)/float64(time.Millisecond), "stall-mean-ms")
	b.ReportMetric(float64(longest)/float64(time.Millisecond), "stall-max-ms")
	b.ReportMetric(async.Seconds()/float64(round), "async-mean-s")
}
