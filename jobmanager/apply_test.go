package jobmanager

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// submitCmd submits a job of two vertices: a source of parallelism srcP
// feeding a vertex of parallelism p.
func submitCmd(id string, srcP, p int) SubmitJob {
	return SubmitJob{
		JobID: id, Name: "test", Parallelism: p, MaxParallelism: 128, TimeMs: 1,
		Params: map[string]string{"k": "v"},
		Vertices: []VertexSpec{
			{Name: "Source", Parallelism: srcP, Operators: []OperatorSpec{{UID: "src", Name: "Source"}}, Outputs: []int{1}},
			{Name: "Map -> Sink", Parallelism: p, InputPartitioning: "rebalance",
				Operators: []OperatorSpec{{UID: "map", Name: "Map"}, {UID: "sink", Name: "Sink"}}},
		},
	}
}

func mustApply(t *testing.T, s Store, cmd Command) []JobTransition {
	t.Helper()
	tr, err := s.Apply(cmd)
	if err != nil {
		t.Fatalf("Apply(%T): %v", cmd, err)
	}
	return tr
}

// deployed returns a store holding job j1 (source 1, then 2 subtasks)
// placed on tm-1 slot 0 and tm-2 slot 0.
func deployed(t *testing.T) *MemStore {
	s := NewMemStore()
	mustApply(t, s, submitCmd("j1", 1, 2))
	mustApply(t, s, DeployJob{JobID: "j1", Slots: []Slot{slot("tm-1", 0), slot("tm-2", 0)}, TimeMs: 2})
	return s
}

func update(v, i int, tm string, state weirv1.TaskState, failure string) UpdateTask {
	return UpdateTask{JobID: "j1", Vertex: v, Subtask: i, TaskManagerID: tm, State: state, Failure: failure, TimeMs: 10}
}

func jobState(t *testing.T, s Store, id string) Job {
	t.Helper()
	j, err := s.Job(id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestApplyRunningThenFinished(t *testing.T) {
	s := deployed(t)
	mustApply(t, s, update(0, 0, "tm-1", taskRunning, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskRunning, ""))
	if j := jobState(t, s, "j1"); j.State != jobCreated {
		t.Fatalf("state %v before all tasks run", j.State)
	}
	tr := mustApply(t, s, update(1, 1, "tm-2", taskRunning, ""))
	if len(tr) != 1 || tr[0].To != jobRunning {
		t.Fatalf("transitions %v", tr)
	}
	mustApply(t, s, update(0, 0, "tm-1", taskFinished, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskFinished, ""))
	mustApply(t, s, update(1, 1, "tm-2", taskFinished, ""))
	j := jobState(t, s, "j1")
	if j.State != jobFinished || j.EndTime != 10 || j.StartTime != 2 || j.SubmitTime != 1 {
		t.Fatalf("job %+v", j)
	}
}

func TestApplyTaskFailureFailsJob(t *testing.T) {
	s := deployed(t)
	mustApply(t, s, update(1, 1, "tm-2", taskFailed, "boom"))
	j := jobState(t, s, "j1")
	want := "subtask Map -> Sink (2/2) on tm-2 failed: boom"
	if j.State != jobFailed || j.Failure != want {
		t.Fatalf("job %v %q; want FAILED %q", j.State, j.Failure, want)
	}
	// The other tasks are cancelled later; their reports do not change the
	// failure.
	mustApply(t, s, update(0, 0, "tm-1", taskCanceled, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskFailed, "other"))
	if j := jobState(t, s, "j1"); j.Failure != want || j.Tasks[1][0].State != taskFailed {
		t.Fatalf("job %+v", j)
	}
}

func TestApplyIgnoresStrayUpdates(t *testing.T) {
	s := deployed(t)
	before := jobState(t, s, "j1")
	for _, u := range []UpdateTask{
		{JobID: "nope", TaskManagerID: "tm-1", State: taskFailed},
		update(0, 0, "tm-2", taskFailed, "wrong TaskManager"),
		update(5, 0, "tm-1", taskFailed, "no such vertex"),
		update(1, 2, "tm-2", taskFailed, "no such subtask"),
		{JobID: "j1", TaskManagerID: "tm-1", Attempt: 1, State: taskFailed, Failure: "old attempt"},
		update(0, 0, "tm-1", taskDeploying, ""),
	} {
		if tr := mustApply(t, s, u); tr != nil {
			t.Fatalf("%+v: transitions %v", u, tr)
		}
	}
	if after := jobState(t, s, "j1"); !reflect.DeepEqual(before, after) {
		t.Fatalf("stray updates changed the job:\n%+v\n%+v", before, after)
	}
	// A terminal task stays terminal.
	mustApply(t, s, update(0, 0, "tm-1", taskFinished, ""))
	mustApply(t, s, update(0, 0, "tm-1", taskFailed, "late"))
	if j := jobState(t, s, "j1"); j.State != jobCreated || j.Tasks[0][0].State != taskFinished {
		t.Fatalf("job %+v", j)
	}
}

func TestApplyCancel(t *testing.T) {
	s := NewMemStore()
	mustApply(t, s, submitCmd("pending", 1, 1))
	tr := mustApply(t, s, CancelJob{JobID: "pending", TimeMs: 3})
	if len(tr) != 1 || tr[0].To != jobCanceled {
		t.Fatalf("cancel pending: %v", tr)
	}
	if j := jobState(t, s, "pending"); j.Tasks[0][0].State != taskCanceled || j.EndTime != 3 {
		t.Fatalf("pending job after cancel: %+v", j)
	}

	s = deployed(t)
	tr = mustApply(t, s, CancelJob{JobID: "j1", TimeMs: 3})
	if len(tr) != 1 || tr[0].To != jobCanceling {
		t.Fatalf("cancel deployed: %v", tr)
	}
	mustApply(t, s, update(0, 0, "tm-1", taskCanceled, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskFinished, ""))
	tr = mustApply(t, s, update(1, 1, "tm-2", taskCanceled, ""))
	if len(tr) != 1 || tr[0].To != jobCanceled {
		t.Fatalf("last cancel: %v", tr)
	}
	_, err := s.Apply(CancelJob{JobID: "j1"})
	if !errors.Is(err, ErrJobTerminal) || err.Error() != "job j1 is already CANCELED" {
		t.Fatalf("cancel canceled job: %v", err)
	}
	if _, err := s.Apply(CancelJob{JobID: "nope"}); !errors.Is(err, ErrJobNotFound) {
		t.Fatalf("cancel unknown job: %v", err)
	}
}

func TestApplyTaskManagerLost(t *testing.T) {
	s := deployed(t)
	mustApply(t, s, submitCmd("j2", 1, 1))
	mustApply(t, s, DeployJob{JobID: "j2", Slots: []Slot{slot("tm-1", 1)}, TimeMs: 2})
	mustApply(t, s, CancelJob{JobID: "j2"})
	tr := mustApply(t, s, TaskManagerLost{TaskManagerID: "tm-1", Reason: "TaskManager tm-1 (x) lost: test", TimeMs: 9})
	want := []JobTransition{
		{JobID: "j1", From: jobCreated, To: jobFailed, Reason: "TaskManager tm-1 (x) lost: test"},
		{JobID: "j2", From: jobCanceling, To: jobCanceled},
	}
	if !reflect.DeepEqual(tr, want) {
		t.Fatalf("transitions %v; want %v", tr, want)
	}
	j := jobState(t, s, "j1")
	if j.Tasks[0][0].State != taskFailed || j.Tasks[1][1].State != taskDeploying {
		t.Fatalf("tasks %+v", j.Tasks)
	}
}

func TestApplyDeployRequiresPendingJob(t *testing.T) {
	s := deployed(t)
	_, err := s.Apply(DeployJob{JobID: "j1", Slots: []Slot{slot("tm-1", 0), slot("tm-1", 1)}})
	if !errors.Is(err, ErrJobNotPending) {
		t.Fatalf("second deploy: %v", err)
	}
	s = NewMemStore()
	mustApply(t, s, submitCmd("j1", 1, 2))
	if _, err := s.Apply(DeployJob{JobID: "j1", Slots: []Slot{slot("tm-1", 0)}}); err == nil {
		t.Fatal("deploy with too few slots succeeded")
	}
	if _, err := s.Apply(submitCmd("j1", 1, 1)); !errors.Is(err, ErrJobExists) {
		t.Fatalf("duplicate submit: %v", err)
	}
}

func TestApplyFailJobOnlyFailsActiveJobs(t *testing.T) {
	s := NewMemStore()
	mustApply(t, s, submitCmd("j1", 1, 1))
	tr := mustApply(t, s, FailJob{JobID: "j1", Reason: "not enough free slots", TimeMs: 4})
	if len(tr) != 1 || tr[0].To != jobFailed {
		t.Fatalf("transitions %v", tr)
	}
	if tr := mustApply(t, s, FailJob{JobID: "j1", Reason: "again"}); tr != nil {
		t.Fatalf("failing a failed job: %v", tr)
	}
	if j := jobState(t, s, "j1"); j.Failure != "not enough free slots" || j.Tasks[0][0].State != taskCanceled {
		t.Fatalf("job %+v", j)
	}
}

// Replicas applying the same commands reach the same state, and readers
// get copies.
func TestApplyIsDeterministicAndReadersGetCopies(t *testing.T) {
	cmds := []Command{
		submitCmd("j1", 1, 2), submitCmd("j2", 2, 2),
		DeployJob{JobID: "j1", Slots: []Slot{slot("tm-1", 0), slot("tm-2", 0)}, TimeMs: 2},
		update(0, 0, "tm-1", taskRunning, ""), update(1, 1, "tm-2", taskFailed, "x"),
		TaskManagerLost{TaskManagerID: "tm-1", Reason: "lost", TimeMs: 3},
		CancelJob{JobID: "j2", TimeMs: 4},
	}
	a, b := NewMemStore(), NewMemStore()
	for _, c := range cmds {
		ta, ea := a.Apply(c)
		tb, eb := b.Apply(c)
		if !reflect.DeepEqual(ta, tb) || (ea == nil) != (eb == nil) {
			t.Fatalf("%T: %v %v / %v %v", c, ta, ea, tb, eb)
		}
	}
	if !reflect.DeepEqual(a.Jobs(), b.Jobs()) {
		t.Fatal("replicas diverged")
	}
	if ids := []string{a.Jobs()[0].ID, a.Jobs()[1].ID}; strings.Join(ids, ",") != "j2,j1" {
		t.Fatalf("Jobs() order %v; want newest first", ids)
	}

	j := jobState(t, a, "j1")
	j.Params["k"] = "changed"
	j.Tasks[0][0].State = taskRunning
	j.Vertices[0].Outputs[0] = 7
	j.Vertices[1].Operators[0].UID = "changed"
	if !reflect.DeepEqual(jobState(t, a, "j1"), jobState(t, b, "j1")) {
		t.Fatal("modifying a returned job changed the store")
	}
}
