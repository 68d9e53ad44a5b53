package exchange

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime/engine"
)

// testServer is the TaskManager service as far as the exchange needs it.
type testServer struct {
	weirv1.UnimplementedTaskManagerServer
	x *Exchange
}

func (s *testServer) Exchange(stream weirv1.TaskManager_ExchangeServer) error {
	return s.x.Serve(stream)
}

// node is one TaskManager's exchange with its own gRPC server.
type node struct {
	x    *Exchange
	addr string
	srv  *grpc.Server
}

var seedFlag = flag.Int64("seed", 0, "seed of the randomised tests; 0 picks one")

// testSeed returns the seed of a randomised test and logs it, so that a
// failure replays with -seed.
func testSeed(tb testing.TB) int64 {
	tb.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	tb.Logf("seed %d (replay with -seed=%d)", seed, seed)
	return seed
}

// testLogger logs to stderr when WEIR_TEST_LOG is set, else nowhere (a test's
// goroutines may still log while it is being torn down).
func testLogger() *slog.Logger {
	if os.Getenv("WEIR_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNode starts an Exchange behind a gRPC server on a free port; both
// are stopped when the test ends.
func startNode(tb testing.TB, cfg Config) *node {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg.SelfAddress = lis.Addr().String()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	n := &node{x: New(cfg), addr: cfg.SelfAddress, srv: grpc.NewServer()}
	weirv1.RegisterTaskManagerServer(n.srv, &testServer{x: n.x})
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := n.srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			tb.Errorf("serve: %v", err)
		}
	}()
	tb.Cleanup(func() {
		n.x.Close()
		n.srv.Stop()
		<-served
	})
	return n
}

// checkGoroutines fails the test if goroutines started during it are still
// running when it (and the cleanups registered after this call) has ended.
func checkGoroutines(tb testing.TB) {
	tb.Helper()
	before := goroutines()
	tb.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			after := goroutines()
			var leaked []string
			for id, stack := range after {
				if _, ok := before[id]; !ok {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				tb.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// goroutines returns the stacks of the running goroutines by their header
// line ("goroutine 12 [running]:" without the state).
func goroutines() map[string]string {
	var sb strings.Builder
	pprof.Lookup("goroutine").WriteTo(&sb, 2)
	out := make(map[string]string)
	for _, g := range strings.Split(sb.String(), "\n\n") {
		header, _, _ := strings.Cut(g, " [")
		if strings.HasPrefix(header, "goroutine ") {
			out[header] = g
		}
	}
	return out
}

// dataBuffer returns a data buffer holding one record: the sequence number.
func dataBuffer(seq int) *engine.Buffer {
	b := engine.GetBuffer()
	var rec [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(rec[:], uint64(seq))
	b.Data = binary.AppendUvarint(b.Data, uint64(n))
	b.Data = append(b.Data, rec[:n]...)
	b.Records = 1
	return b
}

// seqOf decodes the record of a dataBuffer.
func seqOf(tb testing.TB, b *engine.Buffer) int {
	tb.Helper()
	l, n := binary.Uvarint(b.Data)
	if n <= 0 || int(l) != len(b.Data)-n || b.Records != 1 {
		tb.Fatalf("malformed data buffer on channel %d: %x (records %d)", b.Channel, b.Data, b.Records)
	}
	v, m := binary.Uvarint(b.Data[n:])
	if m <= 0 {
		tb.Fatalf("malformed record on channel %d: %x", b.Channel, b.Data)
	}
	return int(v)
}

func eventBuffer(kind engine.BufferKind, value int64) *engine.Buffer {
	b := engine.GetBuffer()
	b.Kind, b.Value = kind, value
	return b
}

// receive returns the gate's next buffer, failing the test after timeout.
func receive(tb testing.TB, g *Gate, timeout time.Duration) *engine.Buffer {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b := <-g.Buffers():
		return b
	case err := <-g.Err():
		tb.Fatalf("gate failed: %v", err)
	case <-t.C:
		tb.Fatalf("no buffer within %v", timeout)
	}
	return nil
}

// expectNothing fails the test if the gate delivers a buffer within d.
func expectNothing(tb testing.TB, g *Gate, d time.Duration) {
	tb.Helper()
	select {
	case b := <-g.Buffers():
		tb.Fatalf("unexpected buffer on channel %d (kind %d)", b.Channel, b.Kind)
	case err := <-g.Err():
		tb.Fatalf("gate failed: %v", err)
	case <-time.After(d):
	}
}

// waitErr returns the gate's failure, failing the test if none comes.
func waitErr(tb testing.TB, g *Gate, timeout time.Duration) error {
	tb.Helper()
	select {
	case err := <-g.Err():
		return err
	case <-time.After(timeout):
		tb.Fatalf("gate reported no error within %v", timeout)
		return nil
	}
}

// waitDone waits for a result, failing the test after timeout.
func waitDone[T any](tb testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		tb.Fatalf("%s: nothing within %v", what, timeout)
		var zero T
		return zero
	}
}

// pair is a consumer node and, for remote channels, a second node running
// the producers.
type pair struct {
	consumer, producer *node
}

// newPair starts the consumer node and, if remote, a producer node; for
// local channels both are the same node.
func newPair(tb testing.TB, remote bool, consumerCfg Config) pair {
	tb.Helper()
	c := startNode(tb, consumerCfg)
	if !remote {
		return pair{consumer: c, producer: c}
	}
	return pair{consumer: c, producer: startNode(tb, Config{OpenTimeout: consumerCfg.OpenTimeout})}
}

func (p pair) open(tb testing.TB, ctx context.Context, id ChannelID) engine.OutputChannel {
	tb.Helper()
	ch, err := p.producer.x.OpenChannel(ctx, id, p.consumer.addr)
	if err != nil {
		tb.Fatalf("open %v: %v", id, err)
	}
	return ch
}

func modes() []struct {
	name   string
	remote bool
} {
	return []struct {
		name   string
		remote bool
	}{{"local", false}, {"remote", true}}
}

func channelID(job string, producer, consumer int) ChannelID {
	return ChannelID{JobID: job, Attempt: 1, ProducerVertex: 1, ProducerSubtask: producer,
		ConsumerVertex: 2, ConsumerSubtask: consumer}
}

func gateKey(job string, consumer int) GateKey {
	return GateKey{JobID: job, Attempt: 1, Vertex: 2, Subtask: consumer}
}

func producers(n int) []Producer {
	ps := make([]Producer, n)
	for i := range ps {
		ps[i] = Producer{Vertex: 1, Subtask: i}
	}
	return ps
}

// expectIdle fails the test unless the package's goroutines (credit
// readers, frame readers, Serve handlers) all end within a few seconds,
// with the nodes still running: channels, gates and streams that ended must
// not leave any behind.
func expectIdle(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var busy []string
		for _, stack := range goroutines() {
			if strings.Contains(stack, "taskmanager/exchange.(*") && !strings.Contains(stack, "exchange.expectIdle") {
				busy = append(busy, stack)
			}
		}
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d exchange goroutines still running:\n%s", len(busy), strings.Join(busy, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
