package runtime

import (
	"slices"
	"testing"
)

// refireFn registers, from OnTimer, the timer being fired once more at
// its own time, the first time only (its value state counts the firings).
type refireFn struct{ n ValueState[int64] }

func (f *refireFn) ProcessElement(int64, *KeyedContext[int64], Collector[int64]) error { return nil }

func (f *refireFn) OnTimer(ts int64, ctx *KeyedContext[int64], out Collector[int64]) error {
	n, _ := f.n.Value()
	f.n.Update(n + 1)
	out.Collect(ts*10 + n)
	if n == 0 {
		ctx.RegisterEventTimeTimer(ts)
	}
	return nil
}

type sliceOut struct{ got []int64 }

func (s *sliceOut) Collect(v int64) { s.got = append(s.got, v) }

// TestTimerAtItsOwnTimeFiresInTheSamePass: a timer OnTimer registers at
// or before the watermark being fired fires in the same pass (as in
// Flink), on the memory backend and on pebble with either timer service,
// before a later timer of the same pass.
func TestTimerAtItsOwnTimeFiresInTheSamePass(t *testing.T) {
	for _, b := range []StateBackend{{Kind: StateBackendMemory}, {Kind: StateBackendPebble, Dir: t.TempDir()},
		{Kind: StateBackendPebble, Dir: t.TempDir(), Timers: TimerServiceHeap}} {
		t.Run(b.Kind+"/timers="+string(b.Timers), func(t *testing.T) {
			rc := NewRuntimeContext(ContextConfig{MaxParallelism: 128})
			var ts, wm int64
			rc.ts, rc.wm, rc.now = &ts, &wm, new(procTime)
			oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: KeyGroupRange{First: 0, Last: 127}, stateBackend: b}
			fn := &refireFn{}
			out := &sliceOut{}
			op, err := newProcessOperator[int64, int64, int64](oc, fn, Int64Key, func(v int64) int64 { return v }, out)
			if err != nil {
				t.Fatal(err)
			}
			if op.lsm != nil {
				defer op.lsm.Close()
			}
			if fn.n, err = GetValueState(op.ctx, "n", Int64Codec{}); err != nil {
				t.Fatal(err)
			}
			setBenchKey(op.ctx, 7, 128)
			op.ctx.RegisterEventTimeTimer(35)
			op.ctx.RegisterEventTimeTimer(38)
			op.fireEventTimers(40)
			// 35 fires, re-registers 35, which fires again at once; then 38.
			if want := []int64{350, 351, 382}; !slices.Equal(out.got, want) {
				t.Fatalf("fired %v, want %v", out.got, want)
			}
			op.fireEventTimers(50)
			if len(out.got) != 3 {
				t.Fatalf("fired %v after the next watermark, want nothing more", out.got)
			}
		})
	}
}
