package jobmanager

import (
	"context"
	"fmt"

	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// Checkpoints after tasks finished (Flink's FLIP-147). A bounded source
// subtask that reaches the end of its input takes part in one more
// checkpoint and finishes once it completes, so the latest completed
// checkpoint always holds a finished subtask's final state: its end
// position. Later checkpoints no longer reach the subtask, so the
// coordinator carries that final state forward into each of them, copying
// its files into the new checkpoint's directory. A restore at any
// parallelism then sees the end positions, and the finished part of the
// input is not read again. Copies keep every checkpoint and savepoint
// self-contained as before: retention deletes a checkpoint's directory
// without asking who else needs its files, and a savepoint must outlive
// the job's checkpoints. Shared files of incremental checkpoints are
// referred to, not copied (a savepoint copies them too), which keeps them
// alive through the same reference counting as the running subtasks'.

// subtaskKey names one operator's state of one subtask.
type subtaskKey struct {
	uid     string
	subtask int
}

// carryFinished returns the final states of the subtasks that had finished
// when checkpoint p started, copied from the job's latest completed
// checkpoint into p's location. Without periodic checkpoints a source does
// not wait for a final checkpoint, so there is no final state to carry.
func (jm *JobManager) carryFinished(ctx context.Context, job *Job, p *pendingCheckpoint) (map[subtaskKey]statebackend.SubtaskState, error) {
	if len(p.finished) == 0 || job.Checkpointing.IntervalMs <= 0 {
		return nil, nil
	}
	var prev *CompletedCheckpoint
	for i := range job.Checkpoints {
		if cp := &job.Checkpoints[i]; cp.ID < p.id && (prev == nil || cp.ID > prev.ID) {
			prev = cp
		}
	}
	if prev == nil {
		return nil, fmt.Errorf("no completed checkpoint holds the final state of the %d finished subtasks", len(p.finished))
	}
	m, err := jm.loadMetadata(ctx, prev.Path)
	if err != nil {
		return nil, fmt.Errorf("reading the final states of finished subtasks: %w", err)
	}
	ops := map[string]*statebackend.OperatorState{}
	for i := range m.Operators {
		ops[m.Operators[i].UID] = &m.Operators[i]
	}
	c := stateCopier{jm: jm, from: prev.Path, to: p.location, savepoint: p.savepoint}
	out := map[subtaskKey]statebackend.SubtaskState{}
	for _, ref := range p.finished {
		spec := job.Vertices[ref.vertex]
		for _, op := range spec.Operators {
			old := ops[op.UID]
			if old == nil {
				continue // stateless
			}
			if old.Parallelism != spec.Parallelism {
				return nil, fmt.Errorf("checkpoint %d has %s at parallelism %d, not %d: it cannot hold the final state of subtask %d",
					prev.ID, op.UID, old.Parallelism, spec.Parallelism, ref.subtask)
			}
			for _, s := range old.Subtasks {
				if s.Subtask != ref.subtask {
					continue
				}
				s, err := c.copy(ctx, s)
				if err != nil {
					return nil, fmt.Errorf("carrying the final state of %s (%d) from checkpoint %d: %w", op.UID, ref.subtask, prev.ID, err)
				}
				out[subtaskKey{op.UID, ref.subtask}] = s
			}
		}
	}
	return out, nil
}

// stateCopier copies subtask states from one checkpoint directory to
// another, opening each storage once.
type stateCopier struct {
	jm                 *JobManager
	from, to           string
	savepoint          bool
	src, dst, srcShare storage.Storage
}

func (c *stateCopier) open(url string, st *storage.Storage) error {
	if *st != nil {
		return nil
	}
	s, err := storage.Open(url, c.jm.cfg.Storage)
	if err != nil {
		return err
	}
	*st = s
	return nil
}

// copy copies the files of s and returns s as the new checkpoint refers to
// them; Size is the bytes copied. A shared file stays shared (and is not
// copied) unless the copy is for a savepoint.
func (c *stateCopier) copy(ctx context.Context, s statebackend.SubtaskState) (statebackend.SubtaskState, error) {
	s.Size = 0
	if s.File != "" {
		n, err := c.copyFile(ctx, false, s.File)
		if err != nil {
			return s, err
		}
		s.Size += n
	}
	chain := make([]statebackend.FileRef, len(s.Chain))
	for i, f := range s.Chain {
		if f.Shared && !c.savepoint {
			chain[i] = f
			continue
		}
		n, err := c.copyFile(ctx, f.Shared, f.Path)
		if err != nil {
			return s, err
		}
		f.Shared = false
		s.Size += n
		chain[i] = f
	}
	if len(chain) > 0 {
		s.Chain = chain
	}
	return s, nil
}

// copyFile copies name (relative to the job's shared directory when
// shared, else to the source checkpoint) to the same name in the target.
func (c *stateCopier) copyFile(ctx context.Context, shared bool, name string) (int64, error) {
	src := &c.src
	from := c.from
	if shared {
		src, from = &c.srcShare, statebackend.SharedDir(c.from)
	}
	if err := c.open(from, src); err != nil {
		return 0, err
	}
	if err := c.open(c.to, &c.dst); err != nil {
		return 0, err
	}
	data, err := (*src).Get(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", storage.Join(from, name), err)
	}
	if err := c.dst.Put(ctx, name, data); err != nil {
		return 0, fmt.Errorf("writing %s: %w", storage.Join(c.to, name), err)
	}
	return int64(len(data)), nil
}
