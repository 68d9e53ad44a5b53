package runtime

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend/storage"
)

// CheckpointedFunction is a source, sink or other function with operator
// state: state that belongs to the subtask rather than to a key, such as a
// source's position or a sink's files awaiting commit.
//
// Operator state is a list of opaque entries. On restore every subtask is
// given the union of the entries of all subtasks of the checkpoint (Flink's
// union redistribution), so a function restored at another parallelism
// picks out what is now its own.
type CheckpointedFunction interface {
	// InitializeState is called once, before Open, with the restored
	// entries; entries is nil and ctx.IsRestored() false on a fresh start.
	InitializeState(ctx *RuntimeContext, entries [][]byte) error
	// SnapshotState is called on the task goroutine when checkpoint id's
	// barrier passes the operator: every record before the barrier has
	// been processed, none after it. The returned entries are owned by the
	// runtime from then on.
	SnapshotState(checkpointID int64) ([][]byte, error)
}

// AsyncSnapshotter is a CheckpointedFunction with slow snapshot work, such
// as uploading a buffer: SnapshotStateAsync runs on the task goroutine and
// must be cheap (hand over what is to be written); the function it returns
// runs on the checkpoint's upload goroutine, concurrently with processing,
// and returns the operator state entries. The runtime calls it instead of
// SnapshotState, and finishes it before the checkpoint is acknowledged and
// before EndInput.
type AsyncSnapshotter interface {
	SnapshotStateAsync(checkpointID int64) (func(ctx context.Context) ([][]byte, error), error)
}

// CheckpointListener is told when a checkpoint it took part in is complete:
// stored and recorded by the JobManager. Transactional sinks commit here.
// Notifications may be skipped (a later one implies the earlier ones) and
// come on the task goroutine.
type CheckpointListener interface {
	NotifyCheckpointComplete(checkpointID int64) error
}

// PreBarrierFlusher is implemented by functions that keep partial results
// in memory and must send them downstream before a checkpoint barrier
// leaves the task (Flink's prepareSnapshotPreBarrier): a pre-aggregation
// whose counts are not in state would otherwise be lost by a restore
// from that checkpoint. FlushPreBarrier runs on the task goroutine, before
// any operator of the task snapshots, head of the chain first, and may
// emit through the collectors the function holds.
type PreBarrierFlusher interface {
	FlushPreBarrier(checkpointID int64) error
}

// BoundedInput is implemented by functions that act when their input ends
// normally (every upstream subtask finished), before Close. Close alone
// cannot tell a normal end from a failure or a cancellation.
type BoundedInput interface {
	EndInput() error
}

// The checkpoint types a task exchanges with the TaskManager are the
// engine's; runtime names them for the TaskManager and for tests.
type (
	// Barrier is a checkpoint barrier as it travels in-band.
	Barrier = engine.Barrier
	// CheckpointAck is what a task reports for a stored checkpoint.
	CheckpointAck = engine.CheckpointAck
	// OperatorSnapshot describes one operator subtask's state file.
	OperatorSnapshot = engine.OperatorSnapshot
	// CheckpointResponder carries a task's reports to the JobManager.
	CheckpointResponder = engine.CheckpointResponder
)

// ErrCheckpointDeclined is wrapped by the reasons tasks decline checkpoints
// for.
var ErrCheckpointDeclined = engine.ErrCheckpointDeclined

// ErrTaskEnded is wrapped by the reason a task declines a checkpoint
// triggered after its loop ended.
var ErrTaskEnded = engine.ErrTaskEnded

// StorageOpener opens checkpoint or sink storage by URL with the process's
// S3 settings.
type StorageOpener func(rawURL string) (storage.Storage, error)

// OpenStorage opens the storage at rawURL (a directory or s3:// URL) with
// the process's S3 endpoint and credentials.
func (c *RuntimeContext) OpenStorage(rawURL string) (storage.Storage, error) {
	if c.openStorage == nil {
		return storage.Open(rawURL, storage.OptionsFromEnv())
	}
	return c.openStorage(rawURL)
}

// Attempt is the job's restart attempt this subtask belongs to (0 for the
// first deployment); it grows with every restart and rescale.
func (c *RuntimeContext) Attempt() int { return c.attempt }

// CheckpointingEnabled reports whether the job takes periodic checkpoints.
// Without them a failure is not restarted, so transactional sinks may
// publish as they go instead of waiting for checkpoints.
func (c *RuntimeContext) CheckpointingEnabled() bool { return !c.noCheckpoints }

// IsRestored reports whether the subtask started from a checkpoint or
// savepoint.
func (c *RuntimeContext) IsRestored() bool { return c.restored }

// Context is cancelled when the task ends; use it for I/O.
func (c *RuntimeContext) Context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

// ContextConfig describes a RuntimeContext made outside a task, for testing
// functions on their own.
type ContextConfig struct {
	JobID                      string
	JobName, OperatorName, UID string
	Subtask, Parallelism       int
	MaxParallelism             int
	Attempt                    int
	Restored                   bool
	// NoCheckpoints says the job takes no periodic checkpoints.
	NoCheckpoints bool
	Stdout        io.Writer
	Logger        *slog.Logger
	OpenStorage   StorageOpener
	Context       context.Context
	// Clock is the processing-time service; nil is the wall clock.
	Clock engine.Clock
}

// NewRuntimeContext makes a RuntimeContext outside a task (for tests of
// sources and sinks).
func NewRuntimeContext(c ContextConfig) *RuntimeContext {
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Parallelism == 0 {
		c.Parallelism = 1
	}
	if c.MaxParallelism == 0 {
		c.MaxParallelism = DefaultMaxParallelism(c.Parallelism)
	}
	if c.Clock == nil {
		c.Clock = engine.SystemClock{}
	}
	return &RuntimeContext{jobID: c.JobID, jobName: c.JobName, operatorName: c.OperatorName, uid: c.UID, subtask: c.Subtask,
		parallelism: c.Parallelism, maxParallelism: c.MaxParallelism, stdout: c.Stdout, logger: c.Logger,
		attempt: c.Attempt, restored: c.Restored, noCheckpoints: c.NoCheckpoints, openStorage: c.OpenStorage, ctx: c.Context,
		clock: c.Clock, note: new(atomic.Pointer[string])}
}
