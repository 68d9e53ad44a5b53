package jobmanager

import (
	"context"
	"slices"
	"time"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// The TaskManager API's logic: registration, slot offers, heartbeats and
// task state updates.

// registerTaskManager records a TaskManager and reconciles the tasks it
// says it runs with the store: tasks of the jobs' current attempts placed on
// it are adopted as they run (a new leader takes over without restarting
// them); the TaskManager cancels the others itself. Tasks the store has on
// it that it no longer runs (it restarted) fail, and their jobs restart.
// It returns the adopted tasks.
func (jm *JobManager) registerTaskManager(id, address string, slots int, registered []string, running []*weirv1.RunningTask) ([]*weirv1.TaskID, error) {
	switch {
	case id == "":
		return nil, errorf(ErrInvalidRequest, "register: empty TaskManager ID")
	case address == "":
		return nil, errorf(ErrInvalidRequest, "register: TaskManager %s has no address", id)
	case slots < 1:
		return nil, errorf(ErrInvalidRequest, "register: TaskManager %s offers %d slots, want at least 1", id, slots)
	}
	jm.mu.Lock()
	jm.tms.register(id, address, slots, time.Now())
	jm.mu.Unlock()
	adopted, updates := reconcileRegistration(jm.store.Jobs(), id, running, time.Now().UnixMilli())
	for _, u := range updates {
		if _, err := jm.apply(u); err != nil {
			return nil, err
		}
	}
	jm.log.Info("TaskManager registered", "task_manager_id", id, "address", address, "slots", slots,
		"tasks_adopted", len(adopted), "tasks_reported", len(running))
	if missing, extra := jobsDiff(jobs.Names(), registered); len(missing)+len(extra) > 0 {
		// Deployments of the missing jobs will fail on it; say why now.
		jm.log.Warn("TaskManager runs a binary with other jobs registered than the JobManager's; "+
			"every process of a cluster must run the same binary", "task_manager_id", id,
			"jobs_missing", missing, "jobs_extra", extra)
	}
	jm.renotify(adopted)
	return adopted, nil
}

// reconcileRegistration decides, from the jobs in the store, which tasks a
// registering TaskManager keeps (those of a current attempt the store
// places on it and holds as not ended) and what the store learns: adopted
// tasks that run while the store still says DEPLOYING are RUNNING; tasks
// the store places on it that it does not report have failed.
func reconcileRegistration(all []Job, tmID string, running []*weirv1.RunningTask, nowMs int64) ([]*weirv1.TaskID, []UpdateTask) {
	reported := map[taskKey]weirv1.TaskState{}
	for _, r := range running {
		id := r.GetTask()
		reported[taskKey{jobID: id.GetJobId(), vertex: int(id.GetVertexId()), subtask: int(id.GetSubtask()),
			attempt: int(id.GetAttempt())}] = r.GetState()
	}
	var adopted []*weirv1.TaskID
	var updates []UpdateTask
	for _, j := range all {
		if !j.Active() && j.State != jobCanceling {
			continue
		}
		for v, ts := range j.Tasks {
			for i, t := range ts {
				if t.TaskManagerID != tmID || TerminalTask(t.State) {
					continue
				}
				k := taskKey{jobID: j.ID, vertex: v, subtask: i, attempt: t.Attempt}
				state, ok := reported[k]
				switch {
				case !ok:
					updates = append(updates, UpdateTask{JobID: j.ID, Vertex: v, Subtask: i, Attempt: t.Attempt,
						TaskManagerID: tmID, State: taskFailed, TimeMs: nowMs,
						Failure: "TaskManager " + tmID + " registered again without this task: it restarted and lost it"})
				case j.Active():
					adopted = append(adopted, taskID(j.ID, v, i, t.Attempt))
					if state == taskRunning && t.State == taskDeploying {
						updates = append(updates, UpdateTask{JobID: j.ID, Vertex: v, Subtask: i, Attempt: t.Attempt,
							TaskManagerID: tmID, State: taskRunning, TimeMs: nowMs})
					}
				}
				// A task of a CANCELING job is not adopted: the
				// TaskManager cancels it and reports it CANCELED.
			}
		}
	}
	return adopted, updates
}

// renotify tells adopted tasks, again, the latest checkpoint of their job
// that completed: the leader that completed it may have died before every
// task heard, and sinks commit on that word. Notifying twice is harmless.
func (jm *JobManager) renotify(adopted []*weirv1.TaskID) {
	for _, t := range adopted {
		job, err := jm.store.Job(t.GetJobId())
		if err != nil {
			continue
		}
		latest := job.LatestCheckpoint()
		v, i := int(t.GetVertexId()), int(t.GetSubtask())
		if latest == nil || v >= len(job.Tasks) || i >= len(job.Tasks[v]) {
			continue
		}
		addr := job.Tasks[v][i].Address
		req := &weirv1.NotifyCheckpointRequest{Task: t, CheckpointId: latest.ID}
		jm.goAsync(func(ctx context.Context) {
			err := jm.callTaskManager(ctx, addr, func(ctx context.Context, c weirv1.TaskManagerClient) error {
				_, err := c.NotifyCheckpoint(ctx, req)
				return err
			})
			if err != nil && ctx.Err() == nil {
				jm.log.Debug("notifying an adopted task of the latest checkpoint", "job_id", t.GetJobId(), "err", err)
			}
		})
	}
}

// jobsDiff lists the jobs of want that got lacks, and those got has beyond
// want. Both lists are sorted.
func jobsDiff(want, got []string) (missing, extra []string) {
	for _, j := range want {
		if !slices.Contains(got, j) {
			missing = append(missing, j)
		}
	}
	for _, j := range got {
		if !slices.Contains(want, j) {
			extra = append(extra, j)
		}
	}
	return missing, extra
}

// offerSlots makes slots of a TaskManager available and returns those
// accepted: indexes 0..slots-1.
func (jm *JobManager) offerSlots(id string, indexes []int) ([]int, error) {
	jm.mu.Lock()
	accepted, ok := jm.tms.offer(id, indexes)
	jm.mu.Unlock()
	if !ok {
		return nil, errorf(ErrTaskManagerNotFound, "TaskManager %s is not registered", id)
	}
	jm.log.Debug("slots offered", "task_manager_id", id, "accepted", accepted)
	jm.wake()
	return accepted, nil
}

// recordHeartbeat notes a heartbeat and its metrics. It returns false if the
// TaskManager is not registered, and otherwise its incarnation.
func (jm *JobManager) recordHeartbeat(hb *weirv1.TaskManagerHeartbeat) (uint64, bool) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	inc, ok := jm.tms.heartbeat(hb.GetTaskManagerId(), time.Now())
	if ok {
		jm.recordMetricsLocked(hb.GetTasks()...)
	}
	return inc, ok
}

// recordMetricsLocked keeps the latest metrics per task attempt. The
// messages are kept as they are and never modified. The caller MUST hold
// jm.mu.
func (jm *JobManager) recordMetricsLocked(ms ...*weirv1.TaskMetrics) {
	for _, m := range ms {
		if id := m.GetTask(); id != nil {
			jm.metrics[taskKey{jobID: id.GetJobId(), vertex: int(id.GetVertexId()),
				subtask: int(id.GetSubtask()), attempt: int(id.GetAttempt())}] = m
		}
	}
}

// updateTaskState records a task's state reported by its TaskManager, with
// its final metrics if any. Updates the JobManager cannot place are ignored.
func (jm *JobManager) updateTaskState(u *weirv1.TaskStateUpdate) error {
	id := u.GetTask()
	if id == nil || u.GetTaskManagerId() == "" {
		return errorf(ErrInvalidRequest, "task state update without task or TaskManager ID")
	}
	if m := u.GetMetrics(); m != nil {
		if m.GetTask() == nil {
			m.Task = id
		}
		jm.mu.Lock()
		jm.recordMetricsLocked(m)
		jm.mu.Unlock()
	}
	jm.log.Debug("task state", "job_id", id.GetJobId(), "vertex_id", id.GetVertexId(), "subtask", id.GetSubtask(),
		"attempt", id.GetAttempt(), "task_manager_id", u.GetTaskManagerId(), "state", TaskStateName(u.GetState()),
		"failure", u.GetFailure())
	_, err := jm.apply(UpdateTask{
		JobID:         id.GetJobId(),
		Vertex:        int(id.GetVertexId()),
		Subtask:       int(id.GetSubtask()),
		Attempt:       int(id.GetAttempt()),
		TaskManagerID: u.GetTaskManagerId(),
		State:         u.GetState(),
		Failure:       u.GetFailure(),
		Unrecoverable: u.GetUnrecoverable(),
		TimeMs:        time.Now().UnixMilli(),
	})
	return err
}
