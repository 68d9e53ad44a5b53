package jobmanager

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/rpcopts"
	"github.com/weirstream/weir/jobs"
)

// Domain errors. Check them with errors.Is; the interceptors map them to
// gRPC status codes, keeping the error text as the status message.
var (
	// ErrJobNotFound: no job has the given ID (NotFound).
	ErrJobNotFound = errors.New("job not found")
	// ErrInvalidJob: the job cannot be built from the submitted name,
	// parallelism and parameters (InvalidArgument). An unknown job name is
	// jobs.ErrUnknownJob instead (NotFound).
	ErrInvalidJob = errors.New("invalid job")
	// ErrInvalidRequest: a request misses a field or has a bad value
	// (InvalidArgument).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrJobTerminal: the job already reached a terminal state
	// (FailedPrecondition).
	ErrJobTerminal = errors.New("job is terminal")
	// ErrJobNotPending: the job is not waiting to be deployed
	// (FailedPrecondition).
	ErrJobNotPending = errors.New("job is not waiting for deployment")
	// ErrJobNotEnded: the request needs a job that has ended: FINISHED,
	// CANCELED or FAILED (FailedPrecondition).
	ErrJobNotEnded = errors.New("job has not ended")
	// ErrJobNotRunning: the request needs a RUNNING job (FailedPrecondition).
	ErrJobNotRunning = errors.New("job is not running")
	// ErrCheckpoint: a savepoint or checkpoint failed (Aborted).
	ErrCheckpoint = errors.New("checkpoint failed")
	// ErrNoStorage: the JobManager has no checkpoint storage
	// (FailedPrecondition).
	ErrNoStorage = errors.New("no checkpoint storage")
	// ErrJobExists: a job with the ID exists already (AlreadyExists).
	ErrJobExists = errors.New("job exists")
	// ErrTaskManagerNotFound: the TaskManager is not registered; it must
	// register again (NotFound).
	ErrTaskManagerNotFound = errors.New("TaskManager not registered")
	// ErrNotEnoughSlots: the cluster has too few slots for the request
	// right now (FailedPrecondition).
	ErrNotEnoughSlots = errors.New("not enough slots")
	// ErrMemberMismatch: a JobManager was started with another
	// description of the raft group than the leader's (FailedPrecondition).
	ErrMemberMismatch = errors.New("raft member mismatch")
	// ErrLimit: a resource limit of the JobManager (--max-jobs) is
	// reached (ResourceExhausted).
	ErrLimit = errors.New("resource limit reached")
)

// kindError is an error whose message is its own but which also matches a
// sentinel with errors.Is, so messages read naturally ("job X is already
// FINISHED") without repeating the sentinel's text.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// errorf formats an error (with %w support) that matches kind.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// StatusCode is the gRPC code for err.
func StatusCode(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ErrJobNotFound), errors.Is(err, jobs.ErrUnknownJob),
		errors.Is(err, ErrTaskManagerNotFound):
		return codes.NotFound
	case errors.Is(err, ErrInvalidJob), errors.Is(err, ErrInvalidRequest):
		return codes.InvalidArgument
	case errors.Is(err, ErrJobTerminal), errors.Is(err, ErrJobNotPending), errors.Is(err, ErrJobNotRunning),
		errors.Is(err, ErrJobNotEnded), errors.Is(err, ErrNoStorage), errors.Is(err, ErrNotEnoughSlots),
		errors.Is(err, ErrMemberMismatch):
		return codes.FailedPrecondition
	case errors.Is(err, ErrCheckpoint):
		return codes.Aborted
	case errors.Is(err, ErrJobExists):
		return codes.AlreadyExists
	case errors.Is(err, ErrLimit):
		return codes.ResourceExhausted
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// StatusError turns a domain error into a gRPC status error with the same
// message. Errors that already are statuses pass through unchanged.
func StatusError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	return status.Error(StatusCode(err), err.Error())
}

// UnaryErrorInterceptor maps the errors of unary handlers to gRPC status
// codes. Install it with grpc.ChainUnaryInterceptor.
func UnaryErrorInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		return resp, StatusError(err)
	}
}

// StreamErrorInterceptor maps the errors of streaming handlers to gRPC
// status codes. Install it with grpc.ChainStreamInterceptor.
func StreamErrorInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return StatusError(handler(srv, ss))
	}
}

// ServerOptions installs the message size limits and the error
// interceptors on a gRPC server:
// grpc.NewServer(jobmanager.ServerOptions()...). Add further interceptors
// with more grpc.ChainUnaryInterceptor options; they chain.
func ServerOptions() []grpc.ServerOption {
	return append(rpcopts.ServerOptions(),
		grpc.ChainUnaryInterceptor(UnaryErrorInterceptor()),
		grpc.ChainStreamInterceptor(StreamErrorInterceptor()),
	)
}
