package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/etcdtest"
)

// deadAddr is a 127.0.0.1 address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func clusterStatus(t *testing.T, args ...string) *cli.ClusterStatusView {
	t.Helper()
	v := &cli.ClusterStatusView{}
	weirJSON(t, v, append([]string{"cluster", "status"}, args...)...)
	return v
}

// TestClusterStatusAndAJobManagerList runs the client commands and a
// TaskManager with a --jobmanager list whose first address is dead.
func TestClusterStatusAndAJobManagerList(t *testing.T) {
	o := cluster.Options{TaskManagers: 1, Slots: 2}
	c := startCluster(t, o)
	list := deadAddr(t) + "," + c.JobManager.Addr
	o.TaskManagerArgs = func(int) []string { return []string{"--jobmanager", list} }
	if _, err := c.AddTaskManager(o, 1); err != nil {
		t.Fatal(err)
	}

	jm := []string{"--jobmanager", list}
	id := strings.TrimSpace(runWeir(t, append([]string{"job", "submit", "fraud-detection", "--parallelism", "2"}, jm...)...).Stdout)
	if len(id) != 32 {
		t.Fatalf("submit over a list printed %q", id)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := &cli.JobStatusView{}
		weirJSON(t, st, append([]string{"job", "status", id}, jm...)...)
		if st.State == "RUNNING" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job is %s after 30s, want RUNNING", st.State)
		}
		time.Sleep(100 * time.Millisecond)
	}

	v := clusterStatus(t, jm...)
	if !v.LeaderReached || v.LeaderAddress != c.JobManager.Addr || v.Reached != 1 || len(v.Members) != 2 {
		t.Fatalf("cluster status: %+v", v)
	}
	if m := v.Members[0]; m.State != "leader" || m.ClientAddress != c.JobManager.Addr || m.ID == "" {
		t.Errorf("the JobManager: %+v", m)
	}
	if m := v.Members[1]; m.State != "unreachable" || m.ID != "" || !strings.Contains(m.Error, "refused") {
		t.Errorf("the dead address: %+v", m)
	}
	free := 0
	if len(v.TaskManagers) != 2 || v.TaskManagers[0].ID != "tm-1" || v.TaskManagers[1].ID != "tm-2" {
		t.Fatalf("TaskManagers %+v, want tm-1 and tm-2", v.TaskManagers)
	}
	for _, tm := range v.TaskManagers {
		if tm.Slots != 2 {
			t.Errorf("%s has %d slots, want 2", tm.ID, tm.Slots)
		}
		free += tm.FreeSlots
	}
	if free != 2 {
		t.Errorf("%d free slots with a job of parallelism 2 on 4 slots, want 2", free)
	}

	r := runWeir(t, append([]string{"cluster", "status"}, jm...)...)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "leader "+v.LeaderID+" at "+c.JobManager.Addr) ||
		!strings.Contains(r.Stdout, "unreachable") || !strings.Contains(r.Stdout, "tm-2") {
		t.Errorf("cluster status: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	if r := runWeir(t, append([]string{"job", "cancel", id}, jm...)...); r.ExitCode != 0 {
		t.Errorf("cancel over a list: exit %d: %s", r.ExitCode, r.Stderr)
	}

	// No JobManager left: the commands say so and exit 1; cluster status
	// still prints what it asked.
	c.JobManager.Stop()
	r = runWeir(t, append([]string{"cluster", "status"}, jm...)...)
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "cannot reach any of the 2 JobManagers") || !strings.Contains(r.Stdout, "reached 0 of 2") {
		t.Errorf("cluster status with the JobManager gone: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	r = runWeir(t, append([]string{"job", "list"}, jm...)...)
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "cannot reach any of the 2 JobManagers") {
		t.Errorf("job list with the JobManager gone: exit %d: %s", r.ExitCode, r.Stderr)
	}
}

// TestEtcdDiscovery: with --etcd the JobManager lists itself in a real etcd
// process, and a TaskManager and the CLI that know only a dead address find
// it there.
func TestEtcdDiscovery(t *testing.T) {
	etcd := etcdtest.StartProcess(t)
	o := cluster.Options{JobManagerArgs: []string{"--etcd", etcd.Endpoint, "--cluster-id", "it"}}
	c := startCluster(t, o)
	dead := deadAddr(t)
	flags := []string{"--jobmanager", dead, "--etcd", etcd.Endpoint, "--cluster-id", "it"}
	o.TaskManagerArgs = func(int) []string { return flags }
	// AddTaskManager waits until the TaskManager has registered.
	if _, err := c.AddTaskManager(o, 0); err != nil {
		t.Fatal(err)
	}
	v := clusterStatus(t, flags...)
	if !v.LeaderReached || v.LeaderAddress != c.JobManager.Addr || v.ClusterID != "it" || len(v.TaskManagers) != 1 {
		t.Errorf("cluster status through etcd: %+v", v)
	}
	if r := runWeir(t, append([]string{"job", "list"}, flags...)...); r.ExitCode != 0 || !strings.Contains(r.Stdout, "no jobs") {
		t.Errorf("job list through etcd: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	// The same from the environment.
	env := []string{"WEIR_ETCD_ENDPOINTS=" + etcd.Endpoint, "WEIR_CLUSTER_ID=it", "WEIR_JOBMANAGER=" + dead}
	if r := runWeirIn(t, t.TempDir(), env, "job", "list"); r.ExitCode != 0 || !strings.Contains(r.Stdout, "no jobs") {
		t.Errorf("job list with WEIR_ETCD_ENDPOINTS: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	// Another cluster ID finds nothing.
	r := runWeir(t, "job", "list", "--jobmanager", dead, "--etcd", etcd.Endpoint, "--cluster-id", "other")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "cannot reach the JobManager at "+dead) {
		t.Errorf("job list in another cluster: exit %d: %s", r.ExitCode, r.Stderr)
	}
	// A stopped JobManager takes itself out of etcd.
	c.Stop()
	r = runWeir(t, append([]string{"cluster", "status"}, flags...)...)
	if r.ExitCode != 1 || strings.Contains(r.Stdout, c.JobManager.Addr) {
		t.Errorf("cluster status after the JobManager stopped: exit %d, still lists it:\n%s", r.ExitCode, r.Stdout)
	}
}
