package jobmanager

import (
	"slices"
	"time"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// The TaskManager API's logic: registration, slot offers, heartbeats and
// task state updates.

// registerTaskManager records a TaskManager. A known ID is a restarted
// TaskManager: the old incarnation is lost, failing the jobs that had tasks
// on it.
func (jm *JobManager) registerTaskManager(id, address string, slots int, registered []string) error {
	switch {
	case id == "":
		return errorf(ErrInvalidRequest, "register: empty TaskManager ID")
	case address == "":
		return errorf(ErrInvalidRequest, "register: TaskManager %s has no address", id)
	case slots < 1:
		return errorf(ErrInvalidRequest, "register: TaskManager %s offers %d slots, want at least 1", id, slots)
	}
	now := time.Now()
	jm.mu.Lock()
	_, old := jm.tms.register(id, address, slots, now)
	var lost lostTaskManager
	if old != nil {
		lost = jm.loseLocked(old, "it registered again", now)
	}
	jm.mu.Unlock()
	if old != nil {
		jm.finishLost(lost)
	}
	jm.log.Info("TaskManager registered", "task_manager_id", id, "address", address, "slots", slots)
	if missing, extra := jobsDiff(jobs.Names(), registered); len(missing)+len(extra) > 0 {
		// Deployments of the missing jobs will fail on it; say why now.
		jm.log.Warn("TaskManager runs a binary with other jobs registered than the JobManager's; "+
			"every process of a cluster must run the same binary", "task_manager_id", id,
			"jobs_missing", missing, "jobs_extra", extra)
	}
	return nil
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

// clusterStatus reports this JobManager's view of the group and, on the
// leader, the TaskManagers with their free slots.
func (jm *JobManager) clusterStatus() *weirv1.ClusterStatus {
	st := &weirv1.ClusterStatus{MemberId: jm.id, RaftState: "leader", LeaderId: jm.id,
		LeaderAddress: jm.cfg.Advertise, ClientAddress: jm.cfg.Advertise,
		Members: []*weirv1.ClusterMember{{Id: jm.id, ClientAddress: jm.cfg.Advertise, Suffrage: "voter"}}}
	all := jm.store.Jobs()
	jm.mu.Lock()
	offered := jm.tms.offeredSlots()
	slots := map[string]int{}
	for _, tm := range jm.tms.tms {
		slots[tm.id] = tm.slots
	}
	jm.mu.Unlock()
	for _, free := range FreeSlots(offered, all) {
		st.TaskManagers = append(st.TaskManagers, &weirv1.ClusterTaskManager{Id: free.TaskManagerID, Address: free.Address,
			Slots: int32(slots[free.TaskManagerID]), FreeSlots: int32(len(free.Slots))})
	}
	return st
}
