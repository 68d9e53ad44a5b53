package exchange

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// wireErrors maps the errors that cross the Exchange RPC to status codes, in
// both directions: Serve's errors leave as statuses, and a producer sees
// them again as the same sentinels. Only codes gRPC itself never produces
// are mapped back.
var wireErrors = []struct {
	err     error
	code    codes.Code
	mapBack bool
}{
	{ErrGateNotFound, codes.NotFound, true},
	{ErrGateUnregistered, codes.Aborted, true},
	{ErrUnknownChannel, codes.FailedPrecondition, true},
	{ErrChannelInUse, codes.AlreadyExists, true},
	{ErrProtocol, codes.InvalidArgument, true},
	{ErrClosed, codes.Unavailable, false},
	{ErrCanceled, codes.Canceled, false},
}

// toStatus turns an error of Serve into the status the producer receives.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return status.Error(w.code, err.Error())
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err // wraps a status already
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus gives an error received from Serve its sentinel back.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, w := range wireErrors {
		if w.mapBack && st.Code() == w.code {
			return &remoteError{sentinel: w.err, err: err}
		}
	}
	return err
}

// remoteError is a status received from the consumer's TaskManager that
// stands for one of the package's sentinel errors.
type remoteError struct {
	sentinel error
	err      error
}

func (e *remoteError) Error() string   { return e.err.Error() }
func (e *remoteError) Unwrap() []error { return []error{e.sentinel, e.err} }
