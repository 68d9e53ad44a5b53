package taskmanager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
	"github.com/weirstream/weir/statebackend/storage"
)

// errRestore marks task failures caused by unreadable restored state: a
// restart would meet the same files, so the JobManager fails the job.
var errRestore = errors.New("cannot restore state")

// openStorage opens checkpoint or sink storage with this process's S3
// settings; secrets never leave the process.
func (tm *TaskManager) openStorage(url string) (storage.Storage, error) {
	return storage.Open(url, tm.cfg.Storage)
}

// uploader is what the TaskManager gives its tasks to store their
// snapshots: the task hands over each operator's encoder, and the state
// files go to checkpoint storage opened with this process's settings. The
// acknowledgement then goes to the JobManager through the task's
// responder.
func (tm *TaskManager) uploader() engine.Uploader {
	return engine.StorageUploader{Open: tm.openStorage}
}

// responder reports one task's checkpoints to the JobManager leader. Its
// calls come from the task's goroutines and only post to the outbox, so the
// task never waits for the JobManager, nor for a leader to be found.
type responder struct {
	tm  *TaskManager
	key taskKey
	log *slog.Logger // the task's
}

func (r responder) Acknowledge(ack runtime.CheckpointAck) {
	req := &weirv1.AcknowledgeCheckpointRequest{TaskManagerId: r.tm.cfg.ID, Task: r.key.proto(),
		CheckpointId: ack.CheckpointID, SyncNs: ack.SyncNs, AsyncNs: ack.AsyncNs, AlignmentNs: ack.AlignmentNs}
	for _, s := range ack.States {
		req.States = append(req.States, &weirv1.OperatorStateHandle{Uid: s.UID, File: s.File, Size: s.Size,
			FirstKeyGroup: int32(s.KeyGroups.First), LastKeyGroup: int32(s.KeyGroups.Last), Keys: s.Keys,
			Chain: chainFiles(s.Chain)})
	}
	r.post(fmt.Sprintf("acknowledge checkpoint %d", ack.CheckpointID), func(ctx context.Context, c weirv1.JobManagerClient) error {
		_, err := c.AcknowledgeCheckpoint(ctx, req)
		return err
	})
}

func (r responder) Decline(id int64, reason error) {
	// A task that ended, or whose uploads its cancellation stopped,
	// declines as a matter of course.
	ended := errors.Is(reason, runtime.ErrTaskEnded) || errors.Is(reason, context.Canceled) || errors.Is(reason, errCanceled)
	level := slog.LevelWarn
	switch {
	case ended:
		level = slog.LevelDebug
	case errors.Is(reason, fs.ErrNotExist) || errors.Is(reason, storage.ErrNotExist):
		// The checkpoint's directory went away under the upload: the
		// JobManager aborted the checkpoint (a cancel, a newer
		// checkpoint), and says so in its own log if it matters.
		level = slog.LevelInfo
	}
	r.log.Log(context.Background(), level, "declining checkpoint", "checkpoint", id, "reason", reason)
	req := &weirv1.DeclineCheckpointRequest{TaskManagerId: r.tm.cfg.ID, Task: r.key.proto(), CheckpointId: id,
		Reason: reason.Error(), TaskEnded: ended}
	r.post(fmt.Sprintf("decline checkpoint %d", id), func(ctx context.Context, c weirv1.JobManagerClient) error {
		_, err := c.DeclineCheckpoint(ctx, req)
		return err
	})
}

func (r responder) EndOfInput() {
	req := &weirv1.RequestCheckpointRequest{Task: r.key.proto()}
	r.post("request checkpoint", func(ctx context.Context, c weirv1.JobManagerClient) error {
		_, err := c.RequestCheckpoint(ctx, req)
		return err
	})
}

func (r responder) post(what string, call func(context.Context, weirv1.JobManagerClient) error) {
	r.tm.out.post(&outMessage{what: what, task: r.key, call: call})
}

// readRestore reads the state a subtask restores: for each operator, the
// key groups it owns from every old file overlapping them (ranged reads)
// and the operator state of all old subtasks.
//
// A native chain (an incremental pebble checkpoint) has its timers and
// operator state in its first file, and its keyed state in Pebble files,
// which are downloaded into a directory under the state directory for
// the operator's store to take over; pebble says whether the job's state
// backend can read them.
func (tm *TaskManager) readRestore(ctx context.Context, r *weirv1.TaskRestore, g *runtime.JobGraph, v *runtime.Vertex, subtask int, pebble bool) (_ *runtime.TaskRestore, err error) {
	if r == nil {
		return nil, nil
	}
	st, err := tm.openStorage(r.Location)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRestore, err)
	}
	mine := runtime.KeyGroupRangeForSubtask(g.MaxParallelism, v.Parallelism, subtask)
	var shared storage.Storage
	out := &runtime.TaskRestore{CheckpointID: r.CheckpointId, Operators: map[string]*runtime.OperatorRestore{}}
	defer func() {
		if err != nil {
			out.DiscardNative()
		}
	}()
	for _, op := range r.Operators {
		or := &runtime.OperatorRestore{}
		out.Operators[op.Uid] = or
		for _, f := range op.Files {
			files := []*weirv1.ChainFile{{Path: f.File, Size: f.Size}}
			if len(f.Chain) > 0 {
				files = f.Chain
			}
			kgs := runtime.KeyGroupRange{First: int(f.FirstKeyGroup), Last: int(f.LastKeyGroup)}
			keyed := kgs.Len() > 0 && kgs.Last >= mine.First && kgs.First <= mine.Last
			var native []*weirv1.ChainFile
			if len(files) > 1 && files[1].GetLocal() != "" {
				files, native = files[:1], files[1:]
			}
			if keyed && len(native) > 0 {
				if !pebble {
					return nil, fmt.Errorf("%w of operator %s: checkpoint %d holds its keyed state as Pebble files (an incremental pebble checkpoint), which the memory state backend cannot read: restore with --state-backend pebble, or from a savepoint taken on pebble (savepoints are in the common format)",
						errRestore, op.Uid, r.CheckpointId)
				}
				if shared == nil {
					if shared, err = tm.openStorage(statebackend.SharedDir(r.Location)); err != nil {
						return nil, fmt.Errorf("%w: %w", errRestore, err)
					}
				}
				ns, err := tm.downloadNative(ctx, st, shared, r.Location, native)
				if err != nil {
					return nil, fmt.Errorf("%w of operator %s: %w", errRestore, op.Uid, err)
				}
				or.Native = append(or.Native, pebblestate.NativeState{Dir: ns, KeyGroups: kgs})
			}
			var chain []*statebackend.KeyedState
			for i, cf := range files {
				from, url := st, storage.Join(r.Location, cf.Path)
				if cf.Shared {
					if shared == nil {
						if shared, err = tm.openStorage(statebackend.SharedDir(r.Location)); err != nil {
							return nil, fmt.Errorf("%w: %w", errRestore, err)
						}
					}
					from, url = shared, storage.Join(statebackend.SharedDir(r.Location), cf.Path)
				}
				sf, err := statebackend.OpenStateFile(ctx, url, cf.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
					return from.GetRange(ctx, cf.Path, off, n)
				})
				if err != nil {
					return nil, fmt.Errorf("%w of operator %s: %w", errRestore, op.Uid, err)
				}
				// Every file of a chain carries the operator state in full:
				// the last one's is the checkpoint's.
				if i == len(files)-1 {
					entries, err := sf.ReadOperatorState(ctx)
					if err != nil {
						return nil, fmt.Errorf("%w of operator %s: %w", errRestore, op.Uid, err)
					}
					or.OperatorState = append(or.OperatorState, entries...)
				}
				if !keyed {
					continue
				}
				ks, err := sf.ReadKeyGroups(ctx, mine)
				if err != nil {
					return nil, fmt.Errorf("%w of operator %s: %w", errRestore, op.Uid, err)
				}
				chain = append(chain, ks)
			}
			if !keyed {
				continue
			}
			ks, err := statebackend.MergeChain(chain)
			if err != nil {
				return nil, fmt.Errorf("%w of operator %s: %w", errRestore, op.Uid, err)
			}
			or.Keyed = append(or.Keyed, ks)
		}
	}
	return out, nil
}

// downloadNative downloads the native files of one old subtask's state
// into a new directory under the state directory, by their local names,
// and returns it. A missing file is an error naming it.
func (tm *TaskManager) downloadNative(ctx context.Context, st, shared storage.Storage, location string, files []*weirv1.ChainFile) (string, error) {
	if err := os.MkdirAll(tm.cfg.StateDir, 0o755); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	dir, err := os.MkdirTemp(tm.cfg.StateDir, "restore-")
	if err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	for _, f := range files {
		from, url := st, storage.Join(location, f.Path)
		if f.Shared {
			from, url = shared, storage.Join(statebackend.SharedDir(location), f.Path)
		}
		local := f.GetLocal()
		if local == "" || filepath.Base(local) != local || local == "." || local == ".." {
			os.RemoveAll(dir)
			return "", fmt.Errorf("native file %s: bad local name %q: %w", url, local, statebackend.ErrCorrupt)
		}
		if err := storage.GetFile(ctx, from, f.Path, f.Size, filepath.Join(dir, local)); err != nil {
			os.RemoveAll(dir)
			if errors.Is(err, storage.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("state file %s is missing: %w", url, err)
			}
			return "", fmt.Errorf("reading state file %s: %w", url, err)
		}
	}
	return dir, nil
}

// task returns the running task for id, or an error for the JobManager.
func (tm *TaskManager) runtimeTask(id *weirv1.TaskID) (*runtime.Task, error) {
	tm.mu.Lock()
	rt := tm.tasks[keyOf(id)]
	tm.mu.Unlock()
	if rt == nil {
		return nil, fmt.Errorf("task %v is not running here", id)
	}
	rt.mu.Lock()
	t := rt.task
	rt.mu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("task %v is still starting", id)
	}
	return t, nil
}

// chainFiles converts a state chain to its wire form (nil for nil).
func chainFiles(chain []statebackend.FileRef) []*weirv1.ChainFile {
	var out []*weirv1.ChainFile
	for _, f := range chain {
		out = append(out, &weirv1.ChainFile{Path: f.Path, Size: f.Size, Shared: f.Shared, Delta: f.Delta, Local: f.Local})
	}
	return out
}
