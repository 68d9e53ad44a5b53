package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
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

// OperatorSnapshot describes one operator subtask's stored state: one
// file, or with incremental checkpoints a chain of shared files.
type OperatorSnapshot struct {
	UID  string
	File string // relative to the checkpoint location; empty with Chain
	// Chain is the files holding the state, a full one first, when the
	// checkpoint was incremental (statebackend.SubtaskState.Chain).
	Chain     []statebackend.FileRef
	Size      int64 // bytes written by this checkpoint
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
	// Incremental, when set, lets a checkpoint (never a savepoint) store
	// only what changed since the operator's latest completed checkpoint:
	// the uploader asks it for a delta, writes the file to the job's
	// shared directory and tells it the chain it stored.
	Incremental IncrementalSnapshot
	// Native, when set, is the keyed state as a state backend's own files
	// (a Pebble checkpoint); Encode then writes the rest (timers,
	// operator state). Only checkpoints have it, never savepoints.
	Native NativeSnapshot
}

// NativeSnapshot is a state backend's native checkpoint of an operator
// subtask's keyed state: files in a local directory, some of which
// (SSTs) never change and may be shared by later checkpoints.
type NativeSnapshot interface {
	// Dir is the directory holding Files.
	Dir() string
	// Files lists the checkpoint's file names, once they exist: the
	// backend may take the checkpoint after the synchronous part (an
	// error then fails this checkpoint).
	Files(ctx context.Context) ([]string, error)
	// Shared says whether file name may be shared between checkpoints.
	Shared(name string) bool
	// Uploaded returns, by file name, the shared files checkpoint baseID
	// (the barrier's BaseID) stored, which this one may refer to.
	Uploaded(baseID int64) map[string]statebackend.FileRef
	// Stored records the chain that holds this checkpoint's state.
	Stored(chain []statebackend.FileRef)
	// Release lets go of the files once they are uploaded (or not).
	Release()
}

// IncrementalSnapshot is the incremental side of one operator's snapshot.
type IncrementalSnapshot interface {
	// Delta encodes the changes since checkpoint baseID (the barrier's
	// BaseID) and returns them with that checkpoint's chain; ok is false
	// when a full file is due instead (Encode).
	Delta(ctx context.Context, baseID int64) (data []byte, base []statebackend.FileRef, ok bool, err error)
	// Stored records the chain that holds this checkpoint's state.
	Stored(chain []statebackend.FileRef)
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
		var shared storage.Storage
		for _, o := range s.States {
			if o.Native != nil {
				if shared == nil {
					if shared, err = open(statebackend.SharedDir(s.Barrier.Location)); err != nil {
						return nil, err
					}
				}
				snap, err := uploadNative(ctx, st, shared, s, o)
				if err != nil {
					return nil, err
				}
				ack.States = append(ack.States, snap)
				continue
			}
			if o.Incremental != nil && !s.Barrier.Savepoint {
				if shared == nil {
					if shared, err = open(statebackend.SharedDir(s.Barrier.Location)); err != nil {
						return nil, err
					}
				}
				snap, err := uploadIncremental(ctx, shared, s, o)
				if err != nil {
					return nil, err
				}
				ack.States = append(ack.States, snap)
				continue
			}
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

// uploadIncremental writes an operator's delta (or, when one is due, full)
// file to the job's shared directory: later checkpoints refer to it.
func uploadIncremental(ctx context.Context, shared storage.Storage, s *Snapshot, o StateSnapshot) (OperatorSnapshot, error) {
	data, base, delta, err := o.Incremental.Delta(ctx, s.Barrier.BaseID)
	if err == nil && !delta {
		base = nil
		data, err = o.Encode(ctx)
	}
	if err != nil {
		return OperatorSnapshot{}, fmt.Errorf("operator %s: %w", o.UID, err)
	}
	name := statebackend.SharedFileName(o.UID, s.Subtask, s.Barrier.ID)
	if err := shared.Put(ctx, name, data); err != nil {
		return OperatorSnapshot{}, fmt.Errorf("operator %s: writing state to %s: %w", o.UID, shared.URL(), err)
	}
	chain := append(slices.Clone(base), statebackend.FileRef{Path: name, Size: int64(len(data)), Shared: true, Delta: delta})
	o.Incremental.Stored(chain)
	return OperatorSnapshot{UID: o.UID, Chain: chain, Size: int64(len(data)), KeyGroups: o.KeyGroups, Keys: o.Keys()}, nil
}

// uploadNative stores an operator's native checkpoint: the state file of
// its timers and operator state, and its backend's files, streamed from
// disk. A shared file the base checkpoint stored is referred to, not
// uploaded again; a new one goes to the job's shared directory, the
// others to the checkpoint's own.
func uploadNative(ctx context.Context, st, shared storage.Storage, s *Snapshot, o StateSnapshot) (OperatorSnapshot, error) {
	n := o.Native
	defer n.Release()
	data, err := o.Encode(ctx)
	if err != nil {
		return OperatorSnapshot{}, fmt.Errorf("operator %s: %w", o.UID, err)
	}
	name := statebackend.StateFileName(o.UID, s.Subtask)
	if err := st.Put(ctx, name, data); err != nil {
		return OperatorSnapshot{}, fmt.Errorf("operator %s: writing state to %s: %w", o.UID, s.Barrier.Location, err)
	}
	written := int64(len(data))
	chain := []statebackend.FileRef{{Path: name, Size: int64(len(data))}}
	base := n.Uploaded(s.Barrier.BaseID)
	files, err := n.Files(ctx)
	if err != nil {
		return OperatorSnapshot{}, fmt.Errorf("operator %s: %w", o.UID, err)
	}
	for _, f := range files {
		if ref, ok := base[f]; ok && n.Shared(f) {
			chain = append(chain, ref)
			continue
		}
		ref := statebackend.FileRef{Local: f}
		to := st
		if n.Shared(f) {
			ref.Path, ref.Shared, to = statebackend.SharedNativeName(o.UID, s.Subtask, s.Barrier.ID, f), true, shared
		} else {
			ref.Path = statebackend.NativeFileName(o.UID, s.Subtask, f)
		}
		size, err := storage.PutFile(ctx, to, ref.Path, filepath.Join(n.Dir(), f))
		if err != nil {
			return OperatorSnapshot{}, fmt.Errorf("operator %s: writing state to %s: %w", o.UID, to.URL(), err)
		}
		ref.Size = size
		written += size
		chain = append(chain, ref)
	}
	n.Stored(chain)
	return OperatorSnapshot{UID: o.UID, Chain: chain, Size: written, KeyGroups: o.KeyGroups, Keys: o.Keys()}, nil
}
