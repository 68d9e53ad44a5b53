package taskmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/leader"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// ErrStaleTerm marks a JobManager call refused because it carries a leader
// term older than one this TaskManager has seen: it comes from a deposed
// leader (codes.FailedPrecondition).
var ErrStaleTerm = errors.New("stale leader term")

// fence keeps the highest leader term this TaskManager has seen, from the
// calls of the JobManager leader and from its registration answers, and
// refuses calls of older terms. Terms start at 1; 0 means none.
type fence struct {
	log *slog.Logger

	mu      sync.Mutex
	highest uint64
	warned  map[uint64]bool // stale terms logged at WARN (a call without a term logs as 0)
}

// observe raises the highest term to term.
func (f *fence) observe(term uint64) {
	f.mu.Lock()
	f.highest = max(f.highest, term)
	f.mu.Unlock()
}

// term is the highest term seen; 0 while none was.
func (f *fence) term() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.highest
}

// admit checks the term of an incoming JobManager call and raises the
// highest term to it. A call without a term is admitted only while no term
// was ever seen (a JobManager that is not a raft group sends none).
func (f *fence) admit(ctx context.Context, method string) error {
	term, err := leader.TermFrom(ctx)
	noTerm := errors.Is(err, leader.ErrNoTerm)
	if err != nil && !noTerm {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if term >= f.highest && (!noTerm || f.highest == 0) {
		f.highest = term
		return nil
	}
	refused := fmt.Errorf("%w %d: this TaskManager follows term %d", ErrStaleTerm, term, f.highest)
	if noTerm {
		refused = fmt.Errorf("%w: the call carries no leader term; this TaskManager follows term %d", ErrStaleTerm, f.highest)
	}
	if !f.warned[term] {
		if f.warned == nil {
			f.warned = map[uint64]bool{}
		}
		f.warned[term] = true
		f.log.Warn("refused a call of a deposed JobManager leader", "method", method, "term", term,
			"highest_term", f.highest, "err", refused)
	}
	return refused
}

// fencedMethods are the TaskManager methods the JobManager leader calls.
// Exchange, which other TaskManagers call, carries no term.
var fencedMethods = map[string]bool{
	weirv1.TaskManager_DeployTask_FullMethodName:        true,
	weirv1.TaskManager_CancelTask_FullMethodName:        true,
	weirv1.TaskManager_TriggerCheckpoint_FullMethodName: true,
	weirv1.TaskManager_NotifyCheckpoint_FullMethodName:  true,
}

// interceptor refuses the JobManager calls of deposed leaders
// (FailedPrecondition) and calls with a malformed term (InvalidArgument).
func (f *fence) interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !fencedMethods[info.FullMethod] {
			return handler(ctx, req)
		}
		if err := f.admit(ctx, info.FullMethod); errors.Is(err, ErrStaleTerm) {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		} else if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return handler(ctx, req)
	}
}
