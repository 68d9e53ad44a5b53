package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
	"github.com/weirstream/weir/statebackend/storage"
)

// downloadChain downloads a native chain's Pebble files from the
// checkpoint at location into a new directory, as a TaskManager does, and
// reads its first file's key groups r.
func downloadChain(t *testing.T, location string, chain []statebackend.FileRef, r KeyGroupRange) (string, *statebackend.KeyedState, error) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(location, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	shared, err := storage.Open(statebackend.SharedDir(location), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range chain[1:] {
		from := st
		if f.Shared {
			from = shared
		}
		if err := storage.GetFile(ctx, from, f.Path, f.Size, filepath.Join(dir, f.Local)); err != nil {
			return "", nil, err
		}
	}
	sf, err := statebackend.OpenStateFile(ctx, chain[0].Path, chain[0].Size, func(ctx context.Context, off, n int64) ([]byte, error) {
		return st.GetRange(ctx, chain[0].Path, off, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := sf.ReadKeyGroups(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	return dir, ks, nil
}

// TestNativeCheckpointsChainAndRestore runs a keyed task on pebble with
// incremental checkpoints: checkpoint 1 uploads the store's SSTs to the
// job's shared directory, checkpoint 2 (based on 1) refers to those it
// still has and uploads only the new ones, and so does checkpoint 3, a
// savepoint is one state file of the common format. A
// new pebble task restored from checkpoint 3's
// files resumes from its state; the memory backend refuses them. With a
// changelog, checkpoints 2 and 3 refer to checkpoint 1's SSTs (its
// materialization) and add changelog segments, which the restore replays.
func TestNativeCheckpointsChainAndRestore(t *testing.T) {
	for _, changelog := range []bool{false, true} {
		t.Run(fmt.Sprint("changelog=", changelog), func(t *testing.T) { nativeChainAndRestore(t, changelog) })
	}
}

func nativeChainAndRestore(t *testing.T, changelog bool) {
	var mu sync.Mutex
	var got []string
	g := keyedGraph(t, &got, &mu)
	root := t.TempDir()
	stateDir := t.TempDir()
	backend := StateBackend{Kind: StateBackendPebble, Dir: stateDir}
	if changelog {
		// No materialization after the first checkpoint's.
		backend.Changelog = &pebblestate.ChangelogOptions{Ratio: 1e6, Interval: -1}
	}
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	rep := &acks{done: make(chan struct{}, 4)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Checkpoints: rep, Incremental: true, StateBackend: backend})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- task.Run(ctx) }()
	barrier := func(b Barrier) CheckpointAck {
		t.Helper()
		gate.barrier(0, b)
		gate.barrier(1, b)
		select {
		case <-rep.done:
		case <-ctx.Done():
			t.Fatal("no acknowledgement")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(rep.decline) > 0 {
			t.Fatalf("declined: %v", rep.decline)
		}
		return rep.acked[len(rep.acked)-1]
	}
	chk := func(n string) string { return filepath.Join(root, "job", "chk-"+n) }
	gate.records(0, keyed{"a", 1}, keyed{"c", 7})
	gate.records(1, keyed{"b", 10})
	first := barrier(Barrier{ID: 1, Location: chk("1")}).States[0]
	gate.records(1, keyed{"b", 20})
	second := barrier(Barrier{ID: 2, Location: chk("2"), BaseID: 1}).States[0]
	third := barrier(Barrier{ID: 3, Location: chk("3"), BaseID: 2}).States[0]
	sp := barrier(Barrier{ID: 4, Location: filepath.Join(root, "sp"), Savepoint: true, BaseID: 3}).States[0]
	gate.records(0, keyed{"a", 100}) // after checkpoint 2
	gate.end(0)
	gate.end(1)
	if err := <-ran; err != nil {
		t.Fatal(err)
	}

	sstsOf := func(chain []statebackend.FileRef) map[string]statebackend.FileRef {
		out := map[string]statebackend.FileRef{}
		for _, f := range chain {
			if f.Local != "" && pebblestate.Shared(f.Local) {
				if !f.Shared {
					t.Errorf("SST %+v is not shared", f)
				}
				out[f.Local] = f
			}
		}
		return out
	}
	if !statebackend.NativeChain(first.Chain) || first.Chain[0].Local != "" || first.Chain[0].Shared {
		t.Fatalf("checkpoint 1: %+v, want a state file of its own and native files", first)
	}
	// An SST a later checkpoint still has is referred to, not uploaded
	// again; a new one is uploaded under the later checkpoint's ID.
	check := func(id int64, prev, cur map[string]statebackend.FileRef) (reused int, uploaded int64) {
		for name, f := range cur {
			if fp, ok := prev[name]; ok {
				if f != fp {
					t.Errorf("checkpoint %d refers to %s as %+v, the one before uploaded it as %+v", id, name, f, fp)
				}
				reused++
			} else {
				if pid, ok := statebackend.ParseSharedFileName(f.Path); !ok || pid != id {
					t.Errorf("checkpoint %d's new SST %s is named %s", id, name, f.Path)
				}
				uploaded += f.Size
			}
		}
		return reused, uploaded
	}
	s1, s2, s3 := sstsOf(first.Chain), sstsOf(second.Chain), sstsOf(third.Chain)
	if len(s1) == 0 || len(s2) == 0 {
		t.Fatalf("checkpoint 1 SSTs %v, checkpoint 2 SSTs %v", s1, s2)
	}
	// Whether an SST survives from one checkpoint to the next is up to
	// Pebble's compactions, which rewrite a small store's few files
	// eagerly (TestNativeUploadsChain pins them).
	check(2, s1, s2)
	check(3, s2, s3)
	if changelog {
		segments := 0
		for name := range s2 {
			if strings.HasSuffix(name, ".changelog") {
				segments++
			} else if _, ok := s1[name]; !ok {
				t.Errorf("checkpoint 2 has SST %s, not in checkpoint 1's materialization", name)
			}
		}
		if segments == 0 {
			t.Errorf("checkpoint 2 (writes since checkpoint 1) has no changelog segment: %v", s2)
		}
	}
	if sp.File == "" || len(sp.Chain) != 0 {
		t.Errorf("savepoint: %+v, want a file of its own", sp)
	}

	all := KeyGroupRange{First: 0, Last: 7}
	dir, ks, err := downloadChain(t, chk("3"), third.Chain, all)
	if err != nil {
		t.Fatal(err)
	}
	// The memory backend cannot read Pebble files.
	restore := &TaskRestore{CheckpointID: 3, Operators: map[string]*OperatorRestore{"sum": {Keyed: []*statebackend.KeyedState{ks},
		Native: []pebblestate.NativeState{{Dir: dir, KeyGroups: all}}}}}
	gate3 := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	if _, err := NewTask(g, 1, 0, TaskIO{Input: gate3, LatencyInterval: -1, Restore: restore}); err == nil || !strings.Contains(err.Error(), "--state-backend pebble") {
		t.Errorf("memory backend restoring Pebble files: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused restore left %s: %v", dir, err)
	}

	dir, ks, err = downloadChain(t, chk("3"), third.Chain, all)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	gate2 := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	restore = &TaskRestore{CheckpointID: 3, Operators: map[string]*OperatorRestore{"sum": {Keyed: []*statebackend.KeyedState{ks},
		Native: []pebblestate.NativeState{{Dir: dir, KeyGroups: all}}}}}
	task2, err := NewTask(g, 1, 0, TaskIO{Input: gate2, LatencyInterval: -1, Restore: restore, StateBackend: backend})
	if err != nil {
		t.Fatal(err)
	}
	gate2.records(1, keyed{"a", 5}, keyed{"b", 5}, keyed{"c", 1})
	gate2.end(0)
	gate2.end(1)
	if err := task2.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"a=6 list=2 distinct=2 dup=n", "b=35 list=3 distinct=3 dup=n", "c=8 list=2 distinct=2 dup=n"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after restore\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ents, _ := os.ReadDir(stateDir); len(ents) != 0 {
		t.Errorf("state directory left behind: %v", ents)
	}
}
