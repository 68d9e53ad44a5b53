package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/internal/miniotest"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// haCluster starts MinIO, etcd and a raft group of three JobManagers with
// tms TaskManagers, checkpoints on MinIO.
func haCluster(t *testing.T, tms int) (*cluster.Cluster, *miniotest.Server, cluster.Options) {
	t.Helper()
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "weir")
	etcd := etcdtest.StartProcess(t)
	env := append(srv.Env(), "WEIR_ETCD_ENDPOINTS="+etcd.Endpoint)
	o := cluster.Options{JobManagers: 3, RaftDir: t.TempDir(), TaskManagers: tms, Slots: 2, Env: env,
		JobManagerArgs: []string{"--checkpoint-storage", "s3://weir/checkpoints", "--heartbeat-timeout", "3s",
			"--heartbeat-interval", "200ms"}}
	return startCluster(t, o), srv, o
}

// submitSequence submits sequence-check with checkpoints every 500 ms,
// its output under url.
func submitSequence(t *testing.T, c *cluster.Cluster, parallelism, keys, count, rate int, url string) string {
	t.Helper()
	return submit(t, c, "sequence-check", "--parallelism", fmt.Sprint(parallelism), "--checkpoint-interval", "500ms",
		"--param", fmt.Sprint("keys=", keys), "--param", fmt.Sprint("count=", count),
		"--param", fmt.Sprint("rate=", rate), "--param", "output="+url)
}

// memberStatus asks JobManager i for its view of the group; nil if it
// does not answer.
func memberStatus(t *testing.T, c *cluster.Cluster, i int) *weirv1.ClusterStatus {
	t.Helper()
	conn, err := grpc.NewClient(c.JobManagers[i].Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := weirv1.NewJobManagerClient(conn).GetClusterStatus(ctx, &weirv1.GetClusterStatusRequest{})
	if err != nil {
		return nil
	}
	return st
}

// waitLeader waits until one of the JobManagers other than not leads, and
// returns its index.
func waitLeader(t *testing.T, c *cluster.Cluster, not int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for i := range c.JobManagers {
			if i == not {
				continue
			}
			if st := memberStatus(t, c, i); st != nil && st.GetRaftState() == "leader" {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader elected among the JobManagers other than %d:\n%s", not, c.Logs())
	return -1
}

// waitCheckpointAbove waits until the job's latest checkpoint has an ID
// above id.
func waitCheckpointAbove(t *testing.T, c *cluster.Cluster, job string, id int64) int64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := jobStatus(t, c, job)
		if l := st.Checkpointing.Latest; l != nil && l.ID > id && st.State == "RUNNING" {
			return l.ID
		}
		if time.Now().After(deadline) || st.State == "FAILED" {
			t.Fatalf("job %s: no checkpoint above %d (state %s, failure %q)", job, id, st.State, st.Failure)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The leader is killed three times while sequence-check runs: each time a
// new leader adopts the running tasks (the attempt stays 0, no restart),
// completes checkpoints with rising IDs, and the committed output is
// exactly once and complete.
func TestLeaderKilledThreeTimesRestartsNoTask(t *testing.T) {
	c, srv, _ := haCluster(t, 3)
	const keys, count = 20, 500
	id := submitSequence(t, c, 3, keys, count, 200, "s3://weir/ha-out")
	latest := waitCheckpointAbove(t, c, id, 0)
	for kill := range 3 {
		l := waitLeader(t, c, -1)
		t.Logf("killing leader jm-%d after checkpoint %d", l+1, latest)
		c.JobManagers[l].Kill()
		nl := waitLeader(t, c, l)
		t.Logf("jm-%d leads", nl+1)
		next := waitCheckpointAbove(t, c, id, latest)
		st := jobStatus(t, c, id)
		if st.Attempt != 0 || st.Restarts != 0 {
			t.Fatalf("after failover %d: attempt %d, restarts %d; want the tasks adopted, not restarted", kill+1, st.Attempt, st.Restarts)
		}
		latest = next
		if err := c.StartJobManager(l); err != nil {
			t.Fatal(err)
		}
	}
	st := waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" || st.Attempt != 0 || st.Restarts != 0 {
		t.Fatalf("job %s, attempt %d, restarts %d: %s", st.State, st.Attempt, st.Restarts, st.Failure)
	}
	verifySequence(t, srv, "s3://weir/ha-out", keys, count)
}

// With two of three JobManagers down there is no leader: tasks keep
// running, the CLI says so plainly, and a TaskManager killed meanwhile is
// failed over once a quorum is back, from the latest checkpoint.
func TestQuorumLossAndReturn(t *testing.T) {
	c, srv, o := haCluster(t, 3)
	const keys, count = 12, 600
	id := submitSequence(t, c, 2, keys, count, 150, "s3://weir/quorum-out")
	waitCheckpointAbove(t, c, id, 0)
	st := jobStatus(t, c, id)
	victim := st.Vertices[0].Subtasks[0].TaskManagerID

	l := waitLeader(t, c, -1)
	down := []int{l, (l + 1) % 3}
	for _, i := range down {
		c.JobManagers[i].Kill()
	}
	r := runWeir(t, "job", "status", id, "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "no JobManager leader") || !strings.Contains(r.Stderr, "reached 1 of 3") {
		t.Errorf("status without a quorum: exit %d, stderr %q; want a plain no-leader message", r.ExitCode, r.Stderr)
	}
	for _, tm := range c.TaskManagers {
		if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
			t.Logf("killing %s while there is no leader", victim)
			tm.Kill()
		}
	}
	for _, i := range down {
		if err := c.StartJobManager(i); err != nil {
			t.Fatal(err)
		}
	}
	waitLeader(t, c, -1)
	if _, err := c.AddTaskManager(o, 3); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" || st.Restarts < 1 {
		t.Fatalf("job %s, restarts %d (want the lost TaskManager failed over): %s", st.State, st.Restarts, st.Failure)
	}
	verifySequence(t, srv, "s3://weir/quorum-out", keys, count)
}

// A leader stopped with SIGSTOP past the election of another, then resumed,
// cannot disturb the job: it steps down, the job keeps its attempt and its
// checkpoints go on from the new leader.
func TestDeposedLeaderCannotDisturbTheJob(t *testing.T) {
	c, srv, _ := haCluster(t, 2)
	const keys, count = 10, 400
	id := submitSequence(t, c, 2, keys, count, 100, "s3://weir/fenced-out")
	latest := waitCheckpointAbove(t, c, id, 0)
	l := waitLeader(t, c, -1)
	if err := c.JobManagers[l].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	nl := waitLeader(t, c, l)
	latest = waitCheckpointAbove(t, c, id, latest)
	if err := c.JobManagers[l].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st := memberStatus(t, c, l); st != nil && st.GetRaftState() == "follower" && st.GetLeaderId() == fmt.Sprintf("jm-%d", nl+1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed jm-%d did not step down", l+1)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitCheckpointAbove(t, c, id, latest)
	st := waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" || st.Attempt != 0 || st.Restarts != 0 {
		t.Fatalf("job %s, attempt %d, restarts %d: %s", st.State, st.Attempt, st.Restarts, st.Failure)
	}
	verifySequence(t, srv, "s3://weir/fenced-out", keys, count)
}

// A member whose raft directory is wiped rejoins and catches up, and the
// group keeps its jobs when the leader is killed afterwards (the rejoined
// member is part of the new quorum).
func TestWipedMemberRejoins(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, cluster.Options{JobManagers: 3, RaftDir: dir,
		JobManagerArgs: []string{"--raft-snapshot-threshold", "16", "--raft-trailing-logs", "4", "--raft-snapshot-interval", "100ms"}})
	var ids []string
	for range 20 {
		ids = append(ids, submit(t, c, "fraud-detection", "--parallelism", "1", "--param", "count=1"))
	}
	l := waitLeader(t, c, -1)
	f := (l + 1) % 3
	c.JobManagers[f].Kill()
	if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("jm-%d", f+1))); err != nil {
		t.Fatal(err)
	}
	if err := c.StartJobManager(f); err != nil {
		t.Fatal(err)
	}
	leaderIndex := memberStatus(t, c, l).GetCommitIndex()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := memberStatus(t, c, f)
		if st != nil && st.GetRaftState() == "follower" && st.GetLastAppliedIndex() >= leaderIndex {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wiped jm-%d did not catch up to index %d: %v", f+1, leaderIndex, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.JobManagers[l].Kill()
	waitLeader(t, c, l)
	var list cli.JobListView
	weirJSON(t, &list, "job", "list", "--jobmanager", c.JobManagerAddrs)
	if len(list.Jobs) != len(ids) {
		t.Fatalf("%d jobs after the wipe and a failover, want %d", len(list.Jobs), len(ids))
	}
}
