package jobmanager

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// restartable returns a store holding j1 with periodic checkpoints,
// deployed and running.
func restartable(t *testing.T) *MemStore {
	s := NewMemStore()
	cmd := submitCmd("j1", 1, 2)
	cmd.Checkpointing = CheckpointConfig{IntervalMs: 1000, Retained: 2}
	mustApply(t, s, cmd)
	mustApply(t, s, DeployJob{JobID: "j1", Slots: []Slot{slot("tm-1", 0), slot("tm-2", 0)}, TimeMs: 2})
	mustApply(t, s, update(0, 0, "tm-1", taskRunning, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskRunning, ""))
	mustApply(t, s, update(1, 1, "tm-2", taskRunning, ""))
	return s
}

func TestRestartDelayIsExponential(t *testing.T) {
	for n, want := range map[int]int64{1: 100, 2: 200, 3: 400, 9: 25_600, 10: 30_000, 50: 30_000} {
		if got := RestartDelayMs(n); got != want {
			t.Errorf("RestartDelayMs(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestFailureRestartsFromLatestCheckpoint(t *testing.T) {
	s := restartable(t)
	for id := int64(1); id <= 4; id++ {
		mustApply(t, s, CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: id, Path: "p/chk-" + string(rune('0'+id))}})
	}
	mustApply(t, s, CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: 5, Path: "sp", Savepoint: true}})
	mustApply(t, s, CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: 6, Path: "p/chk-6"}})
	j := jobState(t, s, "j1")
	var ids []int64
	for _, c := range j.Checkpoints {
		ids = append(ids, c.ID)
	}
	// Two periodic checkpoints retained, savepoints kept.
	if len(ids) != 3 || ids[0] != 4 || ids[1] != 5 || ids[2] != 6 || j.CompletedCheckpoints != 6 {
		t.Fatalf("retained %v (completed %d)", ids, j.CompletedCheckpoints)
	}

	tr := mustApply(t, s, update(1, 1, "tm-2", taskFailed, "boom"))
	j = jobState(t, s, "j1")
	if len(tr) != 1 || tr[0].To != jobRestarting || j.Restarts != 1 || j.RestartAt != 10+100 {
		t.Fatalf("transitions %v, job %+v", tr, j)
	}
	// Not before the other tasks have stopped.
	if tr := mustApply(t, s, RestartJob{JobID: "j1", Attempt: 0, TimeMs: 200}); len(tr) != 0 {
		t.Fatalf("restarted with tasks still running: %v", tr)
	}
	mustApply(t, s, update(0, 0, "tm-1", taskCanceled, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskCanceled, ""))
	tr = mustApply(t, s, RestartJob{JobID: "j1", Attempt: 0, TimeMs: 200})
	j = jobState(t, s, "j1")
	if len(tr) != 1 || tr[0].To != jobCreated || j.Attempt != 1 || j.Deployed || j.Restore == nil || j.Restore.ID != 6 {
		t.Fatalf("after restart: transitions %v, job attempt %d deployed %v restore %+v", tr, j.Attempt, j.Deployed, j.Restore)
	}
	// A second failure without a checkpoint in between doubles the delay.
	mustApply(t, s, DeployJob{JobID: "j1", Attempt: 1, Slots: []Slot{slot("tm-1", 0), slot("tm-3", 0)}, TimeMs: 300})
	mustApply(t, s, UpdateTask{JobID: "j1", Vertex: 1, Subtask: 1, Attempt: 1, TaskManagerID: "tm-3", State: taskFailed, TimeMs: 400})
	if j = jobState(t, s, "j1"); j.RestartAt != 400+200 || j.Restarts != 2 {
		t.Fatalf("second failure: restart at %d, restarts %d", j.RestartAt, j.Restarts)
	}
}

func TestUnrecoverableFailureFailsRestartableJob(t *testing.T) {
	s := restartable(t)
	u := update(1, 1, "tm-2", taskFailed, "corrupt state")
	u.Unrecoverable = true
	mustApply(t, s, u)
	if j := jobState(t, s, "j1"); j.State != jobFailed || j.Restarts != 0 {
		t.Fatalf("job %v after an unrecoverable failure, restarts %d", j.State, j.Restarts)
	}
}

// rescaleTo4 begins a rescale of restartable's j1 (parallelism 2) to 4 and
// finishes its stop with savepoint sp-7.
func rescaleTo4(t *testing.T, s *MemStore) {
	t.Helper()
	plan := RescalePlan{Parallelism: 4, Vertices: []VertexSpec{
		{Name: "Source", Parallelism: 1, Operators: []OperatorSpec{{UID: "src"}}, Outputs: []int{1}},
		{Name: "Map -> Sink", Parallelism: 4, InputPartitioning: "rebalance", Operators: []OperatorSpec{{UID: "map"}, {UID: "sink"}}},
	}}
	mustApply(t, s, BeginRescale{JobID: "j1", Plan: plan})
	if _, err := s.Apply(BeginRescale{JobID: "j1", Plan: plan}); err == nil {
		t.Error("a second rescale was accepted while one is under way")
	}
	mustApply(t, s, CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: 7, Path: "sp-7", Savepoint: true}})
	mustApply(t, s, update(0, 0, "tm-1", taskFinished, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskFinished, ""))
	mustApply(t, s, update(1, 1, "tm-2", taskFinished, ""))
}

func TestRescaleRedeploysWhenStopFinishes(t *testing.T) {
	s := restartable(t)
	rescaleTo4(t, s)
	j := jobState(t, s, "j1")
	if j.State != jobCreated || j.Parallelism != 4 || len(j.Tasks[1]) != 4 || j.Attempt != 1 ||
		j.Restore == nil || j.Restore.Path != "sp-7" || j.Rescale.Phase != rescalePlacing || j.Rescale.Savepoint != "sp-7" {
		t.Fatalf("after the stop: state %v parallelism %d tasks %d attempt %d restore %+v rescale %+v", j.State, j.Parallelism,
			len(j.Tasks[1]), j.Attempt, j.Restore, j.Rescale)
	}
	if !j.Pending() || j.SlotRequestExpires() {
		t.Fatalf("after the stop the job should wait for slots without a timeout: pending %v expires %v", j.Pending(), j.SlotRequestExpires())
	}
	slots := []Slot{slot("tm-1", 0), slot("tm-1", 1), slot("tm-2", 0), slot("tm-2", 1)}
	mustApply(t, s, DeployJob{JobID: "j1", Attempt: 1, Slots: slots, TimeMs: 30})
	if j := jobState(t, s, "j1"); j.Rescale.Phase != rescaleDone || j.Rescale.EndMs != 30 || j.Rescale.UnderWay() {
		t.Fatalf("after placing: rescale %+v", j.Rescale)
	}
	// The next rescale may begin once the job runs.
	for i := range 4 {
		mustApply(t, s, UpdateTask{JobID: "j1", Vertex: 1, Subtask: i, Attempt: 1, TaskManagerID: slots[i].TaskManagerID, State: taskRunning})
	}
	mustApply(t, s, UpdateTask{JobID: "j1", Vertex: 0, Subtask: 0, Attempt: 1, TaskManagerID: "tm-1", State: taskRunning})
	mustApply(t, s, BeginRescale{JobID: "j1", Plan: RescalePlan{Parallelism: 1, Vertices: submitCmd("x", 1, 1).Vertices}})
	if j := jobState(t, s, "j1"); j.Rescale.PreviousParallelism != 4 || j.Rescale.Phase != rescaleStopping {
		t.Fatalf("second rescale: %+v", j.Rescale)
	}
}

// A rescale that cannot be placed after its stop goes back to the previous
// parallelism and vertices, restoring from the same savepoint, in the same
// attempt.
func TestRescaleFallBack(t *testing.T) {
	s := restartable(t)
	before := jobState(t, s, "j1")
	rescaleTo4(t, s)
	if _, err := s.Apply(FallBackRescale{JobID: "j1", Attempt: 0, Reason: "stale"}); err == nil {
		t.Fatal("a fallback for an old attempt was accepted")
	}
	mustApply(t, s, FallBackRescale{JobID: "j1", Attempt: 1, Reason: "parallelism 4 needs 4 slots, 2 free", TimeMs: 40})
	j := jobState(t, s, "j1")
	if j.Parallelism != 2 || !reflect.DeepEqual(j.Vertices, before.Vertices) || len(j.Tasks[1]) != 2 || j.Attempt != 1 ||
		j.Tasks[1][1].Attempt != 1 || j.Tasks[1][1].State != taskScheduled || !j.Pending() {
		t.Fatalf("after the fallback: parallelism %d vertices %+v tasks %+v attempt %d", j.Parallelism, j.Vertices, j.Tasks, j.Attempt)
	}
	if j.Restore == nil || j.Restore.Path != "sp-7" {
		t.Fatalf("restore %+v; want the rescale's savepoint sp-7", j.Restore)
	}
	want := RescalePlan{Parallelism: 4, PreviousParallelism: 2, Phase: rescaleFellBack, Savepoint: "sp-7",
		Reason: "parallelism 4 needs 4 slots, 2 free", EndMs: 40}
	got := *j.Rescale
	got.Vertices, got.PreviousVertices = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rescale %+v; want %+v", got, want)
	}
	if _, err := s.Apply(FallBackRescale{JobID: "j1", Attempt: 1}); !errors.Is(err, ErrJobNotPending) {
		t.Fatalf("second fallback: %v", err)
	}
	// It deploys at the previous parallelism, and the record stays.
	mustApply(t, s, DeployJob{JobID: "j1", Attempt: 1, Slots: []Slot{slot("tm-1", 0), slot("tm-1", 1)}, TimeMs: 50})
	if j := jobState(t, s, "j1"); j.Rescale.Phase != rescaleFellBack || j.Tasks[1][1].Slot != 1 {
		t.Fatalf("after deploying: rescale %+v tasks %+v", j.Rescale, j.Tasks)
	}
}

// A failure while the rescale stops the job abandons it; the job restarts
// as any failed job does, at its parallelism.
func TestRescaleAbandonedByFailure(t *testing.T) {
	s := restartable(t)
	mustApply(t, s, BeginRescale{JobID: "j1", Plan: RescalePlan{Parallelism: 4, Vertices: submitCmd("x", 1, 4).Vertices}})
	mustApply(t, s, update(1, 1, "tm-2", taskFailed, "boom"))
	j := jobState(t, s, "j1")
	if j.State != jobRestarting || j.Rescale.Phase != rescaleAbandoned || !strings.Contains(j.Rescale.Reason, "boom") || j.Parallelism != 2 {
		t.Fatalf("job %v parallelism %d rescale %+v", j.State, j.Parallelism, j.Rescale)
	}
}

func TestValidateRestore(t *testing.T) {
	vertices := submitCmd("j1", 1, 2).Vertices
	m := &statebackend.Metadata{JobName: "test", MaxParallelism: 128, Operators: []statebackend.OperatorState{{UID: "map"}}}
	if err := validateRestore(m, "sp", "test", 128, vertices, false); err != nil {
		t.Fatalf("valid restore rejected: %v", err)
	}
	gone := &statebackend.Metadata{JobName: "test", MaxParallelism: 128, Operators: []statebackend.OperatorState{{UID: "old-op", Name: "Old"}}}
	small := &statebackend.Metadata{JobName: "test", MaxParallelism: 1, Operators: nil}
	for _, tc := range []struct {
		m     *statebackend.Metadata
		name  string
		maxP  int
		allow bool
		want  string
	}{
		{m, "other", 128, false, `taken of job "test", not "other"`},
		{m, "test", 64, false, "maxParallelism 128 but job test has 64"},
		{small, "test", 128, false, "above the savepoint's maxParallelism 1"},
		{gone, "test", 128, false, `state for operator "old-op"`},
		{gone, "test", 128, true, ""},
	} {
		err := validateRestore(tc.m, "sp", tc.name, tc.maxP, vertices, tc.allow)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("validateRestore(%s, maxP %d, allow %v) = %v, want %q", tc.name, tc.maxP, tc.allow, err, tc.want)
		}
	}
}

func TestDisposeCheckpointsOfEndedJobsOnly(t *testing.T) {
	s := restartable(t)
	mustApply(t, s, CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: 1, Path: "p/j1/chk-1"}})
	mustApply(t, s, CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: 2, Path: "sp", Savepoint: true}})
	mustApply(t, s, CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: 3, Path: "p/j1/chk-3"}})
	for _, tc := range []struct {
		id   string
		want error
	}{{"j1", ErrJobNotEnded}, {"nope", ErrJobNotFound}} {
		if _, err := s.Apply(DisposeCheckpoints{JobID: tc.id, TimeMs: 50}); !errors.Is(err, tc.want) {
			t.Errorf("dispose %s: %v, want %v", tc.id, err, tc.want)
		}
	}
	mustApply(t, s, CancelJob{JobID: "j1", TimeMs: 60})
	for _, u := range []UpdateTask{update(0, 0, "tm-1", taskCanceled, ""), update(1, 0, "tm-1", taskCanceled, ""),
		update(1, 1, "tm-2", taskCanceled, "")} {
		mustApply(t, s, u)
	}
	mustApply(t, s, DisposeCheckpoints{JobID: "j1", TimeMs: 70})
	j := jobState(t, s, "j1")
	if len(j.Checkpoints) != 1 || !j.Checkpoints[0].Savepoint || j.CheckpointsDisposedMs != 70 {
		t.Fatalf("after dispose: checkpoints %+v, disposed at %d; want the savepoint alone, 70", j.Checkpoints, j.CheckpointsDisposedMs)
	}
	// A checkpoint finishing late is not recorded.
	if _, err := s.Apply(CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: 4, Path: "p/j1/chk-4"}}); err == nil {
		t.Error("a checkpoint completed after the dispose")
	}
	// Disposing again (a delete that failed) is fine.
	mustApply(t, s, DisposeCheckpoints{JobID: "j1", TimeMs: 80})
}
