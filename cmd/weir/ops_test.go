package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/jobs/seqcheck"
	"github.com/weirstream/weir/statebackend/storage"
)

// runWeirIn runs weir in the working directory dir with extra environment.
func runWeirIn(t *testing.T, dir string, env []string, args ...string) cluster.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, weirBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cluster.Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.ExitCode = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("weir %v: %v", args, err)
	}
	return r
}

// decodeJSON decodes one command's --json output strictly into v.
func decodeJSON(t *testing.T, r cluster.Result, v any) {
	t.Helper()
	if r.ExitCode != 0 {
		t.Fatalf("exit %d: %s", r.ExitCode, r.Stderr)
	}
	d := json.NewDecoder(strings.NewReader(r.Stdout))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.Stdout)
	}
}

// emptyDirs lists the directories under root (root excluded) that hold
// nothing, and the chk-* directories, relative to root.
func emptyDirs(t *testing.T, root string) (empty, chk []string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasPrefix(e.Name(), "chk-") {
			chk = append(chk, rel)
		}
		if entries, err := os.ReadDir(p); err == nil && len(entries) == 0 {
			empty = append(empty, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return empty, chk
}

// sequenceCounts reads sequence-check's committed output in dir.
func sequenceCounts(t *testing.T, dir string) map[[2]int64]int {
	t.Helper()
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	counts, bad, err := seqcheck.ReadOutput(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("%d flagged or malformed lines, first %q", len(bad), bad[0])
	}
	return counts
}

// TestLocalSequenceCheckLeavesStorageClean runs sequence-check on `weir
// local` with checkpoints every 50 ms, two retained, in directory storage:
// afterwards no empty chk-* (or any other) directory is left, only the
// two retained checkpoints. The relative output directory lands under the
// working directory. A second job into the same output fails at once
// (no restarts) naming the directory and append=true; with append=true it
// adds its records.
func TestLocalSequenceCheckLeavesStorageClean(t *testing.T) {
	work := t.TempDir()
	ck := filepath.Join(work, "ck")
	const keys, count = 8, 150
	args := func(extra ...string) []string {
		return append([]string{"local", "--log-level", "debug", "--job", "sequence-check", "--parallelism", "2", "--checkpoint-interval", "50ms",
			"--checkpoints-retained", "2", "--checkpoint-storage", "ck", "--param", fmt.Sprint("keys=", keys),
			"--param", fmt.Sprint("count=", count), "--param", "rate=500", "--param", "output=out"}, extra...)
	}
	r := runWeirIn(t, work, nil, args()...)
	if r.ExitCode != 0 {
		t.Fatalf("weir local: exit %d:\n%s", r.ExitCode, r.Stderr)
	}
	if n := strings.Count(r.Stderr, "checkpoint complete"); n < 4 {
		t.Fatalf("only %d checkpoints completed; the test needs retired ones:\n%s", n, r.Stderr)
	}
	empty, chk := emptyDirs(t, ck)
	if len(empty) > 0 {
		t.Errorf("empty directories left in the checkpoint storage: %q", empty)
	}
	if len(chk) != 2 {
		t.Errorf("checkpoint directories %q, want the 2 retained", chk)
	}
	if err := seqcheck.Verify(sequenceCounts(t, filepath.Join(work, "out")), keys, count); err != nil {
		t.Errorf("output: %v", err)
	}

	// Another job into the same directory: refused, unrecoverably.
	start := time.Now()
	r = runWeirIn(t, work, nil, args()...)
	if r.ExitCode == 0 {
		t.Fatal("a second job wrote into the first one's output directory")
	}
	for _, want := range []string{filepath.Join(work, "out"), "append=true", "another job"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.Stderr)
		}
	}
	if strings.Contains(r.Stderr, "restarting job") {
		t.Errorf("the refused job restarted:\n%s", r.Stderr)
	}
	t.Logf("refused after %v", time.Since(start))

	r = runWeirIn(t, work, nil, args("--param", "append=true")...)
	if r.ExitCode != 0 {
		t.Fatalf("append=true: exit %d:\n%s", r.ExitCode, r.Stderr)
	}
	counts := sequenceCounts(t, filepath.Join(work, "out"))
	if len(counts) != keys*count {
		t.Errorf("%d distinct records after appending, want %d", len(counts), keys*count)
	}
	for kv, n := range counts {
		if n != 2 {
			t.Errorf("record %v committed %d times after two jobs, want 2", kv, n)
			break
		}
	}
}

// TestLocalTemporaryCheckpoints: `weir local` without --checkpoint-storage
// checkpoints into a temporary directory it removes at exit, and keeps
// savepoints in $TMPDIR/weir/savepoints; a relative --target is resolved
// against the client's working directory.
func TestLocalTemporaryCheckpoints(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out")
	p, err := cluster.Start("local", weirBin, []string{"TMPDIR=" + tmp}, true, "local", "--job", "sequence-check",
		"--checkpoint-interval", "100ms", "--param", "keys=4", "--param", "rate=100", "--param", "output="+out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Log(p.Stderr())
		}
	})
	if _, err := p.WaitAddr(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	c := &cluster.Cluster{Weir: weirBin, JobManager: p, JobManagerAddrs: p.Addr}
	jm := []string{"--jobmanager", p.Addr}
	var list cli.JobListView
	deadline := time.Now().Add(30 * time.Second)
	for len(list.Jobs) == 0 && time.Now().Before(deadline) {
		weirJSON(t, &list, append([]string{"job", "list"}, jm...)...)
		time.Sleep(50 * time.Millisecond)
	}
	if len(list.Jobs) != 1 {
		t.Fatalf("jobs %+v, want the one local submitted", list.Jobs)
	}
	id := list.Jobs[0].JobID
	st := waitCheckpoint(t, c, id, 0)
	scratch, _ := filepath.Glob(filepath.Join(tmp, "weir-local-checkpoints-*"))
	if len(scratch) != 1 || !strings.Contains(st.Checkpointing.Latest.Path, scratch[0]) {
		t.Fatalf("temporary checkpoint dirs %q, latest checkpoint %s", scratch, st.Checkpointing.Latest.Path)
	}
	savepoints := filepath.Join(tmp, "weir", "savepoints")
	if !strings.Contains(p.Stderr(), savepoints) {
		t.Errorf("local does not say where savepoints go (%s)", savepoints)
	}

	var sp cli.SavepointView
	weirJSON(t, &sp, append([]string{"job", "savepoint", id}, jm...)...)
	if !strings.HasPrefix(sp.SavepointPath, "file://"+savepoints+"/") || sp.JobID != id {
		t.Errorf("savepoint %+v, want it under %s", sp, savepoints)
	}
	work := t.TempDir()
	var rel cli.SavepointView
	decodeJSON(t, runWeirIn(t, work, nil, append([]string{"job", "savepoint", id, "--target", "mine", "--json"}, jm...)...), &rel)
	if !strings.HasPrefix(rel.SavepointPath, filepath.Join(work, "mine")+"/") {
		t.Errorf("savepoint with --target mine at %s, want it under %s", rel.SavepointPath, filepath.Join(work, "mine"))
	}
	if _, err := os.Stat(filepath.Join(strings.TrimPrefix(rel.SavepointPath, "file://"), "_metadata")); err != nil {
		t.Errorf("the relative-target savepoint is not where its path says: %v", err)
	}

	p.Stop() // SIGTERM: local cancels the job and exits
	if left, _ := filepath.Glob(filepath.Join(tmp, "weir-local-checkpoints-*")); len(left) != 0 {
		t.Errorf("local left its checkpoint directory behind: %q", left)
	}
	if _, err := os.Stat(filepath.Join(strings.TrimPrefix(sp.SavepointPath, "file://"), "_metadata")); err != nil {
		t.Errorf("the savepoint is gone after local exited: %v", err)
	}
}

// TestJobCommandsJSONAndDispose drives every job command with --json on a
// cluster with directory storage, decoding each output strictly into its
// documented view, and disposes of ended jobs' checkpoints.
func TestJobCommandsJSONAndDispose(t *testing.T) {
	ck := t.TempDir()
	c := startCluster(t, cluster.Options{TaskManagers: 1, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", ck}})
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	cmd := func(args ...string) []string { return append(args, jm...) }

	var sub cli.SubmitView
	weirJSON(t, &sub, cmd("job", "submit", "fraud-detection", "--checkpoint-interval", "100ms", "--checkpoints-retained", "2")...)
	id := sub.JobID
	st := waitCheckpoint(t, c, id, 2)
	if st.State != "RUNNING" || st.Vertices[0].Subtasks[0].State != "RUNNING" || st.Checkpointing.IntervalMs != 100 {
		t.Fatalf("status %+v", st)
	}

	// Not while it runs, and not of a job that does not exist.
	for _, tc := range []struct{ id, want string }{{id, "RUNNING"}, {"0123456789abcdef0123456789abcdef", "not found"}} {
		r := runWeir(t, cmd("job", "dispose", tc.id)...)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("dispose %s: exit %d, stderr %q; want an error saying %q", tc.id, r.ExitCode, r.Stderr, tc.want)
		}
	}

	var sp cli.SavepointView
	weirJSON(t, &sp, cmd("job", "savepoint", id)...)
	var rs cli.RescaleView
	weirJSON(t, &rs, cmd("job", "rescale", id, "--parallelism", "2")...)
	if rs.Parallelism != 2 || rs.SavepointPath == "" || rs.JobID != id {
		t.Errorf("rescale %+v", rs)
	}
	waitCheckpoint(t, c, id, jobStatus(t, c, id).Checkpointing.Completed)
	var stop cli.SavepointView
	weirJSON(t, &stop, cmd("job", "stop", id, "--savepoint")...)

	var cps cli.CheckpointListView
	weirJSON(t, &cps, cmd("job", "checkpoints", id)...)
	periodic, savepoints := 0, 0
	for _, cp := range cps.Checkpoints {
		if cp.Savepoint {
			savepoints++
		} else {
			periodic++
		}
	}
	if periodic != 2 || savepoints != 3 || cps.DisposedTimeMs != 0 {
		t.Fatalf("checkpoints %+v: want 2 retained and 3 savepoints", cps)
	}

	var d cli.DisposeView
	weirJSON(t, &d, cmd("job", "dispose", id)...)
	if d.CheckpointsDeleted != 2 || d.Path != storage.Join(ck, id) {
		t.Errorf("dispose %+v, want 2 checkpoints deleted with %s", d, storage.Join(ck, id))
	}
	if _, err := os.Stat(filepath.Join(ck, id)); !os.IsNotExist(err) {
		t.Errorf("%s still there after dispose (%v)", filepath.Join(ck, id), err)
	}
	for _, p := range []string{sp.SavepointPath, rs.SavepointPath, stop.SavepointPath} {
		if _, err := os.Stat(filepath.Join(p, "_metadata")); err != nil {
			t.Errorf("dispose deleted savepoint %s: %v", p, err)
		}
	}
	weirJSON(t, &cps, cmd("job", "checkpoints", id)...)
	if len(cps.Checkpoints) != 3 || cps.DisposedTimeMs == 0 {
		t.Errorf("after dispose: %+v, want the 3 savepoints and a disposal time", cps)
	}
	if empty, _ := emptyDirs(t, ck); len(empty) > 0 {
		t.Errorf("empty directories in the checkpoint storage: %q", empty)
	}

	// Cancel another job; list both.
	weirJSON(t, &sub, cmd("job", "submit", "fraud-detection", "--checkpoint-interval", "0")...)
	waitState(t, c, sub.JobID, 30*time.Second, "RUNNING")
	var cancel cli.CancelView
	weirJSON(t, &cancel, cmd("job", "cancel", sub.JobID)...)
	if cancel.State != "CANCELED" {
		t.Errorf("cancel %+v", cancel)
	}
	var list cli.JobListView
	weirJSON(t, &list, cmd("job", "list")...)
	if len(list.Jobs) != 2 || list.Jobs[0].JobID != sub.JobID || list.Jobs[1].State != "FINISHED" || list.Jobs[1].EndTimeMs == 0 {
		t.Errorf("list %+v", list)
	}

	var all cli.RegisteredJobsView
	weirJSON(t, &all, "jobs")
	var one cli.RegisteredJobView
	weirJSON(t, &one, "job", "describe", "sequence-check")
	if len(all.Jobs) < 2 || one.Name != "sequence-check" || len(one.Params) == 0 {
		t.Errorf("jobs %+v, describe %+v", all, one)
	}
	var v cli.VersionView
	weirJSON(t, &v, "version")
	if v.Version == "" || !strings.HasPrefix(v.GoVersion, "go1.") || v.OS == "" || v.Arch == "" {
		t.Errorf("version %+v", v)
	}
}

// TestEnvironmentVariables: WEIR_<FLAG> sets any flag, the TaskManager's
// --jobmanager and --slots included; a malformed value is an error naming
// the variable.
func TestEnvironmentVariables(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 0})
	tm, err := cluster.Start("taskmanager-env", weirBin, []string{"WEIR_JOBMANAGER=" + c.JobManagerAddrs, "WEIR_SLOTS=3",
		"WEIR_ID=tm-env"}, true, "taskmanager", "--listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.TaskManagers = append(c.TaskManagers, tm)
	if err := tm.WaitRegistered(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	id := submit(t, c, "fraud-detection", "--parallelism", "3", "--checkpoint-interval", "0")
	st := waitState(t, c, id, 30*time.Second, "RUNNING", "FAILED")
	if st.State != "RUNNING" || st.Vertices[1].Subtasks[2].TaskManagerID != "tm-env" {
		t.Errorf("job %s on %+v: want 3 slots on tm-env", st.State, st.Vertices[1].Subtasks)
	}
	r := runWeirIn(t, t.TempDir(), []string{"WEIR_JOBMANAGER=" + c.JobManagerAddrs}, "job", "cancel", id)
	if r.ExitCode != 0 {
		t.Errorf("cancel with WEIR_JOBMANAGER: exit %d: %s", r.ExitCode, r.Stderr)
	}
	r = runWeirIn(t, t.TempDir(), []string{"WEIR_SLOTS=many"}, "taskmanager")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, `WEIR_SLOTS="many"`) || !strings.Contains(r.Stderr, "--slots") {
		t.Errorf("WEIR_SLOTS=many: exit %d, stderr %q; want an error naming the variable", r.ExitCode, r.Stderr)
	}
}
