package runtime

import (
	"math/rand/v2"
	"testing"
)

// TestTimerHeapAgainstModel adds, removes and pops timers at random and
// checks the heap against a plain set: idempotent adds, exact removes,
// pops in time order, and the index consistent throughout.
func TestTimerHeapAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h timerHeap[int]
	model := map[timerKey[int]]bool{}
	for step := 0; step < 20000; step++ {
		k := timerKey[int]{ts: int64(rng.IntN(200)), key: rng.IntN(20)}
		switch op := rng.IntN(3); {
		case op == 0:
			if got := h.add(timerEntry[int]{timerKey: k}); got == model[k] {
				t.Fatalf("step %d: add(%v) = %v with the timer present=%v", step, k, got, model[k])
			}
			model[k] = true
		case op == 1:
			if got := h.remove(k); got != model[k] {
				t.Fatalf("step %d: remove(%v) = %v, want %v", step, k, got, model[k])
			}
			delete(model, k)
		case h.len() > 0:
			e := h.pop()
			if !model[e.timerKey] {
				t.Fatalf("step %d: popped unknown %v", step, e.timerKey)
			}
			for m := range model {
				if m.ts < e.ts {
					t.Fatalf("step %d: popped %v before %v", step, e.timerKey, m)
				}
			}
			delete(model, e.timerKey)
		}
		if h.len() != len(model) || len(h.slots) != len(model) {
			t.Fatalf("step %d: heap holds %d (index %d), want %d", step, h.len(), len(h.slots), len(model))
		}
		for i, e := range h.h {
			if int(h.pos[e.slot]) != i || h.slots[e.timerKey] != e.slot {
				t.Fatalf("step %d: index out of step at %d", step, i)
			}
		}
	}
}
