package jobmanager

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// finishedFixture is job j1 (source "src", then "map" and "sink" at
// parallelism 2) whose subtask 1 of the second vertex has finished, with
// checkpoint 1 holding that subtask's final state: a file of its own for
// "map" and, for "sink", a chain of two shared files.
type finishedFixture struct {
	root string
	st   storage.Storage
	job  Job
	core *checkpointCore
	c    *coordinator
}

func newFinishedFixture(t *testing.T) *finishedFixture {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	st, err := storage.Open(root, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(name, data string) {
		if err := st.Put(ctx, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	shared := func(id int64) string { return statebackend.SharedFileName("sink", 1, id) }
	put("j1/chk-1/map/1.state", "map final")
	put("j1/chk-1/map/0.state", "map running")
	put("j1/shared/"+shared(1), "sink full")
	m := &statebackend.Metadata{JobID: "j1", JobName: "test", CheckpointID: 1, MaxParallelism: 128,
		Operators: []statebackend.OperatorState{
			{UID: "map", Parallelism: 2, Subtasks: []statebackend.SubtaskState{
				{Subtask: 0, File: "map/0.state", Size: 11}, {Subtask: 1, File: "map/1.state", Size: 9}}},
			{UID: "sink", Parallelism: 2, Subtasks: []statebackend.SubtaskState{
				{Subtask: 1, Chain: []statebackend.FileRef{{Path: shared(1), Size: 9, Shared: true}}, Size: 9,
					KeyGroups: statebackend.KeyGroupRange{First: 64, Last: 127}, Keys: 3}}}}}
	put("j1/chk-1/"+metadataFile, string(statebackend.EncodeMetadata(m)))

	job := runningJob(t, CheckpointConfig{IntervalMs: 100})
	job.Tasks[1][1].State = taskFinished
	job.Checkpoints = []CompletedCheckpoint{{ID: 1, Path: filepath.Join(root, "j1", "chk-1")}}
	job.LastCheckpointID = 1
	jm := startJobManager(t, Config{CheckpointStorage: root}).jm
	return &finishedFixture{root: root, st: st, job: job, core: newCheckpointCore("j1", root, job.Checkpointing),
		c: &coordinator{jm: jm, jobID: "j1", log: testLogger(t)}}
}

// checkpoint starts the next checkpoint (a savepoint if asked),
// acknowledges it from the running tasks and writes its metadata.
func (f *finishedFixture) checkpoint(t *testing.T, savepoint bool) (*pendingCheckpoint, *statebackend.Metadata) {
	t.Helper()
	var req *savepointRequest
	if savepoint {
		req = &savepointRequest{target: filepath.Join(f.root, "sp")}
	}
	p, err := f.core.start(&f.job, t0, req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.finished, []taskRef{{1, 1}}) || len(p.waiting) != 2 {
		t.Fatalf("checkpoint %d: finished %v, waiting %v", p.id, p.finished, p.waiting)
	}
	p.acks[taskRef{0, 0}] = &weirv1.AcknowledgeCheckpointRequest{States: []*weirv1.OperatorStateHandle{{Uid: "src", File: "src/0.state"}}}
	p.acks[taskRef{1, 0}] = &weirv1.AcknowledgeCheckpointRequest{States: []*weirv1.OperatorStateHandle{{Uid: "map", File: "map/0.state"}}}
	if err := f.c.writeMetadata(context.Background(), &f.job, p); err != nil {
		t.Fatal(err)
	}
	data, err := f.st.Get(context.Background(), strings.TrimPrefix(p.location, f.root+"/")+"/"+metadataFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := statebackend.DecodeMetadata(p.location, data)
	if err != nil {
		t.Fatal(err)
	}
	f.job.Checkpoints = append(f.job.Checkpoints, CompletedCheckpoint{ID: p.id, Path: p.location, Savepoint: savepoint})
	f.job.LastCheckpointID = p.id
	return p, m
}

func subtaskOf(m *statebackend.Metadata, uid string, i int) (statebackend.SubtaskState, bool) {
	for _, o := range m.Operators {
		if o.UID == uid {
			for _, s := range o.Subtasks {
				if s.Subtask == i {
					return s, true
				}
			}
		}
	}
	return statebackend.SubtaskState{}, false
}

// TestCheckpointsCarryFinishedSubtasksFinalState: checkpoints taken after
// a subtask finished hold its final state, from the checkpoint before;
// the copies survive the deletion of the checkpoint they came from (as
// retention deletes it); shared files stay shared in checkpoints, so the
// shared-file collection keeps them, and are copied into a savepoint,
// which refers to nothing outside itself.
func TestCheckpointsCarryFinishedSubtasksFinalState(t *testing.T) {
	ctx := context.Background()
	f := newFinishedFixture(t)
	_, m2 := f.checkpoint(t, false)
	if s, ok := subtaskOf(m2, "map", 0); !ok || s.File != "map/0.state" {
		t.Errorf("the running subtask's acknowledged state: %+v", s)
	}
	s, ok := subtaskOf(m2, "map", 1)
	if !ok || s.File != "map/1.state" || s.Size != int64(len("map final")) {
		t.Fatalf("checkpoint 2 lacks the finished subtask's state of map: %+v %v", s, ok)
	}
	sink, ok := subtaskOf(m2, "sink", 1)
	if !ok || len(sink.Chain) != 1 || !sink.Chain[0].Shared || sink.KeyGroups.First != 64 || sink.Keys != 3 {
		t.Fatalf("checkpoint 2's sink state of the finished subtask: %+v %v", sink, ok)
	}

	// Retention retires checkpoint 1: checkpoint 3 carries the state on
	// from checkpoint 2's copy, and the shared file stays.
	if err := f.c.jm.deleteDir(ctx, filepath.Join(f.root, "j1", "chk-1")); err != nil {
		t.Fatal(err)
	}
	f.job.Checkpoints = f.job.Checkpoints[1:]
	f.c.jm.forgetMetadata(filepath.Join(f.root, "j1", "chk-1"))
	p3, m3 := f.checkpoint(t, false)
	got, err := f.st.Get(ctx, strings.TrimPrefix(p3.location, f.root+"/")+"/map/1.state")
	if err != nil || string(got) != "map final" {
		t.Fatalf("checkpoint 3's copy of the final state: %q, %v", got, err)
	}
	if err := f.c.jm.collectShared(ctx, &f.job, p3.id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Get(ctx, "j1/shared/"+sink.Chain[0].Path); err != nil {
		t.Errorf("the finished subtask's shared file was collected: %v", err)
	}
	if !slices.Equal(m3.SharedFiles(), m2.SharedFiles()) {
		t.Errorf("checkpoint 3 refers to shared %v, checkpoint 2 to %v", m3.SharedFiles(), m2.SharedFiles())
	}

	// A savepoint copies the shared files in: nothing in it is shared.
	sp, msp := f.checkpoint(t, true)
	sink, _ = subtaskOf(msp, "sink", 1)
	if len(msp.SharedFiles()) != 0 || len(sink.Chain) != 1 || sink.Size != int64(len("sink full")) {
		t.Fatalf("savepoint's sink state: %+v", sink)
	}
	spStore, err := storage.Open(sp.location, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"map/1.state", sink.Chain[0].Path} {
		if _, err := spStore.Get(ctx, name); err != nil {
			t.Errorf("savepoint lacks %s: %v", name, err)
		}
	}
}

// TestCheckpointRefusedWithoutTheFinalState: a finished subtask's final
// state that cannot be read (its checkpoint is gone, or was taken at
// another parallelism) fails the checkpoint, naming the cause, rather
// than completing one that would restore the subtask from the start.
func TestCheckpointRefusedWithoutTheFinalState(t *testing.T) {
	f := newFinishedFixture(t)
	if err := f.st.Delete(context.Background(), "j1/chk-1/map/1.state"); err != nil {
		t.Fatal(err)
	}
	p, err := f.core.start(&f.job, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.c.writeMetadata(context.Background(), &f.job, p); err == nil || !strings.Contains(err.Error(), "map/1.state") {
		t.Errorf("with the final state's file missing: %v, want an error naming it", err)
	}

	f = newFinishedFixture(t)
	f.job.Vertices[1].Parallelism = 3
	p, err = f.core.start(&f.job, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.c.writeMetadata(context.Background(), &f.job, p); err == nil || !strings.Contains(err.Error(), "parallelism 2, not 3") {
		t.Errorf("with the final state at another parallelism: %v", err)
	}

	f = newFinishedFixture(t)
	f.job.Checkpoints = nil
	p, err = f.core.start(&f.job, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.c.writeMetadata(context.Background(), &f.job, p); err == nil || !strings.Contains(err.Error(), "no completed checkpoint") {
		t.Errorf("with no checkpoint to carry from: %v", err)
	}
}

// Without periodic checkpoints a finished source has no final checkpoint
// to carry its end position from: a savepoint is refused, naming it.
func TestSavepointRefusedForASourceFinishedWithoutCheckpoints(t *testing.T) {
	job := runningJob(t, CheckpointConfig{})
	job.Tasks[0] = append(job.Tasks[0], job.Tasks[0][0])
	job.Vertices[0].Parallelism = 2
	job.Tasks[0][1].State = taskFinished
	c := newCheckpointCore("j1", "/ck", job.Checkpointing)
	c.queue = append(c.queue, &savepointRequest{done: make(chan savepointResult, 1)})
	a := c.tick(&job, t0)
	if a.trigger != nil || a.refuse == nil || !strings.Contains(a.err.Error(), "Source (1) has finished") {
		t.Fatalf("savepoint with a source finished without checkpoints: %+v", a)
	}
	job.Checkpointing.IntervalMs = 100
	c = newCheckpointCore("j1", "/ck", job.Checkpointing)
	c.queue = append(c.queue, &savepointRequest{done: make(chan savepointResult, 1)})
	if a := c.tick(&job, t0); a.trigger == nil || !slices.Equal(a.trigger.finished, []taskRef{{0, 1}}) {
		t.Fatalf("with periodic checkpoints the finished source is carried: %+v", a)
	}
}
