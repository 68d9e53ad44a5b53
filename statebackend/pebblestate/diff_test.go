package pebblestate

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

type i64 struct{}

func (i64) Append(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }
func (i64) Decode(b []byte) (int64, error) {
	v, n := binary.Varint(b)
	if n <= 0 || n != len(b) {
		return 0, statebackend.ErrCorrupt
	}
	return v, nil
}
func (i64) DecodeCopies() {}

type str struct{}

func (str) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (str) Decode(b []byte) (string, error)    { return string(b), nil }

// backends are the same five states on both backends. w and f are
// small: the memory backend keeps them in its entry table, Pebble in one
// shared cache.
type backends struct {
	mv *statebackend.ValueTable[int64, string]
	mw *statebackend.WordTable[int64, int64]
	mf *statebackend.WordTable[int64, bool]
	pw *ValueTable[int64, int64]
	pf *ValueTable[int64, bool]
	mm *statebackend.MapTable[int64, string, int64]
	ml *statebackend.ListTable[int64, int64]
	pv *ValueTable[int64, string]
	pm *MapTable[int64, string, int64]
	pl *ListTable[int64, int64]
	mb *statebackend.Backend
	ps *Store
}

func openBoth(t *testing.T, r statebackend.KeyGroupRange, mem []*statebackend.KeyedState, peb []*statebackend.KeyedState) *backends {
	t.Helper()
	b := &backends{mb: statebackend.NewBackend(r)}
	var err error
	b.ps, err = Open(Options{Dir: t.TempDir() + "/db", KeyGroups: r, CacheBytes: 1 << 20, MemTableBytes: 1 << 20, CacheKeys: testCacheKeys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.ps.Close() })
	for _, ks := range mem {
		if err := b.mb.Restore(ks); err != nil {
			t.Fatal(err)
		}
	}
	for _, ks := range peb {
		if err := b.ps.Restore(ks); err != nil {
			t.Fatal(err)
		}
	}
	b.register(t)
	return b
}

// register makes the tables of both backends.
func (b *backends) register(t *testing.T) {
	t.Helper()
	var err error
	must := func(e error) {
		if e != nil {
			t.Fatal(e)
		}
	}
	b.mv, err = statebackend.NewValueTable[int64, string](b.mb, "v", i64{}, str{})
	must(err)
	b.mm, err = statebackend.NewMapTable[int64, string, int64](b.mb, "m", i64{}, str{}, i64{})
	must(err)
	b.ml, err = statebackend.NewListTable[int64, int64](b.mb, "l", i64{}, i64{})
	must(err)
	b.pv, err = NewValueTable[int64, string](b.ps, "v", i64{}, str{})
	must(err)
	var ok1, ok2 bool
	b.mw, ok1, err = statebackend.NewWordTable[int64, int64](b.mb, "w", i64{}, i64{})
	must(err)
	b.mf, ok2, err = statebackend.NewWordTable[int64, bool](b.mb, "f", i64{}, boolCodec{})
	must(err)
	if !ok1 || !ok2 {
		t.Fatal("the memory backend has no words for w and f")
	}
	b.pw, err = NewValueTable[int64, int64](b.ps, "w", i64{}, i64{})
	must(err)
	b.pf, err = NewValueTable[int64, bool](b.ps, "f", i64{}, boolCodec{})
	must(err)
	if b.pw.p == nil || b.pw.p != b.pf.p {
		t.Fatal("w and f do not share a cache")
	}
	b.pm, err = NewMapTable[int64, string, int64](b.ps, "m", i64{}, str{}, i64{})
	must(err)
	b.pl, err = NewListTable[int64, int64](b.ps, "l", i64{}, i64{})
	must(err)
}

const maxP = 16

// testCacheKeys is the value tables' cache size in the tests: small, so
// that the cache is written back and emptied often.
var testCacheKeys = 7

func kgOf(k int64) int { return int(uint64(k)*2654435761>>7) % maxP }

// step applies one random operation to both backends and checks that
// their reads agree.
func (b *backends) step(t *testing.T, rng *rand.Rand, keys []int64) {
	t.Helper()
	k := keys[rng.IntN(len(keys))]
	kg := kgOf(k)
	uk := fmt.Sprintf("u%d", rng.IntN(5))
	switch op := rng.IntN(16); op {
	case 0, 1:
		v := fmt.Sprintf("v%d", rng.IntN(1000))
		b.mv.Put(kg, k, v)
		b.pv.Put(kg, k, v)
	case 2:
		b.mv.Delete(kg, k)
		b.pv.Delete(kg, k)
	case 3, 4:
		v := rng.Int64N(100)
		b.mm.Put(kg, k, uk, v)
		b.pm.Put(kg, k, uk, v)
	case 5:
		b.mm.Remove(kg, k, uk)
		b.pm.Remove(kg, k, uk)
	case 6:
		b.mm.Clear(kg, k)
		b.pm.Clear(kg, k)
	case 7, 8:
		v := rng.Int64N(100)
		b.ml.Append(kg, k, v)
		b.pl.Append(kg, k, v)
	case 9:
		var l []int64
		for range rng.IntN(3) {
			l = append(l, rng.Int64N(100))
		}
		b.ml.Set(kg, k, l)
		b.pl.Set(kg, k, l)
	case 10:
		b.ml.Clear(kg, k)
		b.pl.Clear(kg, k)
	case 11:
		// reads only
	case 12:
		v := rng.Int64N(100) - 50
		b.mw.Put(kg, k, v)
		b.pw.Put(kg, k, v)
	case 13:
		b.mw.Delete(kg, k)
		b.pw.Delete(kg, k)
	case 14:
		v := rng.IntN(2) == 0
		b.mf.Put(kg, k, v)
		b.pf.Put(kg, k, v)
	case 15:
		b.mf.Delete(kg, k)
		b.pf.Delete(kg, k)
	}
	b.checkKey(t, kg, k)
}

func (b *backends) checkKey(t *testing.T, kg int, k int64) {
	t.Helper()
	mv, mok := b.mv.Get(kg, k)
	pv, pok := b.pv.Get(kg, k)
	if mv != pv || mok != pok {
		t.Fatalf("key %d value: memory %q %v, pebble %q %v", k, mv, mok, pv, pok)
	}
	mw, mwok := b.mw.Get(kg, k)
	if pw, ok := b.pw.Get(kg, k); mw != pw || mwok != ok {
		t.Fatalf("key %d word: memory %d %v, pebble %d %v", k, mw, mwok, pw, ok)
	}
	mf, mfok := b.mf.Get(kg, k)
	if pf, ok := b.pf.Get(kg, k); mf != pf || mfok != ok {
		t.Fatalf("key %d flag: memory %v %v, pebble %v %v", k, mf, mfok, pf, ok)
	}
	mm := b.mm.Map(kg, k)
	pm := maps.Collect(b.pm.All(kg, k))
	if len(mm) != len(pm) || (len(mm) > 0 && !maps.Equal(mm, pm)) || b.pm.Len(kg, k) != len(mm) {
		t.Fatalf("key %d map: memory %v, pebble %v", k, mm, pm)
	}
	for uk, v := range mm {
		if got, ok := b.pm.Get(kg, k, uk); !ok || got != v {
			t.Fatalf("key %d map[%s]: pebble %d %v, memory %d", k, uk, got, ok, v)
		}
	}
	if ml, pl := b.ml.List(kg, k), b.pl.List(kg, k); !slices.Equal(ml, pl) {
		t.Fatalf("key %d list: memory %v, pebble %v", k, ml, pl)
	}
	if err := b.ps.Err(); err != nil {
		t.Fatal(err)
	}
}

// checkKeys checks that both backends list the same keys of each state
// in each key group of r, and that those are the keys whose reads find a
// value.
func (b *backends) checkKeys(t *testing.T, r statebackend.KeyGroupRange, keys []int64) {
	t.Helper()
	for kg := r.First; kg <= r.Last; kg++ {
		for _, name := range []string{"v", "m", "l", "w", "f"} {
			mk, err := statebackend.AppendKeys[int64](b.mb, name, kg, nil)
			if err != nil {
				t.Fatal(err)
			}
			pk, err := AppendKeys[int64](b.ps, name, i64{}, kg, nil)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(mk)
			slices.Sort(pk) // Pebble's are in the order of their encodings
			if !slices.Equal(mk, pk) {
				t.Fatalf("state %s, key group %d: memory lists %v, pebble %v", name, kg, mk, pk)
			}
			var held []int64
			for _, k := range keys {
				if kgOf(k) != kg || slices.Contains(held, k) {
					continue
				}
				_, v := b.mv.Get(kg, k)
				switch name {
				case "m":
					v = len(b.mm.Map(kg, k)) > 0
				case "l":
					v = len(b.ml.List(kg, k)) > 0
				case "w":
					_, v = b.mw.Get(kg, k)
				case "f":
					_, v = b.mf.Get(kg, k)
				}
				if v {
					held = append(held, k)
				}
			}
			slices.Sort(held)
			if !slices.Equal(mk, held) {
				t.Fatalf("state %s, key group %d: lists %v, the keys with a value are %v", name, kg, mk, held)
			}
		}
	}
}

// stateFile writes sections into a state file and reads back range want.
func stateFile(t *testing.T, r statebackend.KeyGroupRange, secs []statebackend.Section, want statebackend.KeyGroupRange) *statebackend.KeyedState {
	t.Helper()
	data, err := statebackend.WriteStateFile(r, secs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if e, ok := s.(interface{ Err() error }); ok && e.Err() != nil {
			t.Fatal(e.Err())
		}
		if rl, ok := s.(interface{ Release() }); ok {
			rl.Release()
		}
	}
	ctx := context.Background()
	f, err := statebackend.OpenStateFile(ctx, "mem", int64(len(data)), func(_ context.Context, off, n int64) ([]byte, error) {
		return data[off : off+n], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := f.ReadKeyGroups(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// contents is a state file's entries, order-free: section -> key group ->
// key -> value, maps normalised by user key. Timer sections, whose keys
// repeat, are left to queueContents.
func contents(t *testing.T, ks *statebackend.KeyedState) map[string]map[int]map[string]string {
	t.Helper()
	out := map[string]map[int]map[string]string{}
	for _, name := range ks.Sections() {
		if ks.Kind(name) == statebackend.KindTimers {
			continue
		}
		sec := map[int]map[string]string{}
		err := ks.Each(name, func(kg int, k, v []byte) error {
			if sec[kg] == nil {
				sec[kg] = map[string]string{}
			}
			if _, dup := sec[kg][string(k)]; dup {
				return fmt.Errorf("duplicate key %x", k)
			}
			if ks.Kind(name) == statebackend.KindMap {
				n, w := binary.Uvarint(v)
				rest := v[w:]
				m := map[string]string{}
				for range n {
					uk, r1, _ := field(rest)
					mv, r2, _ := field(r1)
					m[string(uk)] = string(mv)
					rest = r2
				}
				v = fmt.Appendf(nil, "%v", m) // fmt sorts map keys
			}
			sec[kg][string(k)] = string(v)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(sec) > 0 {
			out[name] = sec
		}
	}
	return out
}

func equalContents(t *testing.T, what string, a, b map[string]map[int]map[string]string) {
	t.Helper()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("%s differ:\nmemory %v\npebble %v", what, a, b)
	}
}

// TestDifferential runs the same random operations on the memory and
// Pebble backends, checks every read, and at every snapshot checks that
// both state files hold the same entries and that restoring either file
// into a fresh store of either backend gives that state again.
func TestDifferential(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	defer func(n int) { testCacheKeys = n }(testCacheKeys)
	for i := range 6 {
		seed := uint64(i)
		// No cache, a cache smaller than the keys, a cache holding them all.
		testCacheKeys = []int{-1, 7, 1000}[i%3]
		t.Run(fmt.Sprintf("seed=%d/cache=%d", seed, testCacheKeys), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			keys := randomKeys(rng, 40)
			b := openBoth(t, all, nil, nil)
			for round := range 6 {
				for range 400 {
					b.step(t, rng, keys)
				}
				b.checkKeys(t, all, keys)
				ms := b.mb.Snapshot()
				psecs, err := b.ps.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				// Writes after the snapshot must not show in it.
				for range 50 {
					b.step(t, rng, keys)
				}
				mks := stateFile(t, all, ms, all)
				pks := stateFile(t, all, psecs, all)
				want := contents(t, mks)
				equalContents(t, fmt.Sprintf("round %d snapshots", round), want, contents(t, pks))

				// Restore both files into fresh stores of both kinds, the
				// memory file into Pebble and the Pebble file into memory.
				r := openBoth(t, all, []*statebackend.KeyedState{pks}, []*statebackend.KeyedState{mks})
				for _, k := range keys {
					r.checkKey(t, kgOf(k), k)
				}
				r.checkKeys(t, all, keys)
				rps, err := r.ps.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				equalContents(t, "restored pebble", want, contents(t, stateFile(t, all, rps, all)))
				equalContents(t, "restored memory", want, contents(t, stateFile(t, all, r.mb.Snapshot(), all)))
			}
		})
	}
}

// TestRescale splits a Pebble snapshot over 3 stores and merges those into
// one again, comparing each with the memory backend's state.
func TestRescale(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]int64, 100)
	for i := range keys {
		keys[i] = int64(i) * 7919
	}
	b := openBoth(t, all, nil, nil)
	for range 2000 {
		b.step(t, rng, keys)
	}
	ps, err := b.ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := statebackend.WriteStateFile(all, ps, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ps {
		s.(*section).Release()
	}
	read := func(d []byte, r statebackend.KeyGroupRange) *statebackend.KeyedState {
		f, err := statebackend.OpenStateFile(context.Background(), "f", int64(len(d)), func(_ context.Context, off, n int64) ([]byte, error) {
			return d[off : off+n], nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ks, err := f.ReadKeyGroups(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	parts := []statebackend.KeyGroupRange{{First: 0, Last: 4}, {First: 5, Last: 10}, {First: 11, Last: 15}}
	var files [][]byte
	for _, r := range parts {
		ks := read(data, r)
		s := openBoth(t, r, []*statebackend.KeyedState{ks}, []*statebackend.KeyedState{ks})
		for _, k := range keys {
			if r.Contains(kgOf(k)) {
				s.checkKey(t, kgOf(k), k)
				b.checkKey(t, kgOf(k), k) // and equal to the original
				if v1, _ := s.pv.Get(kgOf(k), k); v1 != func() string { v, _ := b.pv.Get(kgOf(k), k); return v }() {
					t.Fatalf("key %d moved wrong", k)
				}
			}
		}
		// Each part lists exactly the keys of its key groups.
		s.checkKeys(t, r, keys)
		secs, err := s.ps.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		d, err := statebackend.WriteStateFile(r, secs, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, sec := range secs {
			sec.(*section).Release()
		}
		files = append(files, d)
	}
	var kss []*statebackend.KeyedState
	for _, d := range files {
		kss = append(kss, read(d, all))
	}
	one := openBoth(t, all, kss, kss)
	for _, k := range keys {
		one.checkKey(t, kgOf(k), k)
		ov, _ := one.pv.Get(kgOf(k), k)
		bv, _ := b.pv.Get(kgOf(k), k)
		om := maps.Collect(one.pm.All(kgOf(k), k))
		bm := maps.Collect(b.pm.All(kgOf(k), k))
		if ov != bv || !maps.Equal(om, bm) || !slices.Equal(one.pl.List(kgOf(k), k), b.pl.List(kgOf(k), k)) {
			t.Fatalf("key %d after 1 -> 3 -> 1: value %q/%q map %v/%v", k, ov, bv, om, bm)
		}
	}
}

// TestRestoreOutsideRange refuses key groups the store does not own.
func TestRestoreOutsideRange(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	b := openBoth(t, all, nil, nil)
	for k := range int64(50) {
		b.pv.Put(kgOf(k), k, "x")
	}
	secs, _ := b.ps.Snapshot()
	ks := stateFile(t, all, secs, all)
	s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: statebackend.KeyGroupRange{First: 0, Last: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Restore(ks); err == nil {
		t.Fatal("restore of key groups outside the store's range succeeded")
	}
}

// TestCloseRemovesDir checks that the directory goes when the last
// snapshot is released after Close.
func TestCloseRemovesDir(t *testing.T) {
	dir := t.TempDir() + "/db"
	s, err := Open(Options{Dir: dir, KeyGroups: statebackend.KeyGroupRange{First: 0, Last: 0}})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewValueTable[int64, string](s, "v", i64{}, str{})
	v.Put(0, 1, "a")
	secs, _ := s.Snapshot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
		t.Fatal("closed while a snapshot was open")
	default:
	}
	// The snapshot is still readable after Close.
	ks := stateFile(t, statebackend.KeyGroupRange{First: 0, Last: 0}, secs, statebackend.KeyGroupRange{First: 0, Last: 0})
	if n := len(contents(t, ks)["v"][0]); n != 1 {
		t.Fatalf("snapshot after close has %d entries", n)
	}
	<-s.Done()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory still there: %v", err)
	}
}
