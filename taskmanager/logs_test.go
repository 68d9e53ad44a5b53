package taskmanager

import (
	"strings"
	"testing"
)

// TestTaskLogsNameTheTask: the lines about a subtask's life carry its
// job, vertex, subtask and attempt, so one subtask's story can be
// filtered out of a TaskManager's log.
func TestTaskLogsNameTheTask(t *testing.T) {
	jm := startFakeJobManager(t, "jm-1")
	jm.lead(1)
	tm := startTaskManager(t, jm.addr)
	jm.waitRegistration(1)
	key := taskKey{job: "job-logs", attempt: 4}
	if err := jm.deploy(tm, key, 1, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	jm.waitUpdate(key, running)
	if err := jm.cancel(tm, key, 1); err != nil {
		t.Fatal(err)
	}
	jm.waitUpdate(key, canceled)
	attrs := []string{"job_id=job-logs", "job=" + testJob, `vertex="Count -> Discard"`, "subtask=0", "attempt=4"}
	for _, msg := range []string{`msg="task running"`, `msg="task ended"`} {
		if got := tm.logs.lines(append([]string{msg}, attrs...)...); len(got) != 1 {
			t.Errorf("%d lines %s with %s, want 1; the log:\n%s", len(got), msg, strings.Join(attrs, " "),
				strings.Join(tm.logs.lines(msg), "\n"))
		}
	}
}
