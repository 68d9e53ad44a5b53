// Package taskmanager runs subtasks for a JobManager. A TaskManager offers a
// fixed number of slots; the JobManager deploys subtasks into them (with slot
// sharing, one subtask of each vertex per slot), and the TaskManager builds
// each subtask from the job's registered builder, wires it to the data
// exchange and runs it on its own goroutine, reporting state changes and
// heartbeating metrics back.
//
// The JobManagers form a raft group, and the TaskManager talks to its
// leader, found with a leader.Finder; a member that answers NOT_LEADER sends
// it to the leader. The connection is one registration plus a heartbeat
// stream. If the stream breaks, the leader turns out to be a follower, or it
// no longer knows this TaskManager, the tasks keep running: the TaskManager
// finds the leader again (with backoff, for as long as it takes), registers
// with the tasks it runs and cancels those the leader does not adopt. What
// the leader must hear (task states, checkpoint acknowledgements, declines,
// requests) waits in an outbox meanwhile and goes, in order, to the leader
// the TaskManager registered with last.
//
// Every call of the leader carries its raft term, and the TaskManager
// refuses calls of terms older than the highest it has seen: a deposed
// leader that wakes up cannot deploy, cancel or trigger anything.
//
// A TaskManager that shuts down says so on the stream first, so the
// JobManager records it as stopped, not lost, and then cancels its tasks.
package taskmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/weirstream/weir/internal/leader"
	"github.com/weirstream/weir/internal/rpcopts"
	"github.com/weirstream/weir/internal/tlsconf"
	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend/pebblestate"
	"github.com/weirstream/weir/statebackend/storage"
	"github.com/weirstream/weir/taskmanager/exchange"
)

// Config configures a TaskManager.
type Config struct {
	// ID names the TaskManager; empty picks "tm-" and random hex.
	ID string
	// Finder finds the leader of the JobManager group. The caller owns it:
	// the TaskManager does not close it.
	Finder *leader.Finder
	// JobManager is used when Finder is nil: a JobManager's gRPC address,
	// or a comma-separated list of the group's members. The TaskManager
	// then builds, and closes, a Finder of its own.
	JobManager string
	// Listen is the address the TaskManager's gRPC server listens on.
	Listen string
	// Advertise is the address others reach this TaskManager at; empty
	// uses the listener's address.
	Advertise string
	// Slots is the number of task slots; 0 means 2.
	Slots int
	// Credits is the number of buffers each input channel may have in
	// flight; 0 uses the exchange's default.
	Credits int
	// Stdout receives job output (print sinks); nil means os.Stdout.
	Stdout io.Writer
	Logger *slog.Logger
	// Storage holds the S3 endpoint and credentials used to read and
	// write checkpoint state and sink files.
	Storage storage.Options
	// TLS, when set, secures the TaskManager's gRPC server (deployments
	// and the data exchange) and its connections to other TaskManagers
	// with mutual TLS, and the connection to the JobManagers when the
	// TaskManager builds its own Finder (with Finder set, give it
	// leader.WithTLS). Nil: plaintext.
	TLS *tlsconf.Config
	// Clock is the processing-time service of every task the TaskManager
	// runs; nil is the wall clock. Tests give an engine.ManualClock.
	Clock engine.Clock
	// StateBackend is the state backend of jobs submitted without one
	// (runtime.StateBackendMemory, the default, or StateBackendPebble).
	StateBackend string
	// StateDir is where the pebble state backend puts each keyed
	// subtask's store, in a directory of its own removed when the task
	// ends; "" is a directory under the system's temporary directory.
	StateDir string
	// StateMemory is the memory budget of each slot's pebble stores
	// (pebblestate.Budget: block cache, value caches, memtables); 0 is
	// pebblestate.DefaultBudgetBytes, derived from GOMEMLIMIT and the
	// container's memory limit.
	StateMemory int64
	// TimerService is where the keyed operators of pebble jobs submitted
	// without one keep their timers: runtime.TimerServiceStore (the
	// default) or TimerServiceHeap.
	TimerService string
}

// TaskManager is one worker process's task runtime.
type TaskManager struct {
	cfg       Config
	log       *slog.Logger
	x         *exchange.Exchange
	ln        net.Listener
	server    *grpc.Server
	addr      string
	finder    *leader.Finder
	ownFinder bool // built from cfg.JobManager: Run closes it
	// budgets are the slots' pebble memory budgets, by slot index.
	budgets     []*pebblestate.Budget
	fence       *fence
	out         *outbox
	jobManagers string // for logs

	mu    sync.Mutex
	tasks map[taskKey]*runningTask
	ctx   context.Context // the parent of task contexts; ends after Run's

	registered     chan struct{} // closed at the first registration
	registeredOnce sync.Once
	inSession      atomic.Bool // registered with the current leader and heartbeating
}

// New listens on cfg.Listen and prepares the TaskManager; Run starts it.
func New(cfg Config) (*TaskManager, error) {
	if cfg.Slots == 0 {
		cfg.Slots = 2
	}
	if cfg.Slots < 0 {
		return nil, fmt.Errorf("slots %d must be at least 1", cfg.Slots)
	}
	finder, own := cfg.Finder, false
	if finder == nil {
		f, err := leader.NewFinder(leader.ParseAddrs(cfg.JobManager), leader.WithTLS(cfg.TLS))
		if err != nil {
			return nil, err
		}
		finder, own = f, true
	}
	if cfg.ID == "" {
		var b [4]byte
		rand.Read(b[:])
		cfg.ID = "tm-" + hex.EncodeToString(b[:])
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	kind, err := runtime.ParseStateBackend(cfg.StateBackend)
	if err != nil {
		return nil, err
	}
	cfg.StateBackend = kind
	if cfg.TimerService, err = runtime.ParseTimerService(cfg.TimerService); err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(os.TempDir(), "weir-state-"+cfg.ID)
	}
	if err := checkStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	if cfg.StateMemory == 0 {
		cfg.StateMemory = pebblestate.DefaultBudgetBytes(cfg.Slots)
	}
	if cfg.StateMemory < pebblestate.MinBudget {
		return nil, fmt.Errorf("state memory %s per slot is below the minimum of %s",
			pebblestate.FormatBytes(cfg.StateMemory), pebblestate.FormatBytes(pebblestate.MinBudget))
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		if own {
			finder.Close()
		}
		return nil, fmt.Errorf("taskmanager listen: %w", err)
	}
	addr := cfg.Advertise
	if addr == "" {
		addr = advertised(ln.Addr().(*net.TCPAddr))
	}
	log := cfg.Logger.With("task_manager_id", cfg.ID)
	// A budget allocates its cache's blocks as stores fill it: an idle
	// slot costs nothing.
	budgets := make([]*pebblestate.Budget, cfg.Slots)
	for i := range budgets {
		budgets[i], _ = pebblestate.NewBudget(cfg.StateMemory) // checked above
	}
	tm := &TaskManager{cfg: cfg, log: log, ln: ln, addr: addr, finder: finder, ownFinder: own, budgets: budgets,
		fence: &fence{log: log}, out: newOutbox(log), jobManagers: strings.Join(finder.Addrs(), ","),
		tasks: map[taskKey]*runningTask{}, registered: make(chan struct{}),
		x: exchange.New(exchange.Config{SelfAddress: addr, Credits: cfg.Credits, Logger: log, TLS: cfg.TLS})}
	tm.server = grpc.NewServer(append(append(rpcopts.ServerOptions(), tlsconf.ServerOptions(cfg.TLS)...),
		grpc.ChainUnaryInterceptor(tm.fence.interceptor()))...)
	weirv1.RegisterTaskManagerServer(tm.server, &service{tm: tm})
	return tm, nil
}

// checkStateDir makes sure the pebble state backend can make its stores'
// directories under dir, so that an unusable --state-dir stops the
// TaskManager at start, with the reason, instead of failing every pebble
// task scheduled on it. It leaves no directory behind that was not there.
func checkStateDir(dir string) error {
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state directory %s is not usable: %w", dir, err)
	}
	probe, err := os.MkdirTemp(dir, "probe-")
	if err == nil {
		err = os.Remove(probe)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		os.Remove(dir)
	}
	if err != nil {
		return fmt.Errorf("state directory %s is not usable: %w", dir, err)
	}
	return nil
}

// advertised turns a wildcard listen address into one others can dial.
func advertised(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			return net.JoinHostPort(h, fmt.Sprint(a.Port))
		}
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(a.Port))
	}
	return a.String()
}

// ID is the TaskManager's ID.
func (tm *TaskManager) ID() string { return tm.cfg.ID }

// Registered is closed once the TaskManager has first registered and
// offered its slots.
func (tm *TaskManager) Registered() <-chan struct{} { return tm.registered }

// Ready returns nil while the TaskManager is registered with a JobManager
// leader, and otherwise an error saying why not (a readiness probe).
func (tm *TaskManager) Ready() error {
	if tm.inSession.Load() {
		return nil
	}
	select {
	case <-tm.registered:
		return errors.New("lost the JobManager leader; registering again")
	default:
		return errors.New("not registered with a JobManager leader yet")
	}
}

// Address is the address the TaskManager advertises.
func (tm *TaskManager) Address() string { return tm.addr }

// flushTimeout bounds how long a TaskManager shutting down tries to deliver
// its tasks' last states.
const flushTimeout = 5 * time.Second

// Run serves and keeps the TaskManager registered with the JobManager
// leader until ctx ends; then it tells the leader it is leaving, cancels its
// tasks and stops. Losing the leader does not touch the tasks.
func (tm *TaskManager) Run(ctx context.Context) error {
	// Tasks are not children of ctx: they end canceled, by cancelAll,
	// after the JobManager has been told, not failed by ctx's end.
	tasksCtx, stopTasks := context.WithCancelCause(context.Background())
	defer stopTasks(nil)
	// Stores still closing keep their slot's cache until they are done.
	defer func() {
		for _, b := range tm.budgets {
			b.Close()
		}
	}()
	tm.mu.Lock()
	tm.ctx = tasksCtx
	tm.mu.Unlock()
	if tm.ownFinder {
		defer tm.finder.Close()
	}
	// The outbox outlives ctx by the last task states.
	outCtx, stopOut := context.WithCancel(context.Background())
	defer stopOut()
	delivered := make(chan struct{})
	go func() { defer close(delivered); tm.out.run(outCtx) }()
	served := make(chan error, 1)
	go func() { served <- tm.server.Serve(tm.ln) }()
	tm.log.Info("taskmanager started", "address", tm.addr, "slots", tm.cfg.Slots, "jobmanager_address", tm.jobManagers)

	backoff, searching := retryMin, false
	for ctx.Err() == nil {
		start := time.Now()
		registered, err := tm.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if registered {
			searching = false
			// A registration that lasted starts the next search afresh;
			// one the leader drops at once backs off further.
			if time.Since(start) > retryMax {
				backoff = retryMin
			}
		}
		// Once per loss, not per attempt.
		if !searching {
			searching = true
			tm.log.Warn("no JobManager leader; looking for one, tasks keep running", "tasks", tm.taskCount(),
				"jobmanager_address", tm.jobManagers, "err", err)
		} else {
			tm.log.Debug("still no JobManager leader", "retry_in", backoff, "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		backoff = min(2*backoff, retryMax)
	}
	tm.cancelAll("TaskManager shutting down")
	// Tasks deployed from now on start canceled.
	stopTasks(fmt.Errorf("%w: TaskManager shutting down", errCanceled))
	tm.waitTasks(10 * time.Second)
	fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	if n := tm.out.flush(fctx); n > 0 {
		tm.log.Info("messages to the JobManager not delivered at shutdown", "messages", n)
	}
	cancel()
	stopOut()
	<-delivered
	tm.server.Stop()
	tm.x.Close()
	<-served
	tm.log.Info("taskmanager stopped")
	return nil
}

// session registers with the leader (with the tasks running here), offers
// slots and heartbeats until the stream breaks, the leader is lost or ctx
// ends; then it leaves. registered says it got as far as heartbeating.
func (tm *TaskManager) session(ctx context.Context) (registered bool, err error) {
	defer tm.inSession.Store(false)
	req := &weirv1.RegisterTaskManagerRequest{TaskManagerId: tm.cfg.ID, Address: tm.addr, Slots: int32(tm.cfg.Slots),
		Jobs: jobs.Names(), Tasks: tm.runningTasks()}
	var (
		reg  *weirv1.RegisterTaskManagerResponse
		conn *grpc.ClientConn
	)
	rctx, cancel := context.WithTimeout(ctx, callTimeout)
	err = tm.finder.Call(rctx, func(ctx context.Context, c *grpc.ClientConn) error {
		r, err := weirv1.NewJobManagerClient(c).RegisterTaskManager(ctx, req)
		reg, conn = r, c
		return err
	})
	cancel()
	if err != nil {
		return false, fmt.Errorf("register: %w", err)
	}
	addr := conn.Target() // the address the Finder dialed
	// Whatever ends the session, the next one asks who leads.
	defer func() {
		if err != nil {
			tm.finder.Forget(addr)
		}
	}()
	term := uint64(max(reg.GetLeaderTerm(), 0))
	if seen := tm.fence.term(); term < seen {
		return false, fmt.Errorf("register with %s: %w %d: this TaskManager follows term %d", addr, ErrStaleTerm, term, seen)
	}
	tm.fence.observe(term)
	canceled := tm.reconcile(req.Tasks, reg.GetAdopted())
	interval := time.Duration(reg.HeartbeatIntervalMs) * time.Millisecond
	if interval <= 0 {
		interval = time.Second
	}
	jm := weirv1.NewJobManagerClient(conn)
	slots := make([]*weirv1.SlotOffer, tm.cfg.Slots)
	for i := range slots {
		slots[i] = &weirv1.SlotOffer{Index: int32(i)}
	}
	octx, cancel := context.WithTimeout(ctx, callTimeout)
	_, err = jm.OfferSlots(octx, &weirv1.OfferSlotsRequest{TaskManagerId: tm.cfg.ID, Slots: slots})
	cancel()
	if err != nil {
		return false, fmt.Errorf("offer slots to %s: %w", addr, err)
	}

	// The stream outlives ctx by the leaving message; it ends with session.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stream, err := jm.Heartbeat(hctx)
	if err != nil {
		return false, fmt.Errorf("heartbeat to %s: %w", addr, err)
	}
	tm.log.Info("registered with the JobManager", "job_manager_id", reg.JobManagerId, "jobmanager_address", addr,
		"leader_term", term, "heartbeat", interval, "tasks", len(req.Tasks), "adopted", len(reg.GetAdopted()), "canceled", canceled)
	tm.inSession.Store(true)
	tm.registeredOnce.Do(func() { close(tm.registered) })
	lost := make(chan error, 1)
	link := &leaderLink{addr: addr, jm: jm, lost: func(err error) {
		select {
		case lost <- err:
		default:
		}
	}}
	tm.out.connect(link)
	left := false
	defer func() {
		if !left { // a TaskManager that left keeps the link for its last task states
			tm.out.disconnect(link)
		}
	}()

	// A leader that stops acknowledging (a frozen or partitioned process
	// keeps its connections open) is as lost as one whose stream broke:
	// after the heartbeat timeout without an ack, look for the leader
	// again. Cancelling the stream also frees a Send blocked on it.
	silence := time.Duration(reg.HeartbeatTimeoutMs) * time.Millisecond
	if silence <= 0 {
		silence = 5 * time.Second
	}
	var lastAck atomic.Int64
	lastAck.Store(time.Now().UnixNano())
	acks := make(chan error, 1)
	go func() {
		for {
			ack, err := stream.Recv()
			if err != nil {
				acks <- err
				return
			}
			lastAck.Store(time.Now().UnixNano())
			if !ack.Known {
				acks <- errors.New("the JobManager does not know this TaskManager")
				return
			}
		}
	}()
	go func() { // ends with the session, which cancels hctx
		t := time.NewTicker(silence / 4)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
			if quiet := time.Since(time.Unix(0, lastAck.Load())); quiet >= silence {
				select {
				case lost <- fmt.Errorf("no heartbeat acknowledgement for %v", quiet.Round(time.Millisecond)):
				default:
				}
				cancel()
				return
			}
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := stream.Send(&weirv1.TaskManagerHeartbeat{TaskManagerId: tm.cfg.ID, Tasks: tm.metrics()}); err != nil {
			select {
			case lerr := <-lost:
				return true, fmt.Errorf("leader %s lost: %w", addr, lerr)
			default:
			}
			return true, fmt.Errorf("heartbeat to %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			tm.leave(stream, acks)
			left = true
			return true, nil
		case err := <-acks:
			return true, fmt.Errorf("heartbeat to %s: %w", addr, err)
		case err := <-lost:
			return true, fmt.Errorf("leader %s lost: %w", addr, err)
		case <-tick.C:
		}
	}
}

// runningTasks lists the tasks for a registration: those running, and
// those that ended but whose last state the JobManager has not heard yet.
func (tm *TaskManager) runningTasks() []*weirv1.RunningTask {
	// Tasks first: a task posts its last state before it leaves tm.tasks,
	// so one that ends in between shows in both, never in neither.
	tm.mu.Lock()
	rts := make([]*runningTask, 0, len(tm.tasks))
	for _, rt := range tm.tasks {
		rts = append(rts, rt)
	}
	tm.mu.Unlock()
	byKey := map[taskKey]*weirv1.RunningTask{}
	for _, rt := range rts {
		byKey[rt.key] = &weirv1.RunningTask{Task: rt.key.proto(), State: rt.getState(), Slot: int32(rt.slot)}
	}
	for _, f := range tm.out.finals() {
		byKey[keyOf(f.Task)] = f
	}
	out := make([]*weirv1.RunningTask, 0, len(byKey))
	for _, t := range byKey {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *weirv1.RunningTask) int { return keyOf(a.Task).compare(keyOf(b.Task)) })
	return out
}

// reconcile cancels the listed tasks the leader did not adopt: they belong
// to attempts or jobs it does not run. It returns how many it canceled.
func (tm *TaskManager) reconcile(listed []*weirv1.RunningTask, adopted []*weirv1.TaskID) int {
	keep := make(map[taskKey]bool, len(adopted))
	for _, id := range adopted {
		keep[keyOf(id)] = true
	}
	n := 0
	for _, t := range listed {
		key := keyOf(t.Task)
		if keep[key] || terminalTask(t.State) {
			continue
		}
		if tm.cancelKey(key, "the JobManager leader did not adopt it") {
			tm.log.Info("canceling a task the JobManager leader did not adopt", "job_id", key.job, "vertex_id", key.vertex,
				"subtask", key.subtask, "attempt", key.attempt)
			n++
		}
	}
	return n
}

// leaveTimeout bounds how long a TaskManager shutting down waits for the
// JobManager to take note.
const leaveTimeout = 2 * time.Second

// leave sends the last heartbeat, which says the TaskManager is shutting
// down, and waits for the JobManager to end the stream: it has then
// removed this TaskManager, as stopped.
func (tm *TaskManager) leave(stream weirv1.JobManager_HeartbeatClient, acks <-chan error) {
	err := stream.Send(&weirv1.TaskManagerHeartbeat{TaskManagerId: tm.cfg.ID, Leaving: true})
	if err == nil {
		err = stream.CloseSend()
	}
	if err == nil {
		t := time.NewTimer(leaveTimeout)
		defer t.Stop()
		select {
		case err = <-acks:
			if errors.Is(err, io.EOF) {
				err = nil
			}
		case <-t.C:
			err = fmt.Errorf("no answer within %v", leaveTimeout)
		}
	}
	if err != nil {
		tm.log.Info("could not tell the JobManager this TaskManager is leaving", "err", err)
	}
}
