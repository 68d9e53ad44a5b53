package jobmanager

import weirv1 "github.com/weirstream/weir/proto/weir/v1"

// CommandType tags a Command, as nomad's MessageType tags a raft log entry,
// so a replicated log can encode the command and the FSM dispatch on it.
type CommandType uint8

// The commands that change durable state. Never renumber: the numbers will
// be written to the raft log.
const (
	SubmitJobType       CommandType = 1
	DeployJobType       CommandType = 2
	UpdateTaskType      CommandType = 3
	FailJobType         CommandType = 4
	CancelJobType       CommandType = 5
	TaskManagerLostType CommandType = 6
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
	Vertices       []VertexSpec
	TimeMs         int64
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
	TimeMs          int64
}

// FailJob fails an active job with a reason (a deployment error, a slot
// request timeout).
type FailJob struct {
	JobID  string
	Reason string
	TimeMs int64
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

func (SubmitJob) Type() CommandType       { return SubmitJobType }
func (DeployJob) Type() CommandType       { return DeployJobType }
func (UpdateTask) Type() CommandType      { return UpdateTaskType }
func (FailJob) Type() CommandType         { return FailJobType }
func (CancelJob) Type() CommandType       { return CancelJobType }
func (TaskManagerLost) Type() CommandType { return TaskManagerLostType }
