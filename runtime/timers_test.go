package runtime

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestTimerHeapAgainstModel adds, removes and pops timers at random and
// checks the heap against a plain set: idempotent adds, exact removes,
// pops in time order, and the heap, slot chains and key index consistent
// throughout. Key hashes take three values, so the index's probe runs and
// backward-shift deletes see colliding keys, and keys hold several timers,
// so the per-key chains are walked and unlinked in every position.
func TestTimerHeapAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h timerHeap[int]
	hash := func(k int) int32 { return int32(k % 3) }
	model := map[timerKey[int]]bool{}
	for step := 0; step < 50000; step++ {
		k := timerKey[int]{ts: int64(rng.IntN(200)), key: rng.IntN(40)}
		switch op := rng.IntN(3); {
		case op == 0:
			if got := h.add(timerEntry[int]{timerKey: k, hash: hash(k.key)}); got == model[k] {
				t.Fatalf("step %d: add(%v) = %v with the timer present=%v", step, k, got, model[k])
			}
			model[k] = true
		case op == 1:
			if got := h.remove(k, hash(k.key)); got != model[k] {
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
		checkTimerHeap(t, step, &h, model)
	}
}

func checkTimerHeap(t *testing.T, step int, h *timerHeap[int], model map[timerKey[int]]bool) {
	t.Helper()
	if h.len() != len(model) {
		t.Fatalf("step %d: heap holds %d, want %d", step, h.len(), len(model))
	}
	live := 0
	for i, it := range h.h {
		if i > 0 && it.ts < h.h[(i-1)/2].ts {
			t.Fatalf("step %d: heap order broken at %d", step, i)
		}
		if h.isDead(it) {
			continue
		}
		live++
		e := h.ents.at(it.slot)
		if !e.live || e.ts != it.ts || !model[e.timerKey] {
			t.Fatalf("step %d: live heap item %d out of step with its slot", step, i)
		}
	}
	if live != len(model) || h.dead > max(64, len(h.h)/2) {
		t.Fatalf("step %d: %d live items and %d dead of %d, want %d live", step, live, h.dead, len(h.h), len(model))
	}
	keys := map[int]int{}
	for k := range model {
		keys[k.key]++
	}
	if h.index.n != len(keys) {
		t.Fatalf("step %d: index holds %d keys, want %d", step, h.index.n, len(keys))
	}
	for k, n := range keys {
		got := 0
		for s := h.index.get(uint32(k%3), k); s >= 0; s = h.ents.at(s).next {
			if e := h.ents.at(s); !e.live || e.key != k {
				t.Fatalf("step %d: key %d's chain reaches slot %d of %+v", step, k, s, e)
			}
			got++
		}
		if got != n {
			t.Fatalf("step %d: key %d's chain has %d timers, want %d", step, k, got, n)
		}
	}
}

// TestTimerSnapshotIsolation snapshots the timers, then deletes, re-adds
// and pops timers: the snapshot keeps exactly the timers of its time.
func TestTimerSnapshotIsolation(t *testing.T) {
	var h timerHeap[int]
	want := map[timerKey[int]]bool{}
	for k := range 3000 {
		tk := timerKey[int]{ts: int64(k % 97), key: k}
		h.add(timerEntry[int]{timerKey: tk, hash: int32(k)})
		want[tk] = true
	}
	s := newTimerSection("_timers", &h, Codec[int](nil), KeyGroupRange{First: 0, Last: 0})
	for k := range 3000 {
		if k%2 == 0 {
			h.remove(timerKey[int]{ts: int64(k % 97), key: k}, int32(k))
		}
		h.add(timerEntry[int]{timerKey: timerKey[int]{ts: int64(5000 + k), key: k + 10_000}, hash: int32(k + 10_000)})
	}
	for range 500 {
		h.pop()
	}
	got := map[timerKey[int]]bool{}
	s.live(func(e *timerEntry[int]) {
		if got[e.timerKey] {
			t.Fatalf("timer %v twice in the snapshot", e.timerKey)
		}
		got[e.timerKey] = true
	})
	if len(got) != len(want) {
		t.Fatalf("snapshot holds %d timers, want %d", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("snapshot lost %v", k)
		}
	}
}

// TestTimerChurnAllocationFree is the fraud detector's pattern: each
// record deletes its key's timer and registers a later one. Once the
// timer service has grown to the key count, that allocates nothing.
func TestTimerChurnAllocationFree(t *testing.T) {
	var h timerHeap[int64]
	const keys = 10_000
	for k := range int64(keys) {
		h.add(timerEntry[int64]{timerKey: timerKey[int64]{ts: k, key: k}, hash: Int64Key.Hash(k)})
	}
	ts := make([]int64, keys)
	for k := range ts {
		ts[k] = int64(k)
	}
	i := int64(0)
	allocs := testing.AllocsPerRun(100, func() {
		for range 1000 {
			k := (i * 7919) % keys
			i++
			hk := Int64Key.Hash(k)
			if !h.remove(timerKey[int64]{ts: ts[k], key: k}, hk) {
				t.Fatalf("timer of key %d missing", k)
			}
			ts[k] = keys + i
			h.add(timerEntry[int64]{timerKey: timerKey[int64]{ts: ts[k], key: k}, hash: hk})
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per 1000 records, want 0", allocs)
	}
	if h.len() != keys {
		t.Fatalf("%d timers, want %d", h.len(), keys)
	}
}

// TestTimerSectionConcurrentWithChurn encodes a timer snapshot on another
// goroutine while the owner keeps deleting, registering and firing timers
// (run with -race): the encoding holds exactly the timers at the snapshot.
func TestTimerSectionConcurrentWithChurn(t *testing.T) {
	const maxP = 32
	r := KeyGroupRange{First: 0, Last: maxP - 1}
	var h timerHeap[int64]
	want := map[timerKey[int64]]int{}
	for k := range int64(20_000) {
		hk := Int64Key.Hash(k)
		e := timerEntry[int64]{timerKey: timerKey[int64]{ts: 1000 + k%500, key: k}, kg: KeyGroupForHash(hk, maxP), hash: hk}
		h.add(e)
		want[e.timerKey] = e.kg
	}
	s := newTimerSection(timersSection, &h, Codec[int64](Int64Key), r)
	got := make(chan map[timerKey[int64]]int)
	go func() {
		m := map[timerKey[int64]]int{}
		for kg := r.First; kg <= r.Last; kg++ {
			data, n := s.AppendGroup(nil, kg)
			for i := 0; i < n; i++ {
				kl, w := binary.Uvarint(data)
				k, _ := Int64Key.Decode(data[w : w+int(kl)])
				data = data[w+int(kl):]
				vl, w := binary.Uvarint(data)
				ts, _ := binary.Varint(data[w : w+int(vl)])
				data = data[w+int(vl):]
				m[timerKey[int64]{ts: ts, key: k}] = kg
			}
		}
		got <- m
	}()
	for round := range int64(5) {
		for k := range int64(20_000) {
			hk := Int64Key.Hash(k)
			if h.remove(timerKey[int64]{ts: 1000 + k%500 + round*10_000, key: k}, hk) {
				h.add(timerEntry[int64]{timerKey: timerKey[int64]{ts: 1000 + k%500 + (round+1)*10_000, key: k}, kg: KeyGroupForHash(hk, maxP), hash: hk})
			}
		}
		for range 1000 {
			h.pop()
		}
	}
	m := <-got
	if len(m) != len(want) {
		t.Fatalf("snapshot encoded %d timers, want %d", len(m), len(want))
	}
	for k, kg := range want {
		if m[k] != kg {
			t.Fatalf("timer %v: key group %d in the snapshot, want %d", k, m[k], kg)
		}
	}
}
