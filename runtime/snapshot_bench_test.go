package runtime

import "testing"

// BenchmarkSnapshotTimers measures the synchronous part of a keyed
// operator's snapshot with a million timers: the processing stall.
func BenchmarkSnapshotTimers(b *testing.B) {
	rc := NewRuntimeContext(ContextConfig{MaxParallelism: 128})
	oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: KeyGroupRange{First: 0, Last: 127}}
	op := newProcessOperator[int64, int64, int64](oc, nil, Int64Key, func(v int64) int64 { return v }, discard[int64]{})
	for k := int64(0); k < 1_000_000; k++ {
		h := Int64Key.Hash(k)
		op.ctx.timers.add(timerEntry[int64]{timerKey: timerKey[int64]{ts: k, key: k}, kg: KeyGroupForHash(h, 128), hash: h})
	}
	b.ResetTimer()
	for b.Loop() {
		sections := op.snapshot()
		// The upload (not measured) is done before the next checkpoint:
		// it hands the copy back once it has grouped the timers.
		b.StopTimer()
		sections[len(sections)-1].AppendGroup(nil, 0)
		b.StartTimer()
	}
}
