package taskmanager

import (
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// TestTasksRunOnTheTaskManagersClock: the test job's source asks to be
// polled again 1 ms after each record. On a manual clock given to the
// TaskManager it emits one record per millisecond the test moves the
// clock, however much real time passes; on the wall clock it would run
// far ahead.
func TestTasksRunOnTheTaskManagersClock(t *testing.T) {
	jm := startFakeJobManager(t, "jm-1")
	jm.lead(1)
	clock := engine.NewManualClock(time.Unix(1_700_000_000, 0))
	tm := startTaskManagerWithClock(t, clock, jm.addr)
	jm.waitRegistration(1)
	key := taskKey{job: "job-clock", attempt: 1}
	if err := jm.deploy(tm, key, 0, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	jm.waitUpdate(key, running)
	for i := int64(1); i <= 5; i++ {
		waitUntil(t, "the next record", func() bool { return tm.recordsOut(key) == i })
		clock.Advance(time.Millisecond)
	}
	waitUntil(t, "the sixth record", func() bool { return tm.recordsOut(key) >= 6 })
	if n := tm.recordsOut(key); n != 6 {
		t.Fatalf("the source emitted %d records in 5 ms of its clock, want 6", n)
	}
}
