package jobmanager

import (
	"testing"
	"time"

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
