package jobmanager

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime/engine"
)

const (
	created   = weirv1.JobState_JOB_STATE_CREATED
	running   = weirv1.JobState_JOB_STATE_RUNNING
	canceling = weirv1.JobState_JOB_STATE_CANCELING
	canceled  = weirv1.JobState_JOB_STATE_CANCELED
	finished  = weirv1.JobState_JOB_STATE_FINISHED
	failed    = weirv1.JobState_JOB_STATE_FAILED
)

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("error %v; want %v containing %q", err, code, msg)
	}
}

func TestSubmitUnknownJob(t *testing.T) {
	c := startJobManager(t, Config{})
	_, err := c.client.SubmitJob(c.ctx(), &weirv1.SubmitJobRequest{JobName: "no-such-job"})
	wantStatus(t, err, codes.NotFound, `unknown job "no-such-job" (known jobs: [`)
	wantStatus(t, err, codes.NotFound, testJob)
}

func TestSubmitInvalidJob(t *testing.T) {
	c := startJobManager(t, Config{})
	_, err := c.client.SubmitJob(c.ctx(), &weirv1.SubmitJobRequest{JobName: testJob, Parallelism: -1})
	wantStatus(t, err, codes.InvalidArgument, "parallelism -1 must not be negative")
	_, err = c.client.SubmitJob(c.ctx(), &weirv1.SubmitJobRequest{JobName: testJob, Params: map[string]string{"bogus": "1"}})
	wantStatus(t, err, codes.InvalidArgument, "unknown parameter(s) bogus")
	_, err = c.client.SubmitJob(c.ctx(), &weirv1.SubmitJobRequest{JobName: testJob,
		Params: map[string]string{"source-parallelism": "0"}})
	wantStatus(t, err, codes.InvalidArgument, "parallelism 0 must be at least 1")
	if jobs := c.listJobs(); len(jobs) != 0 {
		t.Fatalf("invalid submissions stored jobs: %v", jobs)
	}
}

func (c *cluster) listJobs() []*weirv1.JobSummary {
	c.t.Helper()
	resp, err := c.client.ListJobs(c.ctx(), &weirv1.ListJobsRequest{})
	if err != nil {
		c.t.Fatalf("ListJobs: %v", err)
	}
	return resp.GetJobs()
}

func TestUnknownJobID(t *testing.T) {
	c := startJobManager(t, Config{})
	_, err := c.client.GetJobStatus(c.ctx(), &weirv1.GetJobStatusRequest{JobId: "nope"})
	wantStatus(t, err, codes.NotFound, "job nope not found")
	_, err = c.client.CancelJob(c.ctx(), &weirv1.CancelJobRequest{JobId: "nope"})
	wantStatus(t, err, codes.NotFound, "job nope not found")
}

func TestListJobsNewestFirstAndCancelPending(t *testing.T) {
	c := startJobManager(t, Config{})
	first := c.submit(1, nil)
	second := c.submit(3, map[string]string{"source-parallelism": "2"})
	jobs := c.listJobs()
	if len(jobs) != 2 || jobs[0].GetJobId() != second || jobs[1].GetJobId() != first {
		t.Fatalf("ListJobs = %v; want %s then %s", jobs, second, first)
	}
	if j := jobs[0]; j.GetJobName() != testJob || j.GetState() != created || j.GetParallelism() != 3 ||
		j.GetSubmitTimeMs() == 0 || j.GetStartTimeMs() != 0 {
		t.Fatalf("summary %v", j)
	}

	// Without TaskManagers the jobs wait for slots; cancelling one ends it
	// at once.
	resp, err := c.client.CancelJob(c.ctx(), &weirv1.CancelJobRequest{JobId: first})
	if err != nil || resp.GetState() != canceled {
		t.Fatalf("CancelJob = %v, %v; want CANCELED", resp, err)
	}
	st := c.status(first)
	if st.GetSummary().GetState() != canceled || st.GetSummary().GetEndTimeMs() == 0 {
		t.Fatalf("status %v", st)
	}
	if c.status(second).GetSummary().GetState() != created {
		t.Fatal("the other job changed state")
	}
}

func TestSchedulingSpreadsSubtasksOverTaskManagers(t *testing.T) {
	c := startJobManager(t, Config{})
	tm1 := c.startTaskManager("tm-1", 2)
	tm2 := c.startTaskManager("tm-2", 2)
	id := c.submit(2, nil)
	st := c.waitState(id, running)

	if got := st.GetSummary(); got.GetStartTimeMs() < got.GetSubmitTimeMs() || got.GetSubmitTimeMs() == 0 ||
		st.GetMaxParallelism() != 128 {
		t.Fatalf("status %v", st)
	}
	if len(st.GetVertices()) != 2 {
		t.Fatalf("vertices %v", st.GetVertices())
	}
	src, sink := st.GetVertices()[0], st.GetVertices()[1]
	if src.GetName() != "Numbers" || src.GetInputPartitioning() != "" || src.GetParallelism() != 1 ||
		sink.GetName() != "Double -> Discard" || sink.GetInputPartitioning() != "rebalance" || sink.GetParallelism() != 2 ||
		len(sink.GetOperators()) != 2 || sink.GetOperators()[0].GetUid() != "double" || sink.GetOperators()[1].GetUid() != "discard" {
		t.Fatalf("vertices %v", st.GetVertices())
	}
	// One slot on each TaskManager; subtask 0 of both vertices shares one.
	s0, s1 := sink.GetSubtasks()[0], sink.GetSubtasks()[1]
	if s0.GetTaskManagerId() != "tm-1" || s1.GetTaskManagerId() != "tm-2" || s0.GetSlot() != 0 || s1.GetSlot() != 0 ||
		s0.GetTaskManagerAddress() != tm1.addr || s1.GetTaskManagerAddress() != tm2.addr {
		t.Fatalf("subtasks %v", sink.GetSubtasks())
	}
	if sub := src.GetSubtasks()[0]; sub.GetTaskManagerId() != "tm-1" || sub.GetSlot() != 0 ||
		sub.GetState() != weirv1.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("source subtask %v", sub)
	}

	d1, d2 := tm1.deployed(), tm2.deployed()
	if len(d1) != 2 || len(d2) != 1 {
		t.Fatalf("deployments: tm-1 %v, tm-2 %v", d1, d2)
	}
	for _, req := range append(d1, d2...) {
		if req.GetJobName() != testJob || req.GetParallelism() != 2 || req.GetTask().GetAttempt() != 0 ||
			req.GetTask().GetJobId() != id || req.GetSlot() != 0 {
			t.Fatalf("DeployTask %v", req)
		}
		switch req.GetTask().GetVertexId() {
		case 0:
			out := req.GetOutputs()
			if len(out) != 1 || out[0].GetConsumerVertexId() != 1 ||
				strings.Join(out[0].GetAddresses(), ",") != tm1.addr+","+tm2.addr {
				t.Fatalf("source outputs %v", out)
			}
		case 1:
			if len(req.GetOutputs()) != 0 {
				t.Fatalf("sink outputs %v", req.GetOutputs())
			}
		}
	}
}

func TestNotEnoughSlotsFailsAfterTimeout(t *testing.T) {
	c := startJobManager(t, Config{SlotRequestTimeout: 300 * time.Millisecond})
	tm := c.startTaskManager("tm-1", 2)
	id := c.submit(4, nil)
	st := c.waitState(id, failed)
	want := "not enough free slots: job needs 4, 2 free on 1 TaskManager(s) after waiting 300ms"
	if st.GetSummary().GetFailure() != want {
		t.Fatalf("failure %q; want %q", st.GetSummary().GetFailure(), want)
	}
	if d := tm.deployed(); len(d) != 0 {
		t.Fatalf("deployed %v", d)
	}
	for _, v := range st.GetVertices() {
		for _, s := range v.GetSubtasks() {
			if s.GetState() != weirv1.TaskState_TASK_STATE_CANCELED {
				t.Fatalf("subtask %v", s)
			}
		}
	}
}

func TestJobFinishesAndFreesItsSlots(t *testing.T) {
	c := startJobManager(t, Config{})
	tm := c.startTaskManager("tm-1", 2, manual)
	id := c.submit(2, nil)
	waitUntil(t, "3 deployments", func() bool { return len(tm.deployed()) == 3 })
	st := c.status(id)
	if st.GetSummary().GetState() != created || st.GetSummary().GetStartTimeMs() == 0 ||
		st.GetVertices()[1].GetSubtasks()[1].GetState() != weirv1.TaskState_TASK_STATE_DEPLOYING {
		t.Fatalf("status while deploying %v", st)
	}
	for _, req := range tm.deployed() {
		tm.reportNow(req.GetTask(), weirv1.TaskState_TASK_STATE_RUNNING, "", nil)
	}
	c.waitState(id, running)

	// Tasks finish with their final metrics.
	counts := map[int32][]*weirv1.OperatorCounters{
		0: {{RecordsOut: 10}},
		1: {{RecordsIn: 5, RecordsOut: 5}, {RecordsIn: 5}},
	}
	for _, req := range tm.deployed() {
		m := &weirv1.TaskMetrics{Operators: counts[req.GetTask().GetVertexId()]}
		tm.reportNow(req.GetTask(), weirv1.TaskState_TASK_STATE_FINISHED, "", m)
	}
	st = c.waitState(id, finished)
	if st.GetSummary().GetEndTimeMs() < st.GetSummary().GetStartTimeMs() || st.GetSummary().GetFailure() != "" {
		t.Fatalf("summary %v", st.GetSummary())
	}
	if ops := st.GetVertices()[1].GetOperators(); ops[0].GetRecordsIn() != 10 || ops[1].GetRecordsIn() != 10 ||
		st.GetVertices()[0].GetOperators()[0].GetRecordsOut() != 10 {
		t.Fatalf("final metrics not counted: %v", st.GetVertices())
	}

	_, err := c.client.CancelJob(c.ctx(), &weirv1.CancelJobRequest{JobId: id})
	wantStatus(t, err, codes.FailedPrecondition, fmt.Sprintf("job %s is already FINISHED", id))

	// Both slots are free again.
	next := c.submit(2, nil)
	waitUntil(t, "the next job's deployments", func() bool { return len(tm.deployed()) == 6 })
	if got := c.status(next).GetVertices()[1].GetSubtasks()[1].GetTaskManagerId(); got != "tm-1" {
		t.Fatalf("next job placed on %q", got)
	}
}

func TestTaskFailureFailsJobAndCancelsOtherTasks(t *testing.T) {
	c := startJobManager(t, Config{})
	tm1 := c.startTaskManager("tm-1", 2)
	tm2 := c.startTaskManager("tm-2", 2)
	id := c.submit(2, nil)
	c.waitState(id, running)

	tm2.reportNow(tid(id, 1, 1), weirv1.TaskState_TASK_STATE_FAILED, "boom", nil)
	st := c.waitState(id, failed)
	want := "subtask Double -> Discard (2/2) on tm-2 failed: boom"
	if st.GetSummary().GetFailure() != want {
		t.Fatalf("failure %q; want %q", st.GetSummary().GetFailure(), want)
	}
	waitUntil(t, "CancelTask on tm-1", func() bool {
		cs := tm1.canceled()
		return hasTask(cs, tid(id, 0, 0)) && hasTask(cs, tid(id, 1, 0))
	})
	st = c.waitStatus(id, "all subtasks terminal", func(st *weirv1.JobStatus) bool {
		for _, v := range st.GetVertices() {
			for _, s := range v.GetSubtasks() {
				if !TerminalTask(s.GetState()) {
					return false
				}
			}
		}
		return true
	})
	if got := st.GetVertices()[1].GetSubtasks()[1]; got.GetState() != weirv1.TaskState_TASK_STATE_FAILED || got.GetFailure() != "boom" {
		t.Fatalf("failed subtask %v", got)
	}
	if got := st.GetVertices()[1].GetSubtasks()[0].GetState(); got != weirv1.TaskState_TASK_STATE_CANCELED {
		t.Fatalf("other subtask %v", got)
	}
	if cs := tm2.canceled(); len(cs) != 0 {
		t.Fatalf("the failed task was cancelled: %v", cs)
	}
	if st.GetSummary().GetState() != failed || st.GetSummary().GetFailure() != want {
		t.Fatalf("summary changed after the cancels: %v", st.GetSummary())
	}
}

func TestDeployFailureFailsJob(t *testing.T) {
	c := startJobManager(t, Config{})
	tm := c.startTaskManager("tm-1", 1, failDeploys(status.Error(codes.ResourceExhausted, "disk full")))
	id := c.submit(1, nil)
	st := c.waitState(id, failed)
	if f := st.GetSummary().GetFailure(); !strings.Contains(f, "deployment to "+tm.addr+" failed") || !strings.Contains(f, "disk full") {
		t.Fatalf("failure %q", f)
	}
}

func TestHeartbeatStreamBrokenFailsJobAtOnce(t *testing.T) {
	// A long timeout: only the broken stream can fail the job.
	c := startJobManager(t, Config{HeartbeatTimeout: time.Hour})
	tm1 := c.startTaskManager("tm-1", 2)
	tm2 := c.startTaskManager("tm-2", 2)
	id := c.submit(2, nil)
	c.waitState(id, running)

	tm2.closeHeartbeats()
	st := c.waitState(id, failed)
	want := fmt.Sprintf("TaskManager tm-2 (%s) lost: heartbeat stream broken", tm2.addr)
	if st.GetSummary().GetFailure() != want {
		t.Fatalf("failure %q; want %q", st.GetSummary().GetFailure(), want)
	}
	waitUntil(t, "CancelTask on tm-1", func() bool {
		cs := tm1.canceled()
		return hasTask(cs, tid(id, 0, 0)) && hasTask(cs, tid(id, 1, 0))
	})

	// The JobManager no longer knows tm-2.
	tm2.startHeartbeats(20 * time.Millisecond)
	waitUntil(t, "a known=false ack", func() bool { known, ok := tm2.lastAck(); return ok && !known })
	_, err := c.client.OfferSlots(c.ctx(), &weirv1.OfferSlotsRequest{TaskManagerId: "tm-2"})
	wantStatus(t, err, codes.NotFound, "TaskManager tm-2 is not registered")
	if known, _ := tm1.lastAck(); !known {
		t.Fatal("tm-1 is no longer known")
	}
}

func TestHeartbeatSilenceFailsJob(t *testing.T) {
	c := startJobManager(t, Config{HeartbeatTimeout: 300 * time.Millisecond})
	tm := c.startTaskManager("tm-1", 2)
	id := c.submit(2, nil)
	c.waitState(id, running)

	tm.pauseHeartbeats()
	st := c.waitState(id, failed)
	want := fmt.Sprintf("TaskManager tm-1 (%s) lost: no heartbeat for 300ms", tm.addr)
	if st.GetSummary().GetFailure() != want {
		t.Fatalf("failure %q; want %q", st.GetSummary().GetFailure(), want)
	}
	for _, v := range st.GetVertices() {
		for _, s := range v.GetSubtasks() {
			if s.GetState() != weirv1.TaskState_TASK_STATE_FAILED || s.GetFailure() != want {
				t.Fatalf("subtask %v", s)
			}
		}
	}
}

// A TaskManager that registers again without its task (it restarted)
// fails the job; one that lists it keeps it running, adopted.
func TestReRegistrationAdoptsOnlyTheTasksItRuns(t *testing.T) {
	c := startJobManager(t, Config{})
	tm := c.startTaskManager("tm-1", 1)
	id := c.submit(1, nil)
	st := c.waitState(id, running)
	attempt := st.GetAttempt()
	own := &weirv1.RunningTask{Task: tid(id, 0, 0), State: weirv1.TaskState_TASK_STATE_RUNNING}
	own.Task.Attempt = attempt
	stranger := &weirv1.RunningTask{Task: tid("no-such-job", 0, 0), State: weirv1.TaskState_TASK_STATE_RUNNING}
	resp, err := c.client.RegisterTaskManager(c.ctx(), &weirv1.RegisterTaskManagerRequest{
		TaskManagerId: "tm-1", Address: tm.addr, Slots: 1, Tasks: []*weirv1.RunningTask{own, stranger}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetAdopted()) != 1 || resp.GetAdopted()[0].GetJobId() != id || resp.GetLeaderTerm() < 1 {
		t.Fatalf("adopted %v (term %d), want the job's task only", resp.GetAdopted(), resp.GetLeaderTerm())
	}
	if st := c.status(id); st.GetSummary().GetState() != running {
		t.Fatalf("job %v after an adopting registration", st.GetSummary().GetState())
	}

	_, err = c.client.RegisterTaskManager(c.ctx(), &weirv1.RegisterTaskManagerRequest{
		TaskManagerId: "tm-1", Address: tm.addr, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	st = c.waitState(id, failed)
	if want := "TaskManager tm-1 registered again without this task"; !strings.Contains(st.GetSummary().GetFailure(), want) {
		t.Fatalf("failure %q; want it to contain %q", st.GetSummary().GetFailure(), want)
	}
}

func TestCancelRunningJob(t *testing.T) {
	c := startJobManager(t, Config{})
	tm1 := c.startTaskManager("tm-1", 2)
	tm2 := c.startTaskManager("tm-2", 2)
	id := c.submit(2, nil)
	c.waitState(id, running)

	resp, err := c.client.CancelJob(c.ctx(), &weirv1.CancelJobRequest{JobId: id})
	if err != nil || resp.GetState() != canceling {
		t.Fatalf("CancelJob = %v, %v; want CANCELING", resp, err)
	}
	st := c.waitState(id, canceled)
	if st.GetSummary().GetEndTimeMs() == 0 || st.GetSummary().GetFailure() != "" {
		t.Fatalf("summary %v", st.GetSummary())
	}
	cs := append(tm1.canceled(), tm2.canceled()...)
	for _, want := range []*weirv1.TaskID{tid(id, 0, 0), tid(id, 1, 0), tid(id, 1, 1)} {
		if !hasTask(cs, want) {
			t.Fatalf("no CancelTask for %v: %v", want, cs)
		}
	}
	for _, v := range st.GetVertices() {
		for _, s := range v.GetSubtasks() {
			if s.GetState() != weirv1.TaskState_TASK_STATE_CANCELED {
				t.Fatalf("subtask %v", s)
			}
		}
	}
	_, err = c.client.CancelJob(c.ctx(), &weirv1.CancelJobRequest{JobId: id})
	wantStatus(t, err, codes.FailedPrecondition, fmt.Sprintf("job %s is already CANCELED", id))
}

// A TaskManager that cannot be reached counts its tasks as cancelled.
func TestCancelWithUnreachableTaskManager(t *testing.T) {
	c := startJobManager(t, Config{HeartbeatTimeout: time.Hour})
	tm := c.startTaskManager("tm-1", 1, manual)
	id := c.submit(1, nil)
	waitUntil(t, "the deployment", func() bool { return len(tm.deployed()) == 1 })
	for _, req := range tm.deployed() {
		tm.reportNow(req.GetTask(), weirv1.TaskState_TASK_STATE_RUNNING, "", nil)
	}
	c.waitState(id, running)
	// The TaskManager's server stops; its registration and heartbeats live on.
	tm.stopServer()
	if _, err := c.client.CancelJob(c.ctx(), &weirv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	st := c.waitState(id, canceled)
	if f := st.GetVertices()[0].GetSubtasks()[0].GetFailure(); !strings.Contains(f, "counted as canceled") {
		t.Fatalf("subtask failure %q", f)
	}
}

func TestStatusAggregatesHeartbeatMetrics(t *testing.T) {
	c := startJobManager(t, Config{})
	tm1 := c.startTaskManager("tm-1", 2)
	tm2 := c.startTaskManager("tm-2", 2)
	id := c.submit(2, nil)
	c.waitState(id, running)

	var fast, slow engine.Histogram
	for range 3 {
		fast.Record(int64(time.Millisecond))
	}
	slow.Record(int64(50 * time.Millisecond))
	task := func(v, i int) *weirv1.TaskID { return tid(id, v, i) }
	tm1.setMetrics(
		&weirv1.TaskMetrics{Task: task(0, 0), Operators: []*weirv1.OperatorCounters{{RecordsOut: 100}}},
		&weirv1.TaskMetrics{Task: task(1, 0), Operators: []*weirv1.OperatorCounters{{RecordsIn: 60, RecordsOut: 60}, {RecordsIn: 60}},
			LatencyBuckets: fast.Snapshot()},
		// Metrics of an attempt the job does not run are ignored.
		&weirv1.TaskMetrics{Task: &weirv1.TaskID{JobId: id, VertexId: 1, Attempt: 7},
			Operators: []*weirv1.OperatorCounters{{RecordsIn: 1000}}})
	tm2.setMetrics(
		&weirv1.TaskMetrics{Task: task(1, 1), Operators: []*weirv1.OperatorCounters{{RecordsIn: 40, RecordsOut: 40}, {RecordsIn: 40, RecordsOut: 3}},
			LatencyBuckets: slow.Snapshot(), BusyNs: 7, IdleNs: 8, BackpressuredNs: 9,
			KeyGroupFirst: 64, KeyGroupRecords: []int64{5, 0, 35}})

	st := c.waitStatus(id, "metrics of all subtasks", func(st *weirv1.JobStatus) bool {
		return st.GetVertices()[1].GetOperators()[0].GetRecordsIn() == 100 &&
			st.GetVertices()[0].GetOperators()[0].GetRecordsOut() == 100
	})
	ops := st.GetVertices()[1].GetOperators()
	if sub := st.GetVertices()[1].GetSubtasks()[1]; sub.GetBusyNs() != 7 || sub.GetIdleNs() != 8 || sub.GetBackpressuredNs() != 9 ||
		sub.GetRecordsIn() != 40 || sub.GetRecordsOut() != 3 || sub.GetKeyGroupFirst() != 64 || !slices.Equal(sub.GetKeyGroupRecords(), []int64{5, 0, 35}) {
		t.Errorf("subtask 1 of vertex 1: %v, want its heartbeat's times and head-in, tail-out counts", sub)
	}
	if ops[0].GetRecordsOut() != 100 || ops[1].GetRecordsIn() != 100 || ops[1].GetRecordsOut() != 3 ||
		ops[0].GetName() != "Double" || ops[1].GetName() != "Discard" {
		t.Fatalf("operators %v", ops)
	}
	upper := func(d time.Duration) int64 { return engine.HistogramBucketUpper(engine.HistogramBucket(int64(d))) }
	lat := st.GetLatency()
	if lat.GetCount() != 4 || lat.GetP50Ns() != upper(time.Millisecond) || lat.GetP99Ns() != upper(50*time.Millisecond) ||
		lat.GetMaxNs() != upper(50*time.Millisecond) {
		t.Fatalf("latency %v", lat)
	}
}
