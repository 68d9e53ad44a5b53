package jobmanager

import weirv1 "github.com/weirstream/weir/proto/weir/v1"

// CommandType tags a Command, as nomad's MessageType tags a raft log entry,
// so a replicated log can encode the command and the FSM dispatch on it.
type CommandType uint8

// The commands that change durable state. Never renumber: the numbers will
// be written to the raft log.
const (
	SubmitJobType          CommandType = 1
	DeployJobType          CommandType = 2
	UpdateTaskType         CommandType = 3
	FailJobType            CommandType = 4
	CancelJobType          CommandType = 5
	TaskManagerLostType    CommandType = 6
	CompleteCheckpointType CommandType = 7
	AbortCheckpointType    CommandType = 8
	RestartJobType         CommandType = 9
	BeginRescaleType       CommandType = 10
	EndRescaleType         CommandType = 11
	DisposeCheckpointsType CommandType = 12
	FallBackRescaleType    CommandType = 13
	SetMemberAddressType   CommandType = 14
	ReserveCheckpointType  CommandType = 15
)

// Command is one write to the Store. Commands carry everything Apply needs,
// including IDs and the time (Unix milliseconds, read by the leader), so
// applying is deterministic.
type Command interface {
	Type() CommandType
}

// SubmitJob stores a new job as CREATED, with its tasks SCHEDULED.
type SubmitJob struct {
	JobID          string
	Name           string
	Parallelism    int
	MaxParallelism int
	Params         map[string]string
	Labels         map[string]string `json:",omitempty"`
	Vertices       []VertexSpec
	TimeMs         int64

	Checkpointing    CheckpointConfig
	AllowNonRestored bool
	// StateBackend is the job's state backend; empty: the TaskManagers'.
	StateBackend string `json:",omitempty"`
	// TimerService is the job's pebble timer service; empty: the
	// TaskManagers'.
	TimerService string `json:",omitempty"`
	// Restore is the savepoint the job starts from, if any.
	Restore *CompletedCheckpoint
}

// DeployJob places a pending job's current attempt on slots: subtask j of
// every vertex goes to Slots[j]. Its tasks become DEPLOYING and the job's
// start time is set.
type DeployJob struct {
	JobID   string
	Attempt int
	Slots   []Slot
	TimeMs  int64
}

// UpdateTask records the state a TaskManager reported for one task attempt
// (or that the JobManager decided, counting an unreachable task as
// CANCELED). Updates for unknown jobs, tasks, attempts or TaskManagers and
// for terminal tasks are ignored.
type UpdateTask struct {
	JobID           string
	Vertex, Subtask int
	Attempt         int
	TaskManagerID   string
	State           weirv1.TaskState
	Failure         string
	// Unrecoverable failures (unreadable restored state) fail the job
	// instead of restarting it.
	Unrecoverable bool
	TimeMs        int64
}

// FailJob fails an active job with a reason (a deployment error, a slot
// request timeout). A restartable job restarts instead unless the failure
// is Unrecoverable.
type FailJob struct {
	JobID         string
	Reason        string
	Unrecoverable bool
	TimeMs        int64
}

// CompleteCheckpoint records a completed checkpoint or savepoint and drops
// the oldest periodic checkpoints beyond the job's retention.
type CompleteCheckpoint struct {
	JobID      string
	Checkpoint CompletedCheckpoint
}

// AbortCheckpoint counts a checkpoint that failed.
type AbortCheckpoint struct {
	JobID        string
	CheckpointID int64
}

// RestartJob redeploys a RESTARTING job whose tasks have all stopped as a
// new attempt, from its latest completed checkpoint.
type RestartJob struct {
	JobID   string
	Attempt int // the attempt being replaced
	TimeMs  int64
}

// BeginRescale records that the job is to be redeployed with the plan's
// parallelism and vertices once its stop-with-savepoint finishes all its
// tasks; the job's own parallelism and vertices are kept in the plan to
// fall back to.
type BeginRescale struct {
	JobID string
	Plan  RescalePlan
}

// EndRescale drops a rescale plan whose savepoint failed.
type EndRescale struct {
	JobID string
}

// DisposeCheckpoints records that an ended job's retained checkpoints are
// being deleted: they leave its checkpoint list (its savepoints stay, as
// they are never deleted), and no checkpoint completes for it any more.
type DisposeCheckpoints struct {
	JobID  string
	TimeMs int64
}

// FallBackRescale puts a rescaled job that waits for slots at its new
// parallelism back at its previous parallelism and vertices, restoring
// from the same savepoint, because the new parallelism cannot be placed.
type FallBackRescale struct {
	JobID   string
	Attempt int // the attempt waiting to be placed
	Reason  string
	TimeMs  int64
}

// CancelJob cancels a job: a job waiting for slots becomes CANCELED, a
// deployed one CANCELING until all its tasks are terminal.
type CancelJob struct {
	JobID  string
	TimeMs int64
}

// TaskManagerLost fails every non-terminal task on the TaskManager and every
// active job that had one; tasks of jobs already stopping count as CANCELED.
type TaskManagerLost struct {
	TaskManagerID string
	Reason        string
	TimeMs        int64
}

func (SubmitJob) Type() CommandType          { return SubmitJobType }
func (DeployJob) Type() CommandType          { return DeployJobType }
func (UpdateTask) Type() CommandType         { return UpdateTaskType }
func (FailJob) Type() CommandType            { return FailJobType }
func (CancelJob) Type() CommandType          { return CancelJobType }
func (TaskManagerLost) Type() CommandType    { return TaskManagerLostType }
func (CompleteCheckpoint) Type() CommandType { return CompleteCheckpointType }
func (AbortCheckpoint) Type() CommandType    { return AbortCheckpointType }
func (RestartJob) Type() CommandType         { return RestartJobType }
func (BeginRescale) Type() CommandType       { return BeginRescaleType }
func (EndRescale) Type() CommandType         { return EndRescaleType }
func (DisposeCheckpoints) Type() CommandType { return DisposeCheckpointsType }
func (FallBackRescale) Type() CommandType    { return FallBackRescaleType }

// SetMemberAddress records the client address of a JobManager of the raft
// group, so every member can send callers to the leader.
type SetMemberAddress struct {
	MemberID string
	Address  string
}

// ReserveCheckpoint records a checkpoint ID before its barriers go out, so
// that no later leader ever uses it again for another checkpoint.
type ReserveCheckpoint struct {
	JobID        string
	CheckpointID int64
}

func (SetMemberAddress) Type() CommandType  { return SetMemberAddressType }
func (ReserveCheckpoint) Type() CommandType { return ReserveCheckpointType }
