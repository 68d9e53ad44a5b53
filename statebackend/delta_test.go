package statebackend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// chainStore is the test's checkpoint storage: shared files by name.
type chainStore map[string][]byte

// checkpointIncremental does what the uploader does for one operator
// subtask: a delta against the tracker's base when it has one, else a full
// file, stored as a shared file; it returns the checkpoint's chain.
func checkpointIncremental(t testing.TB, inc *Incremental, st chainStore, id, baseID int64, sections []Section) []FileRef {
	t.Helper()
	baseSections, base, ok := inc.Base(baseID)
	var data []byte
	var err error
	if ok {
		data, err = WriteDeltaFile(all, baseSections, sections, [][]byte{[]byte(fmt.Sprint(id))})
	} else {
		data, err = WriteStateFile(all, sections, [][]byte{[]byte(fmt.Sprint(id))})
		base = nil
	}
	if err != nil {
		t.Fatal(err)
	}
	name := SharedFileName("op", 0, id)
	st[name] = data
	chain := append(slices.Clone(base), FileRef{Path: name, Size: int64(len(data)), Shared: true, Delta: ok})
	inc.Stored(id, sections, chain)
	return chain
}

// readChain reads key groups r of a chain from st and merges it.
func readChain(t testing.TB, st chainStore, chain []FileRef, r KeyGroupRange) (*KeyedState, error) {
	t.Helper()
	var states []*KeyedState
	for _, f := range chain {
		data, ok := st[f.Path]
		if !ok {
			return nil, fmt.Errorf("%s: %w", f.Path, errMissing)
		}
		sf, _ := openMem(t, f.Path, data)
		ks, err := sf.ReadKeyGroups(context.Background(), r)
		if err != nil {
			return nil, err
		}
		states = append(states, ks)
	}
	return MergeChain(states)
}

var errMissing = errors.New("missing")

// copyTimers snapshots the test's timer section.
func copyTimers(ts timerSection) timerSection {
	out := timerSection{}
	for kg, l := range ts {
		out[kg] = slices.Clone(l)
	}
	return out
}

// expected is the state a completed checkpoint must restore to.
type expected struct {
	chain  []FileRef
	state  map[string]string
	timers timerSection
}

// TestIncrementalChainRestoresEveryRetainedCheckpoint is the property
// test of incremental checkpoints: random writes, deletes and timers on
// every table kind, checkpoints that are deltas against the latest
// completed one (some aborted after their upload), retention of the last
// one or three and deletion of the shared files none of them uses,
// notifications of completion that come late or never; after every
// completion EVERY retained checkpoint restores to exactly the state it
// was taken of, at parallelism 1 and split in two (a rescale).
func TestIncrementalChainRestoresEveryRetainedCheckpoint(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runChainProperty(t, seed) })
	}
}

func runChainProperty(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	f := newFixture(t, all)
	// Odd seeds start nearly empty, so that the value tables grow
	// through page sizes below a full page between checkpoints.
	f.fill([]int{300, 10}[seed%2])
	timers := testTimers()
	inc := &Incremental{}
	st := chainStore{}
	var retained []expected
	keep := []int{1, 3}[seed%2]
	deltas := 0
	var latest int64 // the latest completed checkpoint, the JobManager's base
	for id := int64(1); id <= 60; id++ {
		// Random writes: a few percent of the keys, all kinds.
		for range rng.IntN(40) + 1 {
			k := fmt.Sprintf("key-%d", rng.IntN(400))
			kg := kgOf(k)
			switch rng.IntN(9) {
			case 0, 1:
				f.counts.Put(kg, k, rng.Int64N(1000))
			case 2:
				f.counts.Delete(kg, k)
			case 3:
				f.attrs.Put(kg, k, fmt.Sprint("a", rng.IntN(3)), rng.Int64N(10))
			case 4:
				f.attrs.Remove(kg, k, fmt.Sprint("a", rng.IntN(3)))
			case 5:
				f.events.Append(kg, k, rng.Int64N(10))
			case 6:
				f.events.Clear(kg, k)
			case 7:
				timers[kg] = append(timers[kg], timer{k, rng.Int64N(1e12)})
			case 8:
				if l := timers[kg]; len(l) > 0 {
					i := rng.IntN(len(l))
					timers[kg] = slices.Delete(slices.Clone(l), i, i+1)
				}
			}
		}
		snapTimers := copyTimers(timers)
		sections := append(f.b.Snapshot(), snapTimers)
		chain := checkpointIncremental(t, inc, st, id, latest, sections)
		if chain[len(chain)-1].Delta {
			deltas++
		}
		if rng.IntN(6) == 0 {
			continue // aborted after its upload: never completes
		}
		// The notification of completion may come late or never: the
		// next checkpoint's base ID tells the subtask too.
		if rng.IntN(2) == 0 {
			inc.Completed(id)
		}
		latest = id
		retained = append(retained, expected{chain: chain, state: f.dump(), timers: snapTimers})
		if len(retained) > keep {
			retained = retained[1:]
		}
		var metas []*Metadata
		for _, e := range retained {
			metas = append(metas, &Metadata{Operators: []OperatorState{{UID: "op", Subtasks: []SubtaskState{{Chain: e.chain}}}}})
		}
		for _, name := range UnusedSharedFiles(slices.Collect(maps.Keys(st)), metas, id) {
			delete(st, name)
		}
		if n := len(st); n > 2*(1+MaxChainDeltas) {
			t.Fatalf("checkpoint %d: %d shared files stored, the chains of the retained checkpoints need at most %d", id, n, 2*(1+MaxChainDeltas))
		}
		for _, e := range retained {
			for _, r := range []KeyGroupRange{all, {First: 0, Last: 2}, {First: 3, Last: testMaxP - 1}} {
				ks, err := readChain(t, st, e.chain, r)
				if err != nil {
					t.Fatalf("checkpoint %d, restoring a retained one (chain of %d): %v", id, len(e.chain), err)
				}
				b := NewBackend(r)
				if err := b.Restore(ks); err != nil {
					t.Fatal(err)
				}
				diffDumps(t, registerFixture(t, b).dump(), within(e.state, r))
				if got, want := readTimers(t, ks), timersIn(e.timers, r); !slices.Equal(got, want) {
					t.Fatalf("checkpoint %d: timers %v, want %v", id, got, want)
				}
			}
		}
	}
	if deltas < 30 {
		t.Errorf("%d of 60 checkpoints were deltas; the test means to cover chains", deltas)
	}
}

// TestDeltaIsSmall checks that a delta holds the changed entries only:
// after 1 % of the keys change, the delta is a few percent of the full
// file (the key groups all changed, the entries did not).
func TestDeltaIsSmall(t *testing.T) {
	b := NewBackend(all)
	vt, err := NewValueTable[int64, int64](b, "v", int64Codec{}, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for k := range int64(n) {
		vt.Put(int(k%testMaxP), k, k)
	}
	prev := b.Snapshot()
	full, err := WriteStateFile(all, prev, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range n / 100 {
		k := rng.Int64N(n)
		vt.Put(int(k%testMaxP), k, -k)
	}
	vt.Delete(3, 3)
	cur := b.Snapshot()
	delta, err := WriteDeltaFile(all, prev, cur, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(delta)*100 > 3*len(full) {
		t.Errorf("delta of %d bytes after 1%% of the keys changed, full file %d bytes", len(delta), len(full))
	}
	// A delta over an unchanged table is empty apart from the index.
	same, err := WriteDeltaFile(all, cur, b.Snapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sf, _ := openMem(t, "same", same)
	if sizes := sf.KeyGroupSizes(); slices.ContainsFunc(sizes, func(n int64) bool { return n != 0 }) {
		t.Errorf("a delta between equal snapshots has blocks: %v", sizes)
	}
}

// TestMergeChainRejectsBrokenChain applies a delta to a base it was not
// computed against: the deletion of a key the base lacks is an error
// naming the delta file, not silently different state.
func TestMergeChainRejectsBrokenChain(t *testing.T) {
	f := newFixture(t, all)
	f.fill(50)
	empty := f.b.Snapshot()
	f.counts.Delete(kgOf("key-4"), "key-4")
	delta, err := WriteDeltaFile(all, empty, f.b.Snapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	other := newFixture(t, all) // lacks key-4
	base := writeSnapshot(t, other.b.Snapshot(), all)
	_, err = MergeChain([]*KeyedState{readState(t, "base.state", base, all), readState(t, "delta-7.state", delta, all)})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "delta-7.state") {
		t.Fatalf("err = %v, want ErrCorrupt naming the delta", err)
	}
}

// TestIncrementalForgetsCheckpointsThatNeverComplete: stored checkpoints
// that never complete are dropped beyond the newest few, and a base is
// only what the caller names.
func TestIncrementalForgetsCheckpointsThatNeverComplete(t *testing.T) {
	inc := &Incremental{}
	chain := []FileRef{{Path: "f", Size: 10}}
	for id := int64(1); id <= 20; id++ {
		inc.Stored(id, nil, chain)
	}
	if n := len(inc.pending); n != maxPending {
		t.Errorf("%d checkpoints remembered, want %d", n, maxPending)
	}
	if _, _, ok := inc.Base(3); ok {
		t.Error("a forgotten checkpoint is a base")
	}
	if _, got, ok := inc.Base(19); !ok || len(got) != 1 {
		t.Errorf("checkpoint 19: %v %v", got, ok)
	}
	if _, _, ok := inc.Base(20); !ok {
		t.Error("checkpoint 20, stored after 19, is no base")
	}
	if _, _, ok := inc.Base(19); ok {
		t.Error("checkpoint 19 is a base again after 20")
	}
}

func TestSharedFileNames(t *testing.T) {
	if got := SharedDir("s3://b/ckpt/job1/chk-7"); got != "s3://b/ckpt/job1/shared" {
		t.Error(got)
	}
	if got := SharedDir("/tmp/ck/job1/chk-7/"); got != "/tmp/ck/job1/shared" {
		t.Error(got)
	}
	name := SharedFileName("detector", 3, 42)
	if id, ok := ParseSharedFileName(name); !ok || id != 42 {
		t.Errorf("%s: %d %v", name, id, ok)
	}
	got := UnusedSharedFiles([]string{SharedFileName("a", 0, 1), SharedFileName("a", 0, 2), SharedFileName("a", 0, 9), "a/junk"},
		[]*Metadata{{Operators: []OperatorState{{UID: "a", Subtasks: []SubtaskState{{Chain: []FileRef{{Path: SharedFileName("a", 0, 2), Shared: true}}}}}}}}, 5)
	if !slices.Equal(got, []string{SharedFileName("a", 0, 1)}) {
		t.Errorf("unused %v", got)
	}
}
