package jobmanager

import (
	"reflect"
	"testing"
	"time"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

func tmSlots(id string, slots ...int) TaskManagerSlots {
	return TaskManagerSlots{TaskManagerID: id, Address: id + ":1", Slots: slots}
}

func slot(id string, i int) Slot { return Slot{TaskManagerID: id, Address: id + ":1", Index: i} }

func TestPlaceSlotsSpreadsOverTaskManagers(t *testing.T) {
	free := []TaskManagerSlots{tmSlots("tm-1", 0, 1), tmSlots("tm-2", 0, 1)}
	got, ok := PlaceSlots(2, free)
	want := []Slot{slot("tm-1", 0), slot("tm-2", 0)}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("PlaceSlots(2) = %v, %v; want %v", got, ok, want)
	}
	if !reflect.DeepEqual(free, []TaskManagerSlots{tmSlots("tm-1", 0, 1), tmSlots("tm-2", 0, 1)}) {
		t.Fatalf("PlaceSlots modified its input: %v", free)
	}
}

func TestPlaceSlotsOrdersByMostFree(t *testing.T) {
	free := []TaskManagerSlots{tmSlots("tm-a", 3), tmSlots("tm-b", 0, 2, 5), tmSlots("tm-c")}
	got, ok := PlaceSlots(4, free)
	want := []Slot{slot("tm-b", 0), slot("tm-a", 3), slot("tm-b", 2), slot("tm-b", 5)}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("PlaceSlots(4) = %v, %v; want %v", got, ok, want)
	}
	if _, ok := PlaceSlots(5, free); ok {
		t.Fatal("PlaceSlots(5) with 4 free slots succeeded")
	}
}

func TestFreeSlotsSubtractsBusySlots(t *testing.T) {
	running := Job{Tasks: [][]Task{
		{{State: taskRunning, TaskManagerID: "tm-1", Slot: 0}, {State: taskFinished, TaskManagerID: "tm-1", Slot: 1}},
		// Slot 1 still hosts a running subtask of another vertex.
		{{State: taskRunning, TaskManagerID: "tm-1", Slot: 0}, {State: taskRunning, TaskManagerID: "tm-1", Slot: 1}},
	}}
	done := Job{Tasks: [][]Task{{{State: taskCanceled, TaskManagerID: "tm-2", Slot: 0}}}}
	pending := Job{Tasks: [][]Task{{{State: taskScheduled}}}}
	got := FreeSlots([]TaskManagerSlots{tmSlots("tm-2", 0, 1), tmSlots("tm-1", 2, 0, 1)},
		[]Job{running, done, pending})
	want := []TaskManagerSlots{tmSlots("tm-1", 2), tmSlots("tm-2", 0, 1)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FreeSlots = %v; want %v", got, want)
	}
}

func TestScheduleFIFOWithoutHeadOfLineBlocking(t *testing.T) {
	now := time.Unix(1000, 0)
	pending := []PendingJob{
		{JobID: "big-old", SlotsNeeded: 4, Submitted: now.Add(-time.Minute), MayExpire: true},
		{JobID: "big-new", SlotsNeeded: 4, Submitted: now.Add(-time.Second), MayExpire: true},
		{JobID: "small", SlotsNeeded: 2, Submitted: now, MayExpire: true},
		{JobID: "one", SlotsNeeded: 1, Submitted: now, MayExpire: true},
		{JobID: "late", SlotsNeeded: 1, Submitted: now.Add(-time.Hour), MayExpire: true},
	}
	free := []TaskManagerSlots{tmSlots("tm-1", 0, 1), tmSlots("tm-2", 0)}
	d := Schedule(now, 30*time.Second, pending, free)
	want := Decision{
		Placements: []Placement{
			{JobID: "small", Slots: []Slot{slot("tm-1", 0), slot("tm-2", 0)}},
			{JobID: "one", Slots: []Slot{slot("tm-1", 1)}},
		},
		Expired: []Expiry{
			{JobID: "big-old", Reason: "not enough free slots: job needs 4, 3 free on 2 TaskManager(s) after waiting 30s"},
			{JobID: "late", Reason: "not enough free slots: job needs 1, 0 free on 2 TaskManager(s) after waiting 30s"},
		},
		Waiting: []Wait{{JobID: "big-new", SlotsNeeded: 4, SlotsFree: 3}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Schedule =\n%+v\nwant\n%+v", d, want)
	}
	if !reflect.DeepEqual(free, []TaskManagerSlots{tmSlots("tm-1", 0, 1), tmSlots("tm-2", 0)}) {
		t.Fatalf("Schedule modified its input: %v", free)
	}
}

func TestScheduleWithoutTaskManagers(t *testing.T) {
	now := time.Unix(1000, 0)
	d := Schedule(now, time.Second, []PendingJob{{JobID: "j", SlotsNeeded: 1, Submitted: now.Add(-time.Second), MayExpire: true}}, nil)
	if len(d.Placements) != 0 || len(d.Expired) != 1 ||
		d.Expired[0].Reason != "not enough free slots: job needs 1, 0 free on 0 TaskManager(s) after waiting 1s" {
		t.Fatalf("Schedule = %+v", d)
	}
}

// A restarted or rescaled job waits for slots however long it takes: it
// never expires, and it is placed as soon as enough slots return.
func TestScheduleNeverExpiresRestartedJobs(t *testing.T) {
	now := time.Unix(1000, 0)
	pending := []PendingJob{
		{JobID: "restarted", SlotsNeeded: 3, Submitted: now.Add(-time.Hour)},
		{JobID: "first", SlotsNeeded: 3, Submitted: now.Add(-time.Hour), MayExpire: true},
	}
	free := []TaskManagerSlots{tmSlots("tm-1", 0, 1)}
	d := Schedule(now, 2*time.Second, pending, free)
	want := Decision{Expired: []Expiry{{JobID: "first",
		Reason: "not enough free slots: job needs 3, 2 free on 1 TaskManager(s) after waiting 2s"}},
		Waiting: []Wait{{JobID: "restarted", SlotsNeeded: 3, SlotsFree: 2}}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Schedule =\n%+v\nwant\n%+v", d, want)
	}
	// A TaskManager comes back an hour later.
	free = append(free, tmSlots("tm-2", 0))
	d = Schedule(now.Add(time.Hour), 2*time.Second, pending[:1], free)
	if len(d.Expired) != 0 || len(d.Placements) != 1 || d.Placements[0].JobID != "restarted" {
		t.Fatalf("after slots returned: %+v", d)
	}
}

// A rescaled job that does not fit at its new parallelism takes its
// previous one if that fits, ahead of younger jobs; if neither fits it
// waits.
func TestScheduleFallsBackRescaledJobs(t *testing.T) {
	now := time.Unix(1000, 0)
	pending := []PendingJob{
		{JobID: "rescaled", SlotsNeeded: 4, FallbackSlots: 2, Submitted: now},
		{JobID: "younger", SlotsNeeded: 1, Submitted: now, MayExpire: true},
	}
	free := []TaskManagerSlots{tmSlots("tm-1", 0, 1), tmSlots("tm-2", 0)}
	d := Schedule(now, time.Second, pending, free)
	want := Decision{
		Placements: []Placement{{JobID: "younger", Slots: []Slot{slot("tm-1", 1)}}},
		Fallbacks: []Fallback{{JobID: "rescaled", Slots: []Slot{slot("tm-1", 0), slot("tm-2", 0)},
			Reason: "it needs 4 slots, 3 free on 2 TaskManager(s)"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Schedule =\n%+v\nwant\n%+v", d, want)
	}
	if d := Schedule(now, time.Second, pending[:1], free[1:]); len(d.Placements)+len(d.Fallbacks)+len(d.Expired) != 0 ||
		len(d.Waiting) != 1 {
		t.Fatalf("neither parallelism fits, yet %+v", d)
	}
	if d := Schedule(now, time.Second, pending[:1], append(free, tmSlots("tm-3", 0))); len(d.Placements) != 1 || len(d.Fallbacks) != 0 {
		t.Fatalf("the new parallelism fits, yet %+v", d)
	}
}

func TestSlotsAvailableToCountsTheJobsOwn(t *testing.T) {
	mine := Job{ID: "mine", Tasks: [][]Task{{{State: taskRunning, TaskManagerID: "tm-1", Slot: 0}}}}
	other := Job{ID: "other", Tasks: [][]Task{{{State: taskRunning, TaskManagerID: "tm-1", Slot: 1}}}}
	lost := Job{ID: "lost", Tasks: [][]Task{{{State: taskRunning, TaskManagerID: "tm-gone", Slot: 0}}}}
	offered := []TaskManagerSlots{tmSlots("tm-1", 0, 1, 2)}
	if n := SlotsAvailableTo("mine", offered, []Job{mine, other, lost}); n != 2 {
		t.Fatalf("SlotsAvailableTo = %d; want 2 (one free, one its own)", n)
	}
}

// Only a job's first attempt may give up waiting for slots.
func TestSlotRequestExpiresOnlyForFirstSubmission(t *testing.T) {
	s := restartable(t)
	if j := jobState(t, s, "j1"); !j.SlotRequestExpires() {
		t.Fatal("a first submission should expire")
	}
	mustApply(t, s, TaskManagerLost{TaskManagerID: "tm-2", Reason: "lost", TimeMs: 20})
	mustApply(t, s, update(0, 0, "tm-1", taskCanceled, ""))
	mustApply(t, s, update(1, 0, "tm-1", taskCanceled, ""))
	mustApply(t, s, RestartJob{JobID: "j1", TimeMs: 500})
	if j := jobState(t, s, "j1"); !j.Pending() || j.SlotRequestExpires() || j.WaitingSince != 500 {
		t.Fatalf("restarted job: pending %v, expires %v, waiting since %d", j.Pending(), j.SlotRequestExpires(), j.WaitingSince)
	}
}

// The slots a placement yields are what DeployJob records: subtask j of
// every vertex in slot j.
func TestDeployJobUsesSlotSharing(t *testing.T) {
	s := NewMemStore()
	mustApply(t, s, submitCmd("j1", 1, 2))
	slots, _ := PlaceSlots(2, []TaskManagerSlots{tmSlots("tm-1", 0, 1), tmSlots("tm-2", 0, 1)})
	mustApply(t, s, DeployJob{JobID: "j1", Slots: slots, TimeMs: 5})
	j, _ := s.Job("j1")
	if got := j.Tasks[0][0]; got.TaskManagerID != "tm-1" || got.Slot != 0 || got.State != taskDeploying {
		t.Fatalf("source subtask 0: %+v", got)
	}
	if got := j.Tasks[1][1]; got.TaskManagerID != "tm-2" || got.Slot != 0 {
		t.Fatalf("vertex 1 subtask 1: %+v", got)
	}
	if j.Tasks[0][0].TaskManagerID != j.Tasks[1][0].TaskManagerID {
		t.Fatal("subtask 0 of both vertices should share a slot")
	}
	if j.StartTime != 5 || j.State != weirv1.JobState_JOB_STATE_CREATED {
		t.Fatalf("job after deploy: state %v start %d", j.State, j.StartTime)
	}
}
