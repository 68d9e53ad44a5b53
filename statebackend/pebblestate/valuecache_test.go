package pebblestate

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// TestClockCacheIndex adds, finds and removes random keys against a map,
// with hashes that collide in their top bits (long probe runs), and checks
// after every operation batch that each cached key is found at its slot:
// backward-shift deletion must never cut a run.
func TestClockCacheIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Few distinct home positions, at the end of the index (whatever its
	// size): the runs are long and wrap around.
	hash := func(k int64) uint64 { return (1<<54-1-uint64(k%7))<<10 | uint64(k)&0x3ff }
	const limit = 500
	c := newClockCache[int64, int64](hash, limit*4/3)
	model := map[int64]bool{}
	for round := range 200 {
		for range 50 {
			k := rng.Int64N(700) // mostly cached: many removes
			i := c.find(hash(k), k)
			if model[k] != (i >= 0) || i >= 0 && c.slots[i].k != k {
				t.Fatalf("round %d: key %d at slot %d, cached %v", round, k, i, model[k])
			}
			switch {
			case i >= 0 && rng.IntN(2) == 0:
				c.removeAt(int(i))
				delete(model, k)
			case i < 0 && c.n < limit:
				c.add(hash(k), 0, k)
				model[k] = true
			}
		}
		if n, _ := c.count(); c.n != len(model) || n != c.n {
			t.Fatalf("round %d: %d keys cached (%d slots used), want %d", round, c.n, n, len(model))
		}
		for k := range model {
			if i := c.find(hash(k), k); i < 0 || c.slots[i].k != k {
				t.Fatalf("round %d: key %d not found", round, k)
			}
		}
	}
}

// TestClockEvictionKeepsRunsShort evicts and adds random keys at the
// cache's full load for many rounds: the hand must spread its victims
// over the array, or the runs ahead of it grow without bound.
func TestClockEvictionKeepsRunsShort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	hash := func(k int64) uint64 { return mix64(uint64(k)) }
	const limit = 6000
	c := newClockCache[int64, int64](hash, limit*4/3)
	var victims []int32
	var keys []int64
	for range 40 * limit {
		if c.n >= limit {
			victims = c.sweep(limit/32, nil, victims[:0])
			keys = keys[:0]
			for _, i := range victims {
				keys = append(keys, c.slots[i].k)
			}
			for _, k := range keys {
				c.removeAt(int(c.find(hash(k), k)))
			}
		}
		if k := rng.Int64(); c.find(hash(k), k) < 0 {
			c.add(hash(k), 0, k)
		}
	}
	// The farthest a key sits from its home: some tens at 3/4 load.
	worst := 0
	for i := range c.slots {
		if e := &c.slots[i]; e.flags&slotUsed != 0 {
			d := i - c.home(e.tag)
			if d < 0 {
				d += len(c.slots)
			}
			worst = max(worst, d)
		}
	}
	if worst > 200 {
		t.Errorf("a key sits %d slots from its home in a cache of %d slots at load %.2f", worst, len(c.slots), float64(c.n)/float64(len(c.slots)))
	}
}

// TestValueCacheModel runs random reads, writes and deletes of two value
// tables (one of fixed-size values, one of strings) against a map, with
// caches small enough to evict all the time, barriers whose write-back
// the task overtakes, and restores of their snapshots into a new store.
// Every read must equal the model's, every snapshot the model at its
// barrier, and the caches must stay within their bounds with their dirty
// counts right.
func TestValueCacheModel(t *testing.T) {
	for _, cache := range []int{1, 5, 40, 1000} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) { valueCacheModel(t, cache) })
	}
}

type modelKey struct {
	state string
	k     int64
}

// modelTables are the model test's value tables: a and c, the first two
// small states, share a cache (column 0 and 1); b has string values and d,
// a third small state, a cache of its own.
type modelTables struct {
	a *ValueTable[int64, int64]
	b *ValueTable[int64, string]
	c *ValueTable[int64, bool]
	d *ValueTable[int64, int32]
}

func valueCacheModel(t *testing.T, cacheKeys int) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	rng := rand.New(rand.NewPCG(uint64(cacheKeys), 7))
	// open restores before or after registering the tables: either way
	// the key filter must not answer for the restored keys.
	open := func(restore *statebackend.KeyedState, first bool) (*Store, modelTables) {
		s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: all, CacheBytes: 1 << 20, MemTableBytes: 1 << 20, CacheKeys: cacheKeys})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		restoreIt := func() {
			if restore != nil {
				if err := s.Restore(restore); err != nil {
					t.Fatal(err)
				}
			}
		}
		if first {
			restoreIt()
		}
		var m modelTables
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		m.a, err = NewValueTable[int64, int64](s, "a", i64{}, i64{})
		must(err)
		m.b, err = NewValueTable[int64, string](s, "b", i64{}, str{})
		must(err)
		m.c, err = NewValueTable[int64, bool](s, "c", i64{}, boolCodec{})
		must(err)
		m.d, err = NewValueTable[int64, int32](s, "d", i64{}, i32{})
		must(err)
		if m.a.p == nil || m.a.p != m.c.p || m.a.col != 0 || m.c.col != 1 || m.b.p != nil || m.d.p != nil {
			t.Fatal("a and c do not share a cache, or b or d does")
		}
		if !first {
			restoreIt()
		}
		return s, m
	}
	s, m := open(nil, true)
	model := map[modelKey]string{}
	const keys = 120
	states := []string{"a", "b", "c", "d"}
	step := func() {
		k := rng.Int64N(keys) - keys/2
		kg := kgOf(k)
		st := states[rng.IntN(len(states))]
		mk := modelKey{st, k}
		want, wantOK := model[mk]
		switch op := rng.IntN(10); {
		case op < 4:
			var got string
			var ok bool
			switch st {
			case "a":
				var v int64
				v, ok = m.a.Get(kg, k)
				got = strconv.FormatInt(v, 10)
			case "b":
				got, ok = m.b.Get(kg, k)
			case "c":
				var v bool
				v, ok = m.c.Get(kg, k)
				got = strconv.FormatBool(v)
			case "d":
				var v int32
				v, ok = m.d.Get(kg, k)
				got = strconv.FormatInt(int64(v), 10)
			}
			if !ok {
				got = ""
			}
			if ok != wantOK || got != want {
				t.Fatalf("%s[%d] = %q, %v; want %q, %v", st, k, got, ok, want, wantOK)
			}
		case op < 8:
			v := rng.Int64N(1000) - 500
			switch st {
			case "a":
				m.a.Put(kg, k, v)
				model[mk] = strconv.FormatInt(v, 10)
			case "b":
				model[mk] = fmt.Sprintf("v%d", v)
				m.b.Put(kg, k, model[mk])
			case "c":
				m.c.Put(kg, k, v%2 == 0)
				model[mk] = strconv.FormatBool(v%2 == 0)
			case "d":
				m.d.Put(kg, k, int32(v))
				model[mk] = strconv.FormatInt(v, 10)
			}
		default:
			switch st {
			case "a":
				m.a.Delete(kg, k)
			case "b":
				m.b.Delete(kg, k)
			case "c":
				m.c.Delete(kg, k)
			case "d":
				m.d.Delete(kg, k)
			}
			delete(model, mk)
		}
		for _, c := range []struct {
			n, dirty, limit int
			slots           func() (n, dirty int)
		}{{m.a.p.cache.n, m.a.p.cache.dirty, m.a.p.limit, m.a.p.cache.count},
			{m.b.c.cache.n, m.b.c.cache.dirty, m.b.c.limit, m.b.c.cache.count},
			{m.d.c.cache.n, m.d.c.cache.dirty, m.d.c.limit, m.d.c.cache.count}} {
			if c.n > c.limit {
				t.Fatalf("a cache holds %d keys, over its limit of %d", c.n, c.limit)
			}
			if n, d := c.slots(); n != c.n || d != c.dirty {
				t.Fatalf("a cache counts %d keys, %d dirty; its slots hold %d, %d dirty", c.n, c.dirty, n, d)
			}
		}
	}
	// snapshotModel is the model as the state file's value sections hold
	// it: key group -> encoded key -> encoded value.
	snapshotModel := func(m map[modelKey]string) map[string]map[int]map[string]string {
		out := map[string]map[int]map[string]string{}
		for mk, v := range m {
			if out[mk.state] == nil {
				out[mk.state] = map[int]map[string]string{}
			}
			kg := kgOf(mk.k)
			if out[mk.state][kg] == nil {
				out[mk.state][kg] = map[string]string{}
			}
			enc := v
			switch mk.state {
			case "a":
				n, _ := strconv.ParseInt(v, 10, 64)
				enc = string(binary.AppendVarint(nil, n))
			case "c":
				enc = string(boolCodec{}.Append(nil, v == "true"))
			case "d":
				n, _ := strconv.ParseInt(v, 10, 32)
				enc = string(i32{}.Append(nil, int32(n)))
			}
			out[mk.state][kg][string(binary.AppendVarint(nil, mk.k))] = enc
		}
		return out
	}
	for round := range 12 {
		for range 400 {
			step()
		}
		// A barrier whose write-back is held while the task goes on.
		hold := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(hold) }) }
		s.holdWriteBack = func() { <-hold }
		s.onWait = release
		atBarrier := maps.Clone(model)
		secs, err := s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		s.holdWriteBack = nil
		for range 200 {
			step()
		}
		release()
		s.onWait = nil
		ks := stateFile(t, all, secs, all)
		equalContents(t, fmt.Sprintf("round %d: snapshot", round), snapshotModel(atBarrier), contents(t, ks))
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if round%3 == 2 {
			// Restore the barrier's state into a new store: its key
			// filter cannot know the restored keys.
			s, m = open(ks, round%2 == 0)
			model = atBarrier
		}
	}
}

// boolCodec and i32 are codecs of small values, which share a cache.
type boolCodec struct{}

func (boolCodec) Append(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}
func (boolCodec) Decode(b []byte) (bool, error) {
	if len(b) != 1 || b[0] > 1 {
		return false, statebackend.ErrCorrupt
	}
	return b[0] == 1, nil
}

type i32 struct{}

func (i32) Append(dst []byte, v int32) []byte { return binary.AppendVarint(dst, int64(v)) }
func (i32) Decode(b []byte) (int32, error) {
	v, n := binary.Varint(b)
	if n <= 0 || n != len(b) {
		return 0, statebackend.ErrCorrupt
	}
	return int32(v), nil
}

// count is the number of used and of dirty slots.
func (c *clockCache[K, V]) count() (n, dirty int) {
	for i := range c.slots {
		if f := c.slots[i].flags; f&slotUsed != 0 {
			n++
			if f&slotAnyDirty != 0 {
				dirty++
			}
		}
	}
	return n, dirty
}

// TestValueCacheKeepsHotSet reads a few hot keys between writes of a
// stream of cold ones, ten times the cache's size: CLOCK must keep every
// hot key cached (a cache emptied when full would keep none for long),
// and the cold keys written back must all read back.
func TestValueCacheKeepsHotSet(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: all, CacheBytes: 1 << 20, MemTableBytes: 1 << 20, CacheKeys: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, err := NewValueTable[int64, int64](s, "v", i64{}, i64{})
	if err != nil {
		t.Fatal(err)
	}
	const hot, cold = 100, 10_000
	for k := int64(0); k < hot; k++ {
		v.Put(kgOf(k), k, k)
	}
	for c := int64(hot); c < hot+cold; c++ {
		v.Put(kgOf(c), c, -c)
		h := c % hot
		if got, ok := v.Get(kgOf(h), h); !ok || got != h {
			t.Fatalf("hot key %d: %d, %v", h, got, ok)
		}
	}
	for k := int64(0); k < hot; k++ {
		if v.c.cache.find(v.c.hash(k), k) < 0 {
			t.Fatalf("hot key %d was evicted", k)
		}
	}
	for c := int64(hot); c < hot+cold; c += 7 {
		if got, ok := v.Get(kgOf(c), c); !ok || got != -c {
			t.Fatalf("cold key %d: %d, %v", c, got, ok)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestValueTablePairing: only the first two small value states share a
// cache, and only while the first is unused; others keep their own.
func TestValueTablePairing(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	open := func() *Store {
		s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: all, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := open()
	str1, _ := NewValueTable[int64, string](s, "s", i64{}, str{})
	a, _ := NewValueTable[int64, int64](s, "a", i64{}, i64{})
	b, _ := NewValueTable[int64, bool](s, "b", i64{}, boolCodec{})
	c, _ := NewValueTable[int64, int32](s, "c", i64{}, i32{})
	if str1.p != nil || a.p == nil || a.p != b.p || c.p != nil || c.c == nil {
		t.Fatalf("shared: string %v, a %v, b %v, c %v; want a and b only", str1.p != nil, a.p != nil, b.p != nil, c.p != nil)
	}
	if n := len(s.flushers); n != 3 {
		t.Fatalf("%d caches, want 3 (the string's, the shared one, c's)", n)
	}
	// Prefetch is a hint: on empty caches and full ones alike it changes
	// nothing.
	for k := int64(0); k < 3; k++ {
		str1.Prefetch(k)
		a.Prefetch(k)
		b.Prefetch(k)
		c.Prefetch(k)
		a.Put(kgOf(k), k, k)
		b.Put(kgOf(k), k, k%2 == 0)
	}
	for k := int64(0); k < 3; k++ {
		a.Prefetch(k)
		b.Prefetch(k)
		if v, ok := a.Get(kgOf(k), k); !ok || v != k {
			t.Fatalf("a[%d] = %d, %v", k, v, ok)
		}
		if v, ok := b.Get(kgOf(k), k); !ok || v != (k%2 == 0) {
			t.Fatalf("b[%d] = %v, %v", k, v, ok)
		}
		if _, ok := c.Get(kgOf(k), k); ok {
			t.Fatalf("c[%d] has a value", k)
		}
	}
	// A small state registered twice does not pair with itself.
	s = open()
	a, _ = NewValueTable[int64, int64](s, "a", i64{}, i64{})
	a2, _ := NewValueTable[int64, int64](s, "a", i64{}, i64{})
	if a.p != nil || a2.p != nil {
		t.Fatal("a state registered twice shares a cache with itself")
	}
	// A state registered after the first small one was used keeps its
	// own cache: the first one's slots lack its values.
	s = open()
	a, _ = NewValueTable[int64, int64](s, "a", i64{}, i64{})
	a.Put(kgOf(1), 1, 7)
	b, _ = NewValueTable[int64, bool](s, "b", i64{}, boolCodec{})
	if a.p != nil || b.p != nil {
		t.Fatal("a state registered after the first was used shares its cache")
	}
	if v, ok := a.Get(kgOf(1), 1); !ok || v != 7 {
		t.Fatalf("a[1] = %d, %v; want 7", v, ok)
	}
}
