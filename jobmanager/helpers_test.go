package jobmanager

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
)

// testJob is a two-vertex pipeline: a source of parallelism
// "source-parallelism" (default 1) rebalanced into "Double -> Discard" at the
// job's parallelism.
const testJob = "jm-test-pipeline"

type idleSource struct{}

func (idleSource) Poll(runtime.Collector[int64]) (time.Duration, error) { return time.Second, nil }

type discardSink struct{}

func (discardSink) Invoke(int64) error { return nil }

func init() {
	jobs.Register(jobs.Job{Name: testJob, Description: "source -> map -> sink, for the JobManager's tests",
		Params: []jobs.Param{{Name: "source-parallelism", Type: jobs.Int, Default: "1", Description: "the source's parallelism"}},
		Build: func(env *runtime.Env, p *runtime.Params) error {
			srcP := int(p.Int("source-parallelism", 1))
			src := runtime.FromSource(env, "Numbers", func() runtime.SourceFunction[int64] { return idleSource{} },
				runtime.Int64Codec{}).UID("numbers").Parallelism(srcP)
			doubled := runtime.Map(src, "Double", func(v int64) int64 { return 2 * v }, nil).UID("double")
			runtime.SinkTo(doubled, "Discard", func() runtime.SinkFunction[int64] { return discardSink{} }).UID("discard")
			return nil
		}})
}

const waitFor = 10 * time.Second

// testLogger logs through t until the test's cleanups have run.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(b[:len(b)-1]))
	}
	return len(b), nil
}

// cluster is a JobManager served on a free port, with a client.
type cluster struct {
	t      *testing.T
	jm     *JobManager
	addr   string
	client weirv1.JobManagerClient
}

func startJobManager(t *testing.T, cfg Config) *cluster {
	t.Helper()
	cfg.Logger = testLogger(t)
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 50 * time.Millisecond
	}
	jm, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(jm.ServerOptions(), grpc.WaitForHandlers(true))...)
	jm.Register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- jm.Run(ctx) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &cluster{t: t, jm: jm, addr: lis.Addr().String(), client: weirv1.NewJobManagerClient(conn)}
}

func (c *cluster) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	c.t.Cleanup(cancel)
	return ctx
}

func (c *cluster) submit(parallelism int, params map[string]string) string {
	c.t.Helper()
	// No periodic checkpoints: a failure fails the job instead of restarting it.
	resp, err := c.client.SubmitJob(c.ctx(), &weirv1.SubmitJobRequest{JobName: testJob, Parallelism: int32(parallelism), Params: params,
		Checkpointing: &weirv1.CheckpointConfig{}})
	if err != nil {
		c.t.Fatalf("SubmitJob: %v", err)
	}
	if id := resp.GetJobId(); !jobIDPattern.MatchString(id) {
		c.t.Fatalf("job ID %q is not 32 lowercase hex digits", id)
	}
	return resp.GetJobId()
}

var jobIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (c *cluster) status(id string) *weirv1.JobStatus {
	c.t.Helper()
	st, err := c.client.GetJobStatus(c.ctx(), &weirv1.GetJobStatusRequest{JobId: id})
	if err != nil {
		c.t.Fatalf("GetJobStatus: %v", err)
	}
	return st
}

// waitStatus polls the job's status until cond holds.
func (c *cluster) waitStatus(id, what string, cond func(*weirv1.JobStatus) bool) *weirv1.JobStatus {
	c.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		st := c.status(id)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s: timed out waiting for %s; status:\n%v", id, what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cluster) waitState(id string, state weirv1.JobState) *weirv1.JobStatus {
	c.t.Helper()
	return c.waitStatus(id, JobStateName(state), func(st *weirv1.JobStatus) bool { return st.GetSummary().GetState() == state })
}

// waitUntil polls cond.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeTaskManager stands in for a TaskManager: it records DeployTask and
// CancelTask calls, reports task states through UpdateTaskState (RUNNING
// after a deployment when autoRun, CANCELED after a cancel) and heartbeats
// over a real stream.
type fakeTaskManager struct {
	weirv1.UnimplementedTaskManagerServer
	t       *testing.T
	id      string
	addr    string
	jm      weirv1.JobManagerClient
	autoRun bool

	mu         sync.Mutex
	failDeploy error
	deploys    []*weirv1.DeployTaskRequest
	cancels    []*weirv1.TaskID
	metrics    []*weirv1.TaskMetrics
	paused     bool
	acks       []bool
	triggers   []*weirv1.TriggerCheckpointRequest

	srv       *grpc.Server
	served    chan error
	stopOnce  sync.Once
	reports   sync.WaitGroup
	stopBeats context.CancelFunc
	beating   chan struct{}
	leaving   chan struct{}
	streamEnd chan error // the heartbeat stream's end, as the acks reader saw it
}

type tmOption func(*fakeTaskManager)

// manual keeps deployed tasks in DEPLOYING until the test reports.
func manual(tm *fakeTaskManager) { tm.autoRun = false }

func failDeploys(err error) tmOption {
	return func(tm *fakeTaskManager) { tm.failDeploy = err }
}

// startTaskManager serves a fake TaskManager, registers it, offers its
// slots and starts heartbeating.
func (c *cluster) startTaskManager(id string, slots int, opts ...tmOption) *fakeTaskManager {
	c.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	tm := &fakeTaskManager{t: c.t, id: id, addr: lis.Addr().String(), jm: c.client, autoRun: true}
	for _, o := range opts {
		o(tm)
	}
	tm.srv = grpc.NewServer(grpc.WaitForHandlers(true))
	weirv1.RegisterTaskManagerServer(tm.srv, tm)
	tm.served = make(chan error, 1)
	go func() { tm.served <- tm.srv.Serve(lis) }()
	c.t.Cleanup(func() {
		tm.closeHeartbeats()
		tm.stopServer()
		tm.reports.Wait()
	})

	resp, err := c.client.RegisterTaskManager(c.ctx(), &weirv1.RegisterTaskManagerRequest{
		TaskManagerId: id, Address: tm.addr, Slots: int32(slots), Jobs: jobs.Names()})
	if err != nil {
		c.t.Fatalf("RegisterTaskManager: %v", err)
	}
	if resp.GetJobManagerId() == "" || resp.GetHeartbeatIntervalMs() <= 0 || resp.GetHeartbeatTimeoutMs() <= 0 {
		c.t.Fatalf("RegisterTaskManager response %v", resp)
	}
	tm.startHeartbeats(time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond)
	offer := &weirv1.OfferSlotsRequest{TaskManagerId: id}
	for i := range slots {
		offer.Slots = append(offer.Slots, &weirv1.SlotOffer{Index: int32(i)})
	}
	offer.Slots = append(offer.Slots, &weirv1.SlotOffer{Index: int32(slots)}) // out of range
	accepted, err := c.client.OfferSlots(c.ctx(), offer)
	if err != nil {
		c.t.Fatalf("OfferSlots: %v", err)
	}
	if len(accepted.GetAccepted()) != slots {
		c.t.Fatalf("OfferSlots accepted %v of %d slots", accepted.GetAccepted(), slots)
	}
	return tm
}

func (tm *fakeTaskManager) startHeartbeats(interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	// The goroutines use their own channels: a restarted heartbeat
	// replaces tm's while the old goroutines may still run.
	beating, leaving, streamEnd := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	tm.mu.Lock()
	tm.stopBeats, tm.beating, tm.leaving, tm.streamEnd = cancel, beating, leaving, streamEnd
	tm.mu.Unlock()
	stream, err := tm.jm.Heartbeat(ctx)
	if err != nil {
		tm.t.Fatalf("Heartbeat: %v", err)
	}
	go func() { // acks
		for {
			ack, err := stream.Recv()
			if err != nil {
				streamEnd <- err
				return
			}
			tm.mu.Lock()
			tm.acks = append(tm.acks, ack.GetKnown())
			tm.mu.Unlock()
		}
	}()
	go func() {
		defer close(beating)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			tm.mu.Lock()
			paused := tm.paused
			hb := &weirv1.TaskManagerHeartbeat{TaskManagerId: tm.id, Tasks: tm.metrics}
			tm.mu.Unlock()
			if !paused {
				if err := stream.Send(hb); err != nil {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-leaving:
				_ = stream.Send(&weirv1.TaskManagerHeartbeat{TaskManagerId: tm.id, Leaving: true})
				_ = stream.CloseSend()
				return
			case <-tick.C:
			}
		}
	}()
}

// leave sends the last heartbeat of a TaskManager shutting down cleanly
// and waits for the JobManager to end the stream.
func (tm *fakeTaskManager) leave() error {
	close(tm.leaving)
	<-tm.beating
	select {
	case err := <-tm.streamEnd:
		return err
	case <-time.After(waitFor):
		return errors.New("the JobManager did not end the heartbeat stream")
	}
}

// stopServer stops the TaskManager's gRPC server.
func (tm *fakeTaskManager) stopServer() {
	tm.stopOnce.Do(func() {
		tm.srv.Stop()
		<-tm.served
	})
}

// closeHeartbeats breaks the heartbeat stream (the client cancels it).
func (tm *fakeTaskManager) closeHeartbeats() {
	if tm.stopBeats != nil {
		tm.stopBeats()
		<-tm.beating
	}
}

// pauseHeartbeats keeps the stream open but stops sending.
func (tm *fakeTaskManager) pauseHeartbeats() {
	tm.mu.Lock()
	tm.paused = true
	tm.mu.Unlock()
}

func (tm *fakeTaskManager) setMetrics(ms ...*weirv1.TaskMetrics) {
	tm.mu.Lock()
	tm.metrics = ms
	tm.mu.Unlock()
}

func (tm *fakeTaskManager) DeployTask(_ context.Context, req *weirv1.DeployTaskRequest) (*weirv1.DeployTaskResponse, error) {
	tm.mu.Lock()
	tm.deploys = append(tm.deploys, req)
	err := tm.failDeploy
	tm.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if tm.autoRun {
		tm.report(req.GetTask(), weirv1.TaskState_TASK_STATE_RUNNING, "", nil)
	}
	return &weirv1.DeployTaskResponse{}, nil
}

func (tm *fakeTaskManager) CancelTask(_ context.Context, req *weirv1.CancelTaskRequest) (*weirv1.CancelTaskResponse, error) {
	tm.mu.Lock()
	tm.cancels = append(tm.cancels, req.GetTask())
	tm.mu.Unlock()
	tm.report(req.GetTask(), weirv1.TaskState_TASK_STATE_CANCELED, "", nil)
	return &weirv1.CancelTaskResponse{}, nil
}

// TriggerCheckpoint records the trigger; the test acknowledges for the
// tasks.
func (tm *fakeTaskManager) TriggerCheckpoint(_ context.Context, req *weirv1.TriggerCheckpointRequest) (*weirv1.TriggerCheckpointResponse, error) {
	tm.mu.Lock()
	tm.triggers = append(tm.triggers, req)
	tm.mu.Unlock()
	return &weirv1.TriggerCheckpointResponse{}, nil
}

func (tm *fakeTaskManager) NotifyCheckpoint(context.Context, *weirv1.NotifyCheckpointRequest) (*weirv1.NotifyCheckpointResponse, error) {
	return &weirv1.NotifyCheckpointResponse{}, nil
}

func (tm *fakeTaskManager) triggered() []*weirv1.TriggerCheckpointRequest {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return slices.Clone(tm.triggers)
}

// report sends a task state to the JobManager asynchronously, as a
// TaskManager does from its task goroutine.
func (tm *fakeTaskManager) report(id *weirv1.TaskID, state weirv1.TaskState, failure string, m *weirv1.TaskMetrics) {
	tm.reports.Add(1)
	go func() {
		defer tm.reports.Done()
		tm.reportNow(id, state, failure, m)
	}()
}

func (tm *fakeTaskManager) reportNow(id *weirv1.TaskID, state weirv1.TaskState, failure string, m *weirv1.TaskMetrics) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := tm.jm.UpdateTaskState(ctx, &weirv1.TaskStateUpdate{
		TaskManagerId: tm.id, Task: id, State: state, Failure: failure, Metrics: m})
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		tm.t.Logf("%s: UpdateTaskState: %v", tm.id, err)
	}
}

func (tm *fakeTaskManager) deployed() []*weirv1.DeployTaskRequest {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return slices.Clone(tm.deploys)
}

func (tm *fakeTaskManager) canceled() []*weirv1.TaskID {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return slices.Clone(tm.cancels)
}

func (tm *fakeTaskManager) lastAck() (known, ok bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if len(tm.acks) == 0 {
		return false, false
	}
	return tm.acks[len(tm.acks)-1], true
}

// hasTask reports whether ids holds the task.
func hasTask(ids []*weirv1.TaskID, id *weirv1.TaskID) bool {
	return slices.ContainsFunc(ids, func(x *weirv1.TaskID) bool { return proto.Equal(x, id) })
}

func tid(job string, v, i int) *weirv1.TaskID {
	return &weirv1.TaskID{JobId: job, VertexId: int32(v), Subtask: int32(i)}
}
