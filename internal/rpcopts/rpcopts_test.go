package rpcopts

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestDefaultDeadline(t *testing.T) {
	var got time.Duration
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		d, ok := ctx.Deadline()
		if !ok {
			t.Fatal("no deadline")
		}
		got = time.Until(d)
		return nil
	}
	if err := defaultDeadline(context.Background(), "/m", nil, nil, nil, invoker); err != nil {
		t.Fatal(err)
	}
	if got <= DefaultCallTimeout-time.Second || got > DefaultCallTimeout {
		t.Errorf("default deadline in %v, want about %v", got, DefaultCallTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := defaultDeadline(ctx, "/m", nil, nil, nil, invoker); err != nil {
		t.Fatal(err)
	}
	if got > time.Second {
		t.Errorf("a call's own deadline was replaced: %v", got)
	}
}

// A request above MaxMessageSize is refused by the client before it is
// sent, with gRPC's ResourceExhausted.
func TestMessageSizeLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := healthpb.NewHealthClient(conn)
	if _, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", 5<<20)}); err == nil ||
		!strings.Contains(err.Error(), "unknown service") {
		t.Errorf("a 5 MiB request (above gRPC's default 4 MiB): %v, want it to reach the server", err)
	}
	if _, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", MaxMessageSize+1)}); err == nil ||
		!strings.Contains(err.Error(), "ResourceExhausted") && !strings.Contains(err.Error(), "larger than max") {
		t.Errorf("a request above MaxMessageSize: %v", err)
	}
}
