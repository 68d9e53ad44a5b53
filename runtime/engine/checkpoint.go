package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// CheckpointAck is what a task reports for a checkpoint once its state is
// stored.
type CheckpointAck struct {
	CheckpointID int64
	// States holds one entry per chained operator with state.
	States []OperatorSnapshot
	// SyncNs and AsyncNs are the durations of the synchronous part (the
	// processing stall) and the asynchronous upload.
	SyncNs, AsyncNs int64
	// AlignmentNs is how long the task waited for barriers on all inputs.
	AlignmentNs int64
}

// OperatorSnapshot describes one operator subtask's stored state file.
type OperatorSnapshot struct {
	UID       string
	File      string // relative to the checkpoint location
	Size      int64
	KeyGroups statebackend.KeyGroupRange
	Keys      int64
}

// CheckpointResponder carries a task's checkpoint reports to the
// JobManager. Its methods are called from the task's own goroutines and
// must not block for long.
type CheckpointResponder interface {
	Acknowledge(ack CheckpointAck)
	Decline(checkpointID int64, reason error)
	// EndOfInput tells the JobManager that a source has emitted its last
	// record and waits for a checkpoint before it finishes, so the
	// coordinator may trigger one at once.
	EndOfInput()
}

// ErrCheckpointDeclined is wrapped by the reasons tasks decline checkpoints
// for.
var ErrCheckpointDeclined = errors.New("checkpoint declined")

// ErrTaskEnded is wrapped by the reason a task declines a checkpoint
// triggered after its loop ended: the decline comes with the task's end,
// it is no fault of the checkpoint's.
var ErrTaskEnded = errors.New("has ended")

// Snapshot is a task's part of one checkpoint, as the task hands it to its
// Uploader: the synchronous part is taken, the state files are not yet
// written.
type Snapshot struct {
	Barrier Barrier
	Subtask int
	// States holds one entry per stateful operator of the chain.
	States []StateSnapshot
	// SyncNs and AlignmentNs are the processing stall and the wait for
	// barriers on all inputs.
	SyncNs, AlignmentNs int64
}

// StateSnapshot is one operator's part of a Snapshot.
type StateSnapshot struct {
	UID       string
	KeyGroups statebackend.KeyGroupRange // empty for operators without keyed state
	// Encode produces the operator's state file (statebackend's format).
	// It runs off the task goroutine, concurrently with processing: it is
	// the asynchronous part of the checkpoint.
	Encode func(ctx context.Context) ([]byte, error)
	// Keys counts the keys of the keyed state, for reports; valid once
	// Encode has returned.
	Keys func() int64
}

// Uploader stores a task's snapshots. The TaskManager injects it, so the
// task only produces snapshots and never knows where they go. Upload runs
// on a goroutine of its own per checkpoint, which the task waits for
// before it ends; the acknowledgement it returns goes to the JobManager
// through the task's CheckpointResponder, an error declines the checkpoint.
type Uploader interface {
	Upload(ctx context.Context, s *Snapshot) (*CheckpointAck, error)
}

// StorageUploader writes one state file per stateful operator under the
// checkpoint's location, opened with Open (nil: the environment's S3
// settings).
type StorageUploader struct {
	Open func(rawURL string) (storage.Storage, error)
}

// Upload implements Uploader.
func (u StorageUploader) Upload(ctx context.Context, s *Snapshot) (*CheckpointAck, error) {
	start := time.Now()
	ack := &CheckpointAck{CheckpointID: s.Barrier.ID, SyncNs: s.SyncNs, AlignmentNs: s.AlignmentNs}
	if len(s.States) > 0 {
		open := u.Open
		if open == nil {
			open = func(rawURL string) (storage.Storage, error) { return storage.Open(rawURL, storage.OptionsFromEnv()) }
		}
		st, err := open(s.Barrier.Location)
		if err != nil {
			return nil, err
		}
		for _, o := range s.States {
			data, err := o.Encode(ctx)
			if err != nil {
				return nil, fmt.Errorf("operator %s: %w", o.UID, err)
			}
			name := statebackend.StateFileName(o.UID, s.Subtask)
			if err := st.Put(ctx, name, data); err != nil {
				return nil, fmt.Errorf("operator %s: writing state to %s: %w", o.UID, s.Barrier.Location, err)
			}
			ack.States = append(ack.States, OperatorSnapshot{UID: o.UID, File: name, Size: int64(len(data)),
				KeyGroups: o.KeyGroups, Keys: o.Keys()})
		}
	}
	ack.AsyncNs = time.Since(start).Nanoseconds()
	return ack, nil
}
