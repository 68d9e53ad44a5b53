package jobmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// Config configures a JobManager. Zero values take the defaults.
type Config struct {
	// HeartbeatInterval is told to TaskManagers at registration; 0 means 1s.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long a TaskManager may stay silent before it
	// is lost; 0 means 5s.
	HeartbeatTimeout time.Duration
	// SlotRequestTimeout is how long a first submission waits for enough
	// free slots before it fails; 0 means 30s. Restarted and rescaled jobs
	// wait until slots return.
	SlotRequestTimeout time.Duration
	// Logger receives the JobManager's logs; nil means slog.Default().
	Logger *slog.Logger
	// CheckpointStorage is the URL checkpoints and savepoints are stored
	// under (s3://bucket/prefix or a directory); empty means a directory
	// in the system's temp dir, which only works when every process
	// shares the filesystem.
	CheckpointStorage string
	// SavepointDir is where savepoints go when a request names no target
	// (Flink's state.savepoints.dir); empty means
	// <CheckpointStorage>/savepoints. Retention never deletes savepoints.
	SavepointDir string
	// Storage holds the S3 endpoint and credentials.
	Storage storage.Options
	// Advertise is the client address (host:port) the CLI and TaskManagers
	// reach this JobManager at; members of a raft group tell each other
	// theirs, so a follower can send callers to the leader.
	Advertise string
	// Etcd, when set, is the etcd the leader publishes Advertise in while
	// it leads (leader.Publish, key /weir/<ClusterID>/leader), for the
	// TaskManagers and the CLI to find it. The caller owns the client and
	// closes it after Run returns. Nil: no etcd.
	Etcd *clientv3.Client
	// ClusterID namespaces the cluster's keys in etcd; empty means
	// "default" (leader.DefaultClusterID).
	ClusterID string
}

// rpcTimeout bounds every call the JobManager makes to a TaskManager.
const rpcTimeout = 10 * time.Second

// JobManager is one JobManager process's logic. Create it with New, install
// its gRPC service with Register and run its background loops with Run.
type JobManager struct {
	cfg   Config
	log   *slog.Logger
	id    string
	store Store

	kick chan struct{} // wakes the scheduler; buffered, never blocks

	// ctx is the parent of every call to a TaskManager; it ends with Run.
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup // goroutines started by goAsync

	// mu guards the volatile state below. Store writes are made under mu
	// too, so that registry changes and the commands that follow from
	// them are atomic to the scheduler. Never hold mu during an RPC.
	mu         sync.Mutex
	running    bool
	closed     bool
	tms        *registry
	metrics    map[taskKey]*weirv1.TaskMetrics // latest per task attempt; never mutated
	cancelSent map[taskKey]bool
	conns      map[string]*grpc.ClientConn // TaskManager clients by address

	coordinators map[string]*coordinator           // by job ID, while the job runs
	metadata     map[string]*statebackend.Metadata // _metadata read, by checkpoint path
	// waitLogged holds, per job waiting for slots, the attempt whose wait
	// was logged, so a wait is logged once and not every pass.
	waitLogged map[string]int
}

// taskKey identifies one task attempt.
type taskKey struct {
	jobID                    string
	vertex, subtask, attempt int
}

// New returns a JobManager with an in-memory store.
func New(cfg Config) *JobManager {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = 5 * time.Second
	}
	if cfg.SlotRequestTimeout <= 0 {
		cfg.SlotRequestTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CheckpointStorage == "" {
		cfg.CheckpointStorage = DefaultCheckpointStorage()
	}
	ctx, stop := context.WithCancel(context.Background())
	id := newID()
	return &JobManager{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "jobmanager", "job_manager_id", id),
		id:         id,
		store:      NewMemStore(),
		kick:       make(chan struct{}, 1),
		ctx:        ctx,
		stop:       stop,
		tms:        newRegistry(),
		metrics:    map[taskKey]*weirv1.TaskMetrics{},
		cancelSent: map[taskKey]bool{},
		conns:      map[string]*grpc.ClientConn{},

		coordinators: map[string]*coordinator{},
		metadata:     map[string]*statebackend.Metadata{},
		waitLogged:   map[string]int{},
	}
}

// DefaultCheckpointStorage is a directory under the system's temp dir.
func DefaultCheckpointStorage() string {
	return "file://" + filepath.Join(os.TempDir(), "weir", "checkpoints")
}

// DefaultSavepointDir is where `weir local` puts savepoints when its
// checkpoints go to a temporary directory: beside the default checkpoint
// storage, so they outlive the run.
func DefaultSavepointDir() string {
	return "file://" + filepath.Join(os.TempDir(), "weir", "savepoints")
}

// ID is the JobManager's ID, told to TaskManagers at registration.
func (jm *JobManager) ID() string { return jm.id }

// Run runs the background loops — heartbeat timeouts and the scheduling of
// pending jobs — until ctx ends. On return it has stopped every call to
// TaskManagers and closed their connections. It returns nil when ctx ends
// and may be called once.
func (jm *JobManager) Run(ctx context.Context) error {
	jm.mu.Lock()
	if jm.running || jm.closed {
		jm.mu.Unlock()
		return errors.New("jobmanager: Run called twice")
	}
	jm.running = true
	jm.mu.Unlock()
	defer jm.shutdown()

	tick := time.NewTicker(jm.tickInterval())
	defer tick.Stop()
	jm.log.Info("JobManager running",
		"heartbeat_interval", jm.cfg.HeartbeatInterval, "heartbeat_timeout", jm.cfg.HeartbeatTimeout,
		"slot_request_timeout", jm.cfg.SlotRequestTimeout)
	jm.schedule(time.Now())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-jm.kick:
			jm.schedule(time.Now())
		case <-tick.C:
			now := time.Now()
			jm.expireTaskManagers(now)
			jm.schedule(now)
		}
	}
}

// tickInterval is how often Run checks heartbeats and slot request
// timeouts: a tenth of the shorter timeout, within [10ms, 1s].
func (jm *JobManager) tickInterval() time.Duration {
	d := min(jm.cfg.HeartbeatTimeout, jm.cfg.SlotRequestTimeout) / 10
	return min(max(d, 10*time.Millisecond), time.Second)
}

func (jm *JobManager) shutdown() {
	jm.mu.Lock()
	jm.closed = true
	jm.mu.Unlock()
	jm.stop()
	jm.wg.Wait()
	jm.mu.Lock()
	conns := jm.conns
	jm.conns = map[string]*grpc.ClientConn{}
	jm.mu.Unlock()
	for addr, c := range conns {
		if err := c.Close(); err != nil {
			jm.log.Debug("closing TaskManager connection", "address", addr, "err", err)
		}
	}
	jm.log.Info("JobManager stopped")
}

// goAsync runs f on a goroutine owned by Run, unless Run has ended.
func (jm *JobManager) goAsync(f func(ctx context.Context)) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.closed {
		return
	}
	jm.wg.Add(1)
	go func() {
		defer jm.wg.Done()
		f(jm.ctx)
	}()
}

// wake asks the scheduler for a pass.
func (jm *JobManager) wake() {
	select {
	case jm.kick <- struct{}{}:
	default:
	}
}

// apply applies cmd to the store and carries out what follows. The caller
// MUST NOT hold jm.mu.
func (jm *JobManager) apply(cmd Command) ([]JobTransition, error) {
	jm.mu.Lock()
	trans, err := jm.store.Apply(cmd)
	jm.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var ids []string
	switch c := cmd.(type) {
	case UpdateTask:
		ids = append(ids, c.JobID)
	case CancelJob:
		ids = append(ids, c.JobID)
	case FailJob:
		ids = append(ids, c.JobID)
	}
	jm.afterApply(trans, ids...)
	return trans, nil
}

// afterApply logs the transitions and reconciles the jobs they (and ids)
// touched: tasks of stopped jobs are cancelled, freed slots are offered to
// pending jobs. The caller MUST NOT hold jm.mu.
func (jm *JobManager) afterApply(trans []JobTransition, ids ...string) {
	for _, t := range trans {
		if t.From == weirv1.JobState_JOB_STATE_UNSPECIFIED {
			continue // submissions are logged by submitJob
		}
		attrs := []any{"job_id", t.JobID, "from", JobStateName(t.From), "to", JobStateName(t.To)}
		if t.To == jobRestarting {
			if j, err := jm.store.Job(t.JobID); err == nil {
				delay := time.Until(time.UnixMilli(j.RestartAt))
				jm.log.Warn("job state changed", append(attrs, "reason", t.Reason, "restart_in", delay)...)
				time.AfterFunc(max(delay, 0), jm.wake)
			}
		} else if t.To == jobFailed {
			jm.log.Warn("job state changed", append(attrs, "reason", t.Reason)...)
		} else {
			jm.log.Info("job state changed", attrs...)
		}
		ids = append(ids, t.JobID)
	}
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		jm.reconcile(id)
	}
	jm.wake()
}

// reconcile sends CancelTask, once, to every non-terminal task of a job
// that no longer runs.
func (jm *JobManager) reconcile(jobID string) {
	job, err := jm.store.Job(jobID)
	if err != nil || job.Active() {
		return
	}
	type target struct {
		vertex, subtask int
		task            Task
	}
	var cancel []target
	allTerminal := true
	jm.mu.Lock()
	for v, ts := range job.Tasks {
		for i, t := range ts {
			k := taskKey{jobID: jobID, vertex: v, subtask: i, attempt: t.Attempt}
			if TerminalTask(t.State) {
				continue
			}
			allTerminal = false
			if t.TaskManagerID == "" || jm.cancelSent[k] {
				continue
			}
			jm.cancelSent[k] = true
			cancel = append(cancel, target{v, i, t})
		}
	}
	if allTerminal {
		for k := range jm.cancelSent {
			if k.jobID == jobID {
				delete(jm.cancelSent, k)
			}
		}
	}
	jm.mu.Unlock()
	for _, c := range cancel {
		jm.goAsync(func(ctx context.Context) { jm.cancelTask(ctx, job, c.vertex, c.subtask, c.task) })
	}
}

// schedule runs one scheduling pass: pending jobs that fit are placed and
// deployed, those that waited too long fail.
func (jm *JobManager) schedule(now time.Time) {
	nowMs := now.UnixMilli()
	var deploy []Job
	var trans []JobTransition
	var expired []string

	jm.mu.Lock()
	all := jm.store.Jobs()
	restarted := false
	for _, j := range all {
		if j.State != jobRestarting || j.RestartAt > nowMs {
			continue
		}
		tr, err := jm.store.Apply(RestartJob{JobID: j.ID, Attempt: j.Attempt, TimeMs: nowMs})
		if err != nil {
			jm.log.Error("restarting job", "job_id", j.ID, "err", err)
			continue
		}
		if len(tr) > 0 {
			jm.log.Info("restarting job", "job_id", j.ID, "restarts", j.Restarts, "attempt", j.Attempt+1,
				"after", j.LastFailure)
			trans = append(trans, tr...)
			restarted = true
		}
	}
	if restarted {
		all = jm.store.Jobs()
	}
	byID := map[string]*Job{}
	var pending []PendingJob
	for k := len(all) - 1; k >= 0; k-- { // oldest first
		if j := &all[k]; j.Pending() {
			byID[j.ID] = j
			p := PendingJob{JobID: j.ID, SlotsNeeded: j.SlotsNeeded(),
				Submitted: time.UnixMilli(j.WaitingSince), MayExpire: j.SlotRequestExpires()}
			if r := j.Rescale; r != nil && r.Phase == rescalePlacing {
				p.FallbackSlots = slotsNeeded(r.PreviousVertices)
			}
			pending = append(pending, p)
		}
	}
	if len(pending) == 0 {
		clear(jm.waitLogged)
		jm.mu.Unlock()
		if len(trans) > 0 {
			jm.afterApply(trans)
		}
		return
	}
	d := Schedule(now, jm.cfg.SlotRequestTimeout, pending, FreeSlots(jm.tms.offeredSlots(), all))
	for _, p := range d.Placements {
		cmd := DeployJob{JobID: p.JobID, Attempt: byID[p.JobID].Attempt, Slots: p.Slots, TimeMs: nowMs}
		if _, err := jm.store.Apply(cmd); err != nil {
			jm.log.Error("placing job", "job_id", p.JobID, "err", err)
			continue
		}
		if j, err := jm.store.Job(p.JobID); err == nil {
			deploy = append(deploy, j)
		}
	}
	for _, f := range d.Fallbacks {
		j := byID[f.JobID]
		reason := fmt.Sprintf("parallelism %d cannot be placed after the stop (%s); back at parallelism %d from savepoint %s",
			j.Parallelism, f.Reason, j.Rescale.PreviousParallelism, j.Rescale.Savepoint)
		if _, err := jm.store.Apply(FallBackRescale{JobID: f.JobID, Attempt: j.Attempt, Reason: reason, TimeMs: nowMs}); err != nil {
			jm.log.Error("falling back from a rescale", "job_id", f.JobID, "err", err)
			continue
		}
		jm.log.Warn("rescale fell back", "job_id", j.ID, "job", j.Name, "reason", reason)
		if _, err := jm.store.Apply(DeployJob{JobID: f.JobID, Attempt: j.Attempt, Slots: f.Slots, TimeMs: nowMs}); err != nil {
			jm.log.Error("placing job", "job_id", f.JobID, "err", err)
			continue
		}
		if j, err := jm.store.Job(f.JobID); err == nil {
			deploy = append(deploy, j)
		}
	}
	type waiting struct {
		Wait
		job *Job
	}
	var newWaits []waiting
	logged := jm.waitLogged
	jm.waitLogged = map[string]int{}
	for _, w := range d.Waiting {
		j := byID[w.JobID]
		if a, ok := logged[w.JobID]; !ok || a != j.Attempt {
			newWaits = append(newWaits, waiting{w, j})
		}
		jm.waitLogged[w.JobID] = j.Attempt
	}
	for _, e := range d.Expired {
		// Waiting longer for slots is the user's call, not a restart's.
		tr, err := jm.store.Apply(FailJob{JobID: e.JobID, Reason: e.Reason, Unrecoverable: true, TimeMs: nowMs})
		if err != nil {
			jm.log.Error("failing job", "job_id", e.JobID, "err", err)
			continue
		}
		trans = append(trans, tr...)
		expired = append(expired, e.JobID)
	}
	jm.mu.Unlock()

	for _, w := range newWaits {
		until := "until slots return"
		if w.job.SlotRequestExpires() {
			until = "at most " + jm.cfg.SlotRequestTimeout.String()
		}
		jm.log.Info("job waiting for slots", "job_id", w.JobID, "job", w.job.Name, "attempt", w.job.Attempt,
			"slots_needed", w.SlotsNeeded, "slots_free", w.SlotsFree, "waits", until)
	}
	for _, j := range deploy {
		jm.log.Info("job scheduled", "job_id", j.ID, "job", j.Name, "slots", slotsText(j))
		jm.deploy(j)
	}
	jm.afterApply(trans, expired...)
}

// lostTaskManager is what loseLocked did, for finishLost to log and follow.
type lostTaskManager struct {
	tm      *taskManager
	reason  string
	stopped bool // it shut down cleanly, it did not crash
	trans   []JobTransition
}

// loseLocked fails the tasks of a TaskManager already removed from the
// registry. The caller MUST hold jm.mu and call finishLost after releasing
// it.
func (jm *JobManager) loseLocked(tm *taskManager, cause string, now time.Time) lostTaskManager {
	return jm.removeLocked(tm, "TaskManager "+tm.id+" ("+tm.address+") lost: "+cause, false, now)
}

// removeLocked applies the TaskManagerLost command for tm: its tasks of
// active jobs fail those jobs, whether it crashed or stopped.
func (jm *JobManager) removeLocked(tm *taskManager, reason string, stopped bool, now time.Time) lostTaskManager {
	trans, err := jm.store.Apply(TaskManagerLost{TaskManagerID: tm.id, Reason: reason, TimeMs: now.UnixMilli()})
	if err != nil {
		jm.log.Error("applying TaskManager loss", "task_manager_id", tm.id, "err", err)
	}
	return lostTaskManager{tm: tm, reason: reason, stopped: stopped, trans: trans}
}

func (jm *JobManager) finishLost(l lostTaskManager) {
	if l.stopped {
		// A clean shutdown is no fault of the TaskManager's, even when it
		// fails the jobs it ran (their transitions say so).
		failed := 0
		for _, t := range l.trans {
			if t.To == jobRestarting || t.To == jobFailed {
				failed++
			}
		}
		jm.log.Info("TaskManager stopped", "task_manager_id", l.tm.id, "address", l.tm.address, "jobs_failed", failed)
	} else {
		jm.log.Warn("TaskManager lost", "task_manager_id", l.tm.id, "address", l.tm.address, "reason", l.reason)
	}
	jm.dropConn(l.tm.address)
	jm.afterApply(l.trans)
}

// expireTaskManagers loses the TaskManagers silent for too long.
func (jm *JobManager) expireTaskManagers(now time.Time) {
	jm.mu.Lock()
	var lost []lostTaskManager
	for _, tm := range jm.tms.expired(now, jm.cfg.HeartbeatTimeout) {
		lost = append(lost, jm.loseLocked(tm, "no heartbeat for "+jm.cfg.HeartbeatTimeout.String(), now))
	}
	jm.mu.Unlock()
	for _, l := range lost {
		jm.finishLost(l)
	}
}

// streamBroken loses the TaskManager whose heartbeat stream broke, if it is
// still the incarnation that opened the stream.
func (jm *JobManager) streamBroken(id string, incarnation uint64) {
	jm.mu.Lock()
	if jm.closed {
		jm.mu.Unlock()
		return
	}
	tm, ok := jm.tms.remove(id, incarnation)
	var l lostTaskManager
	if ok {
		l = jm.loseLocked(tm, "heartbeat stream broken", time.Now())
	}
	jm.mu.Unlock()
	if ok {
		jm.finishLost(l)
	}
}

// taskManagerStopped removes a TaskManager that said it is shutting down
// (if it is still the incarnation that said so).
func (jm *JobManager) taskManagerStopped(id string, incarnation uint64) {
	jm.mu.Lock()
	tm, ok := jm.tms.remove(id, incarnation)
	var l lostTaskManager
	if ok {
		l = jm.removeLocked(tm, "TaskManager "+tm.id+" ("+tm.address+") stopped", true, time.Now())
	}
	jm.mu.Unlock()
	if ok {
		jm.finishLost(l)
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
