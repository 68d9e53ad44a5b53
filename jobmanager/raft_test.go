package jobmanager

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weirstream/weir/internal/leader"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// member is one JobManager of a raft group under test, with its own gRPC
// server; it can be stopped and started again on the same addresses.
type member struct {
	t      *testing.T
	cfg    Config
	jm     *JobManager
	addr   string // client address
	srv    *grpc.Server
	cancel context.CancelFunc
	ran    chan error
	conn   *grpc.ClientConn
	client weirv1.JobManagerClient
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startGroup starts n members with directories under a temp dir.
func startGroup(t *testing.T, n int, tweak func(*RaftConfig)) []*member {
	t.Helper()
	peers := map[string]string{}
	for i := range n {
		peers[fmt.Sprintf("jm-%d", i+1)] = freeAddr(t)
	}
	dir := t.TempDir()
	var ms []*member
	for i := range n {
		id := fmt.Sprintf("jm-%d", i+1)
		rc := RaftConfig{ID: id, Dir: filepath.Join(dir, id), Peers: peers}
		if tweak != nil {
			tweak(&rc)
		}
		m := &member{t: t, cfg: Config{Raft: rc, Advertise: freeAddr(t), HeartbeatTimeout: time.Second, Logger: testLogger(t)}}
		if err := m.start(); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.stop()
		}
	})
	return ms
}

func (m *member) start() error {
	jm, err := New(m.cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", m.cfg.Advertise)
	if err != nil {
		jm.node.shutdown()
		return err
	}
	m.jm, m.addr = jm, m.cfg.Advertise
	m.srv = grpc.NewServer(jm.ServerOptions()...)
	jm.Register(m.srv)
	go m.srv.Serve(lis)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.ran = cancel, make(chan error, 1)
	go func() { m.ran <- jm.Run(ctx) }()
	m.conn, err = grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	m.client = weirv1.NewJobManagerClient(m.conn)
	return nil
}

func (m *member) stop() {
	if m.jm == nil {
		return
	}
	m.conn.Close()
	m.srv.Stop()
	m.cancel()
	if err := <-m.ran; err != nil {
		m.t.Errorf("Run of %s: %v", m.cfg.Raft.ID, err)
	}
	m.jm = nil
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// leaderOf waits until one of the running members leads and serves.
func leaderOf(t *testing.T, ms []*member) *member {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		for _, m := range ms {
			if m.jm != nil && m.jm.leading() != nil {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader elected")
	return nil
}

func TestRaftGroupFailsOverWithItsJobs(t *testing.T) {
	ms := startGroup(t, 3, nil)
	l := leaderOf(t, ms)
	resp, err := l.client.SubmitJob(ctxFor(t), &weirv1.SubmitJobRequest{JobName: testJob, Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetJobId()

	// A follower sends callers to the leader, by its client address.
	var f *member
	for _, m := range ms {
		if m != l {
			f = m
		}
	}
	waitUntil(t, "the follower knows the leader's address", func() bool {
		_, err := f.client.ListJobs(ctxFor(t), &weirv1.ListJobsRequest{})
		addr, ok := leader.Redirect(err)
		return ok && addr == l.addr
	})
	st, err := f.client.GetClusterStatus(ctxFor(t), &weirv1.GetClusterStatusRequest{})
	if err != nil || st.GetRaftState() != "follower" || st.GetLeaderAddress() != l.addr || len(st.GetMembers()) != 3 {
		t.Fatalf("follower's cluster status %v, %v", st, err)
	}

	// The leader dies: another takes over, with the job.
	l.stop()
	l2 := leaderOf(t, ms)
	if l2 == l {
		t.Fatal("the stopped member still leads")
	}
	job, err := l2.client.GetJobStatus(ctxFor(t), &weirv1.GetJobStatusRequest{JobId: id})
	if err != nil || job.GetSummary().GetJobName() != testJob {
		t.Fatalf("the new leader's job: %v, %v", job, err)
	}

	// The old leader comes back with its directory and has the job too.
	if err := l.start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the restarted member has the job", func() bool {
		_, err := l.jm.store.Job(id)
		return err == nil
	})
}

// A member whose directory is wiped catches up from the leader's snapshot:
// the log has been compacted past the entries it lacks.
func TestWipedMemberCatchesUpFromASnapshot(t *testing.T) {
	ms := startGroup(t, 3, func(rc *RaftConfig) {
		rc.SnapshotThreshold, rc.TrailingLogs, rc.SnapshotInterval = 8, 2, 50*time.Millisecond
	})
	l := leaderOf(t, ms)
	var ids []string
	for range 30 {
		resp, err := l.client.SubmitJob(ctxFor(t), &weirv1.SubmitJobRequest{JobName: testJob, Parallelism: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.GetJobId())
	}
	waitUntil(t, "the leader took a snapshot", func() bool {
		snaps, _ := os.ReadDir(filepath.Join(l.cfg.Raft.Dir, "snapshots"))
		return len(snaps) > 0
	})
	var f *member
	for _, m := range ms {
		if m != l {
			f = m
		}
	}
	f.stop()
	if err := os.RemoveAll(f.cfg.Raft.Dir); err != nil {
		t.Fatal(err)
	}
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the wiped member has every job", func() bool { return len(f.jm.store.Jobs()) == len(ids) })
	snaps, _ := os.ReadDir(filepath.Join(f.cfg.Raft.Dir, "snapshots"))
	if len(snaps) == 0 {
		t.Error("the wiped member caught up without a snapshot; the test did not compact the log")
	}
}

func TestRaftMembershipErrors(t *testing.T) {
	ms := startGroup(t, 3, nil)
	leaderOf(t, ms)
	m := ms[2]
	m.stop()

	// Restarting with another --peers list.
	bad := m.cfg
	bad.Raft.Peers = map[string]string{"jm-1": ms[0].cfg.Raft.Peers["jm-1"], "jm-2": ms[0].cfg.Raft.Peers["jm-2"],
		"jm-3": m.cfg.Raft.Peers["jm-3"], "jm-4": "127.0.0.1:1"}
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "belongs to a group with --peers") {
		t.Errorf("other peers: %v", err)
	}
	// Another member's directory.
	bad = m.cfg
	bad.Raft.ID = "jm-2"
	bad.Raft.Listen = freeAddr(t)
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), `belongs to JobManager "jm-3"`) {
		t.Errorf("another member's directory: %v", err)
	}
	// A raft address in use.
	bad = ms[0].cfg
	bad.Raft.Dir = t.TempDir()
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "is another process using it") {
		t.Errorf("raft address in use: %v", err)
	}
	// An ID not among the peers.
	bad = m.cfg
	bad.Raft.ID, bad.Raft.Dir = "jm-9", t.TempDir()
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "is not among --peers") {
		t.Errorf("unknown ID: %v", err)
	}
	if _, err := ParsePeers("jm-1=127.0.0.1:1,jm-1=127.0.0.1:2"); err == nil {
		t.Error("a peer listed twice was accepted")
	}
	if _, err := ParsePeers("jm-1"); err == nil {
		t.Error("a peer without address was accepted")
	}
}

// A member started with another --peers list is refused by the leader with
// both lists; one not in the group is refused too.
func TestLeaderRefusesMembersWithOtherPeers(t *testing.T) {
	ms := startGroup(t, 3, nil)
	l := leaderOf(t, ms)
	_, err := l.client.RegisterMember(ctxFor(t), &weirv1.RegisterMemberRequest{Id: "jm-2", ClientAddress: "127.0.0.1:1",
		Peers: "jm-1=127.0.0.1:1,jm-2=127.0.0.1:2"})
	if err == nil || !strings.Contains(err.Error(), "was started with --peers jm-1=127.0.0.1:1,jm-2=127.0.0.1:2") {
		t.Errorf("other peers: %v", err)
	}
	_, err = l.client.RegisterMember(ctxFor(t), &weirv1.RegisterMemberRequest{Id: "jm-9", ClientAddress: "127.0.0.1:1",
		Peers: peersText(l.cfg.Raft.Peers)})
	if err == nil || !strings.Contains(err.Error(), "is not a member of this group") {
		t.Errorf("a stranger: %v", err)
	}
	// Every member's address reached the log.
	waitUntil(t, "every member's client address", func() bool { return len(l.jm.store.Members()) == 3 })
}
