package pebblestate

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// TestWritesDuringWriteBack holds a barrier's write-back (after its
// timers, before its value entries) while the task goes on writing and
// reading values, maps, lists and timers, then checks that the full
// snapshot, or the native checkpoint restored into a new store, holds
// exactly the state at the barrier (the memory backend's snapshot and the
// timer model's copy), and that afterwards both backends agree on every
// key. With a cache holding every key the task never waits for the held
// write-back; with a small one it may (a full cache of keys shadowing
// frozen ones), and the hold is then let go.
func TestWritesDuringWriteBack(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	defer func(n int) { testCacheKeys = n }(testCacheKeys)
	for _, native := range []bool{false, true} {
		for _, cache := range []int{7, 1000} {
			t.Run(fmt.Sprintf("native=%v/cache=%d", native, cache), func(t *testing.T) {
				testCacheKeys = cache
				writesDuringWriteBack(t, all, native, cache == 1000)
			})
		}
	}
}

func writesDuringWriteBack(t *testing.T, all statebackend.KeyGroupRange, native, noWait bool) {
	rng := rand.New(rand.NewPCG(uint64(testCacheKeys), 11))
	keys := randomKeys(rng, 60)
	b := openBoth(t, all, nil, nil)
	q, err := NewTimerQueue[string](b.ps, "_timers", str{})
	if err != nil {
		t.Fatal(err)
	}
	q.headCap = 4 // heads overflow and refill
	model := timerModel{}
	var clock int64
	timerStep := func() {
		k := fmt.Sprintf("k%d", rng.IntN(50))
		kg := rng.IntN(maxP)
		switch rng.IntN(5) {
		case 0, 1:
			ts := clock + rng.Int64N(200)
			q.Add(kg, k, ts)
			model[Timer[string]{TS: ts, KeyGroup: kg, Key: k}] = true
		case 2:
			for m := range model { // a random registered timer
				q.Delete(m.KeyGroup, m.Key, m.TS)
				delete(model, m)
				break
			}
		case 3:
			q.Delete(kg, k, clock+rng.Int64N(200)) // mostly not registered
		case 4:
			clock += 3
			for {
				p, ok := q.Peek()
				if !ok || p.TS > clock {
					break
				}
				if first, _ := model.earliest(); !model[p] || p.TS != first {
					t.Fatalf("fired %v, the model's earliest is at %d", p, first)
				}
				q.Pop()
				delete(model, p)
			}
		}
	}
	waits := 0
	for round := range 4 {
		for range 300 {
			b.step(t, rng, keys)
			timerStep()
		}
		hold := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(hold) }) }
		waited := false
		b.ps.holdWriteBack = func() { <-hold }
		b.ps.onWait = func() { waited = true; release() }

		ms := b.mb.Snapshot()
		wantTimers := model.sorted()
		var secs []statebackend.Section
		var cp *Checkpoint
		if native {
			cp, err = b.ps.Checkpoint(int64(round + 1))
		} else {
			secs, err = b.ps.Snapshot()
		}
		if err != nil {
			t.Fatal(err)
		}
		b.ps.holdWriteBack = nil
		// The task goes on while the write-back is held, until it has to
		// wait for it.
		steps := 0
		for ; steps < 300 && !waited; steps++ {
			b.step(t, rng, keys)
			timerStep()
		}
		if waited {
			waits++
			if noWait {
				t.Fatalf("round %d: the task waited for the write-back after %d writes", round, steps)
			}
		}
		release()
		b.ps.onWait = nil

		var got *statebackend.KeyedState
		if native {
			got = restoredNative(t, all, download(t, cp, all))
		} else {
			got = stateFile(t, all, secs, all)
		}
		gotTimers := queueContents(t, got, "_timers")
		if !slices.Equal(gotTimers, wantTimers) {
			t.Fatalf("round %d: timers at the barrier\nwant %v\ngot  %v", round, wantTimers, gotTimers)
		}
		equalContents(t, fmt.Sprintf("round %d state at the barrier", round), contents(t, stateFile(t, all, ms, all)), contents(t, got))

		// Once the write-back is done the held-back writes reach Pebble.
		for _, k := range keys {
			b.checkKey(t, kgOf(k), k)
		}
		b.checkKeys(t, all, keys)
		now, err := b.ps.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if got := queueContents(t, stateFile(t, all, now, all), "_timers"); !slices.Equal(got, model.sorted()) {
			t.Fatalf("round %d: timers after the barrier\nwant %v\ngot  %v", round, model.sorted(), got)
		}
	}
	t.Logf("the task waited for %d of 4 write-backs", waits)
}

// restoredNative restores a native checkpoint, timers included, into a new
// store and returns its state file.
func restoredNative(t *testing.T, all statebackend.KeyGroupRange, n NativeState) *statebackend.KeyedState {
	t.Helper()
	r := &backends{mb: statebackend.NewBackend(all)}
	var err error
	r.ps, err = Open(Options{Dir: t.TempDir() + "/db", KeyGroups: all, CacheBytes: 1 << 20, MemTableBytes: 1 << 20, CacheKeys: testCacheKeys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ps.Close() })
	if _, err := NewTimerQueue[string](r.ps, "_timers", str{}); err != nil {
		t.Fatal(err)
	}
	if err := r.ps.RestoreNative([]NativeState{n}); err != nil {
		t.Fatal(err)
	}
	r.register(t)
	secs, err := r.ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return stateFile(t, all, secs, all)
}

// TestSecondBarrierWaits takes a barrier while the previous one's
// write-back is held: the second waits for the first, and both hold their
// own state.
func TestSecondBarrierWaits(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	b := openBoth(t, all, nil, nil)
	b.pv.Put(1, 1, "a")
	hold := make(chan struct{})
	b.ps.holdWriteBack = func() { <-hold }
	first, err := b.ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b.ps.holdWriteBack = nil
	b.pv.Put(1, 1, "b")
	b.pv.Put(2, 2, "c")
	waited := false
	b.ps.onWait = func() { waited = true; close(hold) }
	second, err := b.ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !waited {
		t.Fatal("the second barrier did not wait for the first one's write-back")
	}
	values := func(secs []statebackend.Section) map[int]map[string]string {
		return contents(t, stateFile(t, all, secs, all))["v"]
	}
	enc := func(k int64) string { return string(i64{}.Append(nil, k)) }
	if got, want := values(first), map[int]map[string]string{1: {enc(1): "a"}}; !maps.EqualFunc(got, want, maps.Equal) {
		t.Fatalf("first snapshot %v, want %v", got, want)
	}
	if got, want := values(second), map[int]map[string]string{1: {enc(1): "b"}, 2: {enc(2): "c"}}; !maps.EqualFunc(got, want, maps.Equal) {
		t.Fatalf("second snapshot %v, want %v", got, want)
	}
}

// TestMapIterationAcrossEpochEnd iterates a map, written during a held
// write-back, while the epoch ends under it (a write in the loop commits
// the held-back batch the iterator reads): the iteration sees the map as
// it was when it began, and the store the writes made in the loop.
func TestMapIterationAcrossEpochEnd(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	b := openBoth(t, all, nil, nil)
	b.pv.Put(1, 1, "a") // a dirty cache, so that the barrier has an epoch
	hold := make(chan struct{})
	b.ps.holdWriteBack = func() { <-hold }
	secs, err := b.ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b.ps.holdWriteBack = nil
	want := map[string]int64{}
	for i := range 50 {
		uk := fmt.Sprintf("u%02d", i)
		b.pm.Put(1, 7, uk, int64(i))
		want[uk] = int64(i)
	}
	got := map[string]int64{}
	for uk, v := range b.pm.All(1, 7) {
		if len(got) == 0 {
			close(hold)
			<-b.ps.ep.done
		}
		got[uk] = v
		b.pm.Put(1, 7, uk, v+100) // ends the epoch, then writes to Pebble
	}
	if b.ps.ep != nil {
		t.Fatal("the epoch did not end")
	}
	if !maps.Equal(got, want) {
		t.Fatalf("iterated %v, want %v", got, want)
	}
	for uk, v := range want {
		if g, ok := b.pm.Get(1, 7, uk); !ok || g != v+100 {
			t.Fatalf("map[%s] = %d %v after the loop, want %d", uk, g, ok, v+100)
		}
	}
	stateFile(t, all, secs, all) // releases the snapshot
}
