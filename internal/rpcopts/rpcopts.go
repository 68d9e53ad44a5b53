// Package rpcopts holds the gRPC settings every Weir server and client
// shares, so that none runs on gRPC's defaults by accident: the largest
// message either side sends or accepts, and a deadline for every unary
// call that does not set its own.
//
// The largest messages are exchange frames: a frame holds one network
// buffer (engine.BufferSize, 32 KiB) of records, or one record larger
// than that alone, so MaxMessageSize is also the largest record that can
// cross TaskManagers. Control-plane messages (a job's status, a
// deployment with its parameters, a checkpoint list) are far smaller; the
// JobManager bounds job parameters with --max-param-bytes.
package rpcopts

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// MaxMessageSize bounds every gRPC message a Weir process sends or
// receives (gRPC's own default for receiving is 4 MiB).
const MaxMessageSize = 16 << 20

// DefaultCallTimeout is the deadline of a unary call whose context has
// none. Callers set shorter ones where they know better (probes 3 s, the
// CLI 10 s, savepoints 15 min).
const DefaultCallTimeout = 30 * time.Second

// ServerOptions are the message size limits of a server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize)}
}

// DialOptions are the message size limits of a client connection and the
// default deadline of its unary calls.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		grpc.WithChainUnaryInterceptor(defaultDeadline),
	}
}

// StreamDialOptions are the message size limits alone, for connections
// that carry only streams and want no interceptor (the exchange).
func StreamDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
	}
}

// defaultDeadline gives a unary call without a deadline DefaultCallTimeout.
func defaultDeadline(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}
