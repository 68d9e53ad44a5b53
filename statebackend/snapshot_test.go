package statebackend

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

var all = KeyGroupRange{First: 0, Last: testMaxP - 1}

func writeSnapshot(t testing.TB, sections []Section, r KeyGroupRange) []byte {
	t.Helper()
	data, err := WriteStateFile(r, sections, nil)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func countPrefix(d map[string]string, prefix string) int64 {
	var n int64
	for k := range d {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

func TestSnapshotIsolatedFromLaterWrites(t *testing.T) {
	f := newFixture(t, all)
	f.fill(200)
	want := f.dump()
	sections := f.b.Snapshot()
	for i, name := range []string{"counts", "attrs", "events"} {
		if sections[i].Name() != name {
			t.Fatalf("section %d is %q, want %q (registration order)", i, sections[i].Name(), name)
		}
		if got := sections[i].(interface{ Keys() int64 }).Keys(); got != countPrefix(want, name+" ") {
			t.Errorf("%s: Keys() = %d, want %d", name, got, countPrefix(want, name+" "))
		}
	}

	// Every kind of write after the snapshot, on every key group.
	for i := range 200 {
		k := fmt.Sprintf("key-%d", i)
		kg := kgOf(k)
		f.counts.Put(kg, k, -1)
		f.attrs.Put(kg, k, "attr-0", -1)
		f.attrs.Remove(kg, k, "attr-1")
		f.events.Append(kg, k, -1) // may write into a shared array, past the frozen length
	}
	f.counts.Delete(kgOf("key-0"), "key-0")
	f.attrs.Clear(kgOf("key-2"), "key-2")
	long := f.events.List(kgOf("long"), "long")
	f.events.Set(kgOf("long"), "long", long[:10]) // a prefix of a frozen list...
	f.events.Append(kgOf("long"), "long", -2)     // ...must not be appended to in place
	if got := long[10]; got != 10<<40 {
		t.Fatalf("Append after Set wrote into the frozen list: %d", got)
	}

	got := restoreFixture(t, all, map[string][]byte{"snap": writeSnapshot(t, sections, all)}).dump()
	diffDumps(t, got, want)
}

// TestSnapshotSerialisedConcurrently is the checkpoint pattern: the task
// goroutine snapshots, hands the sections to an uploader goroutine and goes
// on writing, snapshotting again meanwhile. Run with -race.
func TestSnapshotSerialisedConcurrently(t *testing.T) {
	f := newFixture(t, all)
	f.fill(500)
	rng := rand.New(rand.NewPCG(1, 2))
	type result struct {
		data []byte
		err  error
	}
	for round := range 20 {
		want := f.dump()
		sections := f.b.Snapshot()
		done := make(chan result, 1)
		go func() {
			// Serialise twice, concurrently, as two readers of the same
			// sections would.
			var wg sync.WaitGroup
			var other []byte
			wg.Go(func() { other, _ = WriteStateFile(all, sections, nil) })
			data, err := WriteStateFile(all, sections, nil)
			wg.Wait()
			if len(other) != len(data) {
				err = fmt.Errorf("two serialisations differ in size: %d, %d", len(other), len(data))
			}
			done <- result{data, err}
		}()
		for i := range 3000 {
			k := fmt.Sprintf("key-%d", rng.IntN(600))
			kg := kgOf(k)
			switch rng.IntN(9) {
			case 0:
				f.counts.Put(kg, k, rng.Int64())
			case 1:
				f.counts.Delete(kg, k)
			case 2:
				f.attrs.Put(kg, k, fmt.Sprintf("attr-%d", rng.IntN(6)), rng.Int64())
			case 3:
				f.attrs.Remove(kg, k, fmt.Sprintf("attr-%d", rng.IntN(6)))
			case 4:
				f.attrs.Clear(kg, k)
			case 5, 6:
				f.events.Append(kg, k, rng.Int64())
			case 7:
				if l := f.events.List(kg, k); len(l) > 1 {
					f.events.Set(kg, k, l[:len(l)/2])
				} else {
					f.events.Clear(kg, k)
				}
			case 8:
				if i%500 == 0 {
					f.b.Snapshot() // a later snapshot must not disturb this one
				}
			}
		}
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		got := restoreFixture(t, all, map[string][]byte{fmt.Sprintf("round-%d", round): r.data}).dump()
		diffDumps(t, got, want)
	}
}

func TestSectionOutsideRange(t *testing.T) {
	f := newFixture(t, KeyGroupRange{First: 2, Last: 3})
	f.counts.Put(2, "a", 1)
	s := f.b.Snapshot()[0]
	for _, kg := range []int{0, 1, 4, 100, -1} {
		if dst, n := s.AppendGroup(nil, kg); n != 0 || len(dst) != 0 {
			t.Errorf("key group %d: %d entries", kg, n)
		}
	}
	if _, n := s.AppendGroup(nil, 2); n != 1 {
		t.Errorf("key group 2: %d entries", n)
	}
}

func TestNoAllocationsInSteadyState(t *testing.T) {
	f := newFixture(t, all)
	f.fill(1000)
	kg := kgOf("key-1")
	if n := testing.AllocsPerRun(1000, func() { f.counts.Put(kg, "key-1", 5) }); n != 0 {
		t.Errorf("Put on an existing key: %v allocations", n)
	}
	f.b.Snapshot()
	f.counts.Put(kg, "key-1", 6) // thaws the group once
	if n := testing.AllocsPerRun(1000, func() { f.counts.Put(kg, "key-1", 5) }); n != 0 {
		t.Errorf("Put after the first write since a snapshot: %v allocations", n)
	}
	sections := f.b.Snapshot()
	dst := make([]byte, 0, 1<<20)
	for _, s := range sections {
		if n := testing.AllocsPerRun(100, func() { s.AppendGroup(dst[:0], kg) }); n != 0 {
			t.Errorf("%s: AppendGroup: %v allocations", s.Name(), n)
		}
	}
}
