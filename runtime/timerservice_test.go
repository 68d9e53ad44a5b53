package runtime

import (
	"math/rand/v2"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// TestTimerServiceAgainstModel runs random registers, deletes, pops and
// snapshots on a timer service and on a plain set of (time, key), with
// word states written into the same entries: adds are idempotent, removes
// exact, pops come in time order, the count matches, and every snapshot,
// read back after the churn that followed it, holds the set of its time.
// Keys get up to three timers, so further timers go through the heap, and
// times repeat, so buckets are shared, compacted and recycled. With rare
// peeks, deletes pile up (their dead bits are set in batches: see
// bucketQueue.pending) between the reads of the queue.
func TestTimerServiceAgainstModel(t *testing.T) {
	for _, rarePeeks := range []bool{false, true} {
		t.Run(map[bool]string{false: "peeks", true: "rare-peeks"}[rarePeeks], func(t *testing.T) {
			testTimerServiceAgainstModel(t, rarePeeks)
		})
	}
}

func testTimerServiceAgainstModel(t *testing.T, rarePeeks bool) {
	const maxP = 8
	r := KeyGroupRange{First: 0, Last: maxP - 1}
	b := statebackend.NewBackend(r)
	entries, err := statebackend.EntriesOf(b, Codec[int64](Int64Key))
	if err != nil {
		t.Fatal(err)
	}
	flag, ok, err := statebackend.NewWordTable[int64, bool](b, "flag", Int64Key, BoolCodec{})
	if err != nil || !ok {
		t.Fatalf("word table: %v %v", ok, err)
	}
	var s timerService[int64]
	s.init(0, entries)
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[timerKey[int64]]bool{}
	flags := map[int64]bool{}
	type snap struct {
		sec  statebackend.Section
		want map[timerKey[int64]]bool
	}
	var snaps []snap
	for step := range 60_000 {
		k := rng.Int64N(300)
		ts := 1000 + rng.Int64N(40)
		e := testTimer(k, ts, maxP)
		switch op := rng.IntN(100); {
		case op < 40:
			if got, want := s.add(e), !model[e.timerKey]; got != want {
				t.Fatalf("step %d: add %v = %v, want %v", step, e.timerKey, got, want)
			}
			model[e.timerKey] = true
		case op < 75:
			// Delete one of the key's timers, or a time it has not.
			for tk := range model {
				if tk.key == k && rng.IntN(4) > 0 {
					ts = tk.ts
					break
				}
			}
			tk := timerKey[int64]{ts: ts, key: k}
			if got, want := s.remove(e.kg, e.hash, k, ts), model[tk]; got != want {
				t.Fatalf("step %d: remove %v = %v, want %v", step, tk, got, want)
			}
			delete(model, tk)
		case op < 85:
			if flags[k] {
				flag.DeleteHashed(e.kg, e.hash, k)
				delete(flags, k)
			} else {
				flag.PutHashed(e.kg, e.hash, k, true)
				flags[k] = true
			}
		case op < 99:
			if rarePeeks && rng.IntN(32) != 0 {
				break
			}
			min, ok := int64(0), false
			for tk := range model {
				if !ok || tk.ts < min {
					min, ok = tk.ts, true
				}
			}
			p, pok := s.peek()
			if pok != ok || (ok && p.ts != min) {
				t.Fatalf("step %d: peek %v %v, want time %d %v", step, p.timerKey, pok, min, ok)
			}
			if !ok {
				continue
			}
			if !model[p.timerKey] {
				t.Fatalf("step %d: peek %v, not registered", step, p.timerKey)
			}
			if got := s.pop(); got != p {
				t.Fatalf("step %d: pop %+v after peek %+v", step, got, p)
			}
			delete(model, p.timerKey)
		default:
			want := make(map[timerKey[int64]]bool, len(model))
			for tk := range model {
				want[tk] = true
			}
			snaps = append(snaps, snap{newTimerSection(timersSection, &s, Codec[int64](Int64Key), r), want})
		}
		if s.len() != len(model) {
			t.Fatalf("step %d: %d timers, want %d", step, s.len(), len(model))
		}
		if got, want := flag.KeysInGroup(e.kg), countFlags(flags, e.kg, maxP); got != want {
			t.Fatalf("step %d: key group %d holds %d flags, want %d", step, e.kg, got, want)
		}
	}
	for k := range int64(300) {
		e := testTimer(k, 0, maxP)
		if _, ok := flag.GetHashed(e.kg, e.hash, k); ok != flags[k] {
			t.Fatalf("flag of key %d: %v, want %v", k, ok, flags[k])
		}
	}
	for i, sn := range snaps {
		got := decodeTimers(t, sn.sec, r)
		if len(got) != len(sn.want) {
			t.Fatalf("snapshot %d: %d timers, want %d", i, len(got), len(sn.want))
		}
		for tk, kg := range got {
			if !sn.want[tk] || kg != testTimer(tk.key, 0, maxP).kg {
				t.Fatalf("snapshot %d: unexpected timer %v in key group %d", i, tk, kg)
			}
		}
	}
	for len(model) > 0 {
		p := s.pop()
		if !model[p.timerKey] {
			t.Fatalf("drain: popped %v, not registered", p.timerKey)
		}
		delete(model, p.timerKey)
	}
	if _, ok := s.peek(); ok || s.len() != 0 {
		t.Fatalf("drained service still has %d timers", s.len())
	}
	// With the timers gone, only entries holding a flag remain.
	n := 0
	for kg := r.First; kg <= r.Last; kg++ {
		n += entries.Len(kg)
	}
	if n != len(flags) {
		t.Fatalf("%d entries left, want %d (the flags)", n, len(flags))
	}
}

func countFlags(flags map[int64]bool, kg, maxP int) int {
	n := 0
	for k := range flags {
		if KeyGroupForHash(Int64Hash(k), maxP) == kg {
			n++
		}
	}
	return n
}

// TestTimersOfOneTimeShareABucket: keys registering timers at a few
// interleaved times (sliding windows' ends, a minute apart) fill one
// bucket per time, not one per timer.
func TestTimersOfOneTimeShareABucket(t *testing.T) {
	s := newTestTimers(t, Int64Key, KeyGroupRange{First: 0, Last: 7})
	ends := []int64{60_000, 120_000, 180_000, 240_000}
	for k := range int64(1000) {
		s.add(testTimer(k, ends[k%4], 8))
	}
	inUse := 0
	for _, b := range s.q.bs {
		if b.inUse {
			inUse++
		}
	}
	if inUse != len(ends) {
		t.Fatalf("%d buckets for %d times", inUse, len(ends))
	}
}

// TestNewBucketSizedByTheRecentOnes: under a steady stream of
// processing-time timers each millisecond's bucket takes about as many
// timers as the recent ones, so a new bucket starts with room for them
// instead of doubling its way there, even after a small one: filling it
// allocates only its two arrays.
func TestNewBucketSizedByTheRecentOnes(t *testing.T) {
	var q bucketQueue[int64]
	q.init()
	const n = 4000
	ts := int64(1000)
	fill := func(n int) {
		for k := range int64(n) {
			q.push(ts, bucketItem[int64]{key: k})
		}
		ts++
	}
	fill(n)
	allocs := testing.AllocsPerRun(5, func() {
		fill(n / 40) // a quiet millisecond
		fill(n)
	})
	// Two buckets' arrays, and maybe a step of the heap or bucket list.
	if allocs > 6 {
		t.Fatalf("filling buckets of %d and %d timers after one of %d allocated %.0f times, want at most 6", n/40, n, n, allocs)
	}
	if c := cap(q.bs[len(q.bs)-1].items); c < n || c > 2*n {
		t.Fatalf("a new bucket after ones of %d timers has room for %d", n, c)
	}
}

// TestPendingDeletesOfARecycledBucket: a bucket whose timers are all
// deleted is recycled while the dead bits of its earlier deletes are still
// pending, and taken again for another time; those bits must not land on
// the new timers. Then deletes of every other timer, more than one batch of
// them, leave exactly the others to fire, in order.
func TestPendingDeletesOfARecycledBucket(t *testing.T) {
	s := newTestTimers(t, Int64Key, KeyGroupRange{First: 0, Last: 7})
	for k := range int64(10) {
		s.add(testTimer(k, 100, 8))
	}
	for k := range int64(10) {
		if !s.remove(testTimer(k, 100, 8).kg, testTimer(k, 100, 8).hash, k, 100) {
			t.Fatalf("remove of key %d failed", k)
		}
	}
	const n = 100
	for k := range int64(n) {
		s.add(testTimer(k, 200+k%2, 8))
	}
	for k := int64(1); k < n; k += 2 {
		e := testTimer(k, 201, 8)
		if !s.remove(e.kg, e.hash, k, 201) {
			t.Fatalf("remove of key %d at 201 failed", k)
		}
	}
	var got []int64
	for s.len() > 0 {
		e := s.pop()
		if e.ts != 200 {
			t.Fatalf("popped key %d at %d, want only time 200", e.key, e.ts)
		}
		got = append(got, e.key)
	}
	if len(got) != n/2 {
		t.Fatalf("%d timers fired, want %d", len(got), n/2)
	}
	for i, k := range got {
		if k != int64(2*i) {
			t.Fatalf("timer %d is key %d, want %d (registration order)", i, k, 2*i)
		}
	}
}

// TestDeletesInACompactedBucket: compaction moves a bucket's live timers
// without telling their entries, which keep the timers' sequence numbers.
// Deletes of timers moved once or twice, of timers pushed after a
// compaction, and pops in between, must each hit their own timer: at the
// end exactly the timers never deleted fire, in registration order.
func TestDeletesInACompactedBucket(t *testing.T) {
	const maxP, ts = 8, 500
	s := newTestTimers(t, Int64Key, KeyGroupRange{First: 0, Last: maxP - 1})
	live := map[int64]bool{}
	add := func(k int64) {
		t.Helper()
		if !s.add(testTimer(k, ts, maxP)) {
			t.Fatalf("add of key %d failed", k)
		}
		live[k] = true
	}
	remove := func(k int64) {
		t.Helper()
		e := testTimer(k, ts, maxP)
		if !s.remove(e.kg, e.hash, k, ts) {
			t.Fatalf("remove of key %d failed", k)
		}
		delete(live, k)
	}
	compactions := func() int {
		s.q.applyDeletes()
		n := 0
		for _, b := range s.q.bs {
			if b.inUse && b.compacted {
				n++
			}
		}
		return n
	}
	for k := range int64(2000) {
		add(k)
	}
	for k := range int64(2000) { // keep every tenth: the bucket compacts
		if k%10 != 0 {
			remove(k)
		}
	}
	if compactions() != 1 {
		t.Fatal("the bucket was not compacted")
	}
	if p := s.pop(); p.key != 0 {
		t.Fatalf("popped key %d, want 0", p.key)
	}
	delete(live, 0)
	for k := int64(2000); k < 2400; k++ { // pushed after the compaction
		add(k)
	}
	for k := int64(10); k < 2400; k += 10 { // moved ones, then new ones: compacts again
		if k < 1500 || (k >= 2000 && k%20 != 0) {
			remove(k)
		}
	}
	for k := int64(2001); k < 2400; k += 2 {
		remove(k)
	}
	if got := s.len(); got != len(live) {
		t.Fatalf("%d timers, want %d", got, len(live))
	}
	var fired []int64
	for s.len() > 0 {
		e := s.pop()
		if !live[e.key] || e.ts != ts {
			t.Fatalf("popped key %d at %d: not registered", e.key, e.ts)
		}
		if n := len(fired); n > 0 && fired[n-1] > e.key {
			t.Fatalf("key %d fired after key %d: registration order lost", e.key, fired[n-1])
		}
		fired = append(fired, e.key)
	}
	if len(fired) != len(live) {
		t.Fatalf("%d timers fired, want %d", len(fired), len(live))
	}
}
