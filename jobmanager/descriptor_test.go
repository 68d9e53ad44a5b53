package jobmanager

import (
	"slices"
	"testing"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// A job that leaves maxParallelism to the default starts with 128 key
// groups at parallelism 2; the default for 90 would be 256. The rescale
// must keep 128, or every key would land in another key group and its
// state would be lost without a word. The deployments carry it, so no
// TaskManager derives it again.
func TestRescaleKeepsTheKeyGroups(t *testing.T) {
	c := startJobManager(t, Config{CheckpointStorage: t.TempDir()})
	tm := c.startTaskManager("tm-1", 96)
	id := c.submitRestartable(2)
	before := c.waitState(id, running)
	if got := before.GetMaxParallelism(); got != 128 {
		t.Fatalf("maxParallelism %d at parallelism 2, want 128", got)
	}
	for _, d := range tm.deployed() {
		if d.GetMaxParallelism() != 128 || !slices.Equal(d.GetVertexParallelism(), []int32{1, 2}) ||
			!slices.Equal(d.GetSourceVertices(), []int32{0}) {
			t.Fatalf("deployment descriptor: maxParallelism %d, vertices %v, sources %v",
				d.GetMaxParallelism(), d.GetVertexParallelism(), d.GetSourceVertices())
		}
	}

	done := make(chan error, 1)
	go func() {
		_, err := c.client.RescaleJob(c.ctx(), &weirv1.RescaleJobRequest{JobId: id, Parallelism: 90})
		done <- err
	}()
	var trigger *weirv1.TriggerCheckpointRequest
	waitUntil(t, "the stop's savepoint trigger", func() bool {
		if tr := tm.triggered(); len(tr) > 0 {
			trigger = tr[0]
		}
		return trigger != nil
	})
	for v, vs := range before.GetVertices() {
		for _, sub := range vs.GetSubtasks() {
			if _, err := c.client.AcknowledgeCheckpoint(c.ctx(), &weirv1.AcknowledgeCheckpointRequest{
				TaskManagerId: "tm-1", Task: taskID(id, v, int(sub.GetIndex()), 0), CheckpointId: trigger.GetCheckpointId()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("RescaleJob: %v", err)
	}
	for v, vs := range before.GetVertices() {
		for _, sub := range vs.GetSubtasks() {
			tm.reportNow(taskID(id, v, int(sub.GetIndex()), 0), weirv1.TaskState_TASK_STATE_FINISHED, "", nil)
		}
	}
	st := c.waitStatus(id, "running at 90", func(st *weirv1.JobStatus) bool {
		return st.GetSummary().GetState() == running && st.GetAttempt() == 1
	})
	if st.GetSummary().GetParallelism() != 90 || st.GetMaxParallelism() != 128 {
		t.Fatalf("after the rescale: parallelism %d, maxParallelism %d; want 90 and still 128",
			st.GetSummary().GetParallelism(), st.GetMaxParallelism())
	}
	n := 0
	for _, d := range tm.deployed() {
		if d.GetTask().GetAttempt() != 1 {
			continue
		}
		n++
		if d.GetMaxParallelism() != 128 || !slices.Equal(d.GetVertexParallelism(), []int32{1, 90}) {
			t.Fatalf("rescaled deployment: maxParallelism %d, vertices %v", d.GetMaxParallelism(), d.GetVertexParallelism())
		}
	}
	if n != 91 {
		t.Errorf("%d deployments of the rescaled attempt, want 91", n)
	}
}
