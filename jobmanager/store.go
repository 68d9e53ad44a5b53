package jobmanager

import (
	"maps"
	"slices"
	"strings"
	"sync"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// Store holds the JobManager's durable state: the jobs and their
// deployments. It is the seam where a raft FSM slots in: the leader turns
// every write into a Command and the Store applies it.
//
// Implementations MUST apply commands one at a time, in order, and
// deterministically (the same commands in the same order give the same
// state on every replica). Readers MUST get copies they may keep and modify.
type Store interface {
	// Apply applies one command and returns the job state transitions it
	// caused, in order.
	Apply(cmd Command) ([]JobTransition, error)
	// Job returns a copy of the job, or an error matching ErrJobNotFound.
	Job(id string) (Job, error)
	// Jobs returns copies of all jobs, newest first.
	Jobs() []Job
	// Members returns a copy of the raft group's member client addresses,
	// by member ID.
	Members() map[string]string
}

// JobTransition records one change of a job's state.
type JobTransition struct {
	JobID    string
	From, To weirv1.JobState
	// Reason is the job's failure when To is FAILED.
	Reason string
}

// Job is the durable record of one submitted job.
type Job struct {
	ID   string
	Name string
	// Parallelism is the default operator parallelism the job was built
	// with (at least 1); TaskManagers build the graph with it too.
	Parallelism    int
	MaxParallelism int
	Params         map[string]string
	// Labels are the caller's, stored and shown, never interpreted.
	Labels   map[string]string
	Vertices []VertexSpec

	State   weirv1.JobState
	Failure string
	// Times are Unix milliseconds, 0 when not reached. StartTime is when
	// deployment began.
	SubmitTime, StartTime, EndTime int64
	// WaitingSince is when the current attempt began waiting for slots
	// (the submission, or the latest restart).
	WaitingSince int64

	// Attempt is the attempt number of the current deployment; Deployed
	// says whether its tasks have been placed on slots.
	Attempt  int
	Deployed bool
	// Tasks holds the current attempt's subtasks: Tasks[vertex][subtask].
	Tasks [][]Task

	// Checkpointing is the job's checkpoint configuration.
	Checkpointing CheckpointConfig
	// AllowNonRestored lets a restore skip state of operators the job
	// lacks.
	AllowNonRestored bool
	// StateBackend is the job's state backend; empty leaves it to each
	// TaskManager's default.
	StateBackend string
	// TimerService is where the job's pebble operators keep their timers;
	// empty leaves it to each TaskManager's default.
	TimerService string `json:",omitempty"`
	// Restore is the checkpoint or savepoint the current attempt starts
	// from; nil for a fresh start.
	Restore *CompletedCheckpoint
	// Checkpoints are the retained completed checkpoints and the
	// savepoints, oldest first.
	Checkpoints []CompletedCheckpoint
	// LastCheckpointID is the highest checkpoint ID used, so IDs keep
	// growing across restarts.
	LastCheckpointID     int64
	CompletedCheckpoints int64
	FailedCheckpoints    int64
	// Restarts counts restarts after failures; FailuresSinceCheckpoint
	// (reset when a checkpoint completes) sets the restart delay, and
	// RestartAt (Unix ms) is when a RESTARTING job may redeploy.
	Restarts                int
	FailuresSinceCheckpoint int
	RestartAt               int64
	// LastFailure is the failure that caused the latest restart.
	LastFailure string
	// Rescale is the job's latest rescale. While it is under way
	// (stopping or placing) the job is redeployed at the plan's
	// parallelism once its stop-with-savepoint has finished every task,
	// or at its previous parallelism when the new one cannot be placed.
	Rescale *RescalePlan
	// CheckpointsDisposedMs is when the ended job's retained checkpoints
	// were disposed of (Unix ms); 0 while they are kept.
	CheckpointsDisposedMs int64
}

// CheckpointConfig is a job's checkpoint configuration.
type CheckpointConfig struct {
	// IntervalMs is the periodic checkpoint interval; 0 disables periodic
	// checkpoints and restarts.
	IntervalMs, TimeoutMs, MinPauseMs int64
	// Retained is how many completed checkpoints are kept.
	Retained int
	// Incremental checkpoints store what changed since the latest
	// completed one; their shared files are kept while a retained
	// checkpoint refers to them.
	Incremental bool `json:",omitempty"`
}

// CompletedCheckpoint is the record of a completed checkpoint or savepoint.
type CompletedCheckpoint struct {
	ID        int64
	Path      string // URL of the directory holding _metadata
	Savepoint bool
	TriggerMs int64
	DurationMs,
	SizeBytes int64
	MaxSyncNs, MaxAlignmentNs int64
}

// RescalePlan is a rescale: the job stops with a savepoint and is
// redeployed from it at Parallelism, or, when that cannot be placed after
// the stop, back at PreviousParallelism from the same savepoint.
type RescalePlan struct {
	Parallelism int
	Vertices    []VertexSpec
	// PreviousParallelism and PreviousVertices are the job's before the
	// rescale; BeginRescale sets them from the job.
	PreviousParallelism int
	PreviousVertices    []VertexSpec
	Phase               weirv1.RescalePhase
	// Savepoint is the path the job restarts from, once it has stopped.
	Savepoint string
	// Reason says why the job is not at Parallelism (fell back,
	// abandoned); EndMs is when the rescale was placed, fell back or was
	// abandoned.
	Reason string
	EndMs  int64
}

// UnderWay reports whether the rescale is stopping the job or placing it.
func (p *RescalePlan) UnderWay() bool {
	return p != nil && (p.Phase == rescaleStopping || p.Phase == rescalePlacing)
}

func (p *RescalePlan) clone() *RescalePlan {
	if p == nil {
		return nil
	}
	c := *p
	c.Vertices = cloneVertices(p.Vertices)
	c.PreviousVertices = cloneVertices(p.PreviousVertices)
	return &c
}

// Restartable reports whether periodic checkpoints, and so restarts, are on.
func (j *Job) Restartable() bool { return j.Checkpointing.IntervalMs > 0 }

// LatestCheckpoint is the newest completed checkpoint or savepoint.
func (j *Job) LatestCheckpoint() *CompletedCheckpoint {
	if len(j.Checkpoints) == 0 {
		return nil
	}
	c := j.Checkpoints[len(j.Checkpoints)-1]
	return &c
}

// VertexSpec is what the JobManager keeps of a job graph vertex, so a job's
// record is complete without rebuilding its graph.
type VertexSpec struct {
	Name        string
	Parallelism int
	Operators   []OperatorSpec
	// InputPartitioning is "forward", "hash", "rebalance" or
	// "broadcast", one per input joined by ", " ("hash, broadcast" for a
	// ConnectBroadcast); empty for sources.
	InputPartitioning string
	// Outputs are the consumer vertex IDs of the vertex's output edges, in
	// the graph's order.
	Outputs []int
}

// OperatorSpec names one chained operator.
type OperatorSpec struct {
	UID, Name string
}

// Task is one subtask attempt and where it runs.
type Task struct {
	Attempt int
	State   weirv1.TaskState
	// TaskManagerID, Address and Slot are set when the task is placed.
	TaskManagerID string
	Address       string
	Slot          int
	Failure       string
}

// SlotsNeeded is the number of slots the job needs with slot sharing: its
// largest vertex parallelism.
func (j *Job) SlotsNeeded() int { return slotsNeeded(j.Vertices) }

func slotsNeeded(vs []VertexSpec) int {
	n := 0
	for _, v := range vs {
		n = max(n, v.Parallelism)
	}
	return n
}

// Active reports whether the job is CREATED or RUNNING: it wants its tasks
// to run.
func (j *Job) Active() bool {
	return j.State == weirv1.JobState_JOB_STATE_CREATED || j.State == weirv1.JobState_JOB_STATE_RUNNING
}

// Pending reports whether the job waits for slots.
func (j *Job) Pending() bool {
	return j.State == weirv1.JobState_JOB_STATE_CREATED && !j.Deployed
}

// SlotRequestExpires reports whether the job fails when it waits for slots
// longer than the slot request timeout. Only a first submission does: a
// job that restarts (after a lost TaskManager, say) or is rescaled has a
// later attempt and waits until enough slots return.
func (j *Job) SlotRequestExpires() bool { return j.Attempt == 0 }

func (j *Job) clone() Job {
	c := *j
	c.Params = maps.Clone(j.Params)
	c.Labels = maps.Clone(j.Labels)
	c.Vertices = cloneVertices(j.Vertices)
	c.Tasks = make([][]Task, len(j.Tasks))
	for i, ts := range j.Tasks {
		c.Tasks[i] = slices.Clone(ts)
	}
	c.Checkpoints = slices.Clone(j.Checkpoints)
	if j.Restore != nil {
		r := *j.Restore
		c.Restore = &r
	}
	c.Rescale = j.Rescale.clone()
	return c
}

// cloneVertices deep-copies vertex specs.
func cloneVertices(vs []VertexSpec) []VertexSpec {
	out := make([]VertexSpec, len(vs))
	for i, v := range vs {
		v.Operators = slices.Clone(v.Operators)
		v.Outputs = slices.Clone(v.Outputs)
		out[i] = v
	}
	return out
}

// TerminalJob reports whether s is FINISHED, CANCELED or FAILED.
func TerminalJob(s weirv1.JobState) bool {
	switch s {
	case weirv1.JobState_JOB_STATE_FINISHED, weirv1.JobState_JOB_STATE_CANCELED, weirv1.JobState_JOB_STATE_FAILED:
		return true
	}
	return false
}

// TerminalTask reports whether s is FINISHED, CANCELED or FAILED.
func TerminalTask(s weirv1.TaskState) bool {
	switch s {
	case weirv1.TaskState_TASK_STATE_FINISHED, weirv1.TaskState_TASK_STATE_CANCELED, weirv1.TaskState_TASK_STATE_FAILED:
		return true
	}
	return false
}

// JobStateName is the state's short name, as Flink prints it: "RUNNING".
func JobStateName(s weirv1.JobState) string {
	return strings.TrimPrefix(s.String(), "JOB_STATE_")
}

// TaskStateName is the state's short name: "DEPLOYING".
func TaskStateName(s weirv1.TaskState) string {
	return strings.TrimPrefix(s.String(), "TASK_STATE_")
}

// Members implements Store.
func (s *MemStore) Members() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.t.members)
}

// MemStore is the in-memory Store of a single JobManager.
type MemStore struct {
	mu sync.RWMutex
	t  jobTable
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{t: jobTable{jobs: map[string]*Job{}}}
}

// Apply implements Store.
func (s *MemStore) Apply(cmd Command) ([]JobTransition, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.apply(cmd)
}

// Job implements Store.
func (s *MemStore) Job(id string) (Job, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.t.jobs[id]
	if !ok {
		return Job{}, errorf(ErrJobNotFound, "job %s not found", id)
	}
	return j.clone(), nil
}

// Jobs implements Store.
func (s *MemStore) Jobs() []Job {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Job, 0, len(s.t.order))
	for i := len(s.t.order) - 1; i >= 0; i-- {
		out = append(out, s.t.jobs[s.t.order[i]].clone())
	}
	return out
}
