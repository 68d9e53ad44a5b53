package main

import (
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
)

// TestCancelAndStopLogNoWarnings: a normal cancel, a stop with savepoint
// and a clean shutdown of the cluster log no WARN, ERROR or FAILED line in
// any process; TaskManagers that shut down are "stopped", not "lost".
func TestCancelAndStopLogNoWarnings(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", t.TempDir()}})
	jm := []string{"--jobmanager", c.JobManagerAddrs}

	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "300ms")
	waitCheckpoint(t, c, id, 1)
	if r := runWeir(t, append([]string{"job", "cancel", id}, jm...)...); r.ExitCode != 0 || !strings.Contains(r.Stdout, "canceled") {
		t.Fatalf("cancel: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}

	id = submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "300ms")
	waitCheckpoint(t, c, id, 1)
	if r := runWeir(t, append([]string{"job", "stop", id, "--savepoint"}, jm...)...); r.ExitCode != 0 {
		t.Fatalf("stop: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	if st := jobStatus(t, c, id); st.State != "FINISHED" {
		t.Fatalf("after stop the job is %v", st.State)
	}

	c.Stop()
	time.Sleep(100 * time.Millisecond) // the last lines of stderr
	for _, p := range append([]*cluster.Process{c.JobManager}, c.TaskManagers...) {
		for _, line := range strings.Split(p.Stderr(), "\n") {
			for _, bad := range []string{"level=WARN", "level=ERROR", "FAILED"} {
				if strings.Contains(line, bad) {
					t.Errorf("%s logged %s: %s", p.Name, bad, line)
				}
			}
		}
	}
	jmLog := c.JobManager.Stderr()
	if n := strings.Count(jmLog, `msg="TaskManager stopped"`); n != 2 || strings.Contains(jmLog, "TaskManager lost") {
		t.Errorf(`the JobManager logged "TaskManager stopped" %d times (want 2) or logged a loss:\n%s`, n, jmLog)
	}
}
