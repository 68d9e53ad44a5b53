package runtime

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/weirstream/weir/statebackend"
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

// newTestTimers is a processing-time timer service over a fresh entry
// table for the key groups r.
func newTestTimers[K comparable](t testing.TB, kt KeyType[K], r KeyGroupRange) *timerService[K] {
	t.Helper()
	e, err := statebackend.EntriesOf(statebackend.NewBackend(r), Codec[K](kt))
	if err != nil {
		t.Fatal(err)
	}
	s := &timerService[K]{}
	s.init(0, e)
	return s
}

// decodeTimers reads a timer section back: each timer's key group.
func decodeTimers(t testing.TB, s statebackend.Section, r KeyGroupRange) map[timerKey[int64]]int {
	t.Helper()
	m := map[timerKey[int64]]int{}
	for kg := r.First; kg <= r.Last; kg++ {
		data, n := s.AppendGroup(nil, kg)
		for range n {
			kl, w := binary.Uvarint(data)
			k, _ := Int64Key.Decode(data[w : w+int(kl)])
			data = data[w+int(kl):]
			vl, w := binary.Uvarint(data)
			ts, _ := binary.Varint(data[w : w+int(vl)])
			data = data[w+int(vl):]
			tk := timerKey[int64]{ts: ts, key: k}
			if _, dup := m[tk]; dup {
				t.Fatalf("timer %v twice in the snapshot", tk)
			}
			m[tk] = kg
		}
		if len(data) != 0 {
			t.Fatalf("key group %d: %d bytes after %d timers", kg, len(data), n)
		}
	}
	return m
}

func testTimer(k, ts int64, maxP int) timerEntry[int64] {
	h := Int64Key.Hash(k)
	return timerEntry[int64]{timerKey: timerKey[int64]{ts: ts, key: k}, kg: KeyGroupForHash(h, maxP), hash: h}
}

// TestTimerSnapshotIsolation snapshots the timers, then deletes, re-adds
// and pops timers: the snapshot keeps exactly the timers of its time,
// first and further timers of a key alike.
func TestTimerSnapshotIsolation(t *testing.T) {
	r := KeyGroupRange{First: 0, Last: 7}
	h := newTestTimers(t, Int64Key, r)
	want := map[timerKey[int64]]int{}
	for k := range int64(3000) {
		for _, ts := range []int64{k % 97, 100 + k%13} { // the second timer goes to the heap
			e := testTimer(k, ts, 8)
			h.add(e)
			want[e.timerKey] = e.kg
		}
	}
	s := newTimerSection("_timers", h, Codec[int64](Int64Key), r)
	for k := range int64(3000) {
		if k%2 == 0 {
			e := testTimer(k, k%97, 8)
			h.remove(e.kg, e.hash, k, e.ts)
		}
		h.add(testTimer(k+10_000, 5000+k, 8))
	}
	for range 500 {
		h.pop()
	}
	got := decodeTimers(t, s, r)
	if len(got) != len(want) {
		t.Fatalf("snapshot holds %d timers, want %d", len(got), len(want))
	}
	for k, kg := range want {
		if got[k] != kg {
			t.Fatalf("snapshot has %v in key group %d, want %d", k, got[k], kg)
		}
	}
}

// TestTimerChurnAllocationFree is the fraud detector's pattern: each
// record deletes its key's timer and registers a later one. Once the
// timer service has grown to the key count, that allocates nothing.
func TestTimerChurnAllocationFree(t *testing.T) {
	const keys = 10_000
	h := newTestTimers(t, Int64Key, KeyGroupRange{First: 0, Last: 127})
	for k := range int64(keys) {
		h.add(testTimer(k, k, 128))
	}
	ts := make([]int64, keys)
	for k := range ts {
		ts[k] = int64(k)
	}
	i := int64(0)
	churn := func() {
		for range 1000 {
			k := (i * 7919) % keys
			i++
			e := testTimer(k, ts[k], 128)
			if !h.remove(e.kg, e.hash, k, e.ts) {
				t.Fatalf("timer of key %d missing", k)
			}
			ts[k] = keys + i/64 // records of one millisecond share a time
			h.add(testTimer(k, ts[k], 128))
		}
	}
	// Warm up: the first pass recycles the buckets of the initial timers,
	// one each, whose arrays then grow to a millisecond's timers.
	for range 30 {
		churn()
	}
	allocs := testing.AllocsPerRun(100, churn)
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
	h := newTestTimers(t, Int64Key, r)
	want := map[timerKey[int64]]int{}
	for k := range int64(20_000) {
		e := testTimer(k, 1000+k%500, maxP)
		h.add(e)
		want[e.timerKey] = e.kg
		if k%10 == 0 {
			e = testTimer(k, 900_000+k, maxP) // a further timer
			h.add(e)
			want[e.timerKey] = e.kg
		}
	}
	s := newTimerSection(timersSection, h, Codec[int64](Int64Key), r)
	got := make(chan map[timerKey[int64]]int)
	go func() { got <- decodeTimers(t, s, r) }()
	for round := range int64(5) {
		for k := range int64(20_000) {
			e := testTimer(k, 1000+k%500+round*10_000, maxP)
			if h.remove(e.kg, e.hash, k, e.ts) {
				h.add(testTimer(k, 1000+k%500+(round+1)*10_000, maxP))
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
