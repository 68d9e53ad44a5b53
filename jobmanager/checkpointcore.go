package jobmanager

import (
	"fmt"
	"log/slog"
	"time"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend/storage"
)

// checkpointCore is a job's checkpoint decisions, as etcd's raft keeps its
// protocol: no I/O, no clock, no goroutines. Time comes in as arguments
// and effects leave as values the coordinator carries out. The caller
// serialises access.
type checkpointCore struct {
	jobID string
	cfg   CheckpointConfig
	root  string // checkpoint storage URL
	// savepoints is where savepoints without a target go.
	savepoints string

	pending     *pendingCheckpoint
	queue       []*savepointRequest
	lastID      int64
	lastTrigger time.Time
	lastEnd     time.Time
	attempt     int // the attempt lastTrigger counts from
	requested   bool
	// stopped is the attempt whose stop-with-savepoint completed: its
	// sources have stopped and its tasks are finishing, so it takes no
	// more checkpoints; -1 for none.
	stopped int
}

// coreAction is what a tick decided.
type coreAction struct {
	// trigger is a checkpoint just started: its sources get
	// TriggerCheckpoint.
	trigger *pendingCheckpoint
	// abort is the pending checkpoint to give up, for reason; routine
	// when it follows from the job's stopping or restarting, or a task's
	// end, rather than from a fault of the checkpoint.
	abort   *pendingCheckpoint
	reason  string
	routine bool
	// refuse is a savepoint request that could not start, with err.
	refuse *savepointRequest
	err    error
}

func newCheckpointCore(jobID, root string, cfg CheckpointConfig) *checkpointCore {
	return &checkpointCore{jobID: jobID, root: root, savepoints: storage.Join(root, "savepoints"), cfg: cfg, attempt: -1, stopped: -1}
}

func (c *checkpointCore) timeout() time.Duration {
	if c.cfg.TimeoutMs <= 0 {
		return DefaultCheckpointTimeout
	}
	return time.Duration(c.cfg.TimeoutMs) * time.Millisecond
}

// tick decides what the job's checkpointing does now: abort an in-flight
// checkpoint that timed out or lost its attempt, or start the next one
// (a queued savepoint first, else a periodic checkpoint once the interval
// and the minimum pause allow, or at once when a source asked).
func (c *checkpointCore) tick(job *Job, now time.Time) coreAction {
	if p := c.pending; p != nil {
		switch {
		case p.finalizing:
		case job.State != jobRunning || job.Attempt != p.attempt:
			return coreAction{abort: p, reason: fmt.Sprintf("job is %s (attempt %d)", JobStateName(job.State), job.Attempt),
				routine: true}
		case now.Sub(p.trigger) > c.timeout():
			return coreAction{abort: p, reason: fmt.Sprintf("timed out after %v", c.timeout())}
		default:
			// Tasks acknowledge before they report their end, so a
			// waiting task that ended never saw the barrier.
			for ref := range p.waiting {
				if t := job.Tasks[ref.vertex][ref.subtask]; TerminalTask(t.State) {
					return coreAction{abort: p, reason: fmt.Sprintf("task %s (%d) ended %s before acknowledging",
						job.Vertices[ref.vertex].Name, ref.subtask, TaskStateName(t.State)), routine: true}
				}
			}
		}
		return coreAction{}
	}
	if job.State != jobRunning || job.Attempt == c.stopped {
		return coreAction{}
	}
	if job.Attempt != c.attempt {
		// The interval counts from the attempt's start.
		c.attempt, c.lastTrigger = job.Attempt, now
	}
	var req *savepointRequest
	switch {
	case len(c.queue) > 0:
		req, c.queue = c.queue[0], c.queue[1:]
	case c.cfg.IntervalMs <= 0:
		return coreAction{}
	case !c.requested && now.Sub(c.lastTrigger) < time.Duration(c.cfg.IntervalMs)*time.Millisecond:
		return coreAction{}
	case now.Sub(c.lastEnd) < time.Duration(c.cfg.MinPauseMs)*time.Millisecond:
		return coreAction{}
	}
	p, err := c.start(job, now, req)
	if err != nil {
		if req != nil {
			return coreAction{refuse: req, err: err}
		}
		return coreAction{}
	}
	c.pending, c.requested, c.lastTrigger = p, false, now
	return coreAction{trigger: p}
}

// start makes checkpoint lastID+1 of the job's current attempt, waiting
// for every unfinished task; it fails while a task is not running. The
// finished tasks are listed: their final states are carried into it.
func (c *checkpointCore) start(job *Job, now time.Time, req *savepointRequest) (*pendingCheckpoint, error) {
	p := &pendingCheckpoint{attempt: job.Attempt, trigger: now, waiting: map[taskRef]bool{},
		acks: map[taskRef]*weirv1.AcknowledgeCheckpointRequest{}, req: req}
	for v, ts := range job.Tasks {
		for i, t := range ts {
			switch t.State {
			case taskFinished:
				if c.cfg.IntervalMs <= 0 && job.Vertices[v].InputPartitioning == "" {
					// Without periodic checkpoints a source finishes without
					// a final checkpoint: its end position is nowhere to
					// carry from, and a restore would read its input again.
					return nil, errorf(ErrCheckpoint, "job %s: source %s (%d) has finished and periodic checkpoints are off, so no checkpoint holds its end position",
						job.ID, job.Vertices[v].Name, i)
				}
				p.finished = append(p.finished, taskRef{v, i})
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
	p.location = storage.Join(c.root, job.ID, fmt.Sprintf("chk-%d", p.id))
	if req != nil {
		base := req.target
		if base == "" {
			base = c.savepoints
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

// acknowledge records a task's acknowledgement. It returns the checkpoint
// once every task has acknowledged (now finalizing), else nil; late acks
// and acks of aborted checkpoints are ignored.
func (c *checkpointCore) acknowledge(req *weirv1.AcknowledgeCheckpointRequest) *pendingCheckpoint {
	ref := taskRef{int(req.GetTask().GetVertexId()), int(req.GetTask().GetSubtask())}
	p := c.pending
	if p == nil || p.finalizing || p.id != req.CheckpointId || p.attempt != int(req.GetTask().GetAttempt()) || !p.waiting[ref] {
		return nil
	}
	delete(p.waiting, ref)
	p.acks[ref] = req
	if len(p.waiting) > 0 {
		return nil
	}
	p.finalizing = true
	return p
}

// declined returns the pending checkpoint a task declined, if it still
// can be aborted.
func (c *checkpointCore) declined(id int64, attempt int) *pendingCheckpoint {
	if p := c.pending; p != nil && !p.finalizing && p.id == id && p.attempt == attempt {
		return p
	}
	return nil
}

// completed ends p as completed at now, like end. After a
// stop-with-savepoint the attempt takes no more checkpoints.
func (c *checkpointCore) completed(p *pendingCheckpoint, now time.Time) bool {
	if !c.end(p, now) {
		return false
	}
	if p.stop {
		c.stopped = p.attempt
	}
	return true
}

// completionLevel is the level a completed checkpoint is logged at, d
// after its trigger. A periodic checkpoint is routine (DEBUG) unless it is
// slow: longer than the interval, which delays the next one (INFO), or
// than half the timeout, which nearly aborted it (WARN). A savepoint was
// asked for by a user, who wants to hear of it (INFO).
func (c *checkpointCore) completionLevel(p *pendingCheckpoint, d time.Duration) slog.Level {
	switch {
	case d > c.timeout()/2:
		return slog.LevelWarn
	case p.savepoint:
		return slog.LevelInfo
	case c.cfg.IntervalMs > 0 && d > time.Duration(c.cfg.IntervalMs)*time.Millisecond:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// end clears p, completed or aborted at now; it reports false when p was
// no longer the pending checkpoint (already ended). A finalizing
// checkpoint can only end as completed, unless its metadata failed.
func (c *checkpointCore) end(p *pendingCheckpoint, now time.Time) bool {
	if c.pending != p {
		return false
	}
	c.pending, c.lastEnd = nil, now
	return true
}
