package jobmanager

import (
	"fmt"
	"maps"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// jobTable is the durable state and its apply functions, one per command.
// It does no I/O, reads no clock and draws no random numbers, so a raft FSM
// can wrap it as MemStore does. Callers serialise access.
type jobTable struct {
	jobs  map[string]*Job
	order []string // job IDs in submission order
	// members maps the raft group's member IDs to their client addresses.
	members map[string]string
}

func (t *jobTable) apply(cmd Command) ([]JobTransition, error) {
	switch c := cmd.(type) {
	case SubmitJob:
		return t.applySubmitJob(c)
	case DeployJob:
		return t.applyDeployJob(c)
	case UpdateTask:
		return t.applyUpdateTask(c)
	case FailJob:
		return t.applyFailJob(c)
	case CancelJob:
		return t.applyCancelJob(c)
	case TaskManagerLost:
		return t.applyTaskManagerLost(c)
	case CompleteCheckpoint:
		return t.applyCompleteCheckpoint(c)
	case AbortCheckpoint:
		return t.applyAbortCheckpoint(c)
	case RestartJob:
		return t.applyRestartJob(c)
	case BeginRescale:
		return t.applyBeginRescale(c)
	case EndRescale:
		return t.applyEndRescale(c)
	case DisposeCheckpoints:
		return t.applyDisposeCheckpoints(c)
	case FallBackRescale:
		return t.applyFallBackRescale(c)
	case SetMemberAddress:
		if t.members == nil {
			t.members = map[string]string{}
		}
		t.members[c.MemberID] = c.Address
		return nil, nil
	case ReserveCheckpoint:
		return t.applyReserveCheckpoint(c)
	}
	return nil, fmt.Errorf("unknown command %T", cmd)
}

const (
	jobCreated    = weirv1.JobState_JOB_STATE_CREATED
	jobRunning    = weirv1.JobState_JOB_STATE_RUNNING
	jobCanceling  = weirv1.JobState_JOB_STATE_CANCELING
	jobCanceled   = weirv1.JobState_JOB_STATE_CANCELED
	jobFinished   = weirv1.JobState_JOB_STATE_FINISHED
	jobFailed     = weirv1.JobState_JOB_STATE_FAILED
	jobRestarting = weirv1.JobState_JOB_STATE_RESTARTING

	taskScheduled = weirv1.TaskState_TASK_STATE_SCHEDULED
	taskDeploying = weirv1.TaskState_TASK_STATE_DEPLOYING
	taskRunning   = weirv1.TaskState_TASK_STATE_RUNNING
	taskFinished  = weirv1.TaskState_TASK_STATE_FINISHED
	taskCanceled  = weirv1.TaskState_TASK_STATE_CANCELED
	taskFailed    = weirv1.TaskState_TASK_STATE_FAILED

	rescaleStopping  = weirv1.RescalePhase_RESCALE_PHASE_STOPPING
	rescalePlacing   = weirv1.RescalePhase_RESCALE_PHASE_PLACING
	rescaleDone      = weirv1.RescalePhase_RESCALE_PHASE_DONE
	rescaleFellBack  = weirv1.RescalePhase_RESCALE_PHASE_FELL_BACK
	rescaleAbandoned = weirv1.RescalePhase_RESCALE_PHASE_ABANDONED
)

func (t *jobTable) applySubmitJob(c SubmitJob) ([]JobTransition, error) {
	if c.JobID == "" {
		return nil, errorf(ErrInvalidRequest, "submit: empty job ID")
	}
	if _, dup := t.jobs[c.JobID]; dup {
		return nil, errorf(ErrJobExists, "job %s exists already", c.JobID)
	}
	j := &Job{
		ID:             c.JobID,
		Name:           c.Name,
		Parallelism:    c.Parallelism,
		MaxParallelism: c.MaxParallelism,
		Params:         maps.Clone(c.Params),
		Labels:         maps.Clone(c.Labels),
		State:          jobCreated,
		SubmitTime:     c.TimeMs,
		WaitingSince:   c.TimeMs,
		Tasks:          make([][]Task, len(c.Vertices)),
	}
	if j.Params == nil {
		j.Params = map[string]string{}
	}
	j.Checkpointing = c.Checkpointing
	j.AllowNonRestored = c.AllowNonRestored
	j.StateBackend = c.StateBackend
	j.TimerService = c.TimerService
	if c.Restore != nil {
		r := *c.Restore
		j.Restore = &r
		j.LastCheckpointID = r.ID
	}
	j.Vertices = cloneVertices(c.Vertices)
	resetTasks(j)
	t.jobs[j.ID] = j
	t.order = append(t.order, j.ID)
	return []JobTransition{{JobID: j.ID, To: jobCreated}}, nil
}

func (t *jobTable) applyDeployJob(c DeployJob) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if !j.Pending() || c.Attempt != j.Attempt {
		return nil, errorf(ErrJobNotPending, "job %s (%s, attempt %d) is not waiting to deploy attempt %d",
			j.ID, JobStateName(j.State), j.Attempt, c.Attempt)
	}
	if need := j.SlotsNeeded(); len(c.Slots) < need {
		return nil, errorf(ErrInvalidRequest, "job %s needs %d slots, got %d", j.ID, need, len(c.Slots))
	}
	for v := range j.Tasks {
		for i := range j.Tasks[v] {
			s := c.Slots[i]
			j.Tasks[v][i] = Task{Attempt: c.Attempt, State: taskDeploying,
				TaskManagerID: s.TaskManagerID, Address: s.Address, Slot: s.Index}
		}
	}
	j.Deployed = true
	j.StartTime = c.TimeMs
	if r := j.Rescale; r != nil && r.Phase == rescalePlacing {
		r.Phase, r.EndMs = rescaleDone, c.TimeMs
	}
	return nil, nil
}

func (t *jobTable) applyUpdateTask(c UpdateTask) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok || c.Vertex < 0 || c.Vertex >= len(j.Tasks) || c.Subtask < 0 || c.Subtask >= len(j.Tasks[c.Vertex]) {
		return nil, nil
	}
	task := &j.Tasks[c.Vertex][c.Subtask]
	if c.Attempt != task.Attempt || c.TaskManagerID == "" || c.TaskManagerID != task.TaskManagerID ||
		TerminalTask(task.State) {
		return nil, nil
	}
	switch c.State {
	case taskRunning, taskFinished, taskCanceled, taskFailed:
	default:
		return nil, nil
	}
	task.State = c.State
	if c.Failure != "" {
		task.Failure = c.Failure
	}
	var out []JobTransition
	if j.Active() {
		spec := j.Vertices[c.Vertex]
		switch c.State {
		case taskFailed:
			t.failJob(j, fmt.Sprintf("subtask %s (%d/%d) on %s failed: %s",
				spec.Name, c.Subtask+1, spec.Parallelism, c.TaskManagerID, c.Failure), c.Unrecoverable, c.TimeMs, &out)
		case taskCanceled:
			// The JobManager never cancels a task of an active job, so
			// the TaskManager did it on its own.
			t.failJob(j, fmt.Sprintf("subtask %s (%d/%d) on %s was canceled unexpectedly",
				spec.Name, c.Subtask+1, spec.Parallelism, c.TaskManagerID), false, c.TimeMs, &out)
		}
	}
	t.advance(j, c.TimeMs, &out)
	return out, nil
}

func (t *jobTable) applyFailJob(c FailJob) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if !j.Active() {
		return nil, nil
	}
	var out []JobTransition
	t.failJob(j, c.Reason, c.Unrecoverable, c.TimeMs, &out)
	t.advance(j, c.TimeMs, &out)
	return out, nil
}

func (t *jobTable) applyCancelJob(c CancelJob) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if TerminalJob(j.State) {
		return nil, errorf(ErrJobTerminal, "job %s is already %s", j.ID, JobStateName(j.State))
	}
	var out []JobTransition
	switch {
	case j.State == jobCanceling:
	case !j.Deployed:
		t.setState(j, jobCanceled, "", c.TimeMs, &out)
	default:
		t.setState(j, jobCanceling, "", c.TimeMs, &out)
		t.advance(j, c.TimeMs, &out)
	}
	return out, nil
}

func (t *jobTable) applyTaskManagerLost(c TaskManagerLost) ([]JobTransition, error) {
	var out []JobTransition
	for _, id := range t.order {
		j := t.jobs[id]
		hit := false
		for v := range j.Tasks {
			for i := range j.Tasks[v] {
				task := &j.Tasks[v][i]
				if task.TaskManagerID != c.TaskManagerID || TerminalTask(task.State) {
					continue
				}
				hit = true
				task.Failure = c.Reason
				if j.Active() {
					task.State = taskFailed
				} else {
					// The job is stopping anyway: the task is gone.
					task.State = taskCanceled
				}
			}
		}
		if !hit {
			continue
		}
		if j.Active() {
			t.failJob(j, c.Reason, false, c.TimeMs, &out)
		}
		t.advance(j, c.TimeMs, &out)
	}
	return out, nil
}

// advance moves a job forward once its tasks allow it: CANCELING to
// CANCELED when all tasks are terminal; an active job to FINISHED when all
// have finished, and CREATED to RUNNING when all run (or already finished).
func (t *jobTable) advance(j *Job, timeMs int64, out *[]JobTransition) {
	all := func(ok func(weirv1.TaskState) bool) bool {
		for _, ts := range j.Tasks {
			for _, task := range ts {
				if !ok(task.State) {
					return false
				}
			}
		}
		return true
	}
	switch {
	case j.State == jobCanceling:
		if all(TerminalTask) {
			t.setState(j, jobCanceled, "", timeMs, out)
		}
	case j.Active() && j.Deployed:
		if all(func(s weirv1.TaskState) bool { return s == taskFinished }) && j.Rescale != nil && j.Rescale.Phase == rescaleStopping {
			// The rescale's stop-with-savepoint has finished every task:
			// redeploy at the new parallelism from that savepoint.
			plan := j.Rescale
			t.setState(j, jobRestarting, "", timeMs, out)
			j.Parallelism = plan.Parallelism
			j.Vertices = cloneVertices(plan.Vertices)
			t.restart(j, timeMs, out)
			plan.Phase = rescalePlacing
			if j.Restore != nil {
				plan.Savepoint = j.Restore.Path
			}
		} else if all(func(s weirv1.TaskState) bool { return s == taskFinished }) {
			t.setState(j, jobFinished, "", timeMs, out)
		} else if j.State == jobCreated &&
			all(func(s weirv1.TaskState) bool { return s == taskRunning || s == taskFinished }) {
			t.setState(j, jobRunning, "", timeMs, out)
		}
	}
}

// restartBaseMs and restartMaxMs bound the exponential restart delay:
// 100 ms after the first failure, doubling with every failure that no
// completed checkpoint separates from the previous one, up to 30 s.
const (
	restartBaseMs = 100
	restartMaxMs  = 30_000
)

// RestartDelayMs is the delay before the n-th consecutive restart (n >= 1).
func RestartDelayMs(n int) int64 {
	d := int64(restartBaseMs)
	for i := 1; i < n && d < restartMaxMs; i++ {
		d *= 2
	}
	return min(d, restartMaxMs)
}

// failJob fails an active job: a restartable job goes RESTARTING (its
// tasks are cancelled, then RestartJob redeploys it), any other job, or an
// unrecoverable failure, FAILED.
func (t *jobTable) failJob(j *Job, reason string, unrecoverable bool, timeMs int64, out *[]JobTransition) {
	if !j.Restartable() || unrecoverable {
		t.setState(j, jobFailed, reason, timeMs, out)
		return
	}
	j.Restarts++
	j.FailuresSinceCheckpoint++
	j.RestartAt = timeMs + RestartDelayMs(j.FailuresSinceCheckpoint)
	j.LastFailure = reason
	if r := j.Rescale; r != nil && r.Phase == rescaleStopping {
		// The job restarts at the parallelism it has. (A job placing a
		// rescale has no tasks to fail; it keeps its plan.)
		r.Phase, r.Reason, r.EndMs = rescaleAbandoned, reason, timeMs
	}
	*out = append(*out, JobTransition{JobID: j.ID, From: j.State, To: jobRestarting, Reason: reason})
	j.State = jobRestarting
}

// restart makes the job's next attempt: its tasks wait for slots again and
// it restores from the latest completed checkpoint (or keeps restoring
// from the savepoint it was submitted with).
func (t *jobTable) restart(j *Job, timeMs int64, out *[]JobTransition) {
	j.Attempt++
	j.Deployed = false
	if c := j.LatestCheckpoint(); c != nil {
		j.Restore = c
	}
	resetTasks(j)
	// The wait for slots counts from the restart.
	j.WaitingSince = timeMs
	t.setState(j, jobCreated, "", timeMs, out)
}

// resetTasks gives the job's current attempt fresh tasks, waiting for
// slots, for its vertices.
func resetTasks(j *Job) {
	j.Tasks = make([][]Task, len(j.Vertices))
	for v, spec := range j.Vertices {
		j.Tasks[v] = make([]Task, spec.Parallelism)
		for i := range j.Tasks[v] {
			j.Tasks[v][i] = Task{Attempt: j.Attempt, State: taskScheduled}
		}
	}
}

func (t *jobTable) applyRestartJob(c RestartJob) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if j.State != jobRestarting || j.Attempt != c.Attempt {
		return nil, nil
	}
	for _, ts := range j.Tasks {
		for _, task := range ts {
			if !TerminalTask(task.State) {
				return nil, nil
			}
		}
	}
	var out []JobTransition
	t.restart(j, c.TimeMs, &out)
	return out, nil
}

func (t *jobTable) applyCompleteCheckpoint(c CompleteCheckpoint) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if j.CheckpointsDisposedMs != 0 {
		return nil, errorf(ErrJobTerminal, "job %s is %s and its checkpoints were disposed of", j.ID, JobStateName(j.State))
	}
	j.Checkpoints = append(j.Checkpoints, c.Checkpoint)
	j.CompletedCheckpoints++
	j.LastCheckpointID = max(j.LastCheckpointID, c.Checkpoint.ID)
	j.FailuresSinceCheckpoint = 0
	retained := j.Checkpointing.Retained
	if retained <= 0 {
		retained = 3
	}
	periodic := 0
	for _, cp := range j.Checkpoints {
		if !cp.Savepoint {
			periodic++
		}
	}
	kept := j.Checkpoints[:0]
	for _, cp := range j.Checkpoints {
		if !cp.Savepoint && periodic > retained {
			periodic--
			continue
		}
		kept = append(kept, cp)
	}
	j.Checkpoints = kept
	return nil, nil
}

func (t *jobTable) applyAbortCheckpoint(c AbortCheckpoint) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	j.FailedCheckpoints++
	j.LastCheckpointID = max(j.LastCheckpointID, c.CheckpointID)
	return nil, nil
}

func (t *jobTable) applyReserveCheckpoint(c ReserveCheckpoint) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if c.CheckpointID <= j.LastCheckpointID {
		return nil, errorf(ErrCheckpoint, "job %s: checkpoint %d is not above the last one used, %d", j.ID, c.CheckpointID, j.LastCheckpointID)
	}
	j.LastCheckpointID = c.CheckpointID
	return nil, nil
}

func (t *jobTable) applyBeginRescale(c BeginRescale) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if j.State != jobRunning {
		return nil, errorf(ErrJobNotRunning, "job %s is %s, not RUNNING", j.ID, JobStateName(j.State))
	}
	if j.Rescale.UnderWay() {
		return nil, errorf(ErrJobNotRunning, "job %s is already being rescaled", j.ID)
	}
	j.Rescale = &RescalePlan{Parallelism: c.Plan.Parallelism, Vertices: cloneVertices(c.Plan.Vertices),
		PreviousParallelism: j.Parallelism, PreviousVertices: cloneVertices(j.Vertices), Phase: rescaleStopping}
	return nil, nil
}

func (t *jobTable) applyEndRescale(c EndRescale) ([]JobTransition, error) {
	if j, ok := t.jobs[c.JobID]; ok && j.Rescale != nil && j.Rescale.Phase == rescaleStopping {
		j.Rescale = nil
	}
	return nil, nil
}

func (t *jobTable) applyDisposeCheckpoints(c DisposeCheckpoints) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if !TerminalJob(j.State) {
		return nil, errorf(ErrJobNotEnded, "job %s is %s: only an ended job's checkpoints can be disposed of "+
			"(cancel it, or stop it with a savepoint, first)", j.ID, JobStateName(j.State))
	}
	kept := j.Checkpoints[:0]
	for _, cp := range j.Checkpoints {
		if cp.Savepoint {
			kept = append(kept, cp)
		}
	}
	clear(j.Checkpoints[len(kept):])
	j.Checkpoints = kept
	j.CheckpointsDisposedMs = c.TimeMs
	return nil, nil
}

func (t *jobTable) applyFallBackRescale(c FallBackRescale) ([]JobTransition, error) {
	j, ok := t.jobs[c.JobID]
	if !ok {
		return nil, errorf(ErrJobNotFound, "job %s not found", c.JobID)
	}
	if !j.Pending() || c.Attempt != j.Attempt || j.Rescale == nil || j.Rescale.Phase != rescalePlacing {
		return nil, errorf(ErrJobNotPending, "job %s (%s, attempt %d) is not waiting to place a rescale in attempt %d",
			j.ID, JobStateName(j.State), j.Attempt, c.Attempt)
	}
	// The attempt keeps its number and its restore (the rescale's
	// savepoint); only its shape goes back.
	r := j.Rescale
	j.Parallelism = r.PreviousParallelism
	j.Vertices = cloneVertices(r.PreviousVertices)
	resetTasks(j)
	r.Phase, r.Reason, r.EndMs = rescaleFellBack, c.Reason, c.TimeMs
	return nil, nil
}

// setState moves j to state to. A terminal state sets the end time, and
// tasks that were never placed become CANCELED.
func (t *jobTable) setState(j *Job, to weirv1.JobState, reason string, timeMs int64, out *[]JobTransition) {
	if j.State == to {
		return
	}
	*out = append(*out, JobTransition{JobID: j.ID, From: j.State, To: to, Reason: reason})
	j.State = to
	if reason != "" && j.Failure == "" {
		j.Failure = reason
	}
	if TerminalJob(to) {
		j.EndTime = timeMs
		for v := range j.Tasks {
			for i := range j.Tasks[v] {
				if task := &j.Tasks[v][i]; task.TaskManagerID == "" && !TerminalTask(task.State) {
					task.State = taskCanceled
				}
			}
		}
	}
}
