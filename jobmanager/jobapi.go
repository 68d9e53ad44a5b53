package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend"
)

// The client API's logic: submit, list, status, cancel.

// SubmitOptions are a submission's checkpoint and restore settings.
type SubmitOptions struct {
	// Checkpointing nil means the defaults.
	Checkpointing    *weirv1.CheckpointConfig
	FromSavepoint    string
	AllowNonRestored bool
	// Labels are stored with the job and shown in its summary.
	Labels map[string]string
	// StateBackend is the job's state backend (runtime.StateBackendMemory
	// or StateBackendPebble); empty leaves it to each TaskManager.
	StateBackend string
	// TimerService is where the job's pebble operators keep their timers
	// (runtime.TimerServiceStore or TimerServiceHeap); empty leaves it to
	// each TaskManager.
	TimerService string
}

// submitJob validates the job by building its graph, stores it as CREATED
// and returns its ID; the scheduler deploys it asynchronously.
func (jm *JobManager) submitJob(ctx context.Context, name string, parallelism int, params map[string]string, opts SubmitOptions) (string, error) {
	if name == "" {
		return "", errorf(ErrInvalidRequest, "job name is empty (known jobs: %v)", jobs.Names())
	}
	if parallelism < 0 {
		return "", errorf(ErrInvalidJob, "parallelism %d must not be negative", parallelism)
	}
	if parallelism == 0 {
		parallelism = 1
	}
	lim := jm.cfg.Limits
	if err := lim.checkParams(params); err != nil {
		return "", err
	}
	if err := lim.checkLabels(opts.Labels); err != nil {
		return "", err
	}
	if opts.StateBackend != "" {
		if _, err := runtime.ParseStateBackend(opts.StateBackend); err != nil {
			return "", errorf(ErrInvalidRequest, "%w", err)
		}
	}
	if opts.TimerService != "" {
		if _, err := runtime.ParseTimerService(opts.TimerService); err != nil {
			return "", errorf(ErrInvalidRequest, "%w", err)
		}
	}
	if err := lim.checkParallelism(parallelism, nil); err != nil {
		return "", err
	}
	if err := lim.checkJobs(jm.store.Jobs()); err != nil {
		return "", err
	}
	// A job restored from a savepoint keeps the savepoint's key groups; a
	// builder pinning another count fails to build, saying so.
	var restoreMeta *statebackend.Metadata
	fixedMaxP := 0
	if opts.FromSavepoint != "" {
		m, err := jm.loadMetadata(ctx, opts.FromSavepoint)
		if err != nil {
			return "", errorf(ErrInvalidJob, "%w", err)
		}
		restoreMeta, fixedMaxP = m, m.MaxParallelism
	}
	g, err := buildGraph(name, parallelism, fixedMaxP, params)
	if errors.Is(err, jobs.ErrUnknownJob) {
		return "", err
	}
	if err != nil {
		return "", errorf(ErrInvalidJob, "%w", err)
	}
	cc := CheckpointConfig{IntervalMs: DefaultCheckpointInterval.Milliseconds(), Retained: DefaultRetainedCheckpoint}
	if c := opts.Checkpointing; c != nil {
		if c.IntervalMs < 0 || c.TimeoutMs < 0 || c.MinPauseMs < 0 || c.Retained < 0 {
			return "", errorf(ErrInvalidRequest, "checkpoint interval, timeout, min pause and retained must not be negative")
		}
		cc = CheckpointConfig{IntervalMs: c.IntervalMs, TimeoutMs: c.TimeoutMs, MinPauseMs: c.MinPauseMs, Retained: int(c.Retained),
			Incremental: c.Incremental}
		if cc.Retained == 0 {
			cc.Retained = DefaultRetainedCheckpoint
		}
	}
	if cc.TimeoutMs == 0 {
		cc.TimeoutMs = DefaultCheckpointTimeout.Milliseconds()
	}
	vertices := vertexSpecs(g)
	if err := lim.checkParallelism(parallelism, vertices); err != nil {
		return "", err
	}
	cmd := SubmitJob{
		JobID:            newID(),
		Name:             name,
		Parallelism:      parallelism,
		MaxParallelism:   g.MaxParallelism,
		Params:           params,
		Labels:           opts.Labels,
		Vertices:         vertices,
		TimeMs:           time.Now().UnixMilli(),
		Checkpointing:    cc,
		AllowNonRestored: opts.AllowNonRestored,
		StateBackend:     opts.StateBackend,
		TimerService:     opts.TimerService,
	}
	if m := restoreMeta; m != nil {
		if err := validateRestore(m, opts.FromSavepoint, name, g.MaxParallelism, cmd.Vertices, opts.AllowNonRestored); err != nil {
			return "", err
		}
		cmd.Restore = &CompletedCheckpoint{ID: m.CheckpointID, Path: opts.FromSavepoint, Savepoint: m.Savepoint,
			TriggerMs: m.TimestampMs, DurationMs: m.DurationMs, SizeBytes: m.Size()}
	}
	if _, err := jm.apply(cmd); err != nil {
		return "", fmt.Errorf("submitting job %s: %w", name, err)
	}
	if job, err := jm.store.Job(cmd.JobID); err == nil {
		jm.startCoordinator(job)
	}
	jm.log.Info("job submitted", "job_id", cmd.JobID, "job", name, "parallelism", parallelism,
		"max_parallelism", g.MaxParallelism, "vertices", len(g.Vertices), "slots_needed", g.SlotsNeeded())
	return cmd.JobID, nil
}

// buildGraph runs the job's builder, turning a panic into an error so a
// broken builder cannot take the JobManager down.
// maxParallelism > 0 fixes the job's key groups (see jobs.BuildFixed).
func buildGraph(name string, parallelism, maxParallelism int, params map[string]string) (g *runtime.JobGraph, err error) {
	defer func() {
		if r := recover(); r != nil {
			g, err = nil, fmt.Errorf("job %s: builder panicked: %v", name, r)
		}
	}()
	return jobs.BuildFixed(name, parallelism, maxParallelism, params)
}

// vertexSpecs keeps what the JobManager needs of a graph.
func vertexSpecs(g *runtime.JobGraph) []VertexSpec {
	specs := make([]VertexSpec, len(g.Vertices))
	for k, v := range g.Vertices {
		s := VertexSpec{Name: v.Name, Parallelism: v.Parallelism}
		for _, op := range v.Operators {
			s.Operators = append(s.Operators, OperatorSpec{UID: op.UID, Name: op.Name})
		}
		for k, e := range v.Inputs {
			if k > 0 {
				s.InputPartitioning += ", "
			}
			s.InputPartitioning += e.Partitioning.String()
		}
		for _, e := range v.Outputs {
			s.Outputs = append(s.Outputs, e.Target)
		}
		specs[k] = s
	}
	return specs
}

// listJobs summarises every job, newest first.
func (jm *JobManager) listJobs() []*weirv1.JobSummary {
	all := jm.store.Jobs()
	free := jm.freeSlotCount(all)
	out := make([]*weirv1.JobSummary, len(all))
	for k := range all {
		out[k] = jobSummary(&all[k], slotWait(&all[k], free, jm.cfg.SlotRequestTimeout))
	}
	return out
}

// freeSlotCount counts the slots of registered TaskManagers that no task
// of the jobs occupies.
func (jm *JobManager) freeSlotCount(all []Job) int {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	return countSlots(FreeSlots(jm.tms.offeredSlots(), all))
}

// jobStatus reports a job with per-vertex and per-subtask detail and the
// metrics its tasks reported last.
func (jm *JobManager) jobStatus(id string) (*weirv1.JobStatus, error) {
	job, err := jm.store.Job(id)
	if err != nil {
		return nil, err
	}
	metrics := map[taskKey]*weirv1.TaskMetrics{}
	jm.mu.Lock()
	for v, ts := range job.Tasks {
		for i, t := range ts {
			k := taskKey{jobID: id, vertex: v, subtask: i, attempt: t.Attempt}
			if m, ok := jm.metrics[k]; ok {
				metrics[k] = m
			}
		}
	}
	jm.mu.Unlock()
	var wait *weirv1.SlotWait
	if job.Pending() {
		wait = slotWait(&job, jm.freeSlotCount(jm.store.Jobs()), jm.cfg.SlotRequestTimeout)
	}
	return buildJobStatus(&job, wait, metrics), nil
}

// cancelJob cancels a job and returns its state right after: CANCELED for
// a job that was waiting for slots, CANCELING for a deployed one.
func (jm *JobManager) cancelJob(id string) (weirv1.JobState, error) {
	trans, err := jm.apply(CancelJob{JobID: id, TimeMs: time.Now().UnixMilli()})
	if err != nil {
		return 0, err
	}
	state := jobCanceling
	for _, t := range trans {
		if t.JobID == id {
			state = t.To
		}
	}
	return state, nil
}
