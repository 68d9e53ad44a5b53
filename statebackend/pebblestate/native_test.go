package pebblestate

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// download copies a native checkpoint's files into a new directory, as a
// restore downloads them, and releases the checkpoint.
func download(t *testing.T, c *Checkpoint, r statebackend.KeyGroupRange) NativeState {
	t.Helper()
	defer c.Release()
	dir := t.TempDir()
	for _, name := range files(t, c) {
		src, err := os.Open(filepath.Join(c.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
	return NativeState{Dir: dir, KeyGroups: r}
}

// openNative opens both backends on r, the memory one restored from mem
// and the Pebble one from native checkpoints.
func openNative(t *testing.T, r statebackend.KeyGroupRange, mem []*statebackend.KeyedState, olds []NativeState) *backends {
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
	if err := b.ps.RestoreNative(olds); err != nil {
		t.Fatal(err)
	}
	b.register(t)
	return b
}

func (b *backends) pebbleContents(t *testing.T, r statebackend.KeyGroupRange) map[string]map[int]map[string]string {
	t.Helper()
	secs, err := b.ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return contents(t, stateFile(t, r, secs, r))
}

// TestNativeCheckpointRestore restores native checkpoints of a store
// whole, split in two (a range delete drops the other half) and merged
// back from the halves' own checkpoints (entries copied with their state
// ids mapped), each time equal to the memory backend's state at the
// checkpoint, with reads and writes agreeing afterwards.
func TestNativeCheckpointRestore(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	halves := []statebackend.KeyGroupRange{{First: 0, Last: 6}, {First: 7, Last: maxP - 1}}
	rng := rand.New(rand.NewPCG(3, 4))
	keys := randomKeys(rng, 200)
	b := openBoth(t, all, nil, nil)
	for round := range 2 {
		for range 1500 {
			b.step(t, rng, keys)
		}
		ms := b.mb.Snapshot()
		c, err := b.ps.Checkpoint(int64(round + 1))
		if err != nil {
			t.Fatal(err)
		}
		// Writes after the checkpoint must not show in it.
		for range 300 {
			b.step(t, rng, keys)
		}
		read := func(r statebackend.KeyGroupRange) *statebackend.KeyedState {
			return stateFile(t, all, ms, r)
		}
		want := contents(t, read(all))
		var copies []NativeState
		for range 3 {
			copies = append(copies, download(t, mustCheckpointCopy(t, c), all))
		}
		c.Release()
		if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
			t.Fatalf("released checkpoint directory %s: %v", c.Dir(), err)
		}

		whole := openNative(t, all, []*statebackend.KeyedState{read(all)}, copies[:1])
		equalContents(t, fmt.Sprintf("round %d whole restore", round), want, whole.pebbleContents(t, all))

		var parts []NativeState
		for i, h := range halves {
			p := openNative(t, h, []*statebackend.KeyedState{read(h)}, copies[1+i:2+i])
			equalContents(t, fmt.Sprintf("round %d half %v", round, h), contents(t, read(h)), p.pebbleContents(t, h))
			for _, k := range keys {
				if h.Contains(kgOf(k)) {
					p.checkKey(t, kgOf(k), k)
				}
			}
			pc, err := p.ps.Checkpoint(100)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, download(t, pc, h))
		}
		merged := openNative(t, all, []*statebackend.KeyedState{read(all)}, parts)
		equalContents(t, fmt.Sprintf("round %d merged", round), want, merged.pebbleContents(t, all))
		for range 500 {
			merged.step(t, rng, keys)
		}
		if round == 1 {
			// The original store goes on after its checkpoints.
			for _, k := range keys {
				b.checkKey(t, kgOf(k), k)
			}
		}
	}
}

// files waits for c's files.
func files(t testing.TB, c *Checkpoint) []string {
	t.Helper()
	f, err := c.Files(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mustCheckpointCopy returns a checkpoint sharing c's files whose Release
// leaves c alone: download releases what it copies.
func mustCheckpointCopy(t *testing.T, c *Checkpoint) *Checkpoint {
	t.Helper()
	if !c.s.acquire() {
		t.Fatal("store closed")
	}
	dir := t.TempDir()
	for _, name := range files(t, c) {
		if err := os.Link(filepath.Join(c.Dir(), name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	e := &epoch{done: make(chan struct{}), ready: make(chan struct{}), files: files(t, c)}
	close(e.done)
	close(e.ready)
	return &Checkpoint{s: c.s, dir: dir, ep: e}
}

// TestNativeRestoreErrors: a checkpoint without its states file, or with
// a missing SST, is an error, not an empty store.
func TestNativeRestoreErrors(t *testing.T) {
	all := statebackend.KeyGroupRange{First: 0, Last: maxP - 1}
	rng := rand.New(rand.NewPCG(5, 6))
	keys := []int64{1, 2, 3, 4, 5, 6, 7, 8}
	b := openBoth(t, all, nil, nil)
	for range 200 {
		b.step(t, rng, keys)
	}
	c, err := b.ps.Checkpoint(1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	var ssts int
	for _, f := range files(t, c) {
		if Shared(f) {
			ssts++
		}
	}
	if ssts == 0 {
		t.Fatalf("checkpoint files %v: no SST", files(t, c))
	}
	open := func() *Store {
		s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: all})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	noStates := download(t, mustCheckpointCopy(t, c), all)
	os.Remove(filepath.Join(noStates.Dir, StatesFile))
	if err := open().RestoreNative([]NativeState{noStates}); err == nil {
		t.Error("restored a checkpoint without its states file")
	}
	noSST := download(t, mustCheckpointCopy(t, c), all)
	for _, f := range files(t, c) {
		if Shared(f) {
			os.Remove(filepath.Join(noSST.Dir, f))
		}
	}
	if err := open().RestoreNative([]NativeState{noSST}); err == nil {
		t.Error("restored a checkpoint without its SSTs")
	}
}

// randomKeys is n keys of every magnitude (shifted right by 0 to 59
// bits), so that their encodings have every length.
func randomKeys(rng *rand.Rand, n int) []int64 {
	keys := make([]int64, n)
	for i := range keys {
		keys[i] = rng.Int64() >> rng.IntN(60)
	}
	return keys
}
