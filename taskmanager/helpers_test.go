package taskmanager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/leader"
	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/engine"
)

// testJob is one vertex: a source counting up every millisecond, chained
// into a sink that discards. With the parameter "finish" naming a signal
// (see finishSignal), the source ends its input once the signal fires.
const testJob = "tm-test-counter"

var (
	signalsMu sync.Mutex
	signals   = map[string]chan struct{}{}
)

// newSignal names a new signal for the test job's "finish" parameter.
func newSignal(t *testing.T) string {
	signalsMu.Lock()
	defer signalsMu.Unlock()
	return fmt.Sprintf("%s-%d", t.Name(), len(signals))
}

// finishSignal returns the channel the test job's sources with
// finish=name watch; close it to end their input.
func finishSignal(name string) chan struct{} {
	signalsMu.Lock()
	defer signalsMu.Unlock()
	c, ok := signals[name]
	if !ok {
		c = make(chan struct{})
		signals[name] = c
	}
	return c
}

type countingSource struct {
	finish <-chan struct{} // nil: never
	n      int64
}

func (s *countingSource) Poll(out runtime.Collector[int64]) (time.Duration, error) {
	select {
	case <-s.finish:
		return 0, runtime.ErrEndOfInput
	default:
	}
	out.Collect(s.n)
	s.n++
	return time.Millisecond, nil
}

type discardSink struct{}

func (discardSink) Invoke(int64) error { return nil }

func init() {
	jobs.Register(jobs.Job{Name: testJob, Description: "a counting source into a discarding sink, for the TaskManager's tests",
		Params: []jobs.Param{{Name: "finish", Type: jobs.String, Description: "a test signal that ends the input"}},
		Build: func(env *runtime.Env, p *runtime.Params) error {
			var finish <-chan struct{}
			if name := p.String("finish", ""); name != "" {
				finish = finishSignal(name)
			}
			src := runtime.FromSource(env, "Count", func() runtime.SourceFunction[int64] { return &countingSource{finish: finish} },
				runtime.Int64Codec{}).UID("count")
			runtime.SinkTo(src, "Discard", func() runtime.SinkFunction[int64] { return discardSink{} }).UID("discard")
			return nil
		}})
}

const waitFor = 10 * time.Second

// waitUntil polls cond until it holds or the deadline passes.
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

// logBuffer keeps every log line, and passes them to t.Log until the
// test's cleanups have run.
type logBuffer struct {
	t    *testing.T
	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func (w *logBuffer) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if !w.done {
		w.t.Log(string(bytes.TrimSuffix(b, []byte("\n"))))
	}
	return len(b), nil
}

// lines returns the logged lines containing every one of parts.
func (w *logBuffer) lines(parts ...string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range strings.Split(w.buf.String(), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(l, p) }) {
			out = append(out, l)
		}
	}
	return out
}

func newLogBuffer(t *testing.T) *logBuffer {
	w := &logBuffer{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return w
}

// runningTM is a real TaskManager following the JobManagers at addrs.
type runningTM struct {
	*TaskManager
	logs *logBuffer
}

// startTaskManager runs a TaskManager with two slots; it stops when the
// test ends.
func startTaskManager(t *testing.T, addrs ...string) *runningTM {
	t.Helper()
	return startTaskManagerWithClock(t, nil, addrs...)
}

// startTaskManagerWithClock is startTaskManager whose tasks run on clock
// (nil: the wall clock).
func startTaskManagerWithClock(t *testing.T, clock engine.Clock, addrs ...string) *runningTM {
	t.Helper()
	finder, err := leader.NewFinder(addrs)
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogBuffer(t)
	tm, err := New(Config{ID: "tm-test", Finder: finder, Slots: 2, Stdout: io.Discard, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- tm.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		finder.Close()
	})
	return &runningTM{TaskManager: tm, logs: logs}
}

// recordsOut is how many records the task's source emitted; -1 while the
// task does not run here.
func (tm *runningTM) recordsOut(key taskKey) int64 {
	for _, m := range tm.metrics() {
		if keyOf(m.GetTask()) == key && len(m.GetOperators()) > 0 {
			return m.GetOperators()[0].GetRecordsOut()
		}
	}
	return -1
}

// has reports whether the task is deployed here (running or starting).
func (tm *runningTM) has(key taskKey) bool {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.tasks[key] != nil
}

// waitProcessing waits until the task's source has emitted n more records.
func (tm *runningTM) waitProcessing(t *testing.T, key taskKey, n int64) {
	t.Helper()
	from := tm.recordsOut(key)
	if from < 0 {
		t.Fatalf("task %v does not run", key)
	}
	waitUntil(t, "task "+key.job+" to process records", func() bool { return tm.recordsOut(key) >= from+n })
}

// Roles of a fake JobManager.
const (
	roleLeader   = "leader"
	roleFollower = "follower"
)

// fakeJobManager stands in for one member of a JobManager group. As the
// leader it registers the TaskManager, adopting the tasks adopt picks,
// acknowledges heartbeats and records what the TaskManager sends; as a
// follower it answers the TaskManager's calls with NOT_LEADER, naming its
// leader. It deploys, cancels and triggers through the real TaskManager
// service, with a leader term.
type fakeJobManager struct {
	weirv1.UnimplementedJobManagerServer
	t        *testing.T
	id       string
	addr     string
	srv      *grpc.Server
	served   chan error
	stopOnce sync.Once

	mu           sync.Mutex
	role         string
	term         int64
	leaderAddr   string // a follower's leader; "" while it knows none
	claimsLeader bool   // a follower that still says "leader" in GetClusterStatus
	adopt        func(*weirv1.RunningTask) bool
	registered   bool
	events       []event // what the leader accepted, in order
	redirected   int     // TaskManager calls answered NOT_LEADER
	tmConn       *grpc.ClientConn
}

// event is one call the fake accepted as the leader.
type event struct {
	method string // "register", "offer", "update", "ack", "decline", "request"
	msg    proto.Message
}

// startFakeJobManager serves a fake JobManager on a free port; it stops
// when the test ends, if not before.
func startFakeJobManager(t *testing.T, id string) *fakeJobManager {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jm := &fakeJobManager{t: t, id: id, addr: lis.Addr().String(), role: roleFollower, served: make(chan error, 1),
		srv: grpc.NewServer()}
	weirv1.RegisterJobManagerServer(jm.srv, jm)
	go func() { jm.served <- jm.srv.Serve(lis) }()
	t.Cleanup(func() {
		jm.stop()
		jm.mu.Lock()
		if jm.tmConn != nil {
			jm.tmConn.Close()
		}
		jm.mu.Unlock()
	})
	return jm
}

// lead makes the fake the leader of term.
func (jm *fakeJobManager) lead(term int64) {
	jm.mu.Lock()
	jm.role, jm.term, jm.leaderAddr, jm.claimsLeader = roleLeader, term, "", false
	jm.mu.Unlock()
}

// follow makes the fake a follower of the leader at addr ("" for none).
func (jm *fakeJobManager) follow(addr string) {
	jm.mu.Lock()
	jm.role, jm.leaderAddr = roleFollower, addr
	jm.mu.Unlock()
}

// adopting sets which of a registration's tasks the fake adopts (all by
// default).
func (jm *fakeJobManager) adopting(adopt func(*weirv1.RunningTask) bool) {
	jm.mu.Lock()
	jm.adopt = adopt
	jm.mu.Unlock()
}

// stop stops the fake's server, breaking the heartbeat stream.
func (jm *fakeJobManager) stop() {
	jm.stopOnce.Do(func() {
		jm.srv.Stop()
		<-jm.served
	})
}

// leading returns nil if the fake leads, else its NOT_LEADER answer.
func (jm *fakeJobManager) leading() error {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.role == roleLeader {
		return nil
	}
	jm.redirected++
	id := ""
	if jm.leaderAddr != "" {
		id = "leader"
	}
	return leader.NotLeaderError(jm.id, id, jm.leaderAddr)
}

func (jm *fakeJobManager) record(method string, msg proto.Message) {
	jm.mu.Lock()
	jm.events = append(jm.events, event{method: method, msg: proto.Clone(msg)})
	jm.mu.Unlock()
}

// accepted returns the events of method, in order.
func (jm *fakeJobManager) accepted(method string) []proto.Message {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	var out []proto.Message
	for _, e := range jm.events {
		if e.method == method {
			out = append(out, e.msg)
		}
	}
	return out
}

// index returns the position of the first event matching, or -1.
func (jm *fakeJobManager) index(match func(event) bool) int {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	return slices.IndexFunc(jm.events, match)
}

func (jm *fakeJobManager) redirects() int {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	return jm.redirected
}

// waitRegistration waits for the n-th registration (from 1) to be
// followed by a heartbeat stream, and returns it.
func (jm *fakeJobManager) waitRegistration(n int) *weirv1.RegisterTaskManagerRequest {
	jm.t.Helper()
	var reg *weirv1.RegisterTaskManagerRequest
	waitUntil(jm.t, fmt.Sprintf("%s to see registration %d", jm.id, n), func() bool {
		jm.mu.Lock()
		defer jm.mu.Unlock()
		regs := 0
		for _, e := range jm.events {
			switch {
			case e.method == "register":
				if regs++; regs == n {
					reg = e.msg.(*weirv1.RegisterTaskManagerRequest)
				}
			case e.method == "heartbeat" && regs == n:
				return true
			}
		}
		return false
	})
	return reg
}

// updateIndex is the position of the task's state update in the events, or
// -1.
func (jm *fakeJobManager) updateIndex(key taskKey, state weirv1.TaskState) int {
	return jm.index(func(e event) bool {
		u, ok := e.msg.(*weirv1.TaskStateUpdate)
		return ok && keyOf(u.GetTask()) == key && u.GetState() == state
	})
}

func (jm *fakeJobManager) waitUpdate(key taskKey, state weirv1.TaskState) {
	jm.t.Helper()
	waitUntil(jm.t, jm.id+" to hear task "+key.job+" "+taskStateName(state), func() bool {
		return jm.updateIndex(key, state) >= 0
	})
}

// client returns a TaskManager client to tm.
func (jm *fakeJobManager) client(tm *runningTM) weirv1.TaskManagerClient {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.tmConn == nil {
		c, err := grpc.NewClient(tm.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			jm.t.Fatal(err)
		}
		jm.tmConn = c
	}
	return weirv1.NewTaskManagerClient(jm.tmConn)
}

// callCtx carries term when it is positive.
func callCtx(t *testing.T, term int64) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	if term > 0 {
		ctx = leader.WithTerm(ctx, uint64(term))
	}
	return ctx
}

// deploy deploys the test job's only subtask as key into slot, with the
// given term.
func (jm *fakeJobManager) deploy(tm *runningTM, key taskKey, slot int, term int64, params map[string]string, checkpointing bool) error {
	_, err := jm.client(tm).DeployTask(callCtx(jm.t, term), &weirv1.DeployTaskRequest{Task: key.proto(), JobName: testJob,
		Parallelism: 1, Params: params, Slot: int32(slot), Checkpointing: checkpointing})
	return err
}

func (jm *fakeJobManager) cancel(tm *runningTM, key taskKey, term int64) error {
	_, err := jm.client(tm).CancelTask(callCtx(jm.t, term), &weirv1.CancelTaskRequest{Task: key.proto()})
	return err
}

// JobManager service.

func (jm *fakeJobManager) GetClusterStatus(context.Context, *weirv1.GetClusterStatusRequest) (*weirv1.ClusterStatus, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	st := &weirv1.ClusterStatus{MemberId: jm.id, RaftState: jm.role, Term: uint64(jm.term), LeaderAddress: jm.leaderAddr,
		ClientAddress: jm.addr}
	if jm.role == roleLeader || jm.claimsLeader {
		st.RaftState, st.LeaderAddress = roleLeader, jm.addr
	}
	return st, nil
}

func (jm *fakeJobManager) RegisterTaskManager(_ context.Context, req *weirv1.RegisterTaskManagerRequest) (*weirv1.RegisterTaskManagerResponse, error) {
	if err := jm.leading(); err != nil {
		return nil, err
	}
	jm.mu.Lock()
	adopt, term := jm.adopt, jm.term
	jm.registered = true
	jm.mu.Unlock()
	resp := &weirv1.RegisterTaskManagerResponse{JobManagerId: jm.id, HeartbeatIntervalMs: 20, HeartbeatTimeoutMs: 1000,
		LeaderTerm: term}
	for _, rt := range req.GetTasks() {
		if adopt == nil || adopt(rt) {
			resp.Adopted = append(resp.Adopted, rt.GetTask())
		}
	}
	jm.record("register", req)
	return resp, nil
}

func (jm *fakeJobManager) OfferSlots(_ context.Context, req *weirv1.OfferSlotsRequest) (*weirv1.OfferSlotsResponse, error) {
	if err := jm.leading(); err != nil {
		return nil, err
	}
	jm.record("offer", req)
	resp := &weirv1.OfferSlotsResponse{}
	for _, s := range req.GetSlots() {
		resp.Accepted = append(resp.Accepted, s.GetIndex())
	}
	return resp, nil
}

// Heartbeat checks leadership when the stream opens only, as a leader that
// has just stepped down may keep acknowledging an open stream.
func (jm *fakeJobManager) Heartbeat(stream weirv1.JobManager_HeartbeatServer) error {
	if err := jm.leading(); err != nil {
		return err
	}
	first := true
	for {
		hb, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if first {
			jm.record("heartbeat", hb)
			first = false
		}
		if hb.GetLeaving() {
			jm.record("leaving", hb)
			return nil
		}
		jm.mu.Lock()
		known := jm.registered
		jm.mu.Unlock()
		if err := stream.Send(&weirv1.HeartbeatAck{Known: known}); err != nil {
			return err
		}
	}
}

func (jm *fakeJobManager) UpdateTaskState(_ context.Context, req *weirv1.TaskStateUpdate) (*weirv1.TaskStateAck, error) {
	if err := jm.leading(); err != nil {
		return nil, err
	}
	jm.record("update", req)
	return &weirv1.TaskStateAck{}, nil
}

func (jm *fakeJobManager) AcknowledgeCheckpoint(_ context.Context, req *weirv1.AcknowledgeCheckpointRequest) (*weirv1.AcknowledgeCheckpointResponse, error) {
	if err := jm.leading(); err != nil {
		return nil, err
	}
	jm.record("ack", req)
	return &weirv1.AcknowledgeCheckpointResponse{}, nil
}

func (jm *fakeJobManager) DeclineCheckpoint(_ context.Context, req *weirv1.DeclineCheckpointRequest) (*weirv1.DeclineCheckpointResponse, error) {
	if err := jm.leading(); err != nil {
		return nil, err
	}
	jm.record("decline", req)
	return &weirv1.DeclineCheckpointResponse{}, nil
}

func (jm *fakeJobManager) RequestCheckpoint(_ context.Context, req *weirv1.RequestCheckpointRequest) (*weirv1.RequestCheckpointResponse, error) {
	if err := jm.leading(); err != nil {
		return nil, err
	}
	jm.record("request", req)
	return &weirv1.RequestCheckpointResponse{}, nil
}
