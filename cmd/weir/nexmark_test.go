package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/jobs/nexmark"
)

// TestNexmarkSurvivesAKilledTaskManager runs Nexmark queries with state
// (q5: sliding windows in two keyed steps; q8: a window join) at
// parallelism 4 on a JobManager and two TaskManagers, with checkpoints
// every 300 ms; once a checkpoint has completed, the TaskManager running
// the first source subtask is killed with SIGKILL (and replaced). The job
// restarts from the checkpoint, and the committed output of the
// exactly-once file sink equals the single-threaded reference's.
func TestNexmarkSurvivesAKilledTaskManager(t *testing.T) {
	o := cluster.Options{TaskManagers: 2, Slots: 4, DiscardStdout: true}
	c := startCluster(t, o)
	const count = 80_000 // 80 s of event time at 1000 events/s
	for i, q := range []string{"q5", "q8"} {
		t.Run(q, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			// 20000 events per source subtask at 4000/s: about 5 s.
			id := submit(t, c, "nexmark", "--parallelism", "4", "--checkpoint-interval", "300ms",
				"--param", "query="+q, "--param", fmt.Sprint("count=", count), "--param", "event-rate=1000",
				"--param", "rate=4000", "--param", "sink=files", "--param", "output="+out)
			st := waitCheckpoint(t, c, id, 0)
			victim := st.Vertices[0].Subtasks[0].TaskManagerID
			killed := false
			for _, tm := range c.TaskManagers {
				if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
					t.Logf("killing %s after %d checkpoints", victim, st.Checkpointing.Completed)
					tm.Kill()
					killed = true
				}
			}
			if !killed {
				t.Fatalf("no TaskManager process for %s", victim)
			}
			if _, err := c.AddTaskManager(o, 2+i); err != nil {
				t.Fatal(err)
			}
			st = waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
			if st.State != "FINISHED" {
				t.Fatalf("job %v: %s", st.State, st.Failure)
			}
			if st.Restarts < 1 || st.Checkpointing.Restored == nil || st.Checkpointing.Restored.ID == 0 {
				t.Errorf("restarts %d, restored %v: want a restart from a checkpoint", st.Restarts, st.Checkpointing.Restored)
			}
			got, err := nexmark.ReadOutput(out)
			if err != nil {
				t.Fatal(err)
			}
			want := nexmark.Reference(q, nexmark.GenConfig{Seed: 1, EventRate: 1000}, count)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Fatalf("%d output lines, want the reference's %d", len(got), len(want))
			}
		})
	}
}
