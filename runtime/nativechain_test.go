package runtime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
	"github.com/weirstream/weir/statebackend/storage"
)

// nativeTables are the states of the chain test on one Pebble store.
type nativeTables struct {
	s *pebblestate.Store
	v *pebblestate.ValueTable[string, int64]
	m *pebblestate.MapTable[string, string, int64]
	l *pebblestate.ListTable[string, int64]
}

func openNativeTables(t *testing.T, r KeyGroupRange, olds []pebblestate.NativeState) *nativeTables {
	t.Helper()
	s, err := pebblestate.Open(pebblestate.Options{Dir: filepath.Join(t.TempDir(), "db"), KeyGroups: r,
		CacheBytes: 1 << 20, MemTableBytes: 64 << 10, CacheKeys: 64, BallastBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if olds != nil {
		if err := s.RestoreNative(olds); err != nil {
			t.Fatal(err)
		}
	}
	n := &nativeTables{s: s}
	if n.v, err = pebblestate.NewValueTable[string, int64](s, "v", StringKey, Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if n.m, err = pebblestate.NewMapTable[string, string, int64](s, "m", StringKey, StringCodec{}, Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if n.l, err = pebblestate.NewListTable[string, int64](s, "l", StringKey, Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	return n
}

// contents is the store's state in key groups r, order-free.
func (n *nativeTables) contents(t *testing.T, r KeyGroupRange) []string {
	t.Helper()
	secs, err := n.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := statebackend.WriteStateFile(n.s.KeyGroups(), secs, nil)
	for _, sec := range secs {
		sec.(interface{ Release() }).Release()
	}
	if err != nil {
		t.Fatal(err)
	}
	return readContents(t, data, r)
}

func readContents(t *testing.T, data []byte, r KeyGroupRange) []string {
	t.Helper()
	ctx := context.Background()
	f, err := statebackend.OpenStateFile(ctx, "state", int64(len(data)), func(_ context.Context, off, n int64) ([]byte, error) {
		return data[off : off+n], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := f.ReadKeyGroups(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	return stateContents(t, ks)
}

// TestNativeChainRestoresEveryRetainedCheckpoint checks, for native pebble
// checkpoints, what TestIncrementalChainRestoresEveryRetainedCheckpoint
// checks for the memory backend's deltas: random writes to every table
// kind; checkpoints uploaded by the engine's uploader, each referring to
// the SSTs its base (the latest completed checkpoint) uploaded; some
// aborted after their upload; completion notified late or never;
// retention of the last one or three and deletion of the shared files
// none of them uses, as the JobManager does. After every completion EVERY
// retained checkpoint restores, whole and split in two (a rescale), to
// exactly the state it was taken of. Finally a deleted shared SST fails
// the restore naming it.
func TestNativeChainRestoresEveryRetainedCheckpoint(t *testing.T) {
	for seed := range uint64(2) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runNativeChain(t, seed) })
	}
}

func runNativeChain(t *testing.T, seed uint64) {
	ctx := context.Background()
	all := KeyGroupRange{First: 0, Last: 7}
	halves := []KeyGroupRange{{First: 0, Last: 2}, {First: 3, Last: 7}}
	rng := rand.New(rand.NewPCG(seed, 17))
	root := t.TempDir()
	n := openNativeTables(t, all, nil)
	kg := func(k string) int { return KeyGroupForHash(StringKey.Hash(k), 8) }
	// A few thousand keys, so the store has several SSTs that most
	// checkpoints leave alone.
	for i := range 4000 {
		k := fmt.Sprint("key-", i)
		n.v.Put(kg(k), k, int64(i))
		n.l.Append(kg(k), k, int64(i))
	}
	uploads := &statebackend.NativeUploads{}
	type expected struct {
		location string
		chain    []statebackend.FileRef
		state    []byte // the state file of the checkpoint's contents
		meta     *statebackend.Metadata
	}
	var retained []expected
	keep := []int{1, 3}[seed%2]
	var latest int64
	reused := 0
	shared, err := storage.Open(statebackend.SharedDir(filepath.Join(root, "job", "chk-1")), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 14; id++ {
		for range rng.IntN(120) + 1 {
			k := fmt.Sprint("key-", rng.IntN(8000))
			switch rng.IntN(7) {
			case 0, 1:
				n.v.Put(kg(k), k, rng.Int64N(1000))
			case 2:
				n.v.Delete(kg(k), k)
			case 3:
				n.m.Put(kg(k), k, fmt.Sprint("a", rng.IntN(3)), rng.Int64N(10))
			case 4:
				n.m.Remove(kg(k), k, fmt.Sprint("a", rng.IntN(3)))
			case 5:
				n.l.Append(kg(k), k, rng.Int64N(10))
			case 6:
				n.l.Clear(kg(k), k)
			}
		}
		cp, err := n.s.Checkpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		secs, err := n.s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		state, err := statebackend.WriteStateFile(all, secs, nil)
		for _, sec := range secs {
			sec.(interface{ Release() }).Release()
		}
		if err != nil {
			t.Fatal(err)
		}
		location := filepath.Join(root, "job", fmt.Sprint("chk-", id))
		snap := &engine.Snapshot{Barrier: engine.Barrier{ID: id, Location: location, BaseID: latest},
			States: []engine.StateSnapshot{{UID: "op", KeyGroups: all,
				Encode: func(context.Context) ([]byte, error) { return statebackend.WriteStateFile(all, nil, nil) },
				Keys:   func() int64 { return 0 }, Native: &nativeSnapshot{cp: cp, uploads: uploads, id: id}}}}
		ack, err := engine.StorageUploader{}.Upload(ctx, snap)
		cp.Release()
		if err != nil {
			t.Fatal(err)
		}
		chain := ack.States[0].Chain
		if latest > 0 {
			base := map[string]statebackend.FileRef{}
			for _, e := range retained {
				if e.meta.CheckpointID == latest {
					for _, f := range e.chain {
						base[f.Local] = f
					}
				}
			}
			for _, f := range chain {
				if b, ok := base[f.Local]; ok && f.Shared && b == f {
					reused++
				}
			}
		}
		if rng.IntN(6) == 0 {
			continue // aborted after its upload: never completes
		}
		if rng.IntN(2) == 0 {
			uploads.Completed(id)
		}
		latest = id
		meta := &statebackend.Metadata{CheckpointID: id, Operators: []statebackend.OperatorState{{UID: "op",
			Subtasks: []statebackend.SubtaskState{{Chain: chain, KeyGroups: all}}}}}
		retained = append(retained, expected{location: location, chain: chain, state: state, meta: meta})
		if len(retained) > keep {
			retained = retained[1:]
		}
		var metas []*statebackend.Metadata
		for _, e := range retained {
			metas = append(metas, e.meta)
		}
		objs, err := shared.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range objs {
			names = append(names, o.Name)
		}
		for _, name := range statebackend.UnusedSharedFiles(names, metas, id) {
			if err := shared.Delete(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range retained {
			whole := nativeRestore(t, e.location, e.chain, all, []KeyGroupRange{all})
			if got, want := whole.contents(t, all), readContents(t, e.state, all); !slices.Equal(got, want) {
				t.Fatalf("checkpoint %d, restoring retained checkpoint %d: %d entries, want %d", id, e.meta.CheckpointID, len(got), len(want))
			}
			for _, h := range halves {
				part := nativeRestore(t, e.location, e.chain, h, []KeyGroupRange{all})
				if got, want := part.contents(t, h), readContents(t, e.state, h); !slices.Equal(got, want) {
					t.Fatalf("checkpoint %d, restoring key groups %v of retained checkpoint %d: %d entries, want %d", id, h, e.meta.CheckpointID, len(got), len(want))
				}
			}
		}
	}
	t.Logf("%d references to SSTs of the base checkpoint", reused)
	if reused == 0 {
		t.Error("no checkpoint referred to an SST its base uploaded")
	}

	// A shared SST of the latest retained checkpoint goes missing: the
	// restore fails naming it.
	e := retained[len(retained)-1]
	var victim string
	for _, f := range e.chain {
		if f.Shared {
			victim = f.Path
		}
	}
	if err := shared.Delete(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if _, _, err := downloadChain(t, e.location, e.chain, all); err == nil || !strings.Contains(err.Error(), victim) {
		t.Errorf("restore without shared file %s: %v", victim, err)
	}
}

// nativeRestore downloads a native chain and restores key groups r from it.
func nativeRestore(t *testing.T, location string, chain []statebackend.FileRef, r KeyGroupRange, old []KeyGroupRange) *nativeTables {
	t.Helper()
	dir, _, err := downloadChain(t, location, chain, r)
	if err != nil {
		t.Fatal(err)
	}
	return openNativeTables(t, r, []pebblestate.NativeState{{Dir: dir, KeyGroups: old[0]}})
}
