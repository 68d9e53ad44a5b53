// Package taskmanager runs subtasks for a JobManager. A TaskManager offers a
// fixed number of slots; the JobManager deploys subtasks into them (with slot
// sharing, one subtask of each vertex per slot), and the TaskManager builds
// each subtask from the job's registered builder, wires it to the data
// exchange and runs it on its own goroutine, reporting state changes and
// heartbeating metrics back.
//
// The connection to the JobManager is one registration plus a heartbeat
// stream. If that stream breaks or the JobManager no longer knows this
// TaskManager, the TaskManager cancels its tasks (the JobManager has failed
// their jobs already) and registers again. A TaskManager that shuts down
// says so on the stream first, so the JobManager records it as stopped,
// not lost, and then cancels its tasks.
package taskmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend/storage"
	"github.com/weirstream/weir/taskmanager/exchange"
)

// Config configures a TaskManager.
type Config struct {
	// ID names the TaskManager; empty picks "tm-" and random hex.
	ID string
	// JobManager is the JobManager's gRPC address.
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
}

// TaskManager is one worker process's task runtime.
type TaskManager struct {
	cfg    Config
	log    *slog.Logger
	x      *exchange.Exchange
	ln     net.Listener
	server *grpc.Server
	addr   string
	fence  *fence

	mu    sync.Mutex
	tasks map[taskKey]*runningTask
	jm    weirv1.JobManagerClient
	conn  *grpc.ClientConn
	ctx   context.Context // the parent of task contexts; ends after Run's

	registered     chan struct{} // closed at the first registration
	registeredOnce sync.Once
}

// New listens on cfg.Listen and prepares the TaskManager; Run starts it.
func New(cfg Config) (*TaskManager, error) {
	if cfg.Slots == 0 {
		cfg.Slots = 2
	}
	if cfg.Slots < 0 {
		return nil, fmt.Errorf("slots %d must be at least 1", cfg.Slots)
	}
	if cfg.JobManager == "" {
		return nil, errors.New("no JobManager address")
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
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("taskmanager listen: %w", err)
	}
	addr := cfg.Advertise
	if addr == "" {
		addr = advertised(ln.Addr().(*net.TCPAddr))
	}
	log := cfg.Logger.With("task_manager_id", cfg.ID)
	tm := &TaskManager{cfg: cfg, log: log, ln: ln, addr: addr, fence: &fence{log: log}, tasks: map[taskKey]*runningTask{},
		registered: make(chan struct{}), x: exchange.New(exchange.Config{SelfAddress: addr, Credits: cfg.Credits, Logger: log})}
	tm.server = grpc.NewServer(grpc.ChainUnaryInterceptor(tm.fence.interceptor()))
	weirv1.RegisterTaskManagerServer(tm.server, &service{tm: tm})
	return tm, nil
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

// Address is the address the TaskManager advertises.
func (tm *TaskManager) Address() string { return tm.addr }

// Run serves and keeps the TaskManager registered until ctx ends; then it
// tells the JobManager it is leaving, cancels its tasks and stops.
func (tm *TaskManager) Run(ctx context.Context) error {
	// Tasks are not children of ctx: they end canceled, by cancelAll,
	// after the JobManager has been told, not failed by ctx's end.
	tasksCtx, stopTasks := context.WithCancelCause(context.Background())
	defer stopTasks(nil)
	tm.mu.Lock()
	tm.ctx = tasksCtx
	tm.mu.Unlock()
	conn, err := grpc.NewClient(tm.cfg.JobManager, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("jobmanager address %q: %w", tm.cfg.JobManager, err)
	}
	tm.conn = conn
	tm.jm = weirv1.NewJobManagerClient(conn)
	served := make(chan error, 1)
	go func() { served <- tm.server.Serve(tm.ln) }()
	tm.log.Info("taskmanager started", "address", tm.addr, "slots", tm.cfg.Slots, "jobmanager_address", tm.cfg.JobManager)

	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := tm.session(ctx)
		if ctx.Err() != nil {
			break
		}
		tm.cancelAll("connection to the JobManager lost")
		tm.log.Warn("not connected to the JobManager; retrying", "in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 5*time.Second)
		if err == nil {
			backoff = 100 * time.Millisecond
		}
	}
	tm.cancelAll("TaskManager shutting down")
	// Tasks deployed from now on start canceled.
	stopTasks(fmt.Errorf("%w: TaskManager shutting down", errCanceled))
	tm.waitTasks(10 * time.Second)
	tm.server.Stop()
	tm.x.Close()
	conn.Close()
	<-served
	tm.log.Info("taskmanager stopped")
	return nil
}

// session registers, offers slots and heartbeats until the stream breaks.
func (tm *TaskManager) session(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	reg, err := tm.jm.RegisterTaskManager(rctx, &weirv1.RegisterTaskManagerRequest{
		TaskManagerId: tm.cfg.ID, Address: tm.addr, Slots: int32(tm.cfg.Slots), Jobs: jobs.Names()})
	cancel()
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	tm.fence.observe(uint64(max(reg.GetLeaderTerm(), 0)))
	interval := time.Duration(reg.HeartbeatIntervalMs) * time.Millisecond
	if interval <= 0 {
		interval = time.Second
	}
	slots := make([]*weirv1.SlotOffer, tm.cfg.Slots)
	for i := range slots {
		slots[i] = &weirv1.SlotOffer{Index: int32(i)}
	}
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = tm.jm.OfferSlots(octx, &weirv1.OfferSlotsRequest{TaskManagerId: tm.cfg.ID, Slots: slots})
	cancel()
	if err != nil {
		return fmt.Errorf("offer slots: %w", err)
	}
	tm.log.Info("registered with the JobManager", "job_manager_id", reg.JobManagerId, "heartbeat", interval)
	tm.registeredOnce.Do(func() { close(tm.registered) })

	// The stream outlives ctx by the leaving message; it ends with session.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stream, err := tm.jm.Heartbeat(hctx)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	acks := make(chan error, 1)
	go func() {
		for {
			ack, err := stream.Recv()
			if err != nil {
				acks <- err
				return
			}
			if !ack.Known {
				acks <- errors.New("the JobManager does not know this TaskManager")
				return
			}
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := stream.Send(&weirv1.TaskManagerHeartbeat{TaskManagerId: tm.cfg.ID, Tasks: tm.metrics()}); err != nil {
			return fmt.Errorf("heartbeat send: %w", err)
		}
		select {
		case <-ctx.Done():
			tm.leave(stream, acks)
			return nil
		case err := <-acks:
			return fmt.Errorf("heartbeat: %w", err)
		case <-tick.C:
		}
	}
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
