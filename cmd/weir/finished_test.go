package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
)

// waitSourceFinished waits until subtask i of the job's source has
// finished while another of its subtasks still runs.
func waitSourceFinished(t *testing.T, c *cluster.Cluster, id string, i int) *cli.JobStatusView {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := jobStatus(t, c, id)
		if st.State == "RUNNING" && len(st.Vertices) > 0 && len(st.Vertices[0].Subtasks) > i &&
			st.Vertices[0].Subtasks[i].State == "FINISHED" {
			for _, s := range st.Vertices[0].Subtasks {
				if s.State == "RUNNING" {
					return st
				}
			}
			t.Fatalf("job %s: every source subtask finished before the test could act", id)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: source subtask %d did not finish within a minute (state %v)", id, i, st.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCheckpointsAfterASourceSubtaskFinished runs sequence-check with
// unequal bounded inputs (3 keys at parallelism 2: subtask 1 owns one key
// and finishes in half the time of subtask 0). After subtask 1 finished
// and a later checkpoint completed, the TaskManager running subtask 0 is
// killed: the job restores from a checkpoint taken after the finish, so
// subtask 1's end position must be in it. Then, once subtask 1 finished
// again, the job is stopped with a savepoint and resumed from it at
// parallelism 3. The committed output must hold every (key, seq) exactly
// once: nothing of the finished subtask's input is read twice.
func TestCheckpointsAfterASourceSubtaskFinished(t *testing.T) {
	c, srv, o := s3Cluster(t, 2, 2)
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	const keys, count = 3, 600
	params := []string{"--param", fmt.Sprint("keys=", keys), "--param", fmt.Sprint("count=", count),
		"--param", "rate=50", "--param", "output=s3://weir/fin"}
	id := submit(t, c, append([]string{"sequence-check", "--parallelism", "2", "--checkpoint-interval", "300ms"}, params...)...)

	st := waitSourceFinished(t, c, id, 1)
	st = waitCheckpoint(t, c, id, st.Checkpointing.Completed+1) // taken after the finish
	// The checkpoint holds the source's state of both subtasks, the
	// finished one's carried over.
	src := map[string]bool{}
	for _, op := range st.Vertices[0].Operators {
		src[op.UID] = true
	}
	carried := false
	for _, op := range readMetadata(t, srv, st.Checkpointing.Latest.Path).Operators {
		if src[op.UID] {
			for _, s := range op.Subtasks {
				carried = carried || s.Subtask == 1
			}
		}
	}
	if !carried {
		t.Errorf("checkpoint %s lacks the finished source subtask 1", st.Checkpointing.Latest.Path)
	}
	victim := st.Vertices[0].Subtasks[0].TaskManagerID
	for _, tm := range c.TaskManagers {
		if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
			t.Logf("killing %s (checkpoints so far %d)", victim, st.Checkpointing.Completed)
			tm.Kill()
		}
	}
	if _, err := c.AddTaskManager(o, 2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for st = jobStatus(t, c, id); st.Restarts == 0 || st.State != "RUNNING"; st = jobStatus(t, c, id) {
		if time.Now().After(deadline) || st.State == "FAILED" || st.State == "FINISHED" {
			t.Fatalf("job %s did not restart: %v after %d restarts: %s", id, st.State, st.Restarts, st.Failure)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The restored subtask 1 has nothing left to read and finishes again.
	st = waitSourceFinished(t, c, id, 1)
	r := runWeir(t, append([]string{"job", "stop", id, "--savepoint"}, jm...)...)
	if r.ExitCode != 0 {
		t.Fatalf("stop: exit %d: %s", r.ExitCode, r.Stderr)
	}
	sp := strings.TrimSpace(r.Stdout)

	id2 := submit(t, c, append([]string{"sequence-check", "--parallelism", "3", "--checkpoint-interval", "300ms",
		"--from-savepoint", sp}, params...)...)
	if st := waitState(t, c, id2, 2*time.Minute, "FINISHED", "FAILED"); st.State != "FINISHED" {
		t.Fatalf("job resumed at parallelism 3 from %s: %v: %s", sp, st.State, st.Failure)
	}
	verifySequence(t, srv, "s3://weir/fin", keys, count)
}
