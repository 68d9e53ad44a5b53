// Package leader is what the JobManagers of a raft group and their callers
// (the CLI, the TaskManagers) share about leadership: how a follower says
// "not me, go there", how the leader's term travels with its calls so that
// TaskManagers can fence a deposed leader, and how a caller finds the
// leader among several JobManager addresses or in etcd, where the leader
// publishes its address under a lease (etcd.go).
//
// A follower answers a call meant for the leader with codes.Unavailable and
// a google.rpc.ErrorInfo detail (domain "weir.dev", reason "NOT_LEADER")
// whose metadata carries the leader's ID and client address when it knows
// them. Callers follow it; see Finder.
package leader

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	errorDomain     = "weir.dev"
	reasonNotLeader = "NOT_LEADER"
	// TermKey is the gRPC metadata key carrying the leader's raft term on
	// every call a JobManager makes to a TaskManager.
	TermKey = "weir-leader-term"
)

// NotLeaderError is the error a follower returns for a call only the leader
// may answer. leaderID and leaderAddr are empty while there is no leader.
func NotLeaderError(self, leaderID, leaderAddr string) error {
	msg := fmt.Sprintf("JobManager %s is not the leader; the leader is %s at %s", self, leaderID, leaderAddr)
	if leaderAddr == "" {
		msg = fmt.Sprintf("JobManager %s is not the leader and knows of no leader: the raft group has no quorum, or is electing one", self)
	}
	st := status.New(codes.Unavailable, msg)
	md := map[string]string{}
	if leaderID != "" {
		md["leader_id"] = leaderID
	}
	if leaderAddr != "" {
		md["leader_address"] = leaderAddr
	}
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Domain: errorDomain, Reason: reasonNotLeader, Metadata: md}); err == nil {
		st = d
	}
	return st.Err()
}

// Redirect reports whether err is a follower's NOT_LEADER answer, and the
// leader's client address it named ("" when it knows of none).
func Redirect(err error) (leaderAddr string, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus || st.Code() != codes.Unavailable {
		return "", false
	}
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.ErrorInfo); isInfo && info.GetDomain() == errorDomain && info.GetReason() == reasonNotLeader {
			return info.GetMetadata()["leader_address"], true
		}
	}
	return "", false
}

// WithTerm returns ctx carrying term in its outgoing gRPC metadata.
func WithTerm(ctx context.Context, term uint64) context.Context {
	return metadata.AppendToOutgoingContext(ctx, TermKey, strconv.FormatUint(term, 10))
}

// ErrNoTerm is returned by TermFrom for a call without a leader term.
var ErrNoTerm = errors.New("call carries no leader term")

// TermFrom reads the leader term of an incoming call.
func TermFrom(ctx context.Context) (uint64, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vs := md.Get(TermKey)
	if len(vs) == 0 {
		return 0, ErrNoTerm
	}
	t, err := strconv.ParseUint(vs[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed %s %q: %w", TermKey, vs[0], err)
	}
	return t, nil
}
