package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/leader"
	"github.com/weirstream/weir/internal/rpcopts"
	"github.com/weirstream/weir/internal/tlsconf"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// deploy sends DeployTask for every task of a freshly placed job, all at
// once: the data exchange waits for its consumers, so order does not matter.
func (jm *JobManager) deploy(job Job) {
	jm.goAsync(func(ctx context.Context) {
		restore, err := jm.restoreRequests(ctx, &job)
		if err != nil {
			reason := fmt.Sprintf("cannot restore from %s: %v", job.Restore.Path, err)
			_, _ = jm.apply(FailJob{JobID: job.ID, Reason: reason, Unrecoverable: unrecoverableRestore(err),
				TimeMs: time.Now().UnixMilli()})
			return
		}
		if job.Restore != nil {
			jm.log.Info("job restoring", "job_id", job.ID, "checkpoint", job.Restore.ID, "location", job.Restore.Path,
				"attempt", job.Attempt)
		}
		for v, ts := range job.Tasks {
			for i := range ts {
				var r *weirv1.TaskRestore
				if restore != nil {
					r = restore[v]
				}
				jm.goAsync(func(ctx context.Context) { jm.deployTask(ctx, job, v, i, r) })
			}
		}
	})
}

// deployRequest builds the DeployTask request of subtask i of vertex v.
func deployRequest(job Job, v, i int, restore *weirv1.TaskRestore) *weirv1.DeployTaskRequest {
	t := job.Tasks[v][i]
	req := &weirv1.DeployTaskRequest{
		Task:          taskID(job.ID, v, i, t.Attempt),
		JobName:       job.Name,
		Parallelism:   int32(job.Parallelism),
		Params:        job.Params,
		Slot:          int32(t.Slot),
		Restore:       restore,
		Checkpointing: job.Checkpointing.IntervalMs > 0,
		StateBackend:  job.StateBackend,
		TimerService:  job.TimerService,
		Incremental:   job.Checkpointing.Incremental,
	}
	for _, op := range job.Vertices[v].Operators {
		req.OperatorUids = append(req.OperatorUids, op.UID)
	}
	req.MaxParallelism = int32(job.MaxParallelism)
	for k, vs := range job.Vertices {
		req.VertexParallelism = append(req.VertexParallelism, int32(vs.Parallelism))
		if vs.InputPartitioning == "" {
			req.SourceVertices = append(req.SourceVertices, int32(k))
		}
	}
	for _, c := range job.Vertices[v].Outputs {
		loc := &weirv1.OutputLocations{ConsumerVertexId: int32(c)}
		for _, ct := range job.Tasks[c] {
			loc.Addresses = append(loc.Addresses, ct.Address)
		}
		req.Outputs = append(req.Outputs, loc)
	}
	return req
}

func taskID(jobID string, v, i, attempt int) *weirv1.TaskID {
	return &weirv1.TaskID{JobId: jobID, VertexId: int32(v), Subtask: int32(i), Attempt: int32(attempt)}
}

func (jm *JobManager) deployTask(ctx context.Context, job Job, v, i int, restore *weirv1.TaskRestore) {
	t := job.Tasks[v][i]
	log := jm.log.With("job_id", job.ID, "vertex", job.Vertices[v].Name, "subtask", i,
		"attempt", t.Attempt, "task_manager_id", t.TaskManagerID)
	err := jm.callTaskManager(ctx, t.Address, func(ctx context.Context, c weirv1.TaskManagerClient) error {
		_, err := c.DeployTask(ctx, deployRequest(job, v, i, restore))
		return err
	})
	if ctx.Err() != nil {
		return // shutting down
	}
	if err != nil {
		log.Warn("deploying task failed", "err", err)
		// A TaskManager whose binary lacks the job, or builds it otherwise,
		// answers Unimplemented: a restart would fail the same way.
		_, _ = jm.apply(UpdateTask{JobID: job.ID, Vertex: v, Subtask: i, Attempt: t.Attempt,
			TaskManagerID: t.TaskManagerID, State: taskFailed, Unrecoverable: status.Code(err) == codes.Unimplemented,
			Failure: fmt.Sprintf("deployment to %s failed: %s", t.Address, status.Convert(err).Message()), TimeMs: time.Now().UnixMilli()})
		return
	}
	log.Debug("task deployed")
	// The job may have stopped while the task was deploying, and its
	// CancelTask may have overtaken the deployment: cancel again.
	if cur, err := jm.store.Job(job.ID); err == nil && !cur.Active() {
		err := jm.callTaskManager(ctx, t.Address, func(ctx context.Context, c weirv1.TaskManagerClient) error {
			_, err := c.CancelTask(ctx, &weirv1.CancelTaskRequest{Task: taskID(job.ID, v, i, t.Attempt)})
			return err
		})
		log.Debug("task deployed after its job stopped; cancelled it", "err", err)
	}
}

// cancelTask asks a task's TaskManager to cancel it; the TaskManager then
// reports the task's final state. If the TaskManager cannot be reached or
// does not know the task, the task counts as CANCELED.
func (jm *JobManager) cancelTask(ctx context.Context, job Job, v, i int, t Task) {
	err := jm.callTaskManager(ctx, t.Address, func(ctx context.Context, c weirv1.TaskManagerClient) error {
		_, err := c.CancelTask(ctx, &weirv1.CancelTaskRequest{Task: taskID(job.ID, v, i, t.Attempt)})
		return err
	})
	if err == nil || ctx.Err() != nil {
		return
	}
	// NotFound: the task ended on its own meanwhile (an upstream task was
	// canceled first, say) and its report is on its way.
	level := slog.LevelInfo
	if status.Code(err) == codes.NotFound {
		level = slog.LevelDebug
	}
	jm.log.Log(ctx, level, "CancelTask failed; counting the task as canceled", "job_id", job.ID,
		"vertex", job.Vertices[v].Name, "subtask", i, "task_manager_id", t.TaskManagerID, "err", err)
	_, _ = jm.apply(UpdateTask{JobID: job.ID, Vertex: v, Subtask: i, Attempt: t.Attempt,
		TaskManagerID: t.TaskManagerID, State: taskCanceled,
		Failure: fmt.Sprintf("counted as canceled: CancelTask failed: %v", err), TimeMs: time.Now().UnixMilli()})
}

// callTaskManager calls the TaskManager at addr with a deadline.
// Every call carries the leader's term, by which TaskManagers fence off a
// deposed leader.
func (jm *JobManager) callTaskManager(ctx context.Context, addr string, call func(context.Context, weirv1.TaskManagerClient) error) error {
	c, err := jm.client(addr)
	if err != nil {
		return err
	}
	jm.mu.Lock()
	l := jm.lead
	jm.mu.Unlock()
	if l == nil {
		return fmt.Errorf("calling TaskManager %s: this JobManager does not lead", addr)
	}
	ctx, cancel := context.WithTimeout(leader.WithTerm(ctx, l.term), rpcTimeout)
	defer cancel()
	return call(ctx, c)
}

// client returns a client of the TaskManager at addr over a cached
// connection. grpc.NewClient does no I/O, so this is safe under jm.mu.
func (jm *JobManager) client(addr string) (weirv1.TaskManagerClient, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.closed {
		return nil, errors.New("JobManager is shutting down")
	}
	conn, ok := jm.conns[addr]
	if !ok {
		var err error
		conn, err = grpc.NewClient(addr, append(rpcopts.DialOptions(), tlsconf.DialOption(jm.cfg.TLS))...)
		if err != nil {
			return nil, fmt.Errorf("connecting to TaskManager %s: %w", addr, err)
		}
		jm.conns[addr] = conn
	}
	return weirv1.NewTaskManagerClient(conn), nil
}

// dropConn closes the connection to addr unless a registered TaskManager
// still uses it.
func (jm *JobManager) dropConn(addr string) {
	jm.mu.Lock()
	conn, ok := jm.conns[addr]
	if ok && !jm.tms.usesAddress(addr) {
		delete(jm.conns, addr)
	} else {
		ok = false
	}
	jm.mu.Unlock()
	if ok {
		_ = conn.Close()
	}
}

// slotsText lists a job's slots for logs, by subtask index: "tm-1/0 tm-2/0".
func slotsText(j Job) string {
	slots := make([]string, j.SlotsNeeded())
	for _, ts := range j.Tasks {
		for i, t := range ts {
			slots[i] = fmt.Sprintf("%s/%d", t.TaskManagerID, t.Slot)
		}
	}
	return strings.Join(slots, " ")
}
