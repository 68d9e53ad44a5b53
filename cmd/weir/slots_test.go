package main

import (
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// TestRestartingJobWaitsForTaskManager: a checkpointed job whose
// TaskManager is killed waits for slots far longer than --slot-timeout,
// shows WAITING FOR SLOTS, and runs again once a TaskManager started 20 s
// later brings slots back. It never fails.
func TestRestartingJobWaitsForTaskManager(t *testing.T) {
	o := cluster.Options{TaskManagers: 2, Slots: 1,
		JobManagerArgs: []string{"--slot-timeout", "2s", "--checkpoint-storage", t.TempDir()}}
	c := startCluster(t, o)
	jm := []string{"--jobmanager", c.JobManager.Addr}
	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "500ms")
	waitCheckpoint(t, c, id, 0)

	c.TaskManagers[1].Kill()
	killed := time.Now()
	st := waitStatus(t, c, id, 30*time.Second, "waiting for slots", func(st *weirv1.JobStatus) bool {
		return st.Summary.SlotWait != nil && st.Attempt >= 1
	})
	if w := st.Summary.SlotWait; st.Summary.State != weirv1.JobState_JOB_STATE_CREATED || w.SlotsNeeded != 2 || w.SlotsFree != 1 || w.DeadlineMs != 0 {
		t.Fatalf("state %v, slot wait %v; want CREATED, needs 2, 1 free, no deadline", st.Summary.State, w)
	}

	// Well past the slot timeout, the job still waits and says so.
	time.Sleep(time.Until(killed.Add(10 * time.Second)))
	r := runWeir(t, append([]string{"job", "status", id}, jm...)...)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "WAITING FOR SLOTS (needs 2, 1 free)") {
		t.Fatalf("status: exit %d, stdout:\n%s\nwant WAITING FOR SLOTS (needs 2, 1 free)", r.ExitCode, r.Stdout)
	}
	r = runWeir(t, append([]string{"job", "list"}, jm...)...)
	if !strings.Contains(r.Stdout, "WAITING FOR SLOTS (needs 2, 1 free)") {
		t.Errorf("job list does not show the wait:\n%s", r.Stdout)
	}

	time.Sleep(time.Until(killed.Add(20 * time.Second)))
	if st := jobStatus(t, c, id); st.Summary.State != weirv1.JobState_JOB_STATE_CREATED {
		t.Fatalf("20 s after the kill the job is %v (%s), want still waiting", st.Summary.State, st.Summary.Failure)
	}
	if _, err := c.AddTaskManager(o, 2); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, c, id, 30*time.Second, weirv1.JobState_JOB_STATE_RUNNING, weirv1.JobState_JOB_STATE_FAILED)
	if st.Summary.State != weirv1.JobState_JOB_STATE_RUNNING || st.Summary.Restarts < 1 || st.Summary.SlotWait != nil {
		t.Fatalf("after the new TaskManager: %v, restarts %d, slot wait %v, failure %q", st.Summary.State,
			st.Summary.Restarts, st.Summary.SlotWait, st.Summary.Failure)
	}
	if st.Restored == nil {
		t.Errorf("the restarted job restored no checkpoint")
	}
}

// TestRescaleRefusedForLackOfSlots: a rescale the cluster cannot hold is
// refused with the numbers before anything stops; the job keeps running at
// its parallelism in the same attempt.
func TestRescaleRefusedForLackOfSlots(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 1, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", t.TempDir()}})
	jm := []string{"--jobmanager", c.JobManager.Addr}
	id := submit(t, c, "fraud-detection", "--parallelism", "2")
	waitState(t, c, id, 30*time.Second, weirv1.JobState_JOB_STATE_RUNNING)

	r := runWeir(t, append([]string{"job", "rescale", id, "--parallelism", "3"}, jm...)...)
	want := "it needs 3 slots, and 2 are available (0 free + 2 the job holds now); the job keeps running at parallelism 2"
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("rescale: exit %d, stdout %q, stderr %q; want a refusal containing %q", r.ExitCode, r.Stdout, r.Stderr, want)
	}
	st := jobStatus(t, c, id)
	if st.Summary.State != weirv1.JobState_JOB_STATE_RUNNING || st.Summary.Parallelism != 2 || st.Attempt != 0 || st.Rescale != nil {
		t.Fatalf("after the refusal: %v at parallelism %d, attempt %d, rescale %v", st.Summary.State, st.Summary.Parallelism,
			st.Attempt, st.Rescale)
	}
}

// waitStatus polls the job's status until cond holds.
func waitStatus(t *testing.T, c *cluster.Cluster, id string, within time.Duration, what string, cond func(*weirv1.JobStatus) bool) *weirv1.JobStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := jobStatus(t, c, id)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: no %s after %v; state %v (failure %q)", id, what, within, st.Summary.State, st.Summary.Failure)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
