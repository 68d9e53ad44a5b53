package jobmanager

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// runningJob is j1 (a source, then two subtasks) with every task RUNNING.
func runningJob(t *testing.T, cfg CheckpointConfig) Job {
	s := NewMemStore()
	cmd := submitCmd("j1", 1, 2)
	cmd.Checkpointing = cfg
	mustApply(t, s, cmd)
	mustApply(t, s, DeployJob{JobID: "j1", Slots: []Slot{slot("tm-1", 0), slot("tm-2", 0)}, TimeMs: 2})
	mustApply(t, s, update(0, 0, "tm-1", taskRunning, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskRunning, ""))
	mustApply(t, s, update(1, 1, "tm-2", taskRunning, ""))
	return jobState(t, s, "j1")
}

func ack(p *pendingCheckpoint, v, i int) *weirv1.AcknowledgeCheckpointRequest {
	return &weirv1.AcknowledgeCheckpointRequest{CheckpointId: p.id,
		Task: &weirv1.TaskID{JobId: "j1", VertexId: int32(v), Subtask: int32(i), Attempt: int32(p.attempt)}}
}

var t0 = time.UnixMilli(1_000_000)

func TestCoreTriggersAtTheIntervalOneAtATime(t *testing.T) {
	job := runningJob(t, CheckpointConfig{IntervalMs: 1000, MinPauseMs: 300, TimeoutMs: 5000})
	c := newCheckpointCore("j1", "s3://b/root", job.Checkpointing)
	if a := c.tick(&job, t0); a.trigger != nil {
		t.Fatal("triggered at the attempt's start; the interval counts from there")
	}
	if a := c.tick(&job, t0.Add(999*time.Millisecond)); a.trigger != nil {
		t.Fatal("triggered before the interval")
	}
	a := c.tick(&job, t0.Add(time.Second))
	p := a.trigger
	if p == nil || p.id != 1 || p.location != "s3://b/root/j1/chk-1" || len(p.sources) != 1 || len(p.waiting) != 3 {
		t.Fatalf("trigger %+v", p)
	}
	if a := c.tick(&job, t0.Add(3*time.Second)); a.trigger != nil {
		t.Fatal("a second checkpoint started while one is in flight")
	}
	if c.acknowledge(ack(p, 0, 0)) != nil || c.acknowledge(ack(p, 0, 0)) != nil || c.acknowledge(ack(p, 1, 0)) != nil {
		t.Fatal("completed before every task acknowledged")
	}
	stale := ack(p, 1, 1)
	stale.CheckpointId = 7
	if c.acknowledge(stale) != nil {
		t.Fatal("an acknowledgement of another checkpoint counted")
	}
	if done := c.acknowledge(ack(p, 1, 1)); done != p || !p.finalizing {
		t.Fatal("the last acknowledgement did not complete the checkpoint")
	}
	if c.declined(1, 0) != nil {
		t.Fatal("a finalizing checkpoint can be declined")
	}
	c.end(p, t0.Add(3100*time.Millisecond))
	// The interval has passed long ago, but the minimum pause has not.
	if a := c.tick(&job, t0.Add(3200*time.Millisecond)); a.trigger != nil {
		t.Fatal("triggered within the minimum pause")
	}
	if a := c.tick(&job, t0.Add(3400*time.Millisecond)); a.trigger == nil || a.trigger.id != 2 {
		t.Fatalf("no checkpoint 2 after the pause: %+v", a)
	}
}

func TestCoreAbortsOnTimeoutDeclineAndRestart(t *testing.T) {
	job := runningJob(t, CheckpointConfig{IntervalMs: 100, TimeoutMs: 1000})
	c := newCheckpointCore("j1", "/ck", job.Checkpointing)
	c.tick(&job, t0)
	p := c.tick(&job, t0.Add(100*time.Millisecond)).trigger
	a := c.tick(&job, t0.Add(1101*time.Millisecond))
	if a.abort != p || !strings.Contains(a.reason, "timed out") || a.routine {
		t.Fatalf("timeout: %+v", a)
	}
	c.end(p, t0.Add(1101*time.Millisecond))

	p = c.tick(&job, t0.Add(1300*time.Millisecond)).trigger
	if p == nil || p.id != 2 {
		t.Fatalf("no checkpoint after an abort: %+v", p)
	}
	if c.declined(2, 5) != nil || c.declined(1, 0) != nil || c.declined(2, 0) != p {
		t.Fatal("decline matched the wrong checkpoint")
	}
	c.end(p, t0.Add(1400*time.Millisecond))

	p = c.tick(&job, t0.Add(1500*time.Millisecond)).trigger
	job.Tasks[0][0].State = taskFinished // the source ended without the barrier
	if a := c.tick(&job, t0.Add(1505*time.Millisecond)); a.abort != p || !strings.Contains(a.reason, "before acknowledging") || !a.routine {
		t.Fatalf("a checkpoint waited for a finished task: %+v", a)
	}
	c.end(p, t0.Add(1505*time.Millisecond))
	job.Tasks[0][0].State = taskRunning

	p = c.tick(&job, t0.Add(1700*time.Millisecond)).trigger
	job.State, job.Attempt = jobRestarting, 1
	if a := c.tick(&job, t0.Add(1710*time.Millisecond)); a.abort != p || !strings.Contains(a.reason, "RESTARTING") || !a.routine {
		t.Fatalf("a checkpoint of a restarting job went on: %+v", a)
	}
}

func TestCoreSavepointsQueueAndRequestsSkipTheInterval(t *testing.T) {
	job := runningJob(t, CheckpointConfig{})
	c := newCheckpointCore("j1", "s3://b/root", job.Checkpointing)
	if a := c.tick(&job, t0.Add(time.Hour)); a.trigger != nil {
		t.Fatal("periodic checkpoint with interval 0")
	}
	c.queue = append(c.queue, &savepointRequest{stop: true}, &savepointRequest{target: "s3://mine"})
	p := c.tick(&job, t0.Add(time.Hour)).trigger
	if p == nil || !p.savepoint || !p.stop || p.location != "s3://b/root/savepoints/savepoint-j1-1" {
		t.Fatalf("first savepoint %+v", p)
	}
	c.end(p, t0.Add(time.Hour))
	p = c.tick(&job, t0.Add(time.Hour)).trigger
	if p == nil || p.location != "s3://mine/savepoint-j1-2" || p.stop {
		t.Fatalf("second savepoint %+v", p)
	}
	c.end(p, t0.Add(time.Hour))

	periodic := runningJob(t, CheckpointConfig{IntervalMs: 60_000})
	c = newCheckpointCore("j1", "/ck", periodic.Checkpointing)
	c.tick(&periodic, t0)
	c.requested = true // a source ended its input
	if p := c.tick(&periodic, t0.Add(time.Millisecond)).trigger; p == nil {
		t.Fatal("a requested checkpoint waited for the interval")
	}
}

func TestCoreWaitsForRunningTasksAndLiveSources(t *testing.T) {
	job := runningJob(t, CheckpointConfig{IntervalMs: 10})
	c := newCheckpointCore("j1", "/ck", job.Checkpointing)
	c.tick(&job, t0)
	job.Tasks[1][1].State = taskDeploying
	c.queue = append(c.queue, &savepointRequest{done: make(chan savepointResult, 1)})
	a := c.tick(&job, t0.Add(time.Second))
	if a.trigger != nil || a.refuse == nil || !strings.Contains(a.err.Error(), "DEPLOYING") {
		t.Fatalf("checkpoint with a deploying task: %+v", a)
	}
	job.Tasks[1][1].State = taskRunning
	job.Tasks[0][0].State = taskFinished
	if a := c.tick(&job, t0.Add(2*time.Second)); a.trigger != nil {
		t.Fatal("triggered with every source finished")
	}
	job.Tasks[0][0].State = taskRunning
	job.LastCheckpointID = 41 // restored from checkpoint 41
	if p := c.tick(&job, t0.Add(3*time.Second)).trigger; p == nil || p.id != 42 {
		t.Fatalf("checkpoint IDs must continue after the restored one: %+v", p)
	}
}

// After a stop-with-savepoint completes, its attempt takes no periodic
// checkpoint while its tasks finish; the next attempt (a rescale's) does.
func TestCoreTakesNoCheckpointAfterAStop(t *testing.T) {
	job := runningJob(t, CheckpointConfig{IntervalMs: 100})
	c := newCheckpointCore("j1", "/ck", job.Checkpointing)
	c.tick(&job, t0)
	c.queue = append(c.queue, &savepointRequest{stop: true})
	p := c.tick(&job, t0.Add(time.Millisecond)).trigger
	if p == nil || !p.stop {
		t.Fatalf("stop savepoint %+v", p)
	}
	if !c.completed(p, t0.Add(10*time.Millisecond)) {
		t.Fatal("completed reported the savepoint as ended already")
	}
	if a := c.tick(&job, t0.Add(time.Second)); a.trigger != nil {
		t.Fatalf("a periodic checkpoint after the stop: %+v", a.trigger)
	}
	job.Attempt = 1
	c.tick(&job, t0.Add(2*time.Second))
	if a := c.tick(&job, t0.Add(3*time.Second)); a.trigger == nil {
		t.Fatal("the next attempt takes no checkpoints")
	}
}

// A completed checkpoint is logged at DEBUG unless it is slow or a
// savepoint.
func TestCoreCompletionLevel(t *testing.T) {
	c := newCheckpointCore("j1", "/ck", CheckpointConfig{IntervalMs: 1000, TimeoutMs: 10_000})
	periodic, savepoint := &pendingCheckpoint{}, &pendingCheckpoint{savepoint: true}
	for _, tc := range []struct {
		p    *pendingCheckpoint
		d    time.Duration
		want slog.Level
	}{
		{periodic, 50 * time.Millisecond, slog.LevelDebug},
		{periodic, time.Second, slog.LevelDebug},
		{periodic, 1001 * time.Millisecond, slog.LevelInfo}, // the next one is late
		{periodic, 5001 * time.Millisecond, slog.LevelWarn}, // nearly timed out
		{savepoint, 50 * time.Millisecond, slog.LevelInfo},
		{savepoint, 6 * time.Second, slog.LevelWarn},
	} {
		if got := c.completionLevel(tc.p, tc.d); got != tc.want {
			t.Errorf("savepoint %v after %v: level %v, want %v", tc.p.savepoint, tc.d, got, tc.want)
		}
	}
}
