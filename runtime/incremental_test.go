package runtime

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// TestIncrementalCheckpointsChainAndRestore runs a keyed task with
// incremental checkpoints: checkpoint 1 writes a full file to the job's
// shared directory, checkpoint 2 (whose barrier names 1 as its base) a
// delta extending 1's chain, a savepoint a full file of its own; a new
// task restored from checkpoint 2's merged chain resumes from its state.
func TestIncrementalCheckpointsChainAndRestore(t *testing.T) {
	var mu sync.Mutex
	var got []string
	g := keyedGraph(t, &got, &mu)
	root := t.TempDir()
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	rep := &acks{done: make(chan struct{}, 4)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Checkpoints: rep, Incremental: true})
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
	sp := barrier(Barrier{ID: 3, Location: filepath.Join(root, "sp"), Savepoint: true, BaseID: 2}).States[0]
	gate.records(0, keyed{"a", 100}) // after checkpoint 2
	gate.end(0)
	gate.end(1)
	if err := <-ran; err != nil {
		t.Fatal(err)
	}

	if first.File != "" || len(first.Chain) != 1 || first.Chain[0].Delta || !first.Chain[0].Shared {
		t.Fatalf("checkpoint 1: %+v, want a chain of one full shared file", first)
	}
	if len(second.Chain) != 2 || second.Chain[0] != first.Chain[0] || !second.Chain[1].Delta || second.Size != second.Chain[1].Size {
		t.Fatalf("checkpoint 2: %+v, want checkpoint 1's file and a delta", second)
	}
	if second.Size >= first.Size {
		t.Errorf("the delta of one changed key (%d bytes) is not smaller than the full file (%d)", second.Size, first.Size)
	}
	if sp.File == "" || len(sp.Chain) != 0 {
		t.Errorf("savepoint: %+v, want a file of its own", sp)
	}

	// Restore checkpoint 2 from its chain, as a TaskManager does.
	shared, err := storage.Open(statebackend.SharedDir(chk("2")), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := KeyGroupRange{First: 0, Last: 7}
	var chain []*statebackend.KeyedState
	for _, f := range second.Chain {
		sf, err := statebackend.OpenStateFile(ctx, f.Path, f.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
			return shared.GetRange(ctx, f.Path, off, n)
		})
		if err != nil {
			t.Fatal(err)
		}
		ks, err := sf.ReadKeyGroups(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, ks)
	}
	ks, err := statebackend.MergeChain(chain)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	gate2 := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	restore := &TaskRestore{CheckpointID: 2, Operators: map[string]*OperatorRestore{"sum": {Keyed: []*statebackend.KeyedState{ks}}}}
	task2, err := NewTask(g, 1, 0, TaskIO{Input: gate2, LatencyInterval: -1, Restore: restore})
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
}
