package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/jobs/seqcheck"
	"github.com/weirstream/weir/statebackend/storage"
)

// s3Cluster starts MinIO and a cluster whose processes reach it through
// the AWS_* environment, with checkpoints under s3://weir/checkpoints.
func s3Cluster(t *testing.T, tms, slots int, jmArgs ...string) (*cluster.Cluster, *miniotest.Server, cluster.Options) {
	t.Helper()
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "weir")
	o := cluster.Options{TaskManagers: tms, Slots: slots, Env: srv.Env(),
		JobManagerArgs: append([]string{"--checkpoint-storage", "s3://weir/checkpoints", "--heartbeat-timeout", "1s",
			"--heartbeat-interval", "200ms"}, jmArgs...)}
	return startCluster(t, o), srv, o
}

func verifySequence(t *testing.T, srv *miniotest.Server, url string, keys, count int64) {
	t.Helper()
	st, err := storage.Open(url, srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	counts, bad, err := seqcheck.ReadOutput(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("%d flagged or malformed lines, first: %q", len(bad), bad[0])
	}
	if err := seqcheck.Verify(counts, keys, count); err != nil {
		t.Errorf("committed output is not exactly once: %v", err)
	}
}

// TestCreateBucket runs a cluster as the Helm chart runs it against its
// development MinIO: every process has WEIR_S3_CREATE_BUCKET=true and the
// checkpoint storage names a bucket nobody made. The first checkpoint
// creates it and lands in it.
func TestCreateBucket(t *testing.T) {
	srv := miniotest.Start(t)
	o := cluster.Options{TaskManagers: 1, Slots: 2, Env: append(srv.Env(), "WEIR_S3_CREATE_BUCKET=true"),
		JobManagerArgs: []string{"--checkpoint-storage", "s3://made-by-weir/checkpoints"}}
	c := startCluster(t, o)
	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "300ms", "--param", "rate=100")
	st := waitCheckpoint(t, c, id, 0)
	path := st.Checkpointing.Latest.Path
	if !strings.HasPrefix(path, "s3://made-by-weir/checkpoints/") {
		t.Fatalf("latest checkpoint at %s, want under s3://made-by-weir/checkpoints/", path)
	}
	// Read it back without the option: the bucket and the checkpoint are real.
	ckpt, err := storage.Open(path, srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ckpt.Size(context.Background(), "_metadata"); err != nil || n == 0 {
		t.Errorf("checkpoint %s/_metadata: %d bytes, %v", path, n, err)
	}
}

// waitCheckpoint waits until the job's attempt has completed more
// checkpoints than after.
func waitCheckpoint(t *testing.T, c *cluster.Cluster, id string, after int64) *cli.JobStatusView {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := jobStatus(t, c, id)
		if st.State == "RUNNING" && st.Checkpointing.Completed > after {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: no checkpoint after %d within a minute (state %v, failure %q)", id, after,
				st.State, st.Failure)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSequenceCheckSurvivesKilledTaskManagers is the exactly-once
// acceptance test: sequence-check on three TaskManagers with checkpoints
// every 500 ms to MinIO; a TaskManager running its tasks is killed with
// SIGKILL three times and replaced; the committed output must hold every
// (key, seq) exactly once.
func TestSequenceCheckSurvivesKilledTaskManagers(t *testing.T) {
	c, srv, o := s3Cluster(t, 3, 2)
	const keys, count = 20, 300
	id := submit(t, c, "sequence-check", "--parallelism", "2", "--checkpoint-interval", "500ms",
		"--param", fmt.Sprint("keys=", keys), "--param", fmt.Sprint("count=", count),
		"--param", "rate=300", "--param", "output=s3://weir/out")
	var completed int64
	for kill := 0; kill < 3; kill++ {
		st := waitCheckpoint(t, c, id, completed)
		completed = st.Checkpointing.Completed
		victim := st.Vertices[0].Subtasks[kill%2].TaskManagerID
		for _, tm := range c.TaskManagers {
			if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
				t.Logf("killing %s (checkpoints so far %d)", victim, completed)
				tm.Kill()
			}
		}
		if _, err := c.AddTaskManager(o, 3+kill); err != nil {
			t.Fatal(err)
		}
	}
	st := waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" {
		t.Fatalf("job %v: %s", st.State, st.Failure)
	}
	if st.Restarts < 3 {
		t.Errorf("restarts %d, want at least 3 (one per killed TaskManager)", st.Restarts)
	}
	if st.Checkpointing.Restored == nil || st.Checkpointing.Restored.ID == 0 {
		t.Errorf("status names no restored checkpoint: %v", st.Checkpointing.Restored)
	}
	verifySequence(t, srv, "s3://weir/out", keys, count)
}

// TestSavepointStopResumeRescale takes sequence-check through a savepoint,
// stop-with-savepoint, a resume at parallelism 4 and a rescale to 1, and
// checks the committed output is still exactly once.
func TestSavepointStopResumeRescale(t *testing.T) {
	c, srv, _ := s3Cluster(t, 2, 4)
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	const keys, count = 16, 400
	params := []string{"--param", fmt.Sprint("keys=", keys), "--param", fmt.Sprint("count=", count),
		"--param", "rate=200", "--param", "output=s3://weir/seq"}
	id := submit(t, c, append([]string{"sequence-check", "--parallelism", "2", "--checkpoint-interval", "300ms"}, params...)...)
	waitCheckpoint(t, c, id, 0)

	r := runWeir(t, append([]string{"job", "savepoint", id}, jm...)...)
	if r.ExitCode != 0 || !strings.HasPrefix(strings.TrimSpace(r.Stdout), "s3://weir/checkpoints/savepoints/") {
		t.Fatalf("savepoint: exit %d, stdout %q, stderr %s", r.ExitCode, r.Stdout, r.Stderr)
	}
	r = runWeir(t, append([]string{"job", "stop", id, "--savepoint"}, jm...)...)
	if r.ExitCode != 0 {
		t.Fatalf("stop: exit %d: %s", r.ExitCode, r.Stderr)
	}
	sp := strings.TrimSpace(r.Stdout)
	if st := jobStatus(t, c, id); st.State != "FINISHED" {
		t.Fatalf("after stop the job is %v", st.State)
	}
	r = runWeir(t, append([]string{"job", "checkpoints", id}, jm...)...)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, sp) || !strings.Contains(r.Stdout, "savepoint") {
		t.Errorf("checkpoints: exit %d, stdout %q", r.ExitCode, r.Stdout)
	}

	id2 := submit(t, c, append([]string{"sequence-check", "--parallelism", "4", "--checkpoint-interval", "300ms",
		"--from-savepoint", sp}, params...)...)
	st := waitCheckpoint(t, c, id2, 0)
	if st.Checkpointing.Restored == nil || st.Checkpointing.Restored.Path != sp {
		t.Errorf("resumed job restored %v, want %s", st.Checkpointing.Restored, sp)
	}
	r = runWeir(t, append([]string{"job", "rescale", id2, "--parallelism", "1"}, jm...)...)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "rescaled to parallelism 1") {
		t.Fatalf("rescale: exit %d, stdout %q, stderr %s", r.ExitCode, r.Stdout, r.Stderr)
	}
	st = waitState(t, c, id2, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" || st.Parallelism != 1 {
		t.Fatalf("job %v at parallelism %d: %s", st.State, st.Parallelism, st.Failure)
	}
	verifySequence(t, srv, "s3://weir/seq", keys, count)
}

// TestFraudStateCarriedAcrossParallelism checks that keyed state and
// source positions survive restores at other parallelisms (2 -> 4 -> 1),
// through a retained checkpoint and a stop-with-savepoint: account 3's last
// small transaction (#22) is processed at parallelism 2 and its large one
// (#27) at parallelism 4, so the one alert needs the restored flag; and
// the three runs together read transactions 0..49 exactly once.
func TestFraudStateCarriedAcrossParallelism(t *testing.T) {
	c, _, _ := s3Cluster(t, 2, 4)
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	sourceOut := func(st *cli.JobStatusView) int64 { return st.Vertices[0].Operators[0].RecordsOut }

	// Run 1 at parallelism 2: transactions 0..24, no alert; it finishes
	// with a final checkpoint, which is kept.
	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--param", "count=25", "--param", "rate=0")
	st := waitState(t, c, id, time.Minute, "FINISHED")
	if st.Checkpointing.Latest == nil || sourceOut(st) != 25 {
		t.Fatalf("run 1: checkpoint %v, %d transactions", st.Checkpointing.Latest, sourceOut(st))
	}

	// Run 2 at parallelism 4 from it, unbounded and slow, stopped with a
	// savepoint once account 3's alert (transaction 27) is out.
	id2 := submit(t, c, "fraud-detection", "--parallelism", "4", "--param", "rate=8",
		"--from-savepoint", st.Checkpointing.Latest.Path)
	alerts := func() int {
		n := 0
		for _, tm := range c.TaskManagers {
			n += countLines(tm.Stdout(), "Alert{id=3}")
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for alerts() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no alert in run 2 (the restored flag of account 3 is gone?): %+v", jobStatus(t, c, id2).JobSummaryView)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := runWeir(t, append([]string{"job", "stop", id2, "--savepoint"}, jm...)...)
	if r.ExitCode != 0 {
		t.Fatalf("stop: exit %d: %s", r.ExitCode, r.Stderr)
	}
	sp := strings.TrimSpace(r.Stdout)
	st2 := waitState(t, c, id2, time.Minute, "FINISHED")
	n2 := sourceOut(st2)

	// Run 3 at parallelism 1 from the savepoint, up to transaction 49.
	id3 := submit(t, c, "fraud-detection", "--parallelism", "1", "--param", "count=50", "--param", "rate=0",
		"--from-savepoint", sp)
	st3 := waitState(t, c, id3, time.Minute, "FINISHED", "FAILED")
	if st3.State != "FINISHED" {
		t.Fatalf("run 3 %v: %s", st3.State, st3.Failure)
	}
	if n3 := sourceOut(st3); n2+n3 != 25 || n2 < 3 {
		t.Errorf("runs 2 and 3 read %d + %d transactions, want 25 together (25..49), at least 3 in run 2", n2, n3)
	}
	if n := alerts(); n != 1 {
		t.Errorf("%d Alert{id=3} lines, want exactly 1", n)
	}
}

// TestRestoreErrors: wrong, missing and corrupt savepoints are clear errors,
// never a silent start from empty state.
func TestRestoreErrors(t *testing.T) {
	c, srv, _ := s3Cluster(t, 1, 2)
	id := submit(t, c, "fraud-detection", "--param", "count=25", "--param", "rate=0")
	waitState(t, c, id, time.Minute, "FINISHED")
	cp := jobStatus(t, c, id).Checkpointing.Latest
	if cp == nil {
		t.Fatal("no checkpoint")
	}
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing", []string{"fraud-detection", "--from-savepoint", "s3://weir/nothing-here"}, "_metadata is missing"},
		{"another job", []string{"sequence-check", "--param", "output=s3://weir/x", "--from-savepoint", cp.Path}, `taken of job "fraud-detection"`},
		{"above maxParallelism", []string{"fraud-detection", "--parallelism", "129", "--from-savepoint", cp.Path}, "maxParallelism"},
	} {
		r := runWeir(t, append(append([]string{"job", "submit"}, tc.args...), jm...)...)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want an error containing %q", tc.name, r.ExitCode, r.Stderr, tc.want)
		}
	}

	// Corrupt the detector's state file: the restored job fails naming it.
	st, err := storage.Open(cp.Path, srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(context.Background(), "fraud-detector/")
	if err != nil || len(objs) == 0 {
		t.Fatalf("listing state files: %v %v", objs, err)
	}
	data, err := st.Get(context.Background(), objs[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/3] ^= 0xff
	if err := st.Put(context.Background(), objs[0].Name, data); err != nil {
		t.Fatal(err)
	}
	id2 := submit(t, c, "fraud-detection", "--param", "count=50", "--param", "rate=0", "--from-savepoint", cp.Path)
	s := waitState(t, c, id2, time.Minute, "FAILED", "FINISHED")
	if s.State != "FAILED" || !strings.Contains(s.Failure, objs[0].Name) {
		t.Errorf("job %v with failure %q; want FAILED naming %s", s.State, s.Failure, objs[0].Name)
	}
	if s.Restarts != 0 {
		t.Errorf("corrupt state restarted the job %d times; it cannot help", s.Restarts)
	}

	// Disposing of the first job's checkpoints empties its prefix.
	var d cli.DisposeView
	weirJSON(t, &d, append([]string{"job", "dispose", id}, jm...)...)
	root, err := storage.Open("s3://weir/checkpoints", srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	if left, err := root.List(context.Background(), id+"/"); err != nil || len(left) != 0 || d.CheckpointsDeleted == 0 {
		t.Errorf("after dispose (%+v): %d objects left under %s/ (%v)", d, len(left), id, err)
	}
}

// TestFailedUploadsAreDeclined: checkpoints whose state cannot be uploaded
// (the bucket does not exist) are declined and counted; the job keeps
// running and processing.
func TestFailedUploadsAreDeclined(t *testing.T) {
	c, _, _ := s3Cluster(t, 1, 2, "--checkpoint-storage", "s3://no-such-bucket/checkpoints")
	id := submit(t, c, "fraud-detection", "--param", "source=random", "--param", "rate=1000",
		"--checkpoint-interval", "200ms")
	deadline := time.Now().Add(time.Minute)
	for {
		st := jobStatus(t, c, id)
		if st.State != "RUNNING" && st.State != "CREATED" {
			t.Fatalf("job %v: %s", st.State, st.Failure)
		}
		if st.Checkpointing.Failed >= 3 {
			if st.Checkpointing.Completed != 0 || st.Restarts != 0 {
				t.Errorf("completed %d, restarts %d; want 0 and 0", st.Checkpointing.Completed, st.Restarts)
			}
			if in := st.Vertices[0].Operators[0].RecordsOut; in == 0 {
				t.Errorf("no records processed while checkpoints failed")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d failed checkpoints after a minute", st.Checkpointing.Failed)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(c.JobManager.Stderr(), "no-such-bucket") {
		t.Errorf("the JobManager's log does not name the missing bucket")
	}
}
