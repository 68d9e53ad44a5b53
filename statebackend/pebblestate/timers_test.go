package pebblestate

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// timerModel is the reference: a set of (time, key group, key).
type timerModel map[Timer[string]]bool

// earliest returns the model's earliest time and whether it has timers.
func (m timerModel) earliest() (int64, bool) {
	first, ok := int64(0), false
	for t := range m {
		if !ok || t.TS < first {
			first, ok = t.TS, true
		}
	}
	return first, ok
}

func (m timerModel) sorted() []string {
	var out []string
	for t := range m {
		out = append(out, fmt.Sprintf("%d/%s=%d", t.KeyGroup, t.Key, t.TS))
	}
	slices.Sort(out)
	return out
}

// queueContents is a timer section's entries as "kg/key=ts", sorted.
func queueContents(t *testing.T, ks *statebackend.KeyedState, name string) []string {
	t.Helper()
	var out []string
	err := ks.Each(name, func(kg int, k, v []byte) error {
		ts, err := i64{}.Decode(v)
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%d/%s=%d", kg, k, ts))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func openTimers(t *testing.T, r statebackend.KeyGroupRange, headCap int, restore ...*statebackend.KeyedState) (*Store, *TimerQueue[string]) {
	t.Helper()
	s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: r, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	q, err := NewTimerQueue[string](s, "_timers", str{})
	if err != nil {
		t.Fatal(err)
	}
	q.headCap = headCap
	for _, ks := range restore {
		if err := s.Restore(ks); err != nil {
			t.Fatal(err)
		}
	}
	return s, q
}

// TestTimerQueueDifferential runs random registrations, deletes and
// firings on the Pebble timer queue and on a model set, with heads far
// smaller than the timers (so they overflow, empty and refill all the
// time), and with timer buffers that hold everything between refills or
// spill every few hundred writes: every fired timer is the model's earliest, and every snapshot,
// and every restore of it into one store or split over two, holds the
// model's timers.
func TestTimerQueueDifferential(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	for _, tc := range []struct{ headCap, limit int }{{1, 0}, {2, 0}, {3, 0}, {5, 0}, {256, 0}, {2, 12 << 10}, {256, 12 << 10}} {
		headCap := tc.headCap
		t.Run(fmt.Sprintf("head=%d/buffer=%d", headCap, tc.limit), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(headCap), 9))
			s, q := openTimers(t, all, headCap)
			if tc.limit > 0 {
				// A timer buffer that spills every few hundred writes.
				s.tb = newTimerBuffer(tc.limit)
			}
			model := timerModel{}
			keys := make([]string, 30)
			for i := range keys {
				keys[i] = fmt.Sprintf("k%d", rng.IntN(1000))
			}
			kgOfS := func(k string) int { return int(k[len(k)-1]) % maxP }
			now := int64(0)
			for round := range 8 {
				for range 600 {
					k := keys[rng.IntN(len(keys))]
					kg := kgOfS(k)
					// Times cluster, so that timers of one time are common,
					// and some are in the past.
					ts := now + rng.Int64N(40) - 5
					switch op := rng.IntN(10); {
					case op < 5:
						q.Add(kg, k, ts)
						model[Timer[string]{ts, kg, k}] = true
					case op < 8:
						// Delete a registered timer, or (half the time) any.
						if rng.IntN(2) == 0 {
							for m := range model {
								k, kg, ts = m.Key, m.KeyGroup, m.TS
								break
							}
						}
						q.Delete(kg, k, ts)
						delete(model, Timer[string]{ts, kg, k})
					default:
						now += rng.Int64N(6)
						for {
							e, eok := q.Earliest()
							want, wok := model.earliest()
							// A lower bound: it may stand for a head whose
							// timers were all deleted, but never misses one.
							if wok && (!eok || e > want) {
								t.Fatalf("earliest %d %v, model's %d %v", e, eok, want, wok)
							}
							p, ok := q.Peek()
							if ok != wok || (ok && p.TS != want) {
								t.Fatalf("peek %v %v, model's earliest %d %v", p, ok, want, wok)
							}
							if !ok || p.TS > now {
								break
							}
							if got := q.Pop(); got != p || !model[got] {
								t.Fatalf("pop %v, peeked %v (in model: %v)", got, p, model[got])
							}
							delete(model, p)
							q.check(t, model, kgOfS)
						}
					}
					q.check(t, model, kgOfS)
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				secs, err := s.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				want := model.sorted()
				// Writes after the snapshot do not show in it.
				q.Add(0, "late", now+1000)
				q.Delete(0, "late", now+1000)
				ks := stateFile(t, all, secs, all)
				if got := queueContents(t, ks, "_timers"); !slices.Equal(got, want) {
					t.Fatalf("round %d snapshot:\n got %v\nwant %v", round, got, want)
				}
				// Restore into one store and into two halves: firing
				// everything gives the model's timers in time order.
				halves := []statebackend.KeyGroupRange{{First: 0, Last: 6}, {First: 7, Last: maxP - 1}}
				var fired []Timer[string]
				for _, r := range append([]statebackend.KeyGroupRange{all}, halves...) {
					_, rq := openTimers(t, r, headCap, stateFile(t, all, secs2(t, s), r))
					var last int64
					for n := 0; ; n++ {
						p, ok := rq.Peek()
						if !ok {
							break
						}
						if got := rq.Pop(); got != p || (n > 0 && got.TS < last) || !r.Contains(got.KeyGroup) {
							t.Fatalf("restored %v: pop %v after time %d (peeked %v)", r, got, last, p)
						}
						last = p.TS
						fired = append(fired, p)
					}
				}
				slices.SortFunc(fired, func(a, b Timer[string]) int {
					return cmp.Or(cmp.Compare(a.KeyGroup, b.KeyGroup), cmp.Compare(a.Key, b.Key), cmp.Compare(a.TS, b.TS))
				})
				var got []string
				for _, f := range fired {
					got = append(got, fmt.Sprintf("%d/%s=%d", f.KeyGroup, f.Key, f.TS))
				}
				if w2 := slices.Concat(want, want); !slices.Equal(got, sortedStrings(w2)) {
					t.Fatalf("round %d: restored and fired %v, want each of %v twice", round, got, want)
				}
			}
		})
	}
}

func sortedStrings(s []string) []string {
	slices.Sort(s)
	return s
}

// secs2 takes a second snapshot of s (the first one's sections are
// released once written).
func secs2(t *testing.T, s *Store) []statebackend.Section {
	t.Helper()
	secs, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return secs
}

// TestTimerQueueIdempotent registers a timer twice and deletes a missing
// one: one timer fires.
func TestTimerQueueIdempotent(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: 3}
	_, q := openTimers(t, all, 4)
	q.Add(1, "a", 10)
	q.Add(1, "a", 10)
	q.Delete(1, "b", 10)
	q.Delete(2, "a", 10)
	if p, ok := q.Peek(); !ok || p != (Timer[string]{10, 1, "a"}) {
		t.Fatalf("peek %v %v", p, ok)
	}
	q.Pop()
	if p, ok := q.Peek(); ok {
		t.Fatalf("second timer %v after registering one twice", p)
	}
}

func (q *TimerQueue[K]) check(t *testing.T, model timerModel, kgOf func(K) int) {
	for gi := range q.groups {
		g := &q.groups[gi]
		kg := gi + q.s.keyGroups.First
		if g.refill {
			continue
		}
		in := map[timer[K]]bool{}
		for _, h := range g.head[g.start:] {
			in[h] = true
		}
		for m := range model {
			if m.KeyGroup != kg {
				continue
			}
			var k any = m.Key
			tm := timer[K]{ts: m.TS, key: k.(K)}
			if !q.above(g, tm) != in[tm] {
				t.Fatalf("group %d: model timer %v: in head %v, bound %v %v, head %v", kg, m, in[tm], g.bound, g.bounded, g.head[g.start:])
			}
		}
		if g.pos >= 0 && g.pos > 0 && q.first(q.heap[(g.pos-1)/2]) > q.first(int32(gi)) {
			t.Fatalf("heap order broken at group %d", kg)
		}
		if len(g.head) > g.start && (g.pos < 0 || q.heap[g.pos] != int32(gi)) {
			t.Fatalf("group %d not in heap", kg)
		}
	}
}

// BenchmarkTimerQueueChurn is the fraud detector's timer pattern: each
// operation moves one of 100 000 keys' timer to a later time (a delete
// and a register), and every 1000 operations the earliest timers up to
// a clock fire.
func BenchmarkTimerQueueChurn(b *testing.B) {
	const keys = 100_000
	all := statebackend.KeyGroupRange{First: 0, Last: 127}
	s, err := Open(Options{Dir: b.TempDir() + "/db", KeyGroups: all})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	q, err := NewTimerQueue[int64](s, "_timers", i64{})
	if err != nil {
		b.Fatal(err)
	}
	at := make([]int64, keys)
	kg := func(k int64) int { return int(uint64(k)*0x9e3779b97f4a7c15>>57) & 127 }
	for k := range int64(keys) {
		at[k] = 3_600_000 + k
		q.Add(kg(k), k, at[k])
	}
	rng := rand.New(rand.NewPCG(1, 1))
	now := int64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := rng.Int64N(keys)
		q.Delete(kg(k), k, at[k])
		now++
		at[k] = now + 3_600_000
		q.Add(kg(k), k, at[k])
		if i%1000 == 0 {
			for {
				t, ok := q.Peek()
				if !ok || t.TS > now {
					break
				}
				q.Pop()
			}
		}
	}
	if err := s.Err(); err != nil {
		b.Fatal(err)
	}
}
