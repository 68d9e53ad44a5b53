package leader

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// fakeMember is a JobManager that answers GetClusterStatus with a view of
// the group set by the test, and ListJobs (the call standing for every
// leader-only call) with its own ID when it leads, NOT_LEADER otherwise.
type fakeMember struct {
	weirv1.UnimplementedJobManagerServer
	id   string
	addr string
	srv  *grpc.Server

	mu         sync.Mutex
	state      string // raft state
	leaderID   string
	leaderAddr string
	members    []*weirv1.ClusterMember
	// deposed: the status says leader, but calls answer NOT_LEADER (a
	// deposed leader that has not noticed yet).
	deposed     bool
	listJobs    int
	statusCalls int
	// bearer is the authorization header of each ListJobs call.
	bearer []string
}

func startMember(t *testing.T, id string) *fakeMember {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMember{id: id, addr: ln.Addr().String(), srv: grpc.NewServer(), state: "follower"}
	weirv1.RegisterJobManagerServer(m.srv, m)
	go m.srv.Serve(ln)
	t.Cleanup(m.srv.Stop)
	return m
}

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func (m *fakeMember) set(state, leaderID, leaderAddr string, members ...*weirv1.ClusterMember) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state, m.leaderID, m.leaderAddr, m.members = state, leaderID, leaderAddr, members
}

func (m *fakeMember) member() *weirv1.ClusterMember {
	return &weirv1.ClusterMember{Id: m.id, RaftAddress: "raft-" + m.id, ClientAddress: m.addr, Suffrage: "voter"}
}

func (m *fakeMember) GetClusterStatus(context.Context, *weirv1.GetClusterStatusRequest) (*weirv1.ClusterStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.statusCalls++
	return &weirv1.ClusterStatus{MemberId: m.id, RaftState: m.state, Term: 7, LastAppliedIndex: 42,
		LeaderId: m.leaderID, LeaderAddress: m.leaderAddr, Members: m.members, ClientAddress: m.addr}, nil
}

func (m *fakeMember) ListJobs(ctx context.Context, _ *weirv1.ListJobsRequest) (*weirv1.ListJobsResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listJobs++
	md, _ := metadata.FromIncomingContext(ctx)
	m.bearer = append(m.bearer, strings.Join(md.Get("authorization"), ","))
	if m.state != "leader" || m.deposed {
		return nil, NotLeaderError(m.id, m.leaderID, m.leaderAddr)
	}
	return &weirv1.ListJobsResponse{Jobs: []*weirv1.JobSummary{{JobName: m.id}}}, nil
}

func (m *fakeMember) calls() (status, listJobs int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.statusCalls, m.listJobs
}

func newFinder(t *testing.T, addrs []string, opts ...Option) *Finder {
	t.Helper()
	f, err := NewFinder(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// listJobs calls ListJobs through the Finder as a generated client does, and
// returns the ID of the member that answered.
func listJobs(t *testing.T, f *Finder) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := weirv1.NewJobManagerClient(f).ListJobs(ctx, &weirv1.ListJobsRequest{})
	if err != nil {
		return "", err
	}
	return resp.Jobs[0].JobName, nil
}

// threeMembers is a group of three with b leading.
func threeMembers(t *testing.T) (a, b, c *fakeMember) {
	a, b, c = startMember(t, "a"), startMember(t, "b"), startMember(t, "c")
	conf := []*weirv1.ClusterMember{a.member(), b.member(), c.member()}
	a.set("follower", "b", b.addr, conf...)
	b.set("leader", "b", b.addr, conf...)
	c.set("follower", "b", b.addr, conf...)
	return a, b, c
}

func TestFinderSkipsDeadMembersAndFindsTheLeaderAFollowerNames(t *testing.T) {
	a, b, _ := threeMembers(t)
	f := newFinder(t, []string{deadAddr(t), a.addr})
	got, err := f.Leader(t.Context())
	if err != nil || got != b.addr {
		t.Fatalf("Leader() = %q, %v; want b at %s", got, err, b.addr)
	}
	who, err := listJobs(t, f)
	if err != nil || who != "b" {
		t.Fatalf("ListJobs answered by %q, %v; want the leader b", who, err)
	}
	// The leader is remembered: the next call asks nobody else.
	aStatus, aList := a.calls()
	if _, err := listJobs(t, f); err != nil {
		t.Fatal(err)
	}
	if s, l := a.calls(); s != aStatus || l != aList {
		t.Errorf("the follower was asked again (%d→%d status, %d→%d calls), want the remembered leader only", aStatus, s, aList, l)
	}
}

func TestFinderFollowsNotLeaderRedirect(t *testing.T) {
	a, b, _ := threeMembers(t)
	// a still believes it leads (its status says so), but its calls
	// answer NOT_LEADER naming b: the Finder must go where it points.
	a.set("leader", "b", b.addr, a.member(), b.member())
	a.mu.Lock()
	a.deposed = true
	a.mu.Unlock()
	f := newFinder(t, []string{a.addr})
	who, err := listJobs(t, f)
	if err != nil || who != "b" {
		t.Fatalf("ListJobs answered by %q, %v; want b after the redirect", who, err)
	}
	if _, l := a.calls(); l != 1 {
		t.Errorf("a answered %d ListJobs, want 1 (the redirect)", l)
	}
	if _, l := b.calls(); l != 1 {
		t.Errorf("b answered %d ListJobs, want 1", l)
	}
}

func TestFinderFindsMembersFromTheConfiguration(t *testing.T) {
	a, b, _ := threeMembers(t)
	// a knows of no leader but lists b in its configuration.
	a.set("follower", "", "", a.member(), b.member())
	f := newFinder(t, []string{a.addr})
	got, err := f.Leader(t.Context())
	if err != nil || got != b.addr {
		t.Fatalf("Leader() = %q, %v; want b (listed in a's configuration) at %s", got, err, b.addr)
	}
}

func TestFinderFindsTheNewLeaderAfterTheOldOneDies(t *testing.T) {
	a, b, c := threeMembers(t)
	f := newFinder(t, []string{a.addr, b.addr, c.addr})
	if who, err := listJobs(t, f); err != nil || who != "b" {
		t.Fatalf("first call answered by %q, %v; want b", who, err)
	}
	b.srv.Stop()
	conf := []*weirv1.ClusterMember{a.member(), b.member(), c.member()}
	a.set("follower", "c", c.addr, conf...)
	c.set("leader", "c", c.addr, conf...)
	if who, err := listJobs(t, f); err != nil || who != "c" {
		t.Fatalf("after b died, call answered by %q, %v; want c", who, err)
	}
}

func TestFinderReportsNoLeaderWithCounts(t *testing.T) {
	a, b := startMember(t, "a"), startMember(t, "b")
	dead := deadAddr(t)
	conf := []*weirv1.ClusterMember{a.member(), b.member(), {Id: "c", ClientAddress: dead}}
	a.set("follower", "", "", conf...)
	b.set("candidate", "", "", conf...)
	f := newFinder(t, []string{dead, a.addr, b.addr})
	_, err := f.Leader(t.Context())
	var nl *NoLeaderError
	if !errors.As(err, &nl) || nl.Reached != 2 || nl.Tried != 3 {
		t.Fatalf("Leader() error %v (%#v), want a NoLeaderError reaching 2 of 3", err, nl)
	}
	if !strings.Contains(err.Error(), "no JobManager leader: reached 2 of 3") {
		t.Errorf("message %q", err)
	}
	// A call says the same rather than a follower's NOT_LEADER.
	if _, err := listJobs(t, f); !errors.As(err, &nl) || nl.Reached != 2 {
		t.Errorf("ListJobs with no leader: %v, want a NoLeaderError", err)
	}

	// One member reached of a group of three it lists, given one
	// address: the group's size counts.
	a.set("follower", "", "", a.member(), &weirv1.ClusterMember{Id: "b"}, &weirv1.ClusterMember{Id: "c"})
	f = newFinder(t, []string{a.addr})
	if _, err := f.Leader(t.Context()); !errors.As(err, &nl) || nl.Reached != 1 || nl.Tried != 3 {
		t.Errorf("Leader() = %v, want reached 1 of 3", err)
	}
}

func TestFinderNamesUnreachableAddresses(t *testing.T) {
	dead := deadAddr(t)
	f := newFinder(t, []string{dead})
	_, err := listJobs(t, f)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the JobManager at "+dead) || strings.Contains(err.Error(), "rpc error") {
		t.Errorf("call to a dead JobManager: %v", err)
	}
	dead2 := deadAddr(t)
	f = newFinder(t, []string{dead, dead2})
	if _, err := f.Leader(t.Context()); err == nil || !strings.Contains(err.Error(), "cannot reach any of the 2 JobManagers ("+dead+", "+dead2+")") {
		t.Errorf("Leader() over two dead addresses: %v", err)
	}
}

func TestFinderPassesApplicationErrorsThrough(t *testing.T) {
	_, b, _ := threeMembers(t)
	f := newFinder(t, []string{b.addr})
	// GetJobStatus is not implemented by the fake: Unimplemented comes
	// back as it is, once.
	_, err := weirv1.NewJobManagerClient(f).GetJobStatus(t.Context(), &weirv1.GetJobStatusRequest{JobId: "x"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("GetJobStatus: %v, want Unimplemented", err)
	}
}

func TestSurveyAsksEveryMemberItCanFind(t *testing.T) {
	a, b, c := threeMembers(t)
	dead := deadAddr(t)
	conf := []*weirv1.ClusterMember{a.member(), b.member(), c.member(), {Id: "d", ClientAddress: dead}}
	for _, m := range []*fakeMember{a, c} {
		m.set("follower", "b", b.addr, conf...)
	}
	b.set("leader", "b", b.addr, conf...)
	// Given only a: b, c and the dead d come from its configuration.
	f := newFinder(t, []string{a.addr})
	replies := f.Survey(t.Context())
	got := map[string]string{}
	for _, r := range replies {
		if r.Err != nil {
			got[r.Addr] = "error"
		} else {
			got[r.Addr] = r.Status.MemberId
		}
	}
	want := map[string]string{a.addr: "a", b.addr: "b", c.addr: "c", dead: "error"}
	if len(got) != len(want) {
		t.Fatalf("survey = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("survey[%s] = %q, want %q", k, got[k], v)
		}
	}
	if replies[0].Addr != a.addr {
		t.Errorf("first reply from %s, want the given address first", replies[0].Addr)
	}
}

func TestNewFinderNeedsAnAddress(t *testing.T) {
	if _, err := NewFinder(nil); err == nil {
		t.Error("NewFinder(nil) without etcd succeeded")
	}
	if got := ParseAddrs(" a:1, ,b:2,"); len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Errorf("ParseAddrs = %q", got)
	}
}

// bearerToken is a per-RPC credential, as auth.BearerToken is (package
// auth is not imported here: it sits above leader).
type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerToken) RequireTransportSecurity() bool { return false }

// WithPerRPC's credentials go with every call: to the follower asked first
// and to the leader it redirects to.
func TestFinderSendsPerRPCCredentials(t *testing.T) {
	a, b, _ := threeMembers(t)
	f := newFinder(t, []string{a.addr}, WithPerRPC(bearerToken("s3cr3t")))
	// Make the Finder try a first: it believes a leads.
	f.setLeader(a.addr)
	if id, err := listJobs(t, f); err != nil || id != "b" {
		t.Fatalf("ListJobs: %q, %v", id, err)
	}
	for _, m := range []*fakeMember{a, b} {
		m.mu.Lock()
		got := m.bearer
		m.mu.Unlock()
		if len(got) != 1 || got[0] != "Bearer s3cr3t" {
			t.Errorf("%s saw authorization %q", m.id, got)
		}
	}
}
