package main

import (
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
)

// TestRestartingJobWaitsForTaskManager: a checkpointed job whose
// TaskManager is killed waits for slots far longer than --slot-timeout,
// shows WAITING FOR SLOTS, and runs again once a TaskManager started 20 s
// later brings slots back. It never fails.
func TestRestartingJobWaitsForTaskManager(t *testing.T) {
	o := cluster.Options{TaskManagers: 2, Slots: 1,
		JobManagerArgs: []string{"--slot-timeout", "2s", "--checkpoint-storage", t.TempDir()}}
	c := startCluster(t, o)
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "500ms")
	waitCheckpoint(t, c, id, 0)

	c.TaskManagers[1].Kill()
	killed := time.Now()
	st := waitStatus(t, c, id, 30*time.Second, "waiting for slots", func(st *cli.JobStatusView) bool {
		return st.SlotWait != nil && st.Attempt >= 1
	})
	if w := st.SlotWait; st.State != "CREATED" || w.SlotsNeeded != 2 || w.SlotsFree != 1 || w.DeadlineTimeMs != 0 {
		t.Fatalf("state %v, slot wait %v; want CREATED, needs 2, 1 free, no deadline", st.State, w)
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
	if st := jobStatus(t, c, id); st.State != "CREATED" {
		t.Fatalf("20 s after the kill the job is %v (%s), want still waiting", st.State, st.Failure)
	}
	if _, err := c.AddTaskManager(o, 2); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, c, id, 30*time.Second, "RUNNING", "FAILED")
	if st.State != "RUNNING" || st.Restarts < 1 || st.SlotWait != nil {
		t.Fatalf("after the new TaskManager: %v, restarts %d, slot wait %v, failure %q", st.State,
			st.Restarts, st.SlotWait, st.Failure)
	}
	if st.Checkpointing.Restored == nil {
		t.Errorf("the restarted job restored no checkpoint")
	}
}

// TestRescaleRefusedForLackOfSlots: a rescale the cluster cannot hold is
// refused with the numbers before anything stops; the job keeps running at
// its parallelism in the same attempt.
func TestRescaleRefusedForLackOfSlots(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 1, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", t.TempDir()}})
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	id := submit(t, c, "fraud-detection", "--parallelism", "2")
	waitState(t, c, id, 30*time.Second, "RUNNING")

	r := runWeir(t, append([]string{"job", "rescale", id, "--parallelism", "3"}, jm...)...)
	want := "it needs 3 slots, and 2 are available (0 free + 2 the job holds now); the job keeps running at parallelism 2"
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("rescale: exit %d, stdout %q, stderr %q; want a refusal containing %q", r.ExitCode, r.Stdout, r.Stderr, want)
	}
	st := jobStatus(t, c, id)
	if st.State != "RUNNING" || st.Parallelism != 2 || st.Attempt != 0 || st.Rescale != nil {
		t.Fatalf("after the refusal: %v at parallelism %d, attempt %d, rescale %v", st.State, st.Parallelism,
			st.Attempt, st.Rescale)
	}
}

// waitStatus polls the job's status until cond holds.
func waitStatus(t *testing.T, c *cluster.Cluster, id string, within time.Duration, what string, cond func(*cli.JobStatusView) bool) *cli.JobStatusView {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := jobStatus(t, c, id)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: no %s after %v; state %v (failure %q)", id, what, within, st.State, st.Failure)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
