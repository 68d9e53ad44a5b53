package pebblestate

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weirstream/weir/statebackend"
)

// storedTimers is the store's timer keys as Pebble holds them with the
// buffer applied over them (registers added, deletes removed).
func storedTimers(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	it, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		got[string(it.Key())] = true
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	b := s.tb
	live := 0
	err = b.each(func(off int, f byte, key []byte) error {
		i, found := b.find(key, b.hash(key))
		switch {
		case f&recDead != 0:
			if found && int(uint32(b.slots[i]))-1 == off {
				t.Fatalf("dead record %x is indexed", key)
			}
		case !found || int(uint32(b.slots[i]))-1 != off:
			t.Fatalf("live record %x at %d is not indexed", key, off)
		case f&recDel != 0:
			live++
			delete(got, string(key))
		default:
			live++
			got[string(key)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if live != b.live {
		t.Fatalf("%d live records, counted %d", live, b.live)
	}
	n := 0
	for _, v := range b.slots {
		if v != 0 {
			n++
		}
	}
	if n != b.live {
		t.Fatalf("%d slots used for %d live records", n, b.live)
	}
	return got
}

// TestTimerBufferModel writes random registers and deletes of a few
// hundred timer keys through the store's timer buffer, with limits small
// enough that it compacts and spills all the time, and with times both
// above and below every time Pebble holds: Pebble with the buffer over it
// always holds exactly the model's timers, the index finds exactly the
// live records, and a timer registered and deleted while buffered above
// Pebble's times is never written.
func TestTimerBufferModel(t *testing.T) {
	for _, limit := range []int{12 << 10, 16 << 10, 64 << 10, 8 << 20} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: statebackend.KeyGroupRange{First: 0, Last: 15}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.tb = newTimerBuffer(limit)
			rng := rand.New(rand.NewPCG(uint64(limit), 3))
			model := map[string]bool{}
			base := int64(0)
			spills := 0
			var keys []string // the model's, in some order
			for step := range 30_000 {
				// Times move up, as processing time does, with some
				// falling below what was already written.
				if step%300 == 0 {
					base += 10
				}
				ts := base + rng.Int64N(30) - 20
				key := string(appendTimerKey(nil, rng.IntN(4), firstTimerID, str{}, ts, fmt.Sprintf("k%d", rng.IntN(30))))
				del := rng.IntN(2) == 0
				if del && len(keys) > 0 && rng.IntN(4) > 0 {
					// Mostly delete a registered timer.
					i := rng.IntN(len(keys))
					key = keys[i]
				}
				if del || !model[key] {
					keys = slices.DeleteFunc(keys, func(k string) bool { return k == key })
				}
				if !del && !model[key] {
					keys = append(keys, key)
				}
				gen := s.tbGen
				s.timerWrite([]byte(key), del)
				if s.tbGen != gen {
					spills++
				}
				if del {
					delete(model, key)
				} else {
					model[key] = true
				}
				if rng.IntN(5000) == 0 {
					s.commitTimers()
				}
				if step%197 == 0 {
					got := storedTimers(t, s)
					if len(got) != len(model) {
						t.Fatalf("step %d: %d timers, model has %d", step, len(got), len(model))
					}
					for k := range model {
						if !got[k] {
							t.Fatalf("step %d: timer %x missing", step, k)
						}
					}
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			t.Logf("limit %d: %d spills, %d compactions, %d timers", limit, spills, s.tb.compactions, len(model))
			if limit < 64<<10 && (spills == 0 || s.tb.compactions == 0) {
				t.Fatalf("limit %d: %d spills and %d compactions, want some of both", limit, spills, s.tb.compactions)
			}
		})
	}
}

// TestTimerBufferNeverStored registers and deletes timers above every
// time the store holds, many times over the buffer's size: nothing is
// written to Pebble, and the buffer's memory stays within its limit.
func TestTimerBufferNeverStored(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: statebackend.KeyGroupRange{First: 0, Last: 127}, TimerBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q, err := NewTimerQueue[int64](s, "_timers", i64{})
	if err != nil {
		t.Fatal(err)
	}
	const keys = 20_000
	at := make([]int64, keys)
	kg := func(k int64) int { return int(uint64(k)*0x9e3779b97f4a7c15>>57) & 127 }
	for k := range int64(keys) {
		at[k] = 1_000_000 + k
		q.Add(kg(k), k, at[k])
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2_000_000 {
		k := rng.Int64N(keys)
		q.Delete(kg(k), k, at[k])
		at[k] = 1_000_000 + keys + int64(i)
		q.Add(kg(k), k, at[k])
	}
	it, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if it.First() {
		t.Fatalf("timer %x reached Pebble", it.Key())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if s.timerMax != math.MinInt64 {
		t.Fatalf("timerMax %d: something was written", s.timerMax)
	}
	if s.tb.compactions == 0 {
		t.Fatal("the buffer never compacted")
	}
	if b := s.tb.bytes(); b > 1<<20 {
		t.Fatalf("buffer holds %d bytes, limit 1 MiB", b)
	}
	if got := storedTimers(t, s); len(got) != keys {
		t.Fatalf("%d timers buffered, want %d", len(got), keys)
	}
	// Every key still fires once, at its last time.
	var fired []int64
	for {
		p, ok := q.Peek()
		if !ok {
			break
		}
		q.Pop()
		if p.TS != at[p.Key] {
			t.Fatalf("key %d fired at %d, registered last at %d", p.Key, p.TS, at[p.Key])
		}
		fired = append(fired, p.Key)
	}
	slices.Sort(fired)
	if len(fired) != keys || slices.Compact(fired)[keys-1] != keys-1 {
		t.Fatalf("fired %d timers, want one per key (%d)", len(fired), keys)
	}
}

// TestTimerSpillFiresSame runs the fraud detector's timer pattern (each
// step moves a key's timer later; now and then the clock advances and
// due timers fire, each firing key registering again) on two queues: one
// whose buffer holds everything, one whose buffer spills to Pebble every
// few hundred writes. Both fire the same timers in the same order and
// their snapshots hold the same timers.
func TestTimerSpillFiresSame(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	type run struct {
		s     *Store
		q     *TimerQueue[string]
		fired []string
	}
	var runs []*run
	for _, limit := range []int{0, 12 << 10} {
		s, q := openTimers(t, all, 4)
		if limit > 0 {
			s.tb = newTimerBuffer(limit)
		}
		runs = append(runs, &run{s: s, q: q})
	}
	const keys = 2000
	at := make([]int64, keys)
	rng := rand.New(rand.NewPCG(4, 4))
	kgOf := func(k int) int { return k % maxP }
	name := func(k int) string { return fmt.Sprintf("k%04d", k) }
	now := int64(0)
	for k := range keys {
		at[k] = 100 + rng.Int64N(500)
		for _, r := range runs {
			r.q.Add(kgOf(k), name(k), at[k])
		}
	}
	for step := range 60_000 {
		k := rng.IntN(keys)
		next := now + 100 + rng.Int64N(500)
		for _, r := range runs {
			r.q.Delete(kgOf(k), name(k), at[k])
			r.q.Add(kgOf(k), name(k), next)
		}
		at[k] = next
		if step%50 != 0 {
			continue
		}
		now += 3
		for _, r := range runs {
			for {
				p, ok := r.q.Peek()
				if !ok || p.TS > now {
					break
				}
				r.q.Pop()
				if n := len(r.fired); n > 0 && r.fired[n-1][:8] > fmt.Sprintf("%08d", p.TS) {
					t.Fatalf("timer %v fired after %s", p, r.fired[n-1])
				}
				r.fired = append(r.fired, fmt.Sprintf("%08d %d/%s", p.TS, p.KeyGroup, p.Key))
			}
		}
		// Firing keys register again (the same in both runs).
		for k := range keys {
			if at[k] <= now {
				at[k] = now + 100 + rng.Int64N(500)
				for _, r := range runs {
					r.q.Add(kgOf(k), name(k), at[k])
				}
			}
		}
	}
	if runs[1].s.timerMax == math.MinInt64 {
		t.Fatal("the small buffer never spilled")
	}
	// Timers of one time fire in any order across key groups.
	a, b := runs[0].fired, runs[1].fired
	slices.Sort(a)
	slices.Sort(b)
	if len(a) < 1000 || !slices.Equal(a, b) {
		t.Fatalf("fired %d timers without spills, %d with, or they differ", len(a), len(b))
	}
	var snaps [][]string
	for _, r := range runs {
		if err := r.s.Err(); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, queueContents(t, stateFile(t, all, secs2(t, r.s), all), "_timers"))
	}
	if len(snaps[0]) != keys || !slices.Equal(snaps[0], snaps[1]) {
		t.Fatalf("snapshots hold %d and %d timers (want %d each), or they differ", len(snaps[0]), len(snaps[1]), keys)
	}
}

// TestTimerRefillKeepsBuffer fires timers that are in Pebble while far
// later ones churn in the buffer, with heads of 4 timers that refill all
// the time: the refills read Pebble up to the buffered times instead of
// writing the buffer, so the far timers do not reach Pebble while near
// ones remain, and every timer fires in order.
func TestTimerRefillKeepsBuffer(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	s, q := openTimers(t, all, 4)
	const near, far = 3000, 1000
	for k := range near {
		q.Add(k%maxP, fmt.Sprintf("n%d", k), int64(1+k))
	}
	s.commitTimers() // registered long ago: in Pebble
	nearMax := s.timerMax
	rng := rand.New(rand.NewPCG(5, 5))
	at := make([]int64, far)
	for k := range far {
		at[k] = 1_000_000 + int64(k)
		q.Add(k%maxP, fmt.Sprintf("f%d", k), at[k])
	}
	last, fired := int64(0), 0
	for now := int64(0); now < near+7; now += 7 {
		for range 20 {
			k := rng.IntN(far)
			q.Delete(k%maxP, fmt.Sprintf("f%d", k), at[k])
			at[k] += far
			q.Add(k%maxP, fmt.Sprintf("f%d", k), at[k])
		}
		for {
			p, ok := q.Peek()
			if !ok || p.TS > now {
				break
			}
			q.Pop()
			if p.TS < last || p.Key[0] != 'n' {
				t.Fatalf("fired %v after time %d", p, last)
			}
			if s.timerMax != nearMax {
				t.Fatalf("timerMax %d, was %d: the far timers were written to Pebble", s.timerMax, nearMax)
			}
			last = p.TS
			fired++
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if fired != near {
		t.Fatalf("fired %d near timers, want %d", fired, near)
	}
	// The far ones fire too, each at its last time (the group that runs
	// out of near timers first has the buffer written to Pebble).
	for n := 0; n < far; n++ {
		p, ok := q.Peek()
		if !ok {
			t.Fatalf("%d far timers fired, want %d", n, far)
		}
		q.Pop()
		var k int
		fmt.Sscanf(p.Key, "f%d", &k)
		if p.TS != at[k] {
			t.Fatalf("far timer %v fired, registered last at %d", p, at[k])
		}
	}
	if p, ok := q.Peek(); ok {
		t.Fatalf("timer %v left over", p)
	}
}

// TestTimerLongKey registers timers whose keys do not fit in a buffer
// block: they go to Pebble directly, after the buffer, and fire as
// others do.
func TestTimerLongKey(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: 3}
	s, q := openTimers(t, all, 2)
	s.tb = newTimerBuffer(12 << 10) // 4 KiB blocks
	long := func(c byte) string { return string(bytes.Repeat([]byte{c}, 5000)) }
	q.Add(1, "short", 5)
	q.Add(1, long('a'), 7)
	q.Add(1, long('b'), 6)
	q.Delete(1, long('b'), 6)
	q.Add(2, long('c'), 3)
	var got []string
	for {
		p, ok := q.Peek()
		if !ok {
			break
		}
		q.Pop()
		got = append(got, fmt.Sprintf("%d %d/%c%d", p.TS, p.KeyGroup, p.Key[0], len(p.Key)))
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"3 2/c5000", "5 1/s5", "7 1/a5000"}; !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
}
