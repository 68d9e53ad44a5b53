package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/internal/leader"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// unreachable is the error a dead address gives.
var unreachable = status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7003: connect: connection refused"`)

// group is a raft configuration of three members.
var group = []*weirv1.ClusterMember{
	{Id: "jm-a", RaftAddress: "127.0.0.1:8001", ClientAddress: "127.0.0.1:7001", Suffrage: "voter"},
	{Id: "jm-b", RaftAddress: "127.0.0.1:8002", ClientAddress: "127.0.0.1:7002", Suffrage: "voter"},
	{Id: "jm-c", RaftAddress: "127.0.0.1:8003", ClientAddress: "127.0.0.1:7003", Suffrage: "voter"},
}

func TestClusterStatusWithALeader(t *testing.T) {
	replies := []leader.Reply{
		{Addr: "127.0.0.1:7001", Status: &weirv1.ClusterStatus{MemberId: "jm-a", RaftState: "follower", Term: 4,
			LastAppliedIndex: 118, LeaderId: "jm-b", LeaderAddress: "127.0.0.1:7002", Members: group, ClusterId: "prod"}},
		{Addr: "127.0.0.1:9999", Err: unreachable}, // a stale --jobmanager address
		{Addr: "127.0.0.1:7002", Status: &weirv1.ClusterStatus{MemberId: "jm-b", RaftState: "leader", Term: 4,
			LastAppliedIndex: 120, CommitIndex: 120, LeaderId: "jm-b", LeaderAddress: "127.0.0.1:7002", Members: group, ClusterId: "prod",
			TaskManagers: []*weirv1.ClusterTaskManager{
				{Id: "tm-2", Address: "127.0.0.1:6002", Slots: 4, FreeSlots: 0},
				{Id: "tm-1", Address: "127.0.0.1:6001", Slots: 2, FreeSlots: 1},
			}}},
		{Addr: "127.0.0.1:7003", Err: unreachable},
	}
	v, err := clusterView(replies, "default")
	if err != nil {
		t.Fatalf("clusterView: %v", err)
	}
	var out bytes.Buffer
	printClusterStatus(&out, v)
	text := out.String()
	t.Logf("\n%s", text)
	if !strings.Contains(text, "Cluster prod: leader jm-b at 127.0.0.1:7002, term 4; reached 2 of 4 JobManager(s)") {
		t.Errorf("cluster status lacks the head line")
	}
	for _, row := range [][]string{
		{"MEMBER", "STATE", "TERM", "APPLIED", "CLIENT", "ADDRESS", "RAFT", "ADDRESS"},
		{"jm-a", "follower", "4", "118", "127.0.0.1:7001", "127.0.0.1:8001"},
		{"jm-b", "leader", "4", "120", "127.0.0.1:7002", "127.0.0.1:8002"},
		{"jm-c", "unreachable", "-", "-", "127.0.0.1:7003", "127.0.0.1:8003", "(connection", "refused)"},
		{"-", "unreachable", "-", "-", "127.0.0.1:9999", "-", "(connection", "refused)"},
		{"TASKMANAGER", "ADDRESS", "SLOTS", "FREE"},
		{"tm-1", "127.0.0.1:6001", "2", "1"},
		{"tm-2", "127.0.0.1:6002", "4", "0"},
	} {
		if !hasRow(text, row...) {
			t.Errorf("cluster status lacks the row %q", row)
		}
	}
	if strings.Index(text, "tm-1") > strings.Index(text, "tm-2") {
		t.Error("TaskManagers are not sorted by ID")
	}

	out.Reset()
	if err := printJSON(&out, v); err != nil {
		t.Fatal(err)
	}
	var got ClusterStatusView
	decodeStrict(t, out.Bytes(), &got)
	if got.LeaderID != "jm-b" || got.LeaderAddress != "127.0.0.1:7002" || !got.LeaderReached || got.Term != 4 ||
		got.Reached != 2 || len(got.Members) != 4 || got.ClusterID != "prod" || len(got.TaskManagers) != 2 {
		t.Errorf("decoded %+v", got)
	}
	c := got.Members[2]
	if c.ID != "jm-c" || c.State != "unreachable" || c.RaftAddress != "127.0.0.1:8003" || !strings.Contains(c.Error, "connection refused") {
		t.Errorf("jm-c = %+v", c)
	}
	if m := got.Members[3]; m.ID != "" || m.ClientAddress != "127.0.0.1:9999" || m.State != "unreachable" {
		t.Errorf("the stale address = %+v, want an unreachable row without ID", m)
	}
	if tm := got.TaskManagers[0]; tm.ID != "tm-1" || tm.Slots != 2 || tm.FreeSlots != 1 {
		t.Errorf("tm-1 = %+v", tm)
	}
}

func TestClusterStatusWithoutQuorum(t *testing.T) {
	// Two of three down: the survivor is a candidate, knows no leader,
	// and cannot reach the others.
	replies := []leader.Reply{
		{Addr: "127.0.0.1:7001", Status: &weirv1.ClusterStatus{MemberId: "jm-a", RaftState: "candidate", Term: 9,
			LastAppliedIndex: 120, Members: group}},
		{Addr: "127.0.0.1:7002", Err: unreachable},
		{Addr: "127.0.0.1:7003", Err: unreachable},
	}
	v, err := clusterView(replies, "default")
	var nl *leader.NoLeaderError
	if !errors.As(err, &nl) || !strings.Contains(err.Error(), "no JobManager leader: reached 1 of 3 JobManager(s)") {
		t.Fatalf("clusterView without a quorum: %v, want the no-leader error reaching 1 of 3", err)
	}
	var out bytes.Buffer
	printClusterStatus(&out, v)
	for _, want := range []string{"Cluster default: no leader; reached 1 of 3 JobManager(s)", "TaskManagers: unknown"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cluster status lacks %q:\n%s", want, out.String())
		}
	}
	for _, row := range [][]string{{"jm-a", "candidate", "9", "120"}, {"jm-b", "unreachable", "-", "-"}, {"jm-c", "unreachable"}} {
		if !hasRow(out.String(), row...) {
			t.Errorf("cluster status lacks the row %q:\n%s", row, out.String())
		}
	}

	// A member listed without a client address is unreachable too.
	noAddr := []*weirv1.ClusterMember{group[0], {Id: "jm-x", RaftAddress: "127.0.0.1:8009"}}
	v, _ = clusterView([]leader.Reply{{Addr: "127.0.0.1:7001", Status: &weirv1.ClusterStatus{MemberId: "jm-a",
		RaftState: "follower", Members: noAddr}}}, "default")
	if x := v.Members[1]; x.ID != "jm-x" || x.State != "unreachable" || !strings.Contains(x.Error, "unknown") {
		t.Errorf("member without a client address = %+v", x)
	}

	// Nothing answers: the message names the address.
	_, err = clusterView([]leader.Reply{{Addr: "127.0.0.1:7003", Err: unreachable}}, "default")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the JobManager at 127.0.0.1:7003") {
		t.Errorf("nothing reached: %v", err)
	}

	// Followers name a leader that does not answer.
	replies[0].Status.RaftState, replies[0].Status.LeaderId, replies[0].Status.LeaderAddress = "follower", "jm-b", "127.0.0.1:7002"
	v, err = clusterView(replies, "default")
	if err == nil || !strings.Contains(err.Error(), "jm-b at 127.0.0.1:7002, does not answer") || v.LeaderReached {
		t.Errorf("unreachable leader: %v, %+v", err, v)
	}
}

// hasRow reports whether a line of text has fields as its first
// whitespace-separated fields.
func hasRow(text string, fields ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		got := strings.Fields(line)
		if len(got) >= len(fields) && slices.Equal(got[:len(fields)], fields) {
			return true
		}
	}
	return false
}

// fakeJobManager answers GetClusterStatus with st, and ListJobs with
// NOT_LEADER unless st says it leads.
type fakeJobManager struct {
	weirv1.UnimplementedJobManagerServer
	st *weirv1.ClusterStatus
}

func (f *fakeJobManager) GetClusterStatus(context.Context, *weirv1.GetClusterStatusRequest) (*weirv1.ClusterStatus, error) {
	return f.st, nil
}

func (f *fakeJobManager) ListJobs(context.Context, *weirv1.ListJobsRequest) (*weirv1.ListJobsResponse, error) {
	if f.st.RaftState != "leader" {
		return nil, leader.NotLeaderError(f.st.MemberId, f.st.LeaderId, f.st.LeaderAddress)
	}
	return &weirv1.ListJobsResponse{Jobs: []*weirv1.JobSummary{{JobId: "job-on-" + f.st.MemberId, JobName: "fraud-detection"}}}, nil
}

func serveFake(t *testing.T, st *weirv1.ClusterStatus) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	weirv1.RegisterJobManagerServer(srv, &fakeJobManager{st: st})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestClientCommandsFollowTheLeader(t *testing.T) {
	leaderSt := &weirv1.ClusterStatus{MemberId: "jm-b", RaftState: "leader", Term: 2}
	b := serveFake(t, leaderSt)
	leaderSt.LeaderId, leaderSt.LeaderAddress, leaderSt.ClientAddress = "jm-b", b, b
	a := serveFake(t, &weirv1.ClusterStatus{MemberId: "jm-a", RaftState: "follower", Term: 2, LeaderId: "jm-b", LeaderAddress: b})
	dead := deadAddr(t)
	// A dead address and a follower: the leader is found through it.
	out, err := run(t, "job", "list", "--jobmanager", dead+", "+a)
	if err != nil || !strings.Contains(out, "job-on-jm-b") {
		t.Errorf("job list over a dead address and a follower: %v\n%s", err, out)
	}
	out, err = run(t, "cluster", "status", "--jobmanager", dead+","+a)
	if err != nil || !strings.Contains(out, "leader jm-b at "+b) || !strings.Contains(out, "reached 2 of 3") {
		t.Errorf("cluster status: %v\n%s", err, out)
	}
}

func TestClientCommandsSayThereIsNoLeader(t *testing.T) {
	// Two of three members down; the third, a candidate, knows no leader.
	st := &weirv1.ClusterStatus{MemberId: "jm-a", RaftState: "candidate", Term: 5}
	a := serveFake(t, st)
	st.Members = []*weirv1.ClusterMember{{Id: "jm-a", ClientAddress: a}, {Id: "jm-b", ClientAddress: deadAddr(t)},
		{Id: "jm-c", ClientAddress: deadAddr(t)}}
	for _, args := range [][]string{{"job", "list"}, {"job", "status", "0123"}, {"cluster", "status"}} {
		out, err := run(t, append(args, "--jobmanager", a)...)
		if err == nil || !strings.Contains(err.Error(), "no JobManager leader: reached 1 of 3 JobManager(s)") {
			t.Errorf("%v with no leader: %v, want the no-leader message\n%s", args, err, out)
		}
	}
}

func TestJobManagerFlagTakesAList(t *testing.T) {
	dead1, dead2 := deadAddr(t), deadAddr(t)
	_, err := run(t, "job", "list", "--jobmanager", " "+dead1+" ,"+dead2+",")
	if err == nil || !strings.Contains(err.Error(), "cannot reach any of the 2 JobManagers ("+dead1+", "+dead2+")") {
		t.Errorf("job list over two dead addresses: %v", err)
	}
	t.Setenv("WEIR_JOBMANAGER", dead1+","+dead2)
	_, err = run(t, "cluster", "status")
	if err == nil || !strings.Contains(err.Error(), "cannot reach any of the 2 JobManagers") {
		t.Errorf("cluster status with WEIR_JOBMANAGER=%s,%s: %v", dead1, dead2, err)
	}
	if _, err := run(t, "job", "list", "--jobmanager", " , "); err == nil || !strings.Contains(err.Error(), "--jobmanager") {
		t.Errorf("job list with an empty --jobmanager: %v", err)
	}
}

// findCmd returns the command at path in the tree.
func findCmd(t *testing.T, root *cobra.Command, path ...string) *cobra.Command {
	t.Helper()
	c, _, err := root.Find(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDiscoveryFlagsAndTheirVariables(t *testing.T) {
	for _, path := range [][]string{{"job", "list"}, {"job", "submit"}, {"cluster", "status"}, {"taskmanager"}, {"jobmanager"}} {
		root := newRoot()
		cmd := findCmd(t, root, path...)
		env := map[string]string{"WEIR_ETCD_ENDPOINTS": "http://10.0.0.1:2379,http://10.0.0.2:2379",
			"WEIR_ETCD": "wrong", "WEIR_CLUSTER_ID": "prod", "WEIR_JOBMANAGER": "10.0.0.5:6123,10.0.0.6:6123"}
		if err := applyEnv(cmd, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Fatal(err)
		}
		flags := cmd.Flags()
		get := func(name string) *pflag.Flag {
			f := flags.Lookup(name)
			if f == nil {
				t.Fatalf("%v has no --%s", path, name)
			}
			return f
		}
		if f := get("etcd"); f.Value.String() != env["WEIR_ETCD_ENDPOINTS"] || !strings.Contains(f.Usage, "WEIR_ETCD_ENDPOINTS") {
			t.Errorf("%v --etcd = %q (help %q), want it from WEIR_ETCD_ENDPOINTS", path, f.Value, f.Usage)
		}
		if f := get("cluster-id"); f.Value.String() != "prod" || f.DefValue != "default" {
			t.Errorf("%v --cluster-id = %q (default %q), want prod from WEIR_CLUSTER_ID", path, f.Value, f.DefValue)
		}
		if path[0] == "jobmanager" {
			if flags.Lookup("jobmanager") != nil {
				t.Error("the jobmanager command has --jobmanager")
			}
			continue
		}
		if f := get("jobmanager"); f.Value.String() != env["WEIR_JOBMANAGER"] || f.DefValue != "127.0.0.1:6123" {
			t.Errorf("%v --jobmanager = %q (default %q)", path, f.Value, f.DefValue)
		}
	}
}

func TestEtcdUnreachable(t *testing.T) {
	dead := "http://" + deadAddr(t)
	// A JobManager told to publish itself does not start without etcd.
	_, err := run(t, "jobmanager", "--listen", "127.0.0.1:0", "--etcd", dead)
	if err == nil || !strings.Contains(err.Error(), "--etcd: cannot reach etcd at "+dead) {
		t.Errorf("jobmanager with a dead --etcd: %v", err)
	}
	// A client falls back to --jobmanager (with a warning in the log).
	leaderSt := &weirv1.ClusterStatus{MemberId: "jm-b", RaftState: "leader"}
	b := serveFake(t, leaderSt)
	t.Setenv("WEIR_ETCD_ENDPOINTS", dead)
	out, err := run(t, "job", "list", "--jobmanager", b)
	if err != nil || !strings.Contains(out, "job-on-jm-b") {
		t.Errorf("job list with etcd down and a --jobmanager: %v\n%s", err, out)
	}
}

func TestClientCommandsFindTheLeaderInEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	st := &weirv1.ClusterStatus{MemberId: "jm-b", RaftState: "leader", Term: 3}
	b := serveFake(t, st)
	st.LeaderId, st.LeaderAddress, st.ClientAddress = "jm-b", b, b
	if _, err := cli.Put(t.Context(), "/weir/prod/leader", b); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(t.Context(), "/weir/prod/members/jm-b", b); err != nil {
		t.Fatal(err)
	}
	// --jobmanager names a dead address only: etcd finds the leader.
	dead := deadAddr(t)
	out, err := run(t, "job", "list", "--jobmanager", dead, "--etcd", srv.Endpoint, "--cluster-id", "prod")
	if err != nil || !strings.Contains(out, "job-on-jm-b") {
		t.Errorf("job list through etcd: %v\n%s", err, out)
	}
	// The cluster ID namespaces the keys: another cluster has no leader.
	if _, err := run(t, "job", "list", "--jobmanager", dead, "--etcd", srv.Endpoint, "--cluster-id", "staging"); err == nil ||
		!strings.Contains(err.Error(), "cannot reach the JobManager at "+dead) {
		t.Errorf("job list in another cluster: %v", err)
	}
	t.Setenv("WEIR_ETCD_ENDPOINTS", srv.Endpoint)
	t.Setenv("WEIR_CLUSTER_ID", "prod")
	out, err = run(t, "cluster", "status", "--jobmanager", dead)
	if err != nil || !hasRow(out, "jm-b", "leader", "3") {
		t.Errorf("cluster status through etcd (from the environment): %v\n%s", err, out)
	}
}
