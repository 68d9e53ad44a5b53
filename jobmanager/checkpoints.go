package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
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
	// base is the job's latest completed checkpoint, which incremental
	// snapshots build on (0: none, or full checkpoints).
	base    int64
	stop    bool
	drain   bool
	waiting map[taskRef]bool
	acks    map[taskRef]*weirv1.AcknowledgeCheckpointRequest
	sources []taskRef
	// finished are the tasks that had finished at the trigger; the
	// checkpoint holds their final states (finished.go).
	finished []taskRef
	// finalizing is set once every task acknowledged: _metadata is being
	// written and the checkpoint can no longer be aborted.
	finalizing bool
	req        *savepointRequest
}

// coordinator is the thin loop around a job's checkpointCore: it feeds
// the core the job's record and the time, and carries out what the core
// decides (RPCs to TaskManagers, storage, store commands).
type coordinator struct {
	jm    *JobManager
	jobID string
	log   *slog.Logger

	mu   sync.Mutex // guards core
	core *checkpointCore
}

// startCoordinator runs the coordinator of a job until the job ends.
func (jm *JobManager) startCoordinator(job Job) *coordinator {
	c := &coordinator{jm: jm, jobID: job.ID, core: newCheckpointCore(job.ID, jm.cfg.CheckpointStorage, job.Checkpointing),
		log: jm.log.With("job_id", job.ID)}
	if jm.cfg.SavepointDir != "" {
		c.core.savepoints = jm.cfg.SavepointDir
	}
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

// tick runs the core's decisions once. It reports false once the job has
// ended.
func (c *coordinator) tick(now time.Time) bool {
	job, err := c.jm.store.Job(c.jobID)
	if err != nil || TerminalJob(job.State) {
		c.shutdown(fmt.Errorf("job is %s", JobStateName(job.State)))
		c.jm.mu.Lock()
		delete(c.jm.coordinators, c.jobID)
		c.jm.mu.Unlock()
		if err == nil && job.Checkpointing.Incremental {
			// A subtask's upload for a checkpoint aborted near the end
			// can land after the last completed checkpoint's collection.
			// Tasks report their end only after their uploads, so once
			// the job has ended nothing is in flight: collect it all.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := c.jm.collectShared(ctx, &job, math.MaxInt64); err != nil {
				c.log.Warn("deleting unused shared checkpoint files", "err", err)
			}
			cancel()
		}
		return false
	}
	c.mu.Lock()
	a := c.core.tick(&job, now)
	c.mu.Unlock()
	switch {
	case a.abort != nil:
		c.abort(a.abort, a.reason, a.routine)
	case a.refuse != nil:
		a.refuse.done <- savepointResult{err: a.err}
	case a.trigger != nil:
		// The ID is taken for good before any barrier carries it, so no
		// later leader reuses it for another checkpoint.
		if _, err := c.jm.apply(ReserveCheckpoint{JobID: c.jobID, CheckpointID: a.trigger.id}); err != nil {
			c.abort(a.trigger, "reserving its ID: "+err.Error(), true)
			return true
		}
		if job.Checkpointing.Incremental {
			a.trigger.base = latestCheckpoint(&job)
		}
		c.trigger(&job, a.trigger)
	}
	return true
}

// latestCheckpoint is the ID of the job's latest completed checkpoint that
// is not a savepoint (savepoints are the user's, so nothing builds on
// them), 0 if none.
func latestCheckpoint(job *Job) int64 {
	var id int64
	for _, cp := range job.Checkpoints {
		if !cp.Savepoint {
			id = max(id, cp.ID)
		}
	}
	return id
}

// trigger asks the checkpoint's source tasks to take it.
func (c *coordinator) trigger(job *Job, p *pendingCheckpoint) {
	c.log.Debug("triggering checkpoint", "checkpoint", p.id, "savepoint", p.savepoint, "location", p.location)
	for _, s := range p.sources {
		task := job.Tasks[s.vertex][s.subtask]
		req := &weirv1.TriggerCheckpointRequest{Task: taskID(job.ID, s.vertex, s.subtask, task.Attempt),
			CheckpointId: p.id, TimestampMs: p.trigger.UnixMilli(), Location: p.location,
			Savepoint: p.savepoint, Stop: p.stop, Drain: p.drain, BaseCheckpointId: p.base}
		name := job.Vertices[s.vertex].Name
		c.jm.goAsync(func(ctx context.Context) {
			err := c.jm.callTaskManager(ctx, task.Address, func(ctx context.Context, cl weirv1.TaskManagerClient) error {
				_, err := cl.TriggerCheckpoint(ctx, req)
				return err
			})
			if err != nil && ctx.Err() == nil {
				c.decline(p.id, p.attempt, fmt.Sprintf("triggering %s (%d) on %s: %v", name, s.subtask, task.TaskManagerID, err), false)
			}
		})
	}
}

// acknowledge records a task's acknowledgement; the last one completes the
// checkpoint.
func (c *coordinator) acknowledge(req *weirv1.AcknowledgeCheckpointRequest) {
	c.mu.Lock()
	p := c.core.acknowledge(req)
	c.mu.Unlock()
	if p != nil {
		c.jm.goAsync(func(ctx context.Context) { c.finalize(ctx, p) })
	}
}

// decline aborts checkpoint id if it is still in flight; taskEnded says
// the declining task had ended, which is routine.
func (c *coordinator) decline(id int64, attempt int, reason string, taskEnded bool) {
	c.mu.Lock()
	p := c.core.declined(id, attempt)
	c.mu.Unlock()
	if p != nil {
		c.abort(p, "declined: "+reason, taskEnded)
	}
}

// requestCheckpoint asks for a checkpoint as soon as the minimum pause
// allows: a source has ended and waits for one to finish.
func (c *coordinator) requestCheckpoint() {
	c.mu.Lock()
	c.core.requested = true
	c.mu.Unlock()
}

// abort gives up p: the job goes on and the next checkpoint is tried. A
// routine abort (the job is stopping or restarting, a task has ended) is
// logged quietly; so is any abort once the job no longer runs p's attempt.
func (c *coordinator) abort(p *pendingCheckpoint, reason string, routine bool) {
	c.mu.Lock()
	ok := c.core.end(p, time.Now())
	c.mu.Unlock()
	if !ok {
		return
	}
	if job, err := c.jm.store.Job(c.jobID); err != nil || job.State != jobRunning || job.Attempt != p.attempt {
		routine = true
	}
	level := slog.LevelWarn
	switch {
	case routine && p.savepoint:
		level = slog.LevelInfo // someone is waiting for it
	case routine:
		level = slog.LevelDebug
	}
	c.log.Log(context.Background(), level, "checkpoint aborted", "checkpoint", p.id, "savepoint", p.savepoint, "reason", reason)
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
	if err == nil && job.Checkpointing.Incremental && !p.savepoint {
		err = c.jm.checkChains(ctx, &job, p)
	}
	if err == nil {
		err = c.writeMetadata(ctx, &job, p)
	}
	if err != nil {
		c.abort(p, err.Error(), false)
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
		// The job ended and its checkpoints were disposed of meanwhile.
		c.abort(p, "recording it: "+err.Error(), false)
		return
	}
	d := time.Since(p.trigger)
	c.mu.Lock()
	c.core.completed(p, time.Now())
	level := c.core.completionLevel(p, d)
	c.mu.Unlock()
	c.log.Log(ctx, level, "checkpoint complete", "checkpoint", p.id, "savepoint", p.savepoint, "duration", d,
		"size", cp.SizeBytes, "location", p.location)
	c.notify(p, false)
	if p.req != nil {
		p.req.done <- savepointResult{path: p.location}
	}
	if after, err := c.jm.store.Job(c.jobID); err == nil {
		for _, old := range before {
			if !old.Savepoint && !slices.ContainsFunc(after.Checkpoints, func(k CompletedCheckpoint) bool { return k.ID == old.ID }) {
				c.deleteLocation(ctx, old.Path)
				c.jm.forgetMetadata(old.Path)
			}
		}
		if after.Checkpointing.Incremental && !p.savepoint {
			if err := c.jm.collectShared(ctx, &after, p.id); err != nil {
				c.log.Warn("deleting unused shared checkpoint files", "err", err)
			}
		}
	}
}

// checkChains makes sure that every shared file the chains of checkpoint
// p name was written by p itself or is referred to by a retained
// checkpoint, and so still exists. Building on the barrier's base
// guarantees it; the check turns a violation into an aborted checkpoint
// instead of a completed one that cannot be restored.
func (jm *JobManager) checkChains(ctx context.Context, job *Job, p *pendingCheckpoint) error {
	held := map[string]bool{}
	for _, cp := range job.Checkpoints {
		if cp.Savepoint {
			continue
		}
		m, err := jm.loadMetadata(ctx, cp.Path)
		if err != nil {
			return fmt.Errorf("reading retained checkpoint %d: %w", cp.ID, err)
		}
		for _, f := range m.SharedFiles() {
			held[f] = true
		}
	}
	for ref, a := range p.acks {
		for _, s := range a.States {
			for _, f := range s.Chain {
				if id, ok := statebackend.ParseSharedFileName(f.Path); !f.Shared || (ok && id == p.id) || held[f.Path] {
					continue
				}
				return fmt.Errorf("subtask %d of %s refers to shared file %s, which no retained checkpoint holds",
					ref.subtask, s.Uid, f.Path)
			}
		}
	}
	return nil
}

// collectShared deletes the files of the job's shared directory that no
// retained checkpoint refers to and that a checkpoint up to upTo wrote
// (a later one may be in flight). The references come from the retained
// checkpoints' _metadata, so they survive a JobManager failover with the
// checkpoint list in the raft state; if any of them cannot be read,
// nothing is deleted. Files of aborted checkpoints go too.
func (jm *JobManager) collectShared(ctx context.Context, job *Job, upTo int64) error {
	// Only the retained checkpoints count: the one the attempt restored
	// from is one of them until retention retires it, and restarts use
	// the latest.
	var metas []*statebackend.Metadata
	jobDir := storage.Join(jm.cfg.CheckpointStorage, job.ID)
	for _, cp := range job.Checkpoints {
		if cp.Savepoint {
			continue // always self-contained
		}
		m, err := jm.loadMetadata(ctx, cp.Path)
		if err != nil {
			return fmt.Errorf("reading retained checkpoint %d: %w", cp.ID, err)
		}
		metas = append(metas, m)
	}
	st, err := storage.Open(storage.Join(jobDir, statebackend.SharedDirName), jm.cfg.Storage)
	if err != nil {
		return err
	}
	objs, err := st.List(ctx, "")
	if err != nil {
		return fmt.Errorf("listing %s: %w", st.URL(), err)
	}
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.Name
	}
	for _, name := range statebackend.UnusedSharedFiles(names, metas, upTo) {
		if err := st.Delete(ctx, name); err != nil {
			return fmt.Errorf("deleting %s: %w", storage.Join(st.URL(), name), err)
		}
	}
	return nil
}

// writeMetadata builds the checkpoint's manifest from the acknowledgements
// and writes it last: its presence marks the checkpoint complete.
func (c *coordinator) writeMetadata(ctx context.Context, job *Job, p *pendingCheckpoint) error {
	m := &statebackend.Metadata{Version: 1, JobID: job.ID, JobName: job.Name, CheckpointID: p.id,
		Savepoint: p.savepoint, TimestampMs: p.trigger.UnixMilli(), DurationMs: time.Since(p.trigger).Milliseconds(),
		MaxParallelism: job.MaxParallelism}
	carried, err := c.jm.carryFinished(ctx, job, p)
	if err != nil {
		return err
	}
	for v, spec := range job.Vertices {
		for _, op := range spec.Operators {
			ops := statebackend.OperatorState{UID: op.UID, Name: op.Name, Parallelism: spec.Parallelism}
			for i := range job.Tasks[v] {
				a := p.acks[taskRef{v, i}]
				if a == nil {
					if s, ok := carried[subtaskKey{op.UID, i}]; ok {
						ops.Subtasks = append(ops.Subtasks, s)
					}
					continue
				}
				for _, h := range a.States {
					if h.Uid == op.UID {
						ops.Subtasks = append(ops.Subtasks, statebackend.SubtaskState{Subtask: i, File: h.File, Size: h.Size,
							KeyGroups: statebackend.KeyGroupRange{First: int(h.FirstKeyGroup), Last: int(h.LastKeyGroup)}, Keys: h.Keys,
							Chain: fileRefs(h.Chain)})
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
	if err := c.jm.deleteDir(ctx, url); err != nil {
		c.log.Warn("deleting checkpoint files", "location", url, "err", err)
	}
}

// deleteDir deletes the checkpoint or savepoint directory at url with
// everything in it. It deletes through the checkpoint storage's root (or
// the directory's parent), not a store rooted at url, because a directory
// store keeps its root: this way chk-N/ goes too, and so does the job's
// directory once its last checkpoint is gone.
func (jm *JobManager) deleteDir(ctx context.Context, url string) error {
	parent, name := jm.cfg.CheckpointStorage, ""
	if rest, ok := strings.CutPrefix(url, strings.TrimRight(parent, "/")+"/"); ok {
		name = rest
	} else if i := strings.LastIndex(strings.TrimRight(url, "/"), "/"); i > 0 && !strings.HasSuffix(url[:i], "/") {
		parent, name = url[:i], strings.Trim(url[i+1:], "/")
	}
	if name == "" {
		// Not below anything we can open (file:///sp): empty it in place.
		st, err := storage.Open(url, jm.cfg.Storage)
		if err != nil {
			return err
		}
		return st.DeleteAll(ctx, "")
	}
	st, err := storage.Open(parent, jm.cfg.Storage)
	if err != nil {
		return err
	}
	return st.DeleteAll(ctx, strings.Trim(name, "/")+"/")
}

// savepoint queues a savepoint and waits for its outcome.
func (c *coordinator) savepoint(ctx context.Context, target string, stop, drain bool) (string, error) {
	req := &savepointRequest{target: target, stop: stop, drain: drain, done: make(chan savepointResult, 1)}
	c.mu.Lock()
	c.core.queue = append(c.core.queue, req)
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
	q, p := c.core.queue, c.core.pending
	c.core.queue, c.core.pending = nil, nil
	c.mu.Unlock()
	for _, r := range q {
		r.done <- savepointResult{err: errorf(ErrCheckpoint, "savepoint of job %s not taken: %v", c.jobID, err)}
	}
	if p != nil && p.req != nil && !p.finalizing {
		p.req.done <- savepointResult{err: errorf(ErrCheckpoint, "savepoint of job %s failed: %v", c.jobID, err)}
	}
}
