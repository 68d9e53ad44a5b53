package pebblestate

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/statebackend"
)

// clSub is one subtask's state on both backends, its Pebble store with a
// changelog, and its store timers (the model is shared by all subtasks).
type clSub struct {
	*backends
	q *TimerQueue[string]
	r statebackend.KeyGroupRange
}

// testRatio materializes after a changelog of half the store's size:
// the tests' stores are small, so that is every few checkpoints.
const testRatio = 0.5

func clOptions(t *testing.T, r statebackend.KeyGroupRange) Options {
	return Options{Dir: t.TempDir() + "/db", KeyGroups: r, CacheBytes: 1 << 20, MemTableBytes: 1 << 20,
		CacheKeys: testCacheKeys, Changelog: &ChangelogOptions{Ratio: testRatio, Interval: -1}}
}

// openCL opens a subtask on r: its memory backend restored from mem, its
// store from the native checkpoints olds.
func openCL(t *testing.T, r statebackend.KeyGroupRange, mem []*statebackend.KeyedState, olds []NativeState) *clSub {
	t.Helper()
	b := &backends{mb: statebackend.NewBackend(r)}
	var err error
	if b.ps, err = Open(clOptions(t, r)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.ps.Close() })
	for _, ks := range mem {
		if err := b.mb.Restore(ks); err != nil {
			t.Fatal(err)
		}
	}
	if len(olds) > 0 {
		if err := b.ps.RestoreNative(olds); err != nil {
			t.Fatal(err)
		}
	}
	b.register(t)
	q, err := NewTimerQueue[string](b.ps, "_timers", str{})
	if err != nil {
		t.Fatal(err)
	}
	return &clSub{backends: b, q: q, r: r}
}

// step applies a random state operation to a key of the subtask's, and
// now and then a timer registration, delete or firing, to the model too.
func (c *clSub) step(t *testing.T, rng *rand.Rand, keys []int64, model timerModel) {
	t.Helper()
	var mine []int64
	for _, k := range keys {
		if c.r.Contains(kgOf(k)) {
			mine = append(mine, k)
		}
	}
	c.backends.step(t, rng, mine)
	kg := c.r.First + rng.IntN(c.r.Len())
	k := fmt.Sprintf("t%d", rng.IntN(20))
	ts := rng.Int64N(1000)
	switch rng.IntN(6) {
	case 0, 1:
		c.q.Add(kg, k, ts)
		model[Timer[string]{ts, kg, k}] = true
	case 2:
		for m := range model {
			if c.r.Contains(m.KeyGroup) {
				k, kg, ts = m.Key, m.KeyGroup, m.TS
				break
			}
		}
		c.q.Delete(kg, k, ts)
		delete(model, Timer[string]{ts, kg, k})
	case 3:
		if p, ok := c.q.Peek(); ok {
			if got := c.q.Pop(); got != p || !model[got] {
				t.Fatalf("pop %v, peeked %v (in model: %v)", got, p, model[got])
			}
			delete(model, p)
		}
	}
}

// timersIn lists the model's timers in r as queueContents does.
func timersIn(m timerModel, r statebackend.KeyGroupRange) []string {
	var out []string
	for tm := range m {
		if r.Contains(tm.KeyGroup) {
			out = append(out, fmt.Sprintf("%d/%s=%d", tm.KeyGroup, tm.Key, tm.TS))
		}
	}
	slices.Sort(out)
	return out
}

// clWant is the state at a checkpoint: the memory backend's entries and
// the model's timers.
type clWant struct {
	entries map[string]map[int]map[string]string
	timers  []string
	model   timerModel
}

// check compares the subtask's Pebble store with want.
func (c *clSub) check(t *testing.T, what string, entries map[string]map[int]map[string]string, timers []string) {
	t.Helper()
	secs, err := c.ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	ks := stateFile(t, c.r, secs, c.r)
	equalContents(t, what, entries, contents(t, ks))
	if got := queueContents(t, ks, "_timers"); !slices.Equal(got, timers) {
		t.Fatalf("%s: timers %v, want %v", what, got, timers)
	}
}

// segmentsOf lists the changelog segments among a checkpoint's files.
func segmentsOf(names []string) []string {
	var out []string
	for _, n := range names {
		if isSegment(n) {
			out = append(out, n)
		}
	}
	return out
}

// TestChangelogChain is the model-based test of changelog checkpoints: a
// long chain of checkpoints of random values, maps, lists and timers,
// some taken while the task writes during the barrier's write-back, with
// several materializations; every checkpoint restores to the state at its
// barrier, and so does a checkpoint of a restored store (its changelog
// starts again).
func TestChangelogChain(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	rng := rand.New(rand.NewPCG(7, 8))
	keys := randomKeys(rng, 300)
	model := timerModel{}
	c := openCL(t, all, nil, nil)
	type taken struct {
		want  clWant
		state NativeState
		files []string
	}
	var chain []taken
	seen := map[string]bool{}
	for id := int64(1); id <= 40; id++ {
		for range 150 + rng.IntN(150) {
			c.step(t, rng, keys, model)
		}
		ms := c.mb.Snapshot()
		want := clWant{entries: contents(t, stateFile(t, all, ms, all)), timers: timersIn(model, all), model: maps.Clone(model)}
		hold := make(chan struct{})
		held := id%3 == 0
		if held {
			c.ps.holdWriteBack = func() { <-hold }
		}
		cp, err := c.ps.Checkpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		c.ps.holdWriteBack = nil
		// Writes after the barrier, during its write-back when held,
		// must not show in the checkpoint.
		for range 100 {
			c.step(t, rng, keys, model)
		}
		close(hold)
		names := files(t, cp)
		for _, sg := range segmentsOf(names) {
			if !Shared(sg) {
				t.Fatalf("segment %s is not shared", sg)
			}
			seen[sg] = true
		}
		chain = append(chain, taken{want: want, files: names, state: download(t, cp, all)})
	}
	if n := c.ps.cl.materializations; n < 3 {
		t.Fatalf("%d materializations in 40 checkpoints, want at least 3", n)
	}
	if len(seen) < 10 {
		t.Fatalf("%d changelog segments in 40 checkpoints", len(seen))
	}
	// Consecutive checkpoints of one materialization share their segments.
	shared := 0
	for i := 1; i < len(chain); i++ {
		prev := segmentsOf(chain[i-1].files)
		for _, sg := range segmentsOf(chain[i].files) {
			if slices.Contains(prev, sg) {
				shared++
			}
		}
	}
	if shared == 0 {
		t.Fatal("no checkpoint refers to an earlier one's segments")
	}
	for i, tk := range chain {
		r := openCL(t, all, nil, []NativeState{tk.state})
		r.check(t, fmt.Sprintf("restore of checkpoint %d (%d segments)", i+1, len(segmentsOf(tk.files))), tk.want.entries, tk.want.timers)
		if i%10 != 9 {
			r.ps.Close()
			continue
		}
		// A restored store goes on and checkpoints again; the memory
		// backend starts from the restored store's state.
		m := maps.Clone(tk.want.model)
		secs, err := r.ps.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		r.mb = statebackend.NewBackend(all)
		if err := r.mb.Restore(stateFile(t, all, secs, all)); err != nil {
			t.Fatal(err)
		}
		r.registerMem(t)
		for id := int64(1); id <= 6; id++ {
			for range 200 {
				r.step(t, rng, keys, m)
			}
			want := contents(t, stateFile(t, all, r.mb.Snapshot(), all))
			cp, err := r.ps.Checkpoint(id)
			if err != nil {
				t.Fatal(err)
			}
			st := download(t, cp, all)
			again := openCL(t, all, nil, []NativeState{st})
			again.check(t, fmt.Sprintf("checkpoint %d after restoring checkpoint %d", id, i+1), want, timersIn(m, all))
			again.ps.Close()
		}
		r.ps.Close()
	}
}

// registerMem makes the memory backend's tables again (after it was
// replaced).
func (b *backends) registerMem(t *testing.T) {
	t.Helper()
	var err error
	if b.mv, err = statebackend.NewValueTable[int64, string](b.mb, "v", i64{}, str{}); err != nil {
		t.Fatal(err)
	}
	if b.mm, err = statebackend.NewMapTable[int64, string, int64](b.mb, "m", i64{}, str{}, i64{}); err != nil {
		t.Fatal(err)
	}
	if b.ml, err = statebackend.NewListTable[int64, int64](b.mb, "l", i64{}, i64{}); err != nil {
		t.Fatal(err)
	}
	var ok1, ok2 bool
	if b.mw, ok1, err = statebackend.NewWordTable[int64, int64](b.mb, "w", i64{}, i64{}); err != nil {
		t.Fatal(err)
	}
	if b.mf, ok2, err = statebackend.NewWordTable[int64, bool](b.mb, "f", i64{}, boolCodec{}); err != nil {
		t.Fatal(err)
	}
	if !ok1 || !ok2 {
		t.Fatal("the memory backend has no words for w and f")
	}
}

// split returns n contiguous ranges covering all.
func split(all statebackend.KeyGroupRange, n int) []statebackend.KeyGroupRange {
	var out []statebackend.KeyGroupRange
	for i := range n {
		out = append(out, statebackend.KeyGroupRange{First: all.First + i*all.Len()/n, Last: all.First + (i+1)*all.Len()/n - 1})
	}
	return out
}

func intersect(a, b statebackend.KeyGroupRange) statebackend.KeyGroupRange {
	return statebackend.KeyGroupRange{First: max(a.First, b.First), Last: min(a.Last, b.Last)}
}

// TestChangelogRescale rescales changelog checkpoints 2 -> 3 -> 1: each
// new subtask adopts (one old subtask) or copies from (several) the old
// materializations with their segments replayed, keeping its own key
// groups, and equals the memory backend restored from the same barrier.
func TestChangelogRescale(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	rng := rand.New(rand.NewPCG(9, 10))
	keys := randomKeys(rng, 400)
	model := timerModel{}
	var subs []*clSub
	for _, r := range split(all, 2) {
		subs = append(subs, openCL(t, r, nil, nil))
	}
	for _, n := range []int{3, 1} {
		// Enough checkpoints for a materialization and segments after it.
		var olds []NativeState
		var mems [][]statebackend.Section
		for id := int64(1); id <= 8; id++ {
			for _, s := range subs {
				for range 150 {
					s.step(t, rng, keys, model)
				}
			}
			olds, mems = nil, nil
			for _, s := range subs {
				mems = append(mems, s.mb.Snapshot())
				cp, err := s.ps.Checkpoint(id)
				if err != nil {
					t.Fatal(err)
				}
				olds = append(olds, download(t, cp, s.r))
			}
		}
		for _, o := range olds {
			if segs, err := readSegments(o.Dir); err != nil || len(segs) == 0 {
				t.Fatalf("checkpoint of %v: segments %v, %v", o.KeyGroups, segs, err)
			}
		}
		var next []*clSub
		for _, r := range split(all, n) {
			var mem []*statebackend.KeyedState
			var from []NativeState
			for i, o := range olds {
				in := intersect(o.KeyGroups, r)
				if in.First > in.Last {
					continue
				}
				mem = append(mem, stateFile(t, o.KeyGroups, mems[i], in))
				// Each new subtask gets its own copy: a restore removes it.
				from = append(from, copyDir(t, o))
			}
			s := openCL(t, r, mem, from)
			s.check(t, fmt.Sprintf("rescale to %d, subtask %v", n, r), contents(t, stateFile(t, r, s.mb.Snapshot(), r)), timersIn(model, r))
			for _, k := range keys {
				if r.Contains(kgOf(k)) {
					s.checkKey(t, kgOf(k), k)
				}
			}
			next = append(next, s)
		}
		for _, s := range subs {
			s.ps.Close()
		}
		subs = next
	}
}

// copyDir copies a downloaded checkpoint.
func copyDir(t *testing.T, o NativeState) NativeState {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir(o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(o.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return NativeState{Dir: dir, KeyGroups: o.KeyGroups}
}

// TestChangelogRestoreErrors: a checkpoint whose segment is missing,
// truncated or corrupt fails to restore with an error naming the segment,
// never restores part of the state.
func TestChangelogRestoreErrors(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	rng := rand.New(rand.NewPCG(11, 12))
	keys := randomKeys(rng, 100)
	c := openCL(t, all, nil, nil)
	model := timerModel{}
	var st NativeState
	var segs []string
	for id := int64(1); len(segs) < 2; id++ {
		if id > 20 {
			t.Fatal("no checkpoint with two segments in 20")
		}
		for range 200 {
			c.step(t, rng, keys, model)
		}
		cp, err := c.ps.Checkpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		segs = segmentsOf(files(t, cp))
		st = download(t, cp, all)
	}
	restore := func(what string, corrupt bool, spoil func(dir string), names ...string) {
		t.Helper()
		bad := copyDir(t, st)
		spoil(bad.Dir)
		s, err := Open(clOptions(t, all))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		err = s.RestoreNative([]NativeState{bad})
		if err == nil {
			t.Fatalf("%s: restored", what)
		}
		if names == nil {
			names = segs[1:2]
		}
		for _, n := range names {
			if !strings.Contains(err.Error(), n) {
				t.Fatalf("%s: error %q does not name %s", what, err, n)
			}
		}
		if errors.Is(err, statebackend.ErrCorrupt) != corrupt {
			t.Fatalf("%s: error %q: corrupt %v, want %v", what, err, !corrupt, corrupt)
		}
		t.Logf("%s: %v", what, err)
	}
	restore("missing segment", false, func(dir string) { os.Remove(filepath.Join(dir, segs[1])) })
	restore("truncated segment", true, func(dir string) {
		name := filepath.Join(dir, segs[1])
		info, _ := os.Stat(name)
		os.Truncate(name, info.Size()-3)
	})
	restore("corrupt segment", true, func(dir string) {
		name := filepath.Join(dir, segs[1])
		data, _ := os.ReadFile(name)
		data[len(data)-2] ^= 0x40
		os.WriteFile(name, data, 0o644)
	})
	restore("not a segment", true, func(dir string) {
		name := filepath.Join(dir, segs[1])
		data, _ := os.ReadFile(name)
		copy(data, "XXXXXXXX")
		os.WriteFile(name, data, 0o644)
	})
	restore("no segment list", true, func(dir string) { os.Remove(filepath.Join(dir, ChangelogFile)) }, ChangelogFile)
	// The intact checkpoint restores.
	s, err := Open(clOptions(t, all))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RestoreNative([]NativeState{copyDir(t, st)}); err != nil {
		t.Fatal(err)
	}
}

// TestChangelogMaterializeTriggers: a materialization comes at the first
// checkpoint, then when the changelog passes the ratio or the interval
// passed, and never for an empty changelog; the checkpoints between refer
// to the last one and list the segments since.
func TestChangelogMaterializeTriggers(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	for _, tc := range []struct {
		name string
		o    ChangelogOptions
		// want is the materializations after each of 4 checkpoints
		// with writes, then one without.
		want []int
	}{
		{"interval", ChangelogOptions{Ratio: 1000, Interval: time.Nanosecond}, []int{1, 2, 3, 4, 4}},
		{"never", ChangelogOptions{Ratio: 1000, Interval: -1}, []int{1, 1, 1, 1, 1}},
		{"ratio", ChangelogOptions{Ratio: 1e-9, Interval: -1}, []int{1, 2, 3, 4, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := clOptions(t, all)
			o.Changelog = &tc.o
			s, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			v, err := NewValueTable[int64, string](s, "v", i64{}, str{})
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.want {
				if i < 4 {
					for k := range int64(20) {
						v.Put(kgOf(k), k, fmt.Sprint(i))
					}
				}
				cp, err := s.Checkpoint(int64(i + 1))
				if err != nil {
					t.Fatal(err)
				}
				names := files(t, cp)
				cp.Release()
				if got := s.cl.materializations; got != want {
					t.Fatalf("after checkpoint %d: %d materializations, want %d", i+1, got, want)
				}
				// Segments since the materialization the checkpoint refers to.
				segs := len(segmentsOf(names))
				if tc.name == "never" && segs != min(i, 3) {
					t.Errorf("checkpoint %d lists %d segments", i+1, segs)
				}
				if tc.name != "never" && segs > 1 {
					t.Errorf("checkpoint %d lists %d segments, materializing every time", i+1, segs)
				}
			}
		})
	}
}
