package taskmanager

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

var (
	running  = weirv1.TaskState_TASK_STATE_RUNNING
	finished = weirv1.TaskState_TASK_STATE_FINISHED
	canceled = weirv1.TaskState_TASK_STATE_CANCELED
)

// listed returns the registration's entry for key, or nil.
func listed(reg *weirv1.RegisterTaskManagerRequest, key taskKey) *weirv1.RunningTask {
	for _, rt := range reg.GetTasks() {
		if keyOf(rt.GetTask()) == key {
			return rt
		}
	}
	return nil
}

// The leader's heartbeat stream breaks and no leader exists for a while:
// the tasks keep processing. When a new leader appears, the TaskManager
// registers with it listing its tasks; the adopted one keeps running, the
// other is canceled.
func TestTasksOutliveTheLeaderAndTheNewLeaderAdoptsThem(t *testing.T) {
	jm1 := startFakeJobManager(t, "jm-1")
	jm2 := startFakeJobManager(t, "jm-2")
	jm1.lead(1)
	jm2.follow(jm1.addr)
	adopted := taskKey{job: "job-a", attempt: 3}
	orphan := taskKey{job: "job-b", attempt: 1}
	jm2.adopting(func(rt *weirv1.RunningTask) bool { return keyOf(rt.GetTask()) == adopted })
	tm := startTaskManager(t, jm1.addr, jm2.addr)
	jm1.waitRegistration(1)
	for i, key := range []taskKey{adopted, orphan} {
		if err := jm1.deploy(tm, key, i, 1, nil, false); err != nil {
			t.Fatalf("deploy %v: %v", key, err)
		}
		jm1.waitUpdate(key, running)
	}

	// The leader dies; the group elects none yet.
	jm1.stop()
	jm2.follow("")
	tm.waitProcessing(t, adopted, 50)
	tm.waitProcessing(t, orphan, 50)
	if !tm.has(adopted) || !tm.has(orphan) {
		t.Fatal("a task stopped while there was no leader")
	}
	if n := len(jm2.accepted("register")); n != 0 {
		t.Fatalf("registered %d times with a follower", n)
	}

	jm2.lead(2)
	reg := jm2.waitRegistration(1)
	for i, key := range []taskKey{adopted, orphan} {
		rt := listed(reg, key)
		if rt == nil || rt.GetState() != running || rt.GetSlot() != int32(i) {
			t.Errorf("registration lists %v as %v, want RUNNING in slot %d; tasks %v", key, rt, i, reg.GetTasks())
		}
	}
	jm2.waitUpdate(orphan, canceled)
	waitUntil(t, "the orphan to end", func() bool { return !tm.has(orphan) })
	tm.waitProcessing(t, adopted, 50)
	for _, m := range append(jm1.accepted("update"), jm2.accepted("update")...) {
		if u := m.(*weirv1.TaskStateUpdate); keyOf(u.GetTask()) == adopted && u.GetState() != running {
			t.Errorf("the adopted task reported %v", taskStateName(u.GetState()))
		}
	}
	if got := tm.logs.lines("level=WARN", "no JobManager leader"); len(got) != 1 {
		t.Errorf("logged the lost leader %d times at WARN, want once:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// A call of an older term than one seen is refused and changes nothing; a
// newer term raises the one the TaskManager follows.
func TestCallsOfADeposedLeaderAreRefused(t *testing.T) {
	jm := startFakeJobManager(t, "jm-1")
	jm.lead(5)
	tm := startTaskManager(t, jm.addr)
	jm.waitRegistration(1)
	task := taskKey{job: "job-a", attempt: 1}
	if err := jm.deploy(tm, task, 0, 5, nil, false); err != nil {
		t.Fatalf("deploy with the leader's term: %v", err)
	}
	jm.waitUpdate(task, running)

	refused := func(what string, err error, want string) {
		t.Helper()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("%s: %v, want FailedPrecondition saying %q", what, err, want)
		}
	}
	refused("cancel of term 4", jm.cancel(tm, task, 4), "stale leader term 4: this TaskManager follows term 5")
	refused("cancel of term 4 again", jm.cancel(tm, task, 4), "stale leader term 4: this TaskManager follows term 5")
	refused("cancel without a term", jm.cancel(tm, task, 0), "this TaskManager follows term 5")
	other := taskKey{job: "job-b", attempt: 1}
	refused("deploy of term 3", jm.deploy(tm, other, 1, 3, nil, false), "stale leader term 3")
	_, err := jm.client(tm).TriggerCheckpoint(callCtx(t, 4), &weirv1.TriggerCheckpointRequest{Task: task.proto(), CheckpointId: 1})
	refused("trigger of term 4", err, "stale leader term 4")
	_, err = jm.client(tm).NotifyCheckpoint(callCtx(t, 4), &weirv1.NotifyCheckpointRequest{Task: task.proto(), CheckpointId: 1})
	refused("notify of term 4", err, "stale leader term 4")
	tm.waitProcessing(t, task, 20)
	if tm.has(other) {
		t.Error("a deploy of a deposed leader started a task")
	}
	if got := tm.logs.lines("level=WARN", "deposed", "term=4"); len(got) != 1 {
		t.Errorf("logged the refused calls of term 4 %d times at WARN, want once:\n%s", len(got), strings.Join(got, "\n"))
	}

	// A newer leader's call goes through, and fences the old term out.
	if err := jm.cancel(tm, task, 6); err != nil {
		t.Fatalf("cancel of term 6: %v", err)
	}
	jm.waitUpdate(task, canceled)
	refused("deploy of term 5 after term 6", jm.deploy(tm, other, 1, 5, nil, false), "stale leader term 5: this TaskManager follows term 6")
}

// A JobManager that sends no terms (not a raft group) is obeyed, as long
// as no term was ever seen.
func TestCallsWithoutTermsWithoutALeaderTerm(t *testing.T) {
	jm := startFakeJobManager(t, "jm-1")
	jm.lead(0)
	tm := startTaskManager(t, jm.addr)
	jm.waitRegistration(1)
	task := taskKey{job: "job-a", attempt: 1}
	if err := jm.deploy(tm, task, 0, 0, nil, false); err != nil {
		t.Fatalf("deploy without a term: %v", err)
	}
	jm.waitUpdate(task, running)
	if err := jm.cancel(tm, task, 0); err != nil {
		t.Fatalf("cancel without a term: %v", err)
	}
	jm.waitUpdate(task, canceled)
}

// What a task says while no JobManager is reachable (its final state, its
// request for a last checkpoint) reaches the next leader after the
// TaskManager has registered there, and never the lost one.
func TestMessagesWithoutALeaderReachTheNextLeader(t *testing.T) {
	jm1 := startFakeJobManager(t, "jm-1")
	jm2 := startFakeJobManager(t, "jm-2")
	jm1.lead(1)
	jm2.follow(jm1.addr)
	tm := startTaskManager(t, jm1.addr, jm2.addr)
	jm1.waitRegistration(1)
	done := taskKey{job: "job-done", attempt: 1}
	ending := taskKey{job: "job-ending", attempt: 1}
	signal := newSignal(t)
	finishSignal(signal)
	params := map[string]string{"finish": signal}
	if err := jm1.deploy(tm, done, 0, 1, params, false); err != nil {
		t.Fatal(err)
	}
	// With checkpointing, a source at the end of its input asks for a
	// last checkpoint and waits for it.
	if err := jm1.deploy(tm, ending, 1, 1, params, true); err != nil {
		t.Fatal(err)
	}
	jm1.waitUpdate(done, running)
	jm1.waitUpdate(ending, running)

	jm1.stop()
	jm2.follow("")
	close(finishSignal(signal))
	waitUntil(t, "the finished task to end", func() bool { return !tm.has(done) })

	jm2.lead(2)
	reg := jm2.waitRegistration(1)
	if rt := listed(reg, done); rt == nil || rt.GetState() != finished {
		t.Errorf("registration lists the finished task as %v, want FINISHED; tasks %v", rt, reg.GetTasks())
	}
	if rt := listed(reg, ending); rt == nil || rt.GetState() != running {
		t.Errorf("registration lists the ending task as %v, want RUNNING; tasks %v", rt, reg.GetTasks())
	}
	jm2.waitUpdate(done, finished)
	waitUntil(t, "the checkpoint request", func() bool { return len(jm2.accepted("request")) > 0 })
	register := jm2.index(func(e event) bool { return e.method == "register" })
	update := jm2.updateIndex(done, finished)
	request := jm2.index(func(e event) bool { return e.method == "request" })
	if update < register || request < register {
		t.Errorf("events at the new leader: register %d, update %d, request %d: delivered before the registration",
			register, update, request)
	}
	if i := jm1.updateIndex(done, finished); i >= 0 {
		t.Error("the lost leader got the final state")
	}
	if got := jm2.accepted("request")[0].(*weirv1.RequestCheckpointRequest); !proto.Equal(got.GetTask(), ending.proto()) {
		t.Errorf("checkpoint request for %v, want %v", got.GetTask(), ending)
	}
	if !tm.has(ending) {
		t.Error("the task waiting for its last checkpoint ended")
	}
}

// A member that says it leads but answers NOT_LEADER sends the TaskManager
// to the leader it names; so does a leader that steps down while the
// TaskManager's stream to it is still open, when a message is refused.
func TestNotLeaderAnswersSendTheTaskManagerToTheLeader(t *testing.T) {
	jm1 := startFakeJobManager(t, "jm-1")
	jm2 := startFakeJobManager(t, "jm-2")
	jm2.lead(3)
	jm1.follow(jm2.addr)
	jm1.mu.Lock()
	jm1.claimsLeader = true // it stepped down a moment ago
	jm1.mu.Unlock()
	tm := startTaskManager(t, jm1.addr, jm2.addr)
	jm2.waitRegistration(1)
	if jm1.redirects() == 0 {
		t.Fatal("the TaskManager never called the member claiming to lead")
	}
	if n := len(jm1.accepted("register")); n != 0 {
		t.Fatalf("a follower registered the TaskManager %d times", n)
	}

	task := taskKey{job: "job-a", attempt: 1}
	signal := newSignal(t)
	finishSignal(signal)
	if err := jm2.deploy(tm, task, 0, 3, map[string]string{"finish": signal}, false); err != nil {
		t.Fatal(err)
	}
	jm2.waitUpdate(task, running)
	// jm2 steps down, keeping the open stream; jm1 leads.
	jm1.lead(4)
	jm2.follow(jm1.addr)
	before := jm2.redirects()
	close(finishSignal(signal))
	reg := jm1.waitRegistration(1)
	jm1.waitUpdate(task, finished)
	if jm2.redirects() == before {
		t.Error("the final state never met the deposed leader's NOT_LEADER")
	}
	if rt := listed(reg, task); rt == nil || rt.GetState() != finished {
		t.Errorf("registration lists the task as %v, want FINISHED", rt)
	}
	if jm2.updateIndex(task, finished) >= 0 {
		t.Error("the deposed leader accepted the final state")
	}
}
