package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
)

// weirBin is the weir binary built once for the multi-process tests.
var weirBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weir-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weirBin = filepath.Join(dir, "weir")
	args := []string{"build", "-o", weirBin}
	if os.Getenv("WEIR_TEST_RACE") != "" {
		// The processes themselves under the race detector; with
		// GORACE=log_path=... their reports go to files.
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building weir: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runWeir(t *testing.T, args ...string) cluster.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := cluster.Run(ctx, weirBin, args...)
	if err != nil {
		t.Fatalf("weir %v: %v", args, err)
	}
	return r
}

func startCluster(t *testing.T, o cluster.Options) *cluster.Cluster {
	t.Helper()
	return startClusterOf(t, weirBin, o)
}

// startClusterOf starts a cluster of the given binary's processes, stopped
// (and its logs shown on failure) when the test ends.
func startClusterOf(t *testing.T, bin string, o cluster.Options) *cluster.Cluster {
	t.Helper()
	c, err := cluster.StartCluster(bin, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Log(c.Logs())
		}
	})
	return c
}

func submit(t *testing.T, c *cluster.Cluster, args ...string) string {
	t.Helper()
	r := runWeir(t, append([]string{"job", "submit", "--jobmanager", c.JobManagerAddrs}, args...)...)
	if r.ExitCode != 0 {
		t.Fatalf("submit %v: exit %d: %s", args, r.ExitCode, r.Stderr)
	}
	id := strings.TrimSpace(r.Stdout)
	if len(id) != 32 {
		t.Fatalf("submit printed %q, want a 32-character job ID alone", r.Stdout)
	}
	return id
}

// weirJSON runs a weir command with --json and decodes its output into
// v strictly: a field the documented view lacks is an error.
func weirJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	r := runWeir(t, append(args, "--json")...)
	if r.ExitCode != 0 {
		t.Fatalf("weir %v: exit %d: %s", args, r.ExitCode, r.Stderr)
	}
	d := json.NewDecoder(strings.NewReader(r.Stdout))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("weir %v --json: %v\n%s", args, err, r.Stdout)
	}
	if d.More() {
		t.Fatalf("weir %v --json printed more than one value:\n%s", args, r.Stdout)
	}
}

func jobStatus(t *testing.T, c *cluster.Cluster, id string) *cli.JobStatusView {
	t.Helper()
	st := &cli.JobStatusView{}
	weirJSON(t, st, "job", "status", id, "--jobmanager", c.JobManagerAddrs)
	return st
}

// waitState polls until the job is in one of the states.
func waitState(t *testing.T, c *cluster.Cluster, id string, within time.Duration, states ...string) *cli.JobStatusView {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := jobStatus(t, c, id)
		for _, s := range states {
			if st.State == s {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %v (failure %q) after %v, want one of %v", id, st.State, st.Failure, within, states)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countLines(s, line string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			n++
		}
	}
	return n
}

func TestFraudJobAcrossTwoTaskManagers(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2})
	// 20 cycles of the walkthrough's 50 transactions at 500 per second.
	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--param", "rate=500", "--param", "count=1000")
	st := waitState(t, c, id, time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" {
		t.Fatalf("job %v: %s", st.State, st.Failure)
	}

	var out strings.Builder
	for _, tm := range c.TaskManagers {
		out.WriteString(tm.Stdout())
	}
	if n := countLines(out.String(), "Alert{id=3}"); n != 20 {
		t.Errorf("%d Alert{id=3} lines, want 20 (one per cycle)", n)
	}
	if n := strings.Count(out.String(), "Alert{"); n != 20 {
		t.Errorf("%d alerts in all, want only account 3's 20:\n%s", n, out.String())
	}

	// The keyBy crosses TaskManagers: the detector's two subtasks run on
	// different TaskManagers, and every transaction reached one of them.
	if len(st.Vertices) != 2 {
		t.Fatalf("%d vertices, want source and detector->sink", len(st.Vertices))
	}
	det := st.Vertices[1]
	if det.InputPartitioning != "hash" || len(det.Subtasks) != 2 {
		t.Fatalf("detector vertex %+v", det)
	}
	if det.Subtasks[0].TaskManagerID == det.Subtasks[1].TaskManagerID {
		t.Errorf("both detector subtasks on %s, want them spread", det.Subtasks[0].TaskManagerID)
	}
	if got := det.Operators[0].RecordsIn; got != 1000 {
		t.Errorf("fraud-detector records in %d, want 1000", got)
	}
	if got := det.Operators[1].RecordsIn; got != 20 {
		t.Errorf("send-alerts records in %d, want 20", got)
	}
	if got := st.Vertices[0].Operators[0].RecordsOut; got != 1000 {
		t.Errorf("transactions records out %d, want 1000", got)
	}

	// The human-readable status names the subtasks and where they ran.
	r := runWeir(t, "job", "status", id, "--jobmanager", c.JobManagerAddrs)
	for _, want := range []string{"FINISHED", "fraud-detector -> send-alerts", "tm-1", "tm-2", "input hash"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = runWeir(t, "job", "list", "--jobmanager", c.JobManagerAddrs)
	if !strings.Contains(r.Stdout, id) || !strings.Contains(r.Stdout, "FINISHED") {
		t.Errorf("job list lacks the job:\n%s", r.Stdout)
	}
}

func TestLocalRunsTheFraudJobToCompletion(t *testing.T) {
	r := runWeir(t, "local", "--taskmanagers", "2", "--slots", "2", "--parallelism", "2",
		"--job", "fraud-detection", "--param", "rate=0", "--param", "count=500")
	if r.ExitCode != 0 {
		t.Fatalf("weir local exit %d:\n%s", r.ExitCode, r.Stderr)
	}
	if want := strings.Repeat("Alert{id=3}\n", 10); r.Stdout != want {
		t.Errorf("stdout %q, want ten Alert{id=3} lines and nothing else", r.Stdout)
	}
}

func TestCancelRunningJob(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 1, Slots: 2})
	id := submit(t, c, "fraud-detection", "--parallelism", "2")
	waitState(t, c, id, 30*time.Second, "RUNNING")
	r := runWeir(t, "job", "cancel", id, "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "canceled") {
		t.Fatalf("cancel: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if st := jobStatus(t, c, id); st.State != "CANCELED" {
		t.Errorf("state %v after cancel", st.State)
	}
	r = runWeir(t, "job", "cancel", id, "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "CANCELED") {
		t.Errorf("second cancel: exit %d, stderr %q; want an error saying it is already CANCELED", r.ExitCode, r.Stderr)
	}
}

// Without periodic checkpoints there is nothing to restart from: a lost
// TaskManager fails the job.
func TestTaskManagerKilledFailsTheJob(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 1, JobManagerArgs: []string{"--heartbeat-timeout", "2s"}})
	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "0")
	waitState(t, c, id, 30*time.Second, "RUNNING")
	c.TaskManagers[1].Kill()
	st := waitState(t, c, id, 30*time.Second, "FAILED")
	if !strings.Contains(st.Failure, "tm-2") || !strings.Contains(st.Failure, "lost") {
		t.Errorf("failure %q, want it to say TaskManager tm-2 was lost", st.Failure)
	}
}

func TestNotEnoughSlots(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--slot-timeout", "1s"}})
	id := submit(t, c, "fraud-detection", "--parallelism", "8", "--param", "source=random")
	st := waitState(t, c, id, 30*time.Second, "FAILED")
	for _, want := range []string{"8", "4 free"} {
		if !strings.Contains(st.Failure, want) {
			t.Errorf("failure %q, want it to name %q", st.Failure, want)
		}
	}
}

func TestClientErrors(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 1, Slots: 1})
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown job", append([]string{"job", "submit", "no-such-job"}, jm...), `unknown job "no-such-job"`},
		{"zero parallelism", append([]string{"job", "submit", "fraud-detection", "--parallelism", "0"}, jm...), "--parallelism 0 must be at least 1"},
		{"parallelism above maxParallelism", append([]string{"job", "submit", "fraud-detection", "--parallelism", "500"}, jm...), "above maxParallelism"},
		{"malformed param", append([]string{"job", "submit", "fraud-detection", "--param", "rate"}, jm...), `malformed --param "rate"`},
		{"bad param value", append([]string{"job", "submit", "fraud-detection", "--param", "rate=fast"}, jm...), `rate="fast"`},
		{"unknown param", append([]string{"job", "submit", "fraud-detection", "--param", "colour=red"}, jm...), "unknown parameter(s) colour"},
		{"unknown job id", append([]string{"job", "status", "0123456789abcdef0123456789abcdef"}, jm...), "not found"},
		{"unknown job id cancel", append([]string{"job", "cancel", "0123456789abcdef0123456789abcdef"}, jm...), "not found"},
		{"unreachable jobmanager", []string{"job", "list", "--jobmanager", "127.0.0.1:1"}, "cannot reach the JobManager at 127.0.0.1:1"},
		{"local bad slots", []string{"local", "--slots", "0"}, "--slots 0 must be at least 1"},
		{"savepoint of unknown job", append([]string{"job", "savepoint", "0123456789abcdef0123456789abcdef"}, jm...), "not found"},
		{"stop without --savepoint", append([]string{"job", "stop", "0123456789abcdef0123456789abcdef"}, jm...), "pass --savepoint"},
		{"rescale to 0", append([]string{"job", "rescale", "0123456789abcdef0123456789abcdef", "--parallelism", "0"}, jm...), "--parallelism 0 must be at least 1"},
		{"rescale without --parallelism", append([]string{"job", "rescale", "0123456789abcdef0123456789abcdef"}, jm...), `required flag(s) "parallelism" not set`},
		{"local parallelism above its slots", []string{"local", "--taskmanagers", "2", "--slots", "2", "--parallelism", "5"},
			"needs 5 slots, but the local cluster has 4 (--taskmanagers 2 × --slots 2): raise --slots or --taskmanagers, or lower --parallelism"},
		{"checkpoints of unknown job", append([]string{"job", "checkpoints", "0123456789abcdef0123456789abcdef"}, jm...), "not found"},
		{"negative checkpoint interval", append([]string{"job", "submit", "fraud-detection", "--checkpoint-interval", "-1s"}, jm...), "must not be negative"},
		{"bad checkpoint storage", []string{"jobmanager", "--checkpoint-storage", "ftp://x/y"}, "--checkpoint-storage"},
		{"relative file URL", []string{"jobmanager", "--checkpoint-storage", "file://ck"}, "cannot be relative"},
		{"relative file URL target", append([]string{"job", "savepoint", "0123456789abcdef0123456789abcdef", "--target", "file://sp"}, jm...), "--target"},
		{"rescale without --parallelism", append([]string{"job", "rescale", "0123456789abcdef0123456789abcdef"}, jm...), `required flag(s) "parallelism" not set`},
		{"dispose of unknown job", append([]string{"job", "dispose", "0123456789abcdef0123456789abcdef"}, jm...), "not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runWeir(t, tc.args...)
			if r.ExitCode == 0 {
				t.Fatalf("exit 0, want failure; stdout %q", r.Stdout)
			}
			if !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("stderr %q, want it to contain %q", r.Stderr, tc.want)
			}
		})
	}
	if r := runWeir(t, append([]string{"job", "list"}, jm...)...); r.ExitCode != 0 || !strings.Contains(r.Stdout, "no jobs") {
		t.Errorf("list after rejected submissions: exit %d %q, want no jobs", r.ExitCode, r.Stdout)
	}
}
