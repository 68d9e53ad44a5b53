package jobmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/weirstream/weir/internal/auth"
	"github.com/weirstream/weir/internal/leader"
	"github.com/weirstream/weir/internal/tlsconf"
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
	// Raft is this JobManager's place in its raft group; the zero value is
	// a group of one in memory.
	Raft RaftConfig
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
	// TLS, when set, secures every connection of the JobManager with
	// mutual TLS: its gRPC server, its calls to TaskManagers and to the
	// leader, and raft between the members. Nil: plaintext.
	TLS *tlsconf.Config
	// Tokens, when set, are the bearer tokens client calls must carry
	// (JobManager --auth-tokens); nil lets every client in. See
	// ClientPolicy for the role each call needs.
	Tokens *auth.Tokens
	// Subjects give verified client-certificate subjects a role
	// (JobManager --auth-subject); with Tokens nil they alone turn
	// authentication on.
	Subjects map[string]auth.Role
	// Limits bound the jobs, their parallelism and their parameters; the
	// zero value takes the defaults.
	Limits Limits
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

	node *raftNode

	kick chan struct{} // wakes the scheduler; buffered, never blocks

	// mu guards the volatile state below. It is never held during an RPC
	// or a store write (which is a raft round trip).
	mu      sync.Mutex
	running bool
	closed  bool
	// lead is the current term of leadership, nil while this member does
	// not lead. Everything that acts on the cluster runs under its context.
	lead       *leadership
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

// leadership is one term of leading the group. Its context is the parent
// of every leader-only loop and of every call to a TaskManager; it ends the
// moment leadership is lost.
type leadership struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines started by goAsync in this term
	term   uint64
	since  time.Time
	// ready is closed once the leader has caught up with the log and
	// serves calls.
	ready chan struct{}
}

// New returns a JobManager and starts its raft member (a group of one in
// memory unless cfg.Raft says otherwise). Call Run next.
func New(cfg Config) (*JobManager, error) {
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
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.CheckpointStorage == "" {
		cfg.CheckpointStorage = DefaultCheckpointStorage()
	}
	id := cfg.Raft.ID
	if id == "" {
		id = newID()
		cfg.Raft.ID = id
	}
	log := cfg.Logger.With("component", "jobmanager", "job_manager_id", id)
	node, err := startRaft(cfg.Raft, cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	return &JobManager{
		cfg:        cfg,
		log:        log,
		id:         id,
		node:       node,
		store:      &raftStore{r: node.r, f: node.fsm, timeout: raftApplyTimeout},
		kick:       make(chan struct{}, 1),
		tms:        newRegistry(),
		metrics:    map[taskKey]*weirv1.TaskMetrics{},
		cancelSent: map[taskKey]bool{},
		conns:      map[string]*grpc.ClientConn{},

		coordinators: map[string]*coordinator{},
		metadata:     map[string]*statebackend.Metadata{},
		waitLogged:   map[string]int{},
	}, nil
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

// Run follows the raft group until ctx ends: while this member leads, it
// runs the leader's loops (scheduling, heartbeat timeouts, restarts,
// checkpoint coordinators) and serves calls; while it follows, it makes its
// client address known to the leader. On return it has stopped every loop
// and call, shut raft down and closed its connections. It returns nil when
// ctx ends and may be called once.
func (jm *JobManager) Run(ctx context.Context) error {
	jm.mu.Lock()
	if jm.running || jm.closed {
		jm.mu.Unlock()
		return errors.New("jobmanager: Run called twice")
	}
	jm.running = true
	jm.mu.Unlock()
	defer jm.shutdown()

	jm.log.Info("JobManager running", "raft_address", jm.node.addr, "peers", peersText(jm.node.peers),
		"heartbeat_interval", jm.cfg.HeartbeatInterval, "heartbeat_timeout", jm.cfg.HeartbeatTimeout,
		"slot_request_timeout", jm.cfg.SlotRequestTimeout)
	follow := time.NewTicker(time.Second)
	defer follow.Stop()
	for {
		select {
		case <-ctx.Done():
			jm.stopLeading()
			return nil
		case leading := <-jm.node.notify:
			if leading {
				jm.startLeading()
			} else {
				jm.stopLeading()
			}
		case <-follow.C:
			if err := jm.announce(ctx); err != nil {
				return err
			}
		}
	}
}

// startLeading begins a term of leadership: the leader loop catches up with
// the log first, then takes over the cluster.
func (jm *JobManager) startLeading() {
	jm.mu.Lock()
	if jm.lead != nil || jm.closed {
		jm.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &leadership{ctx: ctx, cancel: cancel, term: jm.node.r.CurrentTerm(), since: time.Now(), ready: make(chan struct{})}
	jm.lead = l
	jm.mu.Unlock()
	jm.log.Info("leading the JobManager group", "term", l.term)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		jm.lead1(l)
	}()
}

// stopLeading ends the current term of leadership, if any: every leader
// loop and call stops, and the volatile state of the term is dropped (the
// TaskManagers register again with the next leader).
func (jm *JobManager) stopLeading() {
	jm.mu.Lock()
	l := jm.lead
	jm.lead = nil
	jm.mu.Unlock()
	if l == nil {
		return
	}
	l.cancel()
	l.wg.Wait()
	jm.mu.Lock()
	jm.tms = newRegistry()
	jm.metrics = map[taskKey]*weirv1.TaskMetrics{}
	jm.cancelSent = map[taskKey]bool{}
	jm.coordinators = map[string]*coordinator{}
	jm.waitLogged = map[string]int{}
	closing := jm.closed
	jm.mu.Unlock()
	if !closing {
		jm.log.Info("no longer leading the JobManager group", "term", l.term)
	}
}

// lead1 is the leader's main loop for one term.
func (jm *JobManager) lead1(l *leadership) {
	// Serve nothing until every entry of earlier terms is applied here.
	for {
		err := jm.node.r.Barrier(raftApplyTimeout).Error()
		if err == nil {
			break
		}
		jm.log.Info("leader catching up with the log", "err", err)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	if jm.store.Members()[jm.id] != jm.cfg.Advertise {
		if _, err := jm.store.Apply(SetMemberAddress{MemberID: jm.id, Address: jm.cfg.Advertise}); err != nil {
			jm.log.Info("recording this leader's address", "err", err)
		}
	}
	for _, j := range jm.store.Jobs() {
		if !TerminalJob(j.State) {
			jm.startCoordinator(j)
		}
	}
	close(l.ready)
	if jm.cfg.Etcd != nil {
		// The leader's address under /weir/<cluster>/leader, for as long
		// as this term lasts (a lease keeps it; it expires if we die).
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if err := leader.Publish(l.ctx, jm.cfg.Etcd, jm.cfg.ClusterID, jm.cfg.Advertise, leader.DefaultTTL); err != nil {
				jm.log.Warn("publishing the leader in etcd", "err", err)
			}
		}()
	}

	tick := time.NewTicker(jm.tickInterval())
	defer tick.Stop()
	restart := time.NewTimer(time.Hour)
	defer restart.Stop()
	// TaskManagers that ran tasks for the last leader have until then to
	// register with this one and have them adopted. One whose leader froze
	// (its connections stay open) notices only after a heartbeat timeout
	// without acknowledgements, which may have begun just before this
	// election: twice the timeout covers it.
	adoptGrace := 2 * jm.cfg.HeartbeatTimeout
	graceEnd := time.Now().Add(adoptGrace)
	grace := time.NewTimer(adoptGrace)
	defer grace.Stop()
	pass := func(now time.Time) {
		if next := jm.schedule(now); !next.IsZero() {
			restart.Reset(max(time.Until(next), 0))
		}
	}
	pass(time.Now())
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-jm.kick:
			pass(time.Now())
		case <-restart.C:
			pass(time.Now())
		case <-grace.C:
			jm.loseUnregistered(graceEnd)
		case <-tick.C:
			now := time.Now()
			jm.expireTaskManagers(now)
			pass(now)
		}
	}
}

// tickInterval is how often the leader checks heartbeats and slot request
// timeouts: a tenth of the shorter timeout, within [10ms, 1s].
func (jm *JobManager) tickInterval() time.Duration {
	d := min(jm.cfg.HeartbeatTimeout, jm.cfg.SlotRequestTimeout) / 10
	return min(max(d, 10*time.Millisecond), time.Second)
}

func (jm *JobManager) shutdown() {
	jm.mu.Lock()
	jm.closed = true
	jm.mu.Unlock()
	jm.stopLeading()
	jm.node.shutdown()
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

// leading returns the current term of leadership once it serves calls, or
// nil.
func (jm *JobManager) leading() *leadership {
	jm.mu.Lock()
	l := jm.lead
	jm.mu.Unlock()
	if l == nil {
		return nil
	}
	select {
	case <-l.ready:
		return l
	default:
		return nil
	}
}

// goAsync runs f on a goroutine of the current term of leadership, with its
// context; while this member does not lead, f does not run.
func (jm *JobManager) goAsync(f func(ctx context.Context)) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	l := jm.lead
	if jm.closed || l == nil || l.ctx.Err() != nil {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f(l.ctx)
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
	trans, err := jm.store.Apply(cmd)
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

// schedule runs one scheduling pass: restarting jobs whose delay is over
// get a new attempt, pending jobs that fit are placed and deployed, those
// that waited too long fail. It returns when the next restart is due (zero
// if none is). Only the leader loop calls it, so passes never overlap.
func (jm *JobManager) schedule(now time.Time) (nextRestart time.Time) {
	nowMs := now.UnixMilli()
	var deploy []Job
	var trans []JobTransition
	var expired []string

	all := jm.store.Jobs()
	restarted := false
	for _, j := range all {
		if j.State != jobRestarting {
			continue
		}
		if j.RestartAt > nowMs {
			if at := time.UnixMilli(j.RestartAt); nextRestart.IsZero() || at.Before(nextRestart) {
				nextRestart = at
			}
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
		jm.mu.Lock()
		clear(jm.waitLogged)
		jm.mu.Unlock()
		if len(trans) > 0 {
			jm.afterApply(trans)
		}
		return nextRestart
	}
	jm.mu.Lock()
	offered := jm.tms.offeredSlots()
	jm.mu.Unlock()
	d := Schedule(now, jm.cfg.SlotRequestTimeout, pending, FreeSlots(offered, all))
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
	jm.mu.Lock()
	logged := jm.waitLogged
	jm.waitLogged = map[string]int{}
	for _, w := range d.Waiting {
		j := byID[w.JobID]
		if a, ok := logged[w.JobID]; !ok || a != j.Attempt {
			newWaits = append(newWaits, waiting{w, j})
		}
		jm.waitLogged[w.JobID] = j.Attempt
	}
	jm.mu.Unlock()
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
	return nextRestart
}

// lostTaskManager is a TaskManager removed from the registry, for
// finishLost to record and follow.
type lostTaskManager struct {
	tm      *taskManager
	reason  string
	stopped bool // it shut down cleanly, it did not crash
}

func lostTM(tm *taskManager, cause string) lostTaskManager {
	return lostTaskManager{tm: tm, reason: "TaskManager " + tm.id + " (" + tm.address + ") lost: " + cause}
}

// finishLost applies the TaskManagerLost command for a TaskManager already
// removed from the registry: its tasks of active jobs fail those jobs,
// whether it crashed or stopped. The caller MUST NOT hold jm.mu.
func (jm *JobManager) finishLost(l lostTaskManager) {
	trans, err := jm.store.Apply(TaskManagerLost{TaskManagerID: l.tm.id, Reason: l.reason, TimeMs: time.Now().UnixMilli()})
	if errors.Is(err, ErrNotLeader) {
		// Deposed meanwhile: the next leader judges the TaskManager.
		jm.log.Debug("TaskManager loss not recorded: no longer the leader", "task_manager_id", l.tm.id)
		return
	}
	if err != nil {
		jm.log.Error("applying TaskManager loss", "task_manager_id", l.tm.id, "err", err)
	}
	if l.stopped {
		// A clean shutdown is no fault of the TaskManager's, even when it
		// fails the jobs it ran (their transitions say so).
		failed := 0
		for _, t := range trans {
			if t.To == jobRestarting || t.To == jobFailed {
				failed++
			}
		}
		jm.log.Info("TaskManager stopped", "task_manager_id", l.tm.id, "address", l.tm.address, "jobs_failed", failed)
	} else {
		jm.log.Warn("TaskManager lost", "task_manager_id", l.tm.id, "address", l.tm.address, "reason", l.reason)
	}
	jm.dropConn(l.tm.address)
	jm.afterApply(trans)
}

// expireTaskManagers loses the TaskManagers silent for too long.
func (jm *JobManager) expireTaskManagers(now time.Time) {
	jm.mu.Lock()
	var lost []lostTaskManager
	for _, tm := range jm.tms.expired(now, jm.cfg.HeartbeatTimeout) {
		lost = append(lost, lostTM(tm, "no heartbeat for "+jm.cfg.HeartbeatTimeout.String()))
	}
	jm.mu.Unlock()
	for _, l := range lost {
		jm.finishLost(l)
	}
}

// loseUnregistered fails, after a new leader's grace period, the tasks of
// TaskManagers that ran them for the previous leader and have not
// registered with this one (they are gone): normal failover.
func (jm *JobManager) loseUnregistered(graceEnd time.Time) {
	missing := map[string]string{}
	for _, j := range jm.store.Jobs() {
		for _, ts := range j.Tasks {
			for _, t := range ts {
				if t.TaskManagerID != "" && !TerminalTask(t.State) {
					missing[t.TaskManagerID] = t.Address
				}
			}
		}
	}
	jm.mu.Lock()
	for id := range missing {
		if _, ok := jm.tms.tms[id]; ok {
			delete(missing, id)
		}
	}
	jm.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(missing)) {
		tm := &taskManager{id: id, address: missing[id]}
		jm.finishLost(lostTM(tm, "it did not register with the new leader by "+graceEnd.Format(time.RFC3339Nano)))
	}
}

// streamBroken loses the TaskManager whose heartbeat stream broke, if it is
// still the incarnation that opened the stream.
func (jm *JobManager) streamBroken(id string, incarnation uint64) {
	jm.mu.Lock()
	if jm.closed || jm.lead == nil || jm.lead.ctx.Err() != nil {
		// The stream ended because leadership did: the next leader
		// adopts what this TaskManager runs.
		jm.mu.Unlock()
		return
	}
	tm, ok := jm.tms.remove(id, incarnation)
	jm.mu.Unlock()
	if ok {
		jm.finishLost(lostTM(tm, "heartbeat stream broken"))
	}
}

// taskManagerStopped removes a TaskManager that said it is shutting down
// (if it is still the incarnation that said so).
func (jm *JobManager) taskManagerStopped(id string, incarnation uint64) {
	jm.mu.Lock()
	tm, ok := jm.tms.remove(id, incarnation)
	jm.mu.Unlock()
	if ok {
		jm.finishLost(lostTaskManager{tm: tm, reason: "TaskManager " + tm.id + " (" + tm.address + ") stopped", stopped: true})
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
