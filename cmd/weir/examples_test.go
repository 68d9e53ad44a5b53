package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
)

// buildExample builds the custom weir binary of examples/velocity, a module
// of its own that registers a job through package weir.
func buildExample(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "velocity")
	cmd := exec.Command("go", "build", "-o", bin, "./velocity")
	cmd.Dir = filepath.Join("..", "..", "examples")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building examples/velocity: %v\n%s", err, out)
	}
	return bin
}

// The custom job runs on a cluster of the custom binary's processes, with
// its keyed state, its timer and an exchange between two TaskManagers.
func TestCustomJobFromExamplesOnACluster(t *testing.T) {
	bin := buildExample(t)
	c := startClusterOf(t, bin, cluster.Options{TaskManagers: 2, Slots: 2})
	r := runWeir(t, "job", "describe", "card-velocity")
	if r.ExitCode == 0 {
		t.Errorf("plain weir describes card-velocity; it should not have the example's job:\n%s", r.Stdout)
	}
	res, err := cluster.Run(t.Context(), bin, "job", "describe", "card-velocity")
	if err != nil || res.ExitCode != 0 || !strings.Contains(res.Stdout, "window") || !strings.Contains(res.Stdout, "duration") {
		t.Fatalf("velocity job describe: %v exit %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}

	id := submit(t, c, "card-velocity", "--parallelism", "2", "--param", "count=1000", "--param", "rate=0",
		"--param", "window=1h")
	st := waitState(t, c, id, time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" {
		t.Fatalf("job %v: %s", st.State, st.Failure)
	}
	var out strings.Builder
	for _, tm := range c.TaskManagers {
		out.WriteString(tm.Stdout())
	}
	if got, want := out.String(), "VelocityAlert{card=7, count=21}\n"; got != want {
		t.Errorf("alerts %q, want %q", got, want)
	}
}

// A TaskManager whose binary lacks the job refuses its deployment: the job
// fails at once with the reason, and is not restarted in a loop.
func TestMismatchedBinariesFailTheDeployClearly(t *testing.T) {
	bin := buildExample(t)
	c := startClusterOf(t, bin, cluster.Options{})
	c.Weir = weirBin // the TaskManager runs plain weir, without card-velocity
	if _, err := c.AddTaskManager(cluster.Options{Slots: 2}, 0); err != nil {
		t.Fatal(err)
	}
	id := submit(t, c, "card-velocity", "--parallelism", "2", "--checkpoint-interval", "1s")
	st := waitState(t, c, id, time.Minute, "FAILED")
	for _, want := range []string{"tm-1", "card-velocity", "does not register it", "same jobs registered"} {
		if !strings.Contains(st.Failure, want) {
			t.Errorf("failure %q lacks %q", st.Failure, want)
		}
	}
	if st.Restarts != 0 {
		t.Errorf("%d restarts; a binary mismatch cannot be cured by restarting", st.Restarts)
	}
	if !strings.Contains(c.JobManager.Stderr(), "other jobs registered") {
		t.Errorf("the JobManager did not warn at registration about the TaskManager's binary")
	}
}
