package taskmanager

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
	"github.com/weirstream/weir/taskmanager/exchange"
)

type taskKey struct {
	job                      string
	vertex, subtask, attempt int
}

func keyOf(id *weirv1.TaskID) taskKey {
	return taskKey{job: id.GetJobId(), vertex: int(id.GetVertexId()), subtask: int(id.GetSubtask()), attempt: int(id.GetAttempt())}
}

func (k taskKey) proto() *weirv1.TaskID {
	return &weirv1.TaskID{JobId: k.job, VertexId: int32(k.vertex), Subtask: int32(k.subtask), Attempt: int32(k.attempt)}
}

func (k taskKey) compare(o taskKey) int {
	return cmp.Or(strings.Compare(k.job, o.job), cmp.Compare(k.vertex, o.vertex), cmp.Compare(k.subtask, o.subtask),
		cmp.Compare(k.attempt, o.attempt))
}

// runningTask is a deployed subtask and the goroutine that runs it.
type runningTask struct {
	key     taskKey
	name    string
	jobName string
	slot    int
	// log carries the job, vertex, subtask and attempt of every line about
	// this subtask.
	log    *slog.Logger
	cancel context.CancelCauseFunc
	done   chan struct{}
	mu     sync.Mutex // guards task, which heartbeats read, and state
	task   *runtime.Task
	state  weirv1.TaskState // DEPLOYING, then RUNNING once started
}

func (rt *runningTask) getState() weirv1.TaskState {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.state
}

// terminalTask reports whether s is a state a task does not leave.
func terminalTask(s weirv1.TaskState) bool {
	switch s {
	case weirv1.TaskState_TASK_STATE_FINISHED, weirv1.TaskState_TASK_STATE_CANCELED, weirv1.TaskState_TASK_STATE_FAILED:
		return true
	}
	return false
}

// errCanceled is the cause of a canceled task's context. It is the
// exchange's, so the task's consumers learn it was canceled, not failed.
var errCanceled = exchange.ErrCanceled

// ErrJobMismatch marks a deployment this TaskManager's binary cannot run as
// the JobManager built it: the job is not registered here, or builds another
// graph. Retrying cannot help, so the job fails with the reason.
var ErrJobMismatch = errors.New("job mismatch: every JobManager and TaskManager of a cluster must run a binary with the same jobs registered")

// deploy validates a DeployTask request, registers the subtask's input
// gate and starts it. It returns once the subtask is set up, not finished.
func (tm *TaskManager) deploy(req *weirv1.DeployTaskRequest) error {
	key := keyOf(req.GetTask())
	if req.Slot < 0 || int(req.Slot) >= tm.cfg.Slots {
		return fmt.Errorf("slot %d does not exist (this TaskManager has %d)", req.Slot, tm.cfg.Slots)
	}
	g, err := jobs.BuildFixed(req.JobName, int(req.Parallelism), int(req.MaxParallelism), req.Params)
	if errors.Is(err, jobs.ErrUnknownJob) {
		return fmt.Errorf("%w: TaskManager %s cannot run job %q: its binary does not register it (it has %v)",
			ErrJobMismatch, tm.cfg.ID, req.JobName, jobs.Names())
	}
	if err != nil {
		return err
	}
	if err := matchDescriptor(g, req); err != nil {
		return fmt.Errorf("%w: TaskManager %s: %w", ErrJobMismatch, tm.cfg.ID, err)
	}
	v := g.Vertex(key.vertex)
	if v == nil || key.subtask < 0 || key.subtask >= v.Parallelism {
		return fmt.Errorf("%w: TaskManager %s builds job %s without subtask %d of vertex %d",
			ErrJobMismatch, tm.cfg.ID, req.JobName, key.subtask, key.vertex)
	}
	if want := req.GetOperatorUids(); len(want) > 0 {
		got := make([]string, len(v.Operators))
		for k, op := range v.Operators {
			got[k] = op.UID
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%w: TaskManager %s builds vertex %d of job %s with operators %v, the JobManager with %v",
				ErrJobMismatch, tm.cfg.ID, key.vertex, req.JobName, got, want)
		}
	}
	if len(req.Outputs) != len(v.Outputs) {
		return fmt.Errorf("vertex %s has %d outputs, deployment names %d", v.Name, len(v.Outputs), len(req.Outputs))
	}
	for i, e := range v.Outputs {
		if got, want := len(req.Outputs[i].Addresses), g.Vertices[e.Target].Parallelism; got != want {
			return fmt.Errorf("output %d of %s: %d consumer addresses, want %d", i, v.Name, got, want)
		}
	}

	tm.mu.Lock()
	if _, dup := tm.tasks[key]; dup {
		tm.mu.Unlock()
		return fmt.Errorf("task %v is already deployed", key)
	}
	if tm.ctx == nil {
		tm.mu.Unlock()
		return errors.New("taskmanager is not running")
	}
	ctx, cancel := context.WithCancelCause(tm.ctx)
	rt := &runningTask{key: key, name: fmt.Sprintf("%s (%d/%d)", v.Name, key.subtask+1, v.Parallelism), jobName: req.JobName, slot: int(req.Slot),
		log:    tm.log.With("job_id", key.job, "job", req.JobName, "vertex", v.Name, "subtask", key.subtask, "attempt", key.attempt),
		cancel: cancel, done: make(chan struct{}), state: weirv1.TaskState_TASK_STATE_DEPLOYING}
	tm.tasks[key] = rt
	tm.mu.Unlock()

	var gate *exchange.Gate
	gateKey := exchange.GateKey{JobID: key.job, Attempt: key.attempt, Vertex: key.vertex, Subtask: key.subtask}
	if !v.IsSource {
		var producers []exchange.Producer
		for _, e := range v.Inputs {
			for _, p := range g.InputChannels(e, key.subtask) {
				producers = append(producers, exchange.Producer{Vertex: e.Source, Subtask: p})
			}
		}
		if gate, err = tm.x.RegisterGate(gateKey, producers); err != nil {
			tm.forget(rt)
			cancel(err)
			return err
		}
	}
	go tm.run(ctx, rt, g, v, gate, req)
	return nil
}

func (tm *TaskManager) run(ctx context.Context, rt *runningTask, g *runtime.JobGraph, v *runtime.Vertex, gate *exchange.Gate, req *weirv1.DeployTaskRequest) {
	defer close(rt.done)
	defer tm.forget(rt)
	key := rt.key
	log := rt.log
	if gate != nil {
		defer tm.x.UnregisterGate(exchange.GateKey{JobID: key.job, Attempt: key.attempt, Vertex: key.vertex, Subtask: key.subtask})
	}
	task, err := tm.start(ctx, rt, g, v, gate, req)
	if err == nil {
		tm.report(rt, weirv1.TaskState_TASK_STATE_RUNNING, "", nil, false)
		log.Info("task running")
		err = task.Run(ctx)
	}
	state, reason := weirv1.TaskState_TASK_STATE_FINISHED, ""
	switch {
	case err == nil:
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), errCanceled):
		state = weirv1.TaskState_TASK_STATE_CANCELED
	case errors.Is(err, errCanceled):
		// An upstream task was canceled: this one is, too.
		state = weirv1.TaskState_TASK_STATE_CANCELED
	case ctx.Err() != nil:
		state, reason = weirv1.TaskState_TASK_STATE_FAILED, context.Cause(ctx).Error()
	default:
		state, reason = weirv1.TaskState_TASK_STATE_FAILED, err.Error()
	}
	log.Info("task ended", "state", taskStateName(state), "reason", reason)
	var m *weirv1.TaskMetrics
	if task != nil {
		m = taskMetrics(key, task)
	}
	// Unreadable state stays unreadable; unreachable storage may recover.
	unrecoverable := errors.Is(err, runtime.ErrUnrecoverable) || errors.Is(err, errRestore) &&
		(errors.Is(err, statebackend.ErrCorrupt) || errors.Is(err, storage.ErrNotExist))
	tm.report(rt, state, reason, m, unrecoverable)
}

// start opens the subtask's output channels and instantiates it.
func (tm *TaskManager) start(ctx context.Context, rt *runningTask, g *runtime.JobGraph, v *runtime.Vertex, gate *exchange.Gate, req *weirv1.DeployTaskRequest) (*runtime.Task, error) {
	key := rt.key
	outputs := make([][]engine.OutputChannel, len(v.Outputs))
	closeAll := func() {
		for _, chs := range outputs {
			for _, c := range chs {
				c.Close()
			}
		}
	}
	for i, e := range v.Outputs {
		for _, c := range g.OutputChannels(e, key.subtask) {
			id := exchange.ChannelID{JobID: key.job, Attempt: key.attempt, ProducerVertex: key.vertex,
				ProducerSubtask: key.subtask, ConsumerVertex: e.Target, ConsumerSubtask: c}
			ch, err := tm.x.OpenChannel(ctx, id, req.Outputs[i].Addresses[c])
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("open output channel to %s subtask %d: %w", g.Vertices[e.Target].Name, c, err)
			}
			outputs[i] = append(outputs[i], ch)
		}
	}
	backend := cmp.Or(req.GetStateBackend(), tm.cfg.StateBackend)
	restore, err := tm.readRestore(ctx, req.Restore, g, v, key.subtask, backend == runtime.StateBackendPebble)
	if err != nil {
		closeAll()
		return nil, err
	}
	// The operators' stores take over the downloaded native files; what
	// is left (an operator the job no longer has, a failed build) goes.
	defer restore.DiscardNative()
	tio := runtime.TaskIO{Outputs: outputs, Stdout: tm.cfg.Stdout, Logger: tm.log.With("job_id", key.job, "attempt", key.attempt),
		Checkpoints: responder{tm: tm, key: key, log: rt.log}, Checkpointing: req.Checkpointing, Incremental: req.Incremental,
		OpenStorage: tm.openStorage,
		Clock:       tm.cfg.Clock, Uploader: tm.uploader(),
		JobID: key.job, Attempt: key.attempt, Restore: restore,
		StateBackend: runtime.StateBackend{Kind: backend, Dir: tm.cfg.StateDir, Memory: tm.budgets[req.Slot],
			Timers: cmp.Or(req.GetTimerService(), tm.cfg.TimerService), Changelog: tm.cfg.Changelog}}
	if gate != nil {
		tio.Input = gate
	}
	task, err := runtime.NewTask(g, key.vertex, key.subtask, tio)
	if err != nil {
		closeAll()
		if restore != nil {
			err = fmt.Errorf("%w: %w", errRestore, err)
		}
		return nil, err
	}
	rt.mu.Lock()
	rt.task = task
	rt.mu.Unlock()
	return task, nil
}

func (tm *TaskManager) forget(rt *runningTask) {
	tm.mu.Lock()
	if tm.tasks[rt.key] == rt {
		delete(tm.tasks, rt.key)
	}
	tm.mu.Unlock()
}

// cancelTask cancels one task. It reports false for a task this
// TaskManager does not run (it ended, or never arrived), so the JobManager
// stops waiting for it.
func (tm *TaskManager) cancelTask(id *weirv1.TaskID) bool {
	return tm.cancelKey(keyOf(id), "")
}

// cancelKey cancels the task key, for reason (empty: the JobManager
// canceled it), and reports whether it runs here.
func (tm *TaskManager) cancelKey(key taskKey, reason string) bool {
	tm.mu.Lock()
	rt := tm.tasks[key]
	tm.mu.Unlock()
	if rt == nil {
		return false
	}
	if reason == "" {
		rt.cancel(errCanceled)
	} else {
		rt.cancel(fmt.Errorf("%w: %s", errCanceled, reason))
	}
	return true
}

func (tm *TaskManager) taskCount() int {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return len(tm.tasks)
}

func (tm *TaskManager) cancelAll(reason string) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	for _, rt := range tm.tasks {
		rt.cancel(fmt.Errorf("%w: %s", errCanceled, reason))
	}
}

func (tm *TaskManager) waitTasks(d time.Duration) {
	tm.mu.Lock()
	var done []chan struct{}
	for _, rt := range tm.tasks {
		done = append(done, rt.done)
	}
	tm.mu.Unlock()
	deadline := time.After(d)
	for _, c := range done {
		select {
		case <-c:
		case <-deadline:
			return
		}
	}
}

// report posts a task's state to the JobManager leader. A final state that
// is lost would leave the job waiting for the heartbeat timeout: the outbox
// keeps it until the leader has it, across a change of leader.
func (tm *TaskManager) report(rt *runningTask, state weirv1.TaskState, reason string, m *weirv1.TaskMetrics, unrecoverable bool) {
	key := rt.key
	req := &weirv1.TaskStateUpdate{TaskManagerId: tm.cfg.ID, Task: key.proto(), State: state, Failure: reason, Metrics: m,
		Unrecoverable: unrecoverable}
	msg := &outMessage{what: "task state " + taskStateName(state), task: key,
		call: func(ctx context.Context, jm weirv1.JobManagerClient) error {
			_, err := jm.UpdateTaskState(ctx, req)
			return err
		}}
	if terminalTask(state) {
		msg.final = &weirv1.RunningTask{Task: key.proto(), State: state, Slot: int32(rt.slot)}
	}
	rt.mu.Lock()
	rt.state = state
	rt.mu.Unlock()
	tm.out.post(msg)
}

// metrics collects the running tasks' counters for a heartbeat.
func (tm *TaskManager) metrics() []*weirv1.TaskMetrics {
	tm.mu.Lock()
	rts := make([]*runningTask, 0, len(tm.tasks))
	for _, rt := range tm.tasks {
		rts = append(rts, rt)
	}
	tm.mu.Unlock()
	var out []*weirv1.TaskMetrics
	for _, rt := range rts {
		rt.mu.Lock()
		task := rt.task
		rt.mu.Unlock()
		if task != nil {
			out = append(out, taskMetrics(rt.key, task))
		}
	}
	return out
}

// matchDescriptor checks the graph this binary built against what the
// JobManager's graph fixed. A JobManager that sends no descriptor (an
// older one) is taken at its word.
func matchDescriptor(g *runtime.JobGraph, req *weirv1.DeployTaskRequest) error {
	if req.MaxParallelism > 0 && g.MaxParallelism != int(req.MaxParallelism) {
		return fmt.Errorf("job %s builds with maxParallelism %d, the JobManager's with %d", req.JobName, g.MaxParallelism, req.MaxParallelism)
	}
	if len(req.VertexParallelism) == 0 {
		return nil
	}
	if len(req.VertexParallelism) != len(g.Vertices) {
		return fmt.Errorf("job %s builds %d vertices, the JobManager's %d", req.JobName, len(g.Vertices), len(req.VertexParallelism))
	}
	sources := map[int]bool{}
	for _, id := range req.SourceVertices {
		sources[int(id)] = true
	}
	for k, v := range g.Vertices {
		if p := int(req.VertexParallelism[k]); v.Parallelism != p {
			return fmt.Errorf("job %s builds vertex %d (%s) with parallelism %d, the JobManager's with %d", req.JobName, k, v.Name, v.Parallelism, p)
		}
		if v.IsSource != sources[k] {
			return fmt.Errorf("job %s builds vertex %d (%s) as source=%v, the JobManager's as source=%v", req.JobName, k, v.Name, v.IsSource, sources[k])
		}
	}
	return nil
}

// taskStateName is the state's short name, as the JobManager logs it:
// "CANCELED".
func taskStateName(s weirv1.TaskState) string {
	return strings.TrimPrefix(s.String(), "TASK_STATE_")
}

func taskMetrics(key taskKey, t *runtime.Task) *weirv1.TaskMetrics {
	st := t.Stats()
	m := &weirv1.TaskMetrics{Task: key.proto(), LatencyBuckets: t.Latency(),
		BusyNs: int64(st.Busy), IdleNs: int64(st.Idle), BackpressuredNs: int64(st.Backpressured)}
	if wm := t.Watermark(); wm != runtime.NoTimestamp {
		m.Watermark = &wm
	}
	if first, counts := t.KeyGroupRecords(); counts != nil {
		m.KeyGroupFirst, m.KeyGroupRecords = int32(first), counts
	}
	m.Notes = t.Notes()
	wms := t.OperatorWatermarks()
	for i, c := range t.Operators() {
		oc := &weirv1.OperatorCounters{RecordsIn: c.In, RecordsOut: c.Out}
		if wm := wms[i]; wm != runtime.NoTimestamp {
			oc.Watermark = &wm
		}
		m.Operators = append(m.Operators, oc)
	}
	return m
}
