package jobmanager

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/auth"
	"github.com/weirstream/weir/internal/leader"
	"github.com/weirstream/weir/internal/rpcopts"
	"github.com/weirstream/weir/internal/tlsconf"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// The raft group as callers see it: who leads, where to find it, and the
// gate that sends calls for the leader to the leader.

// leaderAddress returns the current leader's ID and client address, as
// far as this member knows them.
func (jm *JobManager) leaderAddress() (id, addr string) {
	id = jm.node.leader()
	if id == "" {
		return "", ""
	}
	return id, jm.store.Members()[id]
}

// Ready returns nil once this member knows the raft group's leader (itself
// or another), and otherwise an error saying so (a readiness probe: a
// member that knows no leader can neither serve nor forward calls).
func (jm *JobManager) Ready() error {
	if id, _ := jm.leaderAddress(); id == "" {
		return fmt.Errorf("JobManager %s knows no leader yet", jm.id)
	}
	return nil
}

// notLeader is the answer of a member that does not lead (yet).
func (jm *JobManager) notLeader() error {
	id, addr := jm.leaderAddress()
	if id == jm.id {
		// Elected, but still catching up with the log: come back soon.
		return status.Errorf(codes.Unavailable, "JobManager %s was just elected leader and is catching up; try again", jm.id)
	}
	return leader.NotLeaderError(jm.id, id, addr)
}

// memberOnly lists the calls every member answers itself.
var memberOnly = map[string]bool{
	weirv1.JobManager_GetClusterStatus_FullMethodName: true,
	weirv1.JobManager_RegisterMember_FullMethodName:   true,
}

// ServerOptions installs the error interceptors, the auth guard (tokens
// and audit lines, ClientPolicy), the leader gate and, with Config.TLS,
// mutual TLS on the JobManager's gRPC server:
// grpc.NewServer(jm.ServerOptions()...).
func (jm *JobManager) ServerOptions() []grpc.ServerOption {
	g := &auth.Guard{Policy: ClientPolicy, Tokens: jm.cfg.Tokens, Subjects: jm.cfg.Subjects, Log: jm.log}
	opts := append(rpcopts.ServerOptions(),
		grpc.ChainUnaryInterceptor(UnaryErrorInterceptor(), g.UnaryInterceptor(), jm.unaryLeaderGate),
		grpc.ChainStreamInterceptor(StreamErrorInterceptor(), g.StreamInterceptor(), jm.streamLeaderGate),
	)
	return append(opts, tlsconf.ServerOptions(jm.cfg.TLS)...)
}

// awaitLeading returns the current term of leadership once it serves
// calls. While an election is on (no leader known), or this member was just
// elected and catches up, it waits up to 2 s; it returns nil at once when
// another member leads.
func (jm *JobManager) awaitLeading(ctx context.Context) *leadership {
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		jm.mu.Lock()
		l := jm.lead
		jm.mu.Unlock()
		if l != nil {
			select {
			case <-l.ready:
				return l
			default:
			}
		} else if id := jm.node.leader(); id != "" && id != jm.id {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return nil
		case <-poll.C:
		}
	}
}

func (jm *JobManager) unaryLeaderGate(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !memberOnly[info.FullMethod] && jm.awaitLeading(ctx) == nil {
		return nil, jm.notLeader()
	}
	return handler(ctx, req)
}

// streamLeaderGate admits a stream (the heartbeats) on the leader only, and
// ends it when this term of leadership does, so the TaskManager looks for
// the next leader at once.
func (jm *JobManager) streamLeaderGate(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	l := jm.awaitLeading(ss.Context())
	if l == nil {
		return jm.notLeader()
	}
	done := make(chan error, 1)
	go func() { done <- handler(srv, ss) }()
	select {
	case err := <-done:
		return err
	case <-l.ctx.Done():
		return jm.notLeader()
	}
}

// announce makes this member's client address known to the group: a
// follower tells the leader, which records it, so every member can send
// callers there. It returns an error only for a member the leader refuses
// (it was started with other --peers).
func (jm *JobManager) announce(ctx context.Context) error {
	if jm.cfg.Advertise == "" || jm.store.Members()[jm.id] == jm.cfg.Advertise {
		return nil
	}
	id, addr := jm.leaderAddress()
	if id == "" || id == jm.id || addr == "" {
		return nil
	}
	conn, err := grpc.NewClient(addr, append(rpcopts.DialOptions(), tlsconf.DialOption(jm.cfg.TLS))...)
	if err != nil {
		return nil
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = weirv1.NewJobManagerClient(conn).RegisterMember(rctx, &weirv1.RegisterMemberRequest{
		Id: jm.id, ClientAddress: jm.cfg.Advertise, Peers: peersText(jm.node.peers)})
	if status.Code(err) == codes.FailedPrecondition {
		return fmt.Errorf("the leader %s refused this JobManager: %s", id, status.Convert(err).Message())
	}
	if err != nil {
		jm.log.Debug("telling the leader this member's address", "leader", id, "err", err)
	}
	return nil
}

// registerMember records a member's client address, on the leader.
func (jm *JobManager) registerMember(req *weirv1.RegisterMemberRequest) error {
	if jm.leading() == nil {
		return jm.notLeader()
	}
	if _, ok := jm.node.peers[req.GetId()]; !ok {
		return errorf(ErrInvalidRequest, "JobManager %s is not a member of this group (--peers %s)", req.GetId(), peersText(jm.node.peers))
	}
	if want := peersText(jm.node.peers); req.GetPeers() != want {
		return errorf(ErrMemberMismatch, "JobManager %s was started with --peers %s, but the leader %s with %s: "+
			"start every member with the same list", req.GetId(), req.GetPeers(), jm.id, want)
	}
	_, err := jm.apply(SetMemberAddress{MemberID: req.GetId(), Address: req.GetClientAddress()})
	return err
}

// clusterStatus reports this member's view of the group and, on the
// leader, the TaskManagers with their free slots.
func (jm *JobManager) clusterStatus() *weirv1.ClusterStatus {
	r := jm.node.r
	lid, laddr := jm.leaderAddress()
	st := &weirv1.ClusterStatus{MemberId: jm.id, RaftState: strings.ToLower(r.State().String()),
		Term: r.CurrentTerm(), LastAppliedIndex: r.AppliedIndex(), CommitIndex: r.CommitIndex(),
		LeaderId: lid, LeaderAddress: laddr, ClientAddress: jm.cfg.Advertise, ClusterId: cmp.Or(jm.cfg.ClusterID, leader.DefaultClusterID)}
	addrs := jm.store.Members()
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Members = append(st.Members, &weirv1.ClusterMember{Id: string(s.ID), RaftAddress: string(s.Address),
				ClientAddress: addrs[string(s.ID)], Suffrage: strings.ToLower(s.Suffrage.String())})
		}
	}
	slices.SortFunc(st.Members, func(a, b *weirv1.ClusterMember) int { return strings.Compare(a.Id, b.Id) })
	if jm.leading() == nil {
		return st
	}
	all := jm.store.Jobs()
	jm.mu.Lock()
	offered := jm.tms.offeredSlots()
	slots := map[string]int{}
	beats := map[string]int64{}
	for _, tm := range jm.tms.tms {
		slots[tm.id] = tm.slots
		beats[tm.id] = tm.lastHeartbeat.UnixMilli()
	}
	jm.mu.Unlock()
	for _, free := range FreeSlots(offered, all) {
		st.TaskManagers = append(st.TaskManagers, &weirv1.ClusterTaskManager{Id: free.TaskManagerID, Address: free.Address,
			Slots: int32(slots[free.TaskManagerID]), FreeSlots: int32(len(free.Slots)), LastHeartbeatMs: beats[free.TaskManagerID]})
	}
	return st
}
