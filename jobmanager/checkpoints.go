package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// Checkpoint coordination (Flink's CheckpointCoordinator): one coordinator
// per job triggers checkpoints at its sources, collects the tasks'
// acknowledgements, writes _metadata last, records the checkpoint in the
// store and then tells every task it is complete. At most one checkpoint is
// in flight; one that is declined, times out or loses its job's attempt is
// aborted and the next one is tried, without harming the job.

// Checkpoint defaults, as Flink's where Flink has one.
const (
	DefaultCheckpointInterval = 10 * time.Second
	DefaultCheckpointTimeout  = 10 * time.Minute
	DefaultRetainedCheckpoint = 3
	coordinatorTick           = 10 * time.Millisecond
)

// taskRef names a subtask of the current attempt.
type taskRef struct{ vertex, subtask int }

type savepointResult struct {
	path string
	err  error
}

// savepointRequest is a user's request for a savepoint, queued until no
// other checkpoint is in flight.
type savepointRequest struct {
	target      string
	stop, drain bool
	done        chan savepointResult // buffered, receives once
}

type pendingCheckpoint struct {
	id        int64
	attempt   int
	trigger   time.Time
	location  string
	savepoint bool
	stop      bool
	drain     bool
	waiting   map[taskRef]bool
	acks      map[taskRef]*weirv1.AcknowledgeCheckpointRequest
	sources   []taskRef
	// finalizing is set once every task acknowledged: _metadata is being
	// written and the checkpoint can no longer be aborted.
	finalizing bool
	req        *savepointRequest
}

type coordinator struct {
	jm    *JobManager
	jobID string
	cfg   CheckpointConfig
	log   *slog.Logger

	mu          sync.Mutex
	pending     *pendingCheckpoint
	queue       []*savepointRequest
	lastID      int64
	lastTrigger time.Time
	lastEnd     time.Time
	attempt     int // the attempt lastTrigger counts from
	requested   bool
}

// startCoordinator runs the coordinator of a job until the job ends.
func (jm *JobManager) startCoordinator(job Job) *coordinator {
	c := &coordinator{jm: jm, jobID: job.ID, cfg: job.Checkpointing, attempt: -1,
		log: jm.log.With("job_id", job.ID)}
	jm.mu.Lock()
	jm.coordinators[job.ID] = c
	jm.mu.Unlock()
	jm.goAsync(func(ctx context.Context) {
		t := time.NewTicker(coordinatorTick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				c.shutdown(errors.New("JobManager is shutting down"))
				return
			case now := <-t.C:
				if !c.tick(now) {
					return
				}
			}
		}
	})
	return c
}

func (jm *JobManager) coordinator(jobID string) *coordinator {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	return jm.coordinators[jobID]
}

// tick makes the coordinator's periodic decisions. It reports false once
// the job has ended.
func (c *coordinator) tick(now time.Time) bool {
	job, err := c.jm.store.Job(c.jobID)
	if err != nil || TerminalJob(job.State) {
		c.shutdown(fmt.Errorf("job is %s", JobStateName(job.State)))
		c.jm.mu.Lock()
		delete(c.jm.coordinators, c.jobID)
		c.jm.mu.Unlock()
		return false
	}
	c.mu.Lock()
	if p := c.pending; p != nil {
		var reason string
		switch {
		case p.finalizing:
		case job.State != jobRunning || job.Attempt != p.attempt:
			reason = fmt.Sprintf("job is %s (attempt %d)", JobStateName(job.State), job.Attempt)
		case now.Sub(p.trigger) > c.timeout():
			reason = fmt.Sprintf("timed out after %v", c.timeout())
		}
		c.mu.Unlock()
		if reason != "" {
			c.abort(p, reason)
		}
		return true
	}
	if job.State != jobRunning {
		c.mu.Unlock()
		return true
	}
	if job.Attempt != c.attempt {
		// Count the interval from the attempt's start.
		c.attempt, c.lastTrigger = job.Attempt, now
	}
	var req *savepointRequest
	switch {
	case len(c.queue) > 0:
		req, c.queue = c.queue[0], c.queue[1:]
	case c.cfg.IntervalMs <= 0:
		c.mu.Unlock()
		return true
	case !c.requested && now.Sub(c.lastTrigger) < time.Duration(c.cfg.IntervalMs)*time.Millisecond:
		c.mu.Unlock()
		return true
	case now.Sub(c.lastEnd) < time.Duration(c.cfg.MinPauseMs)*time.Millisecond:
		c.mu.Unlock()
		return true
	}
	p, err := c.newPendingLocked(&job, now, req)
	if err != nil || p == nil {
		c.mu.Unlock()
		if req != nil {
			req.done <- savepointResult{err: err}
		}
		return true
	}
	c.pending = p
	c.requested = false
	c.lastTrigger = now
	c.mu.Unlock()
	c.log.Debug("triggering checkpoint", "checkpoint", p.id, "savepoint", p.savepoint, "location", p.location)
	for _, s := range p.sources {
		task := job.Tasks[s.vertex][s.subtask]
		req := &weirv1.TriggerCheckpointRequest{Task: taskID(job.ID, s.vertex, s.subtask, task.Attempt),
			CheckpointId: p.id, TimestampMs: p.trigger.UnixMilli(), Location: p.location,
			Savepoint: p.savepoint, Stop: p.stop, Drain: p.drain}
		c.jm.goAsync(func(ctx context.Context) {
			err := c.jm.callTaskManager(ctx, task.Address, func(ctx context.Context, cl weirv1.TaskManagerClient) error {
				_, err := cl.TriggerCheckpoint(ctx, req)
				return err
			})
			if err != nil && ctx.Err() == nil {
				c.decline(p.id, p.attempt, fmt.Sprintf("triggering %s (%d) on %s: %v",
					job.Vertices[s.vertex].Name, s.subtask, task.TaskManagerID, err))
			}
		})
	}
	return true
}

func (c *coordinator) timeout() time.Duration {
	if c.cfg.TimeoutMs <= 0 {
		return DefaultCheckpointTimeout
	}
	return time.Duration(c.cfg.TimeoutMs) * time.Millisecond
}

// newPendingLocked starts a checkpoint of the job's current attempt if all
// its unfinished tasks run; nil when there is nothing to checkpoint.
func (c *coordinator) newPendingLocked(job *Job, now time.Time, req *savepointRequest) (*pendingCheckpoint, error) {
	p := &pendingCheckpoint{attempt: job.Attempt, trigger: now, waiting: map[taskRef]bool{},
		acks: map[taskRef]*weirv1.AcknowledgeCheckpointRequest{}, req: req}
	for v, ts := range job.Tasks {
		for i, t := range ts {
			switch t.State {
			case taskFinished:
				continue
			case taskRunning:
			default:
				return nil, errorf(ErrCheckpoint, "job %s: task %s (%d) is %s", job.ID, job.Vertices[v].Name, i, TaskStateName(t.State))
			}
			p.waiting[taskRef{v, i}] = true
			if job.Vertices[v].InputPartitioning == "" {
				p.sources = append(p.sources, taskRef{v, i})
			}
		}
	}
	if len(p.sources) == 0 {
		return nil, errorf(ErrCheckpoint, "job %s: every source has finished", job.ID)
	}
	c.lastID = max(c.lastID, job.LastCheckpointID) + 1
	p.id = c.lastID
	root := c.jm.cfg.CheckpointStorage
	p.location = storage.Join(root, job.ID, fmt.Sprintf("chk-%d", p.id))
	if req != nil {
		base := req.target
		if base == "" {
			base = storage.Join(root, "savepoints")
		}
		short := job.ID
		if len(short) > 6 {
			short = short[:6]
		}
		p.location = storage.Join(base, fmt.Sprintf("savepoint-%s-%d", short, p.id))
		p.savepoint, p.stop, p.drain = true, req.stop, req.drain
	}
	return p, nil
}

// acknowledge records a task's acknowledgement; the last one completes the
// checkpoint.
func (c *coordinator) acknowledge(req *weirv1.AcknowledgeCheckpointRequest) {
	ref := taskRef{int(req.GetTask().GetVertexId()), int(req.GetTask().GetSubtask())}
	c.mu.Lock()
	p := c.pending
	if p == nil || p.id != req.CheckpointId || p.attempt != int(req.GetTask().GetAttempt()) || !p.waiting[ref] {
		c.mu.Unlock()
		return // late, or for an aborted checkpoint
	}
	delete(p.waiting, ref)
	p.acks[ref] = req
	done := len(p.waiting) == 0
	if done {
		p.finalizing = true
	}
	c.mu.Unlock()
	if done {
		c.jm.goAsync(func(ctx context.Context) { c.finalize(ctx, p) })
	}
}

// decline aborts checkpoint id if it is still in flight.
func (c *coordinator) decline(id int64, attempt int, reason string) {
	c.mu.Lock()
	p := c.pending
	c.mu.Unlock()
	if p != nil && p.id == id && p.attempt == attempt {
		c.abort(p, "declined: "+reason)
	}
}

// requestCheckpoint asks for a checkpoint as soon as the minimum pause
// allows: a source has ended and waits for one to finish.
func (c *coordinator) requestCheckpoint() {
	c.mu.Lock()
	c.requested = true
	c.mu.Unlock()
}

// abort gives up p: the job goes on and the next checkpoint is tried.
func (c *coordinator) abort(p *pendingCheckpoint, reason string) {
	c.mu.Lock()
	if c.pending != p || p.finalizing {
		c.mu.Unlock()
		return
	}
	c.pending = nil
	c.lastEnd = time.Now()
	c.mu.Unlock()
	c.log.Warn("checkpoint aborted", "checkpoint", p.id, "savepoint", p.savepoint, "reason", reason)
	_, _ = c.jm.apply(AbortCheckpoint{JobID: c.jobID, CheckpointID: p.id})
	if p.req != nil {
		p.req.done <- savepointResult{err: errorf(ErrCheckpoint, "savepoint %d of job %s failed: %s", p.id, c.jobID, reason)}
	}
	c.notify(p, true)
	c.jm.goAsync(func(ctx context.Context) { c.deleteLocation(ctx, p.location) })
}

// finalize writes _metadata, records the checkpoint and notifies tasks.
func (c *coordinator) finalize(ctx context.Context, p *pendingCheckpoint) {
	job, err := c.jm.store.Job(c.jobID)
	if err == nil {
		err = c.writeMetadata(ctx, &job, p)
	}
	if err != nil {
		c.mu.Lock()
		p.finalizing = false
		c.mu.Unlock()
		c.abort(p, err.Error())
		return
	}
	cp := CompletedCheckpoint{ID: p.id, Path: p.location, Savepoint: p.savepoint, TriggerMs: p.trigger.UnixMilli(),
		DurationMs: time.Since(p.trigger).Milliseconds()}
	for _, a := range p.acks {
		for _, s := range a.States {
			cp.SizeBytes += s.Size
		}
		cp.MaxSyncNs = max(cp.MaxSyncNs, a.SyncNs)
		cp.MaxAlignmentNs = max(cp.MaxAlignmentNs, a.AlignmentNs)
	}
	before := job.Checkpoints
	if _, err := c.jm.apply(CompleteCheckpoint{JobID: c.jobID, Checkpoint: cp}); err != nil {
		c.log.Error("recording checkpoint", "checkpoint", p.id, "err", err)
	}
	c.mu.Lock()
	c.pending = nil
	c.lastEnd = time.Now()
	c.mu.Unlock()
	c.log.Info("checkpoint complete", "checkpoint", p.id, "savepoint", p.savepoint, "duration", time.Since(p.trigger),
		"size", cp.SizeBytes, "location", p.location)
	c.notify(p, false)
	if p.req != nil {
		p.req.done <- savepointResult{path: p.location}
	}
	if after, err := c.jm.store.Job(c.jobID); err == nil {
		for _, old := range before {
			if !old.Savepoint && !slices.ContainsFunc(after.Checkpoints, func(k CompletedCheckpoint) bool { return k.ID == old.ID }) {
				c.deleteLocation(ctx, old.Path)
			}
		}
	}
}

// writeMetadata builds the checkpoint's manifest from the acknowledgements
// and writes it last: its presence marks the checkpoint complete.
func (c *coordinator) writeMetadata(ctx context.Context, job *Job, p *pendingCheckpoint) error {
	m := &statebackend.Metadata{Version: 1, JobID: job.ID, JobName: job.Name, CheckpointID: p.id,
		Savepoint: p.savepoint, TimestampMs: p.trigger.UnixMilli(), DurationMs: time.Since(p.trigger).Milliseconds(),
		MaxParallelism: job.MaxParallelism}
	for v, spec := range job.Vertices {
		for _, op := range spec.Operators {
			ops := statebackend.OperatorState{UID: op.UID, Name: op.Name, Parallelism: spec.Parallelism}
			for i := range job.Tasks[v] {
				a := p.acks[taskRef{v, i}]
				if a == nil {
					continue
				}
				for _, h := range a.States {
					if h.Uid == op.UID {
						ops.Subtasks = append(ops.Subtasks, statebackend.SubtaskState{Subtask: i, File: h.File, Size: h.Size,
							KeyGroups: statebackend.KeyGroupRange{First: int(h.FirstKeyGroup), Last: int(h.LastKeyGroup)}, Keys: h.Keys})
					}
				}
			}
			if len(ops.Subtasks) > 0 {
				m.Operators = append(m.Operators, ops)
			}
		}
	}
	st, err := storage.Open(p.location, c.jm.cfg.Storage)
	if err != nil {
		return err
	}
	if err := st.Put(ctx, metadataFile, statebackend.EncodeMetadata(m)); err != nil {
		return fmt.Errorf("writing %s: %w", storage.Join(p.location, metadataFile), err)
	}
	return nil
}

// notify tells the attempt's tasks that p completed, or its sources that it
// was aborted (a stopped source resumes).
func (c *coordinator) notify(p *pendingCheckpoint, aborted bool) {
	job, err := c.jm.store.Job(c.jobID)
	if err != nil || job.Attempt != p.attempt {
		return
	}
	for v, ts := range job.Tasks {
		if aborted && job.Vertices[v].InputPartitioning != "" {
			continue
		}
		for i, t := range ts {
			if TerminalTask(t.State) || t.Address == "" {
				continue
			}
			req := &weirv1.NotifyCheckpointRequest{Task: taskID(job.ID, v, i, t.Attempt), CheckpointId: p.id, Aborted: aborted}
			c.jm.goAsync(func(ctx context.Context) {
				_ = c.jm.callTaskManager(ctx, t.Address, func(ctx context.Context, cl weirv1.TaskManagerClient) error {
					_, err := cl.NotifyCheckpoint(ctx, req)
					return err
				})
			})
		}
	}
}

func (c *coordinator) deleteLocation(ctx context.Context, url string) {
	st, err := storage.Open(url, c.jm.cfg.Storage)
	if err == nil {
		err = st.DeleteAll(ctx, "")
	}
	if err != nil {
		c.log.Warn("deleting checkpoint files", "location", url, "err", err)
	}
}

// savepoint queues a savepoint and waits for its outcome.
func (c *coordinator) savepoint(ctx context.Context, target string, stop, drain bool) (string, error) {
	req := &savepointRequest{target: target, stop: stop, drain: drain, done: make(chan savepointResult, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, req)
	c.mu.Unlock()
	select {
	case r := <-req.done:
		return r.path, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// shutdown fails what is queued or in flight once the job has ended.
func (c *coordinator) shutdown(err error) {
	c.mu.Lock()
	q, p := c.queue, c.pending
	c.queue, c.pending = nil, nil
	c.mu.Unlock()
	for _, r := range q {
		r.done <- savepointResult{err: errorf(ErrCheckpoint, "savepoint of job %s not taken: %v", c.jobID, err)}
	}
	if p != nil && p.req != nil && !p.finalizing {
		p.req.done <- savepointResult{err: errorf(ErrCheckpoint, "savepoint of job %s failed: %v", c.jobID, err)}
	}
}
