package jobmanager

import (
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// submitRestartable submits the test job with periodic checkpoints, so a
// failure restarts it.
func (c *cluster) submitRestartable(parallelism int) string {
	c.t.Helper()
	resp, err := c.client.SubmitJob(c.ctx(), &weirv1.SubmitJobRequest{JobName: testJob, Parallelism: int32(parallelism),
		Checkpointing: &weirv1.CheckpointConfig{IntervalMs: time.Hour.Milliseconds()}})
	if err != nil {
		c.t.Fatalf("SubmitJob: %v", err)
	}
	return resp.GetJobId()
}

// A job restarting after the loss of a TaskManager waits for slots well
// past the slot request timeout, says so in its status, and runs as soon as
// a TaskManager brings slots back.
func TestRestartedJobWaitsForSlots(t *testing.T) {
	c := startJobManager(t, Config{SlotRequestTimeout: 200 * time.Millisecond, HeartbeatTimeout: time.Hour})
	c.startTaskManager("tm-1", 1)
	tm2 := c.startTaskManager("tm-2", 1)
	id := c.submitRestartable(2)
	c.waitState(id, running)

	tm2.closeHeartbeats()
	st := c.waitStatus(id, "waiting for slots", func(st *weirv1.JobStatus) bool {
		return st.GetSummary().GetSlotWait() != nil && st.GetAttempt() == 1
	})
	time.Sleep(1 * time.Second) // five slot request timeouts
	st = c.status(id)
	w := st.GetSummary().GetSlotWait()
	if s := st.GetSummary().GetState(); s != created || w == nil {
		t.Fatalf("after waiting: state %v, slot wait %v; want CREATED and waiting", s, w)
	}
	if w.GetSlotsNeeded() != 2 || w.GetSlotsFree() != 1 || w.GetDeadlineMs() != 0 || w.GetSinceMs() == 0 {
		t.Fatalf("slot wait %v; want needs 2, 1 free, no deadline", w)
	}
	for _, j := range c.listJobs() {
		if j.GetJobId() == id && j.GetSlotWait().GetSlotsNeeded() != 2 {
			t.Fatalf("ListJobs summary %v lacks the slot wait", j)
		}
	}

	c.startTaskManager("tm-3", 1)
	st = c.waitState(id, running)
	if st.GetSummary().GetRestarts() != 1 || st.GetSummary().GetSlotWait() != nil {
		t.Fatalf("running again: restarts %d, slot wait %v", st.GetSummary().GetRestarts(), st.GetSummary().GetSlotWait())
	}
}

// A first submission still gives up, and its status says when it will.
func TestFirstSubmissionSlotWaitHasDeadline(t *testing.T) {
	c := startJobManager(t, Config{SlotRequestTimeout: time.Hour})
	c.startTaskManager("tm-1", 1)
	id := c.submit(3, nil)
	w := c.status(id).GetSummary().GetSlotWait()
	if w.GetSlotsNeeded() != 3 || w.GetSlotsFree() != 1 || w.GetDeadlineMs() != w.GetSinceMs()+time.Hour.Milliseconds() {
		t.Fatalf("slot wait %v; want needs 3, 1 free, a deadline an hour after it began", w)
	}
}

// A rescale that the free slots and the job's own cannot hold is refused
// before anything stops, with the numbers; the job keeps running.
func TestRescaleRefusedWithoutSlots(t *testing.T) {
	c := startJobManager(t, Config{})
	tm := c.startTaskManager("tm-1", 3)
	id := c.submitRestartable(2)
	c.waitState(id, running)
	_, err := c.client.RescaleJob(c.ctx(), &weirv1.RescaleJobRequest{JobId: id, Parallelism: 4})
	wantStatus(t, err, codes.FailedPrecondition, "cannot rescale job "+id+" to parallelism 4: it needs 4 slots, "+
		"and 3 are available (1 free + 2 the job holds now); the job keeps running at parallelism 2")
	st := c.status(id)
	if st.GetSummary().GetState() != running || st.GetSummary().GetParallelism() != 2 || st.GetRescale() != nil {
		t.Fatalf("after the refusal: %v at parallelism %d, rescale %v", st.GetSummary().GetState(),
			st.GetSummary().GetParallelism(), st.GetRescale())
	}
	if tr := tm.triggered(); len(tr) != 0 {
		t.Fatalf("a refused rescale triggered %v", tr)
	}
}

// A rescale whose slots another job takes while it stops goes back to its
// previous parallelism from the same savepoint, and says so.
func TestRescaleFallsBackWhenSlotsAreTaken(t *testing.T) {
	c := startJobManager(t, Config{CheckpointStorage: t.TempDir()})
	tms := map[string]*fakeTaskManager{"tm-1": c.startTaskManager("tm-1", 2), "tm-2": c.startTaskManager("tm-2", 2)}
	id := c.submitRestartable(2)
	before := c.waitState(id, running)

	type result struct {
		resp *weirv1.RescaleJobResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.client.RescaleJob(c.ctx(), &weirv1.RescaleJobRequest{JobId: id, Parallelism: 4})
		done <- result{resp, err}
	}()
	var trigger *weirv1.TriggerCheckpointRequest
	waitUntil(t, "the stop's savepoint trigger", func() bool {
		for _, tm := range tms {
			if tr := tm.triggered(); len(tr) > 0 {
				trigger = tr[0]
			}
		}
		return trigger != nil
	})
	if !trigger.GetStop() || !trigger.GetSavepoint() {
		t.Fatalf("trigger %v; want a stop with savepoint", trigger)
	}
	// Another job takes the two free slots while the job stops.
	other := c.submit(2, nil)
	c.waitState(other, running)

	// Every task acknowledges the savepoint, then finishes.
	for v, vs := range before.GetVertices() {
		for _, sub := range vs.GetSubtasks() {
			_, err := c.client.AcknowledgeCheckpoint(c.ctx(), &weirv1.AcknowledgeCheckpointRequest{
				TaskManagerId: sub.GetTaskManagerId(), Task: taskID(id, v, int(sub.GetIndex()), 0), CheckpointId: trigger.GetCheckpointId()})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("RescaleJob: %v", r.err)
	}
	for v, vs := range before.GetVertices() {
		for _, sub := range vs.GetSubtasks() {
			tms[sub.GetTaskManagerId()].reportNow(taskID(id, v, int(sub.GetIndex()), 0), weirv1.TaskState_TASK_STATE_FINISHED, "", nil)
		}
	}

	st := c.waitStatus(id, "running after the rescale", func(st *weirv1.JobStatus) bool {
		return st.GetSummary().GetState() == running && st.GetAttempt() == 1
	})
	rs := st.GetRescale()
	if st.GetSummary().GetParallelism() != 2 || len(st.GetVertices()[1].GetSubtasks()) != 2 ||
		rs.GetPhase() != weirv1.RescalePhase_RESCALE_PHASE_FELL_BACK || rs.GetFromParallelism() != 2 || rs.GetToParallelism() != 4 {
		t.Fatalf("after the rescale: parallelism %d, rescale %v; want back at 2", st.GetSummary().GetParallelism(), rs)
	}
	if st.GetRestored().GetPath() != r.resp.GetSavepointPath() || rs.GetSavepointPath() != r.resp.GetSavepointPath() {
		t.Fatalf("restored %v, rescale savepoint %q; want the stop's savepoint %s", st.GetRestored(), rs.GetSavepointPath(),
			r.resp.GetSavepointPath())
	}
	for _, want := range []string{"parallelism 4 cannot be placed", "needs 4 slots, 2 free", "back at parallelism 2"} {
		if !strings.Contains(rs.GetReason(), want) {
			t.Errorf("reason %q lacks %q", rs.GetReason(), want)
		}
	}
}

// A TaskManager that says it is leaving is removed at once as stopped: the
// jobs it ran fail (this one has no checkpoints), naming a stop, not a loss.
func TestTaskManagerStoppedIsNotLost(t *testing.T) {
	c := startJobManager(t, Config{HeartbeatTimeout: time.Hour})
	c.startTaskManager("tm-1", 1)
	tm2 := c.startTaskManager("tm-2", 1)
	id := c.submit(2, nil)
	c.waitState(id, running)

	if err := tm2.leave(); err != io.EOF {
		t.Fatalf("heartbeat stream ended with %v; want the JobManager to end it (EOF)", err)
	}
	st := c.waitState(id, failed)
	if want := "TaskManager tm-2 (" + tm2.addr + ") stopped"; st.GetSummary().GetFailure() != want {
		t.Fatalf("failure %q; want %q", st.GetSummary().GetFailure(), want)
	}
	_, err := c.client.OfferSlots(c.ctx(), &weirv1.OfferSlotsRequest{TaskManagerId: "tm-2"})
	wantStatus(t, err, codes.NotFound, "TaskManager tm-2 is not registered")
}
