package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/weirstream/weir/internal/rpcopts"
	"github.com/weirstream/weir/internal/tlsconf"
	"github.com/weirstream/weir/runtime/engine"
)

// Errors callers can test with errors.Is. Errors that crossed the wire carry
// the same sentinels (mapped through gRPC status codes, see status.go).
var (
	// ErrClosed: the Exchange or the channel was closed.
	ErrClosed = errors.New("exchange closed")
	// ErrGateNotFound: no input gate was registered for the channel's
	// consumer within Config.OpenTimeout.
	ErrGateNotFound = errors.New("consumer input gate not registered")
	// ErrGateUnregistered: the consumer's gate was unregistered (its task
	// ended) while the producer still sent.
	ErrGateUnregistered = errors.New("consumer input gate unregistered")
	// ErrUnknownChannel: the gate has no input channel from this producer.
	ErrUnknownChannel = errors.New("no such input channel")
	// ErrChannelInUse: the channel was already opened.
	ErrChannelInUse = errors.New("input channel already open")
	// ErrIncomplete: a channel ended before its end-of-partition event.
	ErrIncomplete = errors.New("channel ended before end of partition")
	// ErrCanceled marks a canceled task, as opposed to a failed one. A
	// producer task whose context (the one OpenChannel got) is canceled
	// with a cause matching ErrCanceled tells its consumers so when its
	// channels close before end-of-partition: their gates fail with an
	// error matching ErrCanceled instead of ErrIncomplete, and the
	// consumer tasks end canceled too, as Flink's do.
	ErrCanceled = errors.New("task canceled")
	// ErrProtocol: the peer broke the exchange protocol.
	ErrProtocol = errors.New("exchange protocol violation")
)

// ChannelID names one channel: producer subtask -> consumer subtask of one
// job attempt.
type ChannelID struct {
	JobID           string
	Attempt         int
	ProducerVertex  int
	ProducerSubtask int
	ConsumerVertex  int
	ConsumerSubtask int
}

func (id ChannelID) String() string {
	return fmt.Sprintf("channel %s/attempt %d (vertex %d subtask %d -> vertex %d subtask %d)",
		id.JobID, id.Attempt, id.ProducerVertex, id.ProducerSubtask, id.ConsumerVertex, id.ConsumerSubtask)
}

// Gate returns the key of the consumer's input gate.
func (id ChannelID) Gate() GateKey {
	return GateKey{JobID: id.JobID, Attempt: id.Attempt, Vertex: id.ConsumerVertex, Subtask: id.ConsumerSubtask}
}

// Producer returns the producer end of the channel.
func (id ChannelID) Producer() Producer {
	return Producer{Vertex: id.ProducerVertex, Subtask: id.ProducerSubtask}
}

// GateKey names one consumer subtask's input gate.
type GateKey struct {
	JobID                    string
	Attempt, Vertex, Subtask int
}

func (k GateKey) String() string {
	return fmt.Sprintf("gate %s/attempt %d (vertex %d subtask %d)", k.JobID, k.Attempt, k.Vertex, k.Subtask)
}

// Producer identifies the producer side of one input channel.
type Producer struct{ Vertex, Subtask int }

// Config configures an Exchange.
type Config struct {
	// SelfAddress is this TaskManager's gRPC address; a consumer at this
	// address is local.
	SelfAddress string
	// Credits is the number of data buffers a channel into this
	// TaskManager may have in flight or queued; 0 means 4.
	Credits int
	// OpenTimeout bounds how long opening a channel waits for the
	// consumer's gate to be registered, and how long closing a finished
	// remote channel waits for the consumer to confirm; 0 means 30s.
	OpenTimeout time.Duration
	Logger      *slog.Logger
	// TLS, when set, dials other TaskManagers with mutual TLS (their
	// servers require it too). Nil: plaintext.
	TLS *tlsconf.Config
}

// Exchange is a TaskManager's data exchange: the registry of its consumers'
// input gates, the producer ends of its channels and the cache of client
// connections to other TaskManagers.
type Exchange struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// gates holds the registered input gates.
	gates map[GateKey]*Gate
	// registered is closed (and replaced) whenever a gate is registered,
	// waking those waiting for one.
	registered chan struct{}
	conns      map[string]*grpc.ClientConn
	closed     bool
	done       chan struct{} // closed by Close
}

// New returns an Exchange.
func New(cfg Config) *Exchange {
	if cfg.Credits <= 0 {
		cfg.Credits = 4
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Exchange{cfg: cfg, log: cfg.Logger.With("component", "exchange"),
		gates: make(map[GateKey]*Gate), registered: make(chan struct{}),
		conns: make(map[string]*grpc.ClientConn), done: make(chan struct{})}
}

// RegisterGate creates the input gate of a consumer subtask. channels lists
// the producer of each input channel, in gate channel-index order
// (Buffer.Channel is that index). Producers may open their channels before
// or after; those that came first are waiting for it.
func (x *Exchange) RegisterGate(key GateKey, channels []Producer) (*Gate, error) {
	if len(channels) == 0 {
		return nil, fmt.Errorf("exchange: register %v: no input channels", key)
	}
	g := newGate(key, channels, x.cfg.Credits, x.log)
	if g == nil {
		return nil, fmt.Errorf("exchange: register %v: a producer is listed twice", key)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.gates[key]; ok {
		return nil, fmt.Errorf("exchange: register %v: already registered", key)
	}
	x.gates[key] = g
	close(x.registered)
	x.registered = make(chan struct{})
	return g, nil
}

// UnregisterGate removes a gate after its task has ended. Buffers still
// queued are dropped; producers still sending to it get ErrGateUnregistered.
func (x *Exchange) UnregisterGate(key GateKey) {
	x.mu.Lock()
	g := x.gates[key]
	delete(x.gates, key)
	x.mu.Unlock()
	if g != nil {
		g.unregister()
	}
}

// waitGate returns the registered gate key, waiting up to OpenTimeout for it.
func (x *Exchange) waitGate(ctx context.Context, key GateKey) (*Gate, error) {
	var timeout <-chan time.Time
	for {
		x.mu.Lock()
		g, registered, closed := x.gates[key], x.registered, x.closed
		x.mu.Unlock()
		switch {
		case g != nil:
			return g, nil
		case closed:
			return nil, ErrClosed
		}
		if timeout == nil {
			t := time.NewTimer(x.cfg.OpenTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-registered:
		case <-timeout:
			return nil, fmt.Errorf("%w: %v within %v", ErrGateNotFound, key, x.cfg.OpenTimeout)
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-x.done:
			return nil, ErrClosed
		}
	}
}

// OpenChannel returns the producer end of a channel to the consumer running
// at consumerAddr: local when that is Config.SelfAddress, a gRPC stream
// otherwise. It waits up to OpenTimeout for the consumer's gate to be
// registered (deployment order is not guaranteed), honouring ctx. The
// channel's Send and Close are called from one goroutine (Close may also be
// called from another one to abort a blocked Send).
func (x *Exchange) OpenChannel(ctx context.Context, id ChannelID, consumerAddr string) (engine.OutputChannel, error) {
	if consumerAddr == x.cfg.SelfAddress {
		return x.openLocal(ctx, id)
	}
	return x.openRemote(ctx, id, consumerAddr)
}

func (x *Exchange) openLocal(ctx context.Context, id ChannelID) (*localChannel, error) {
	g, err := x.waitGate(ctx, id.Gate())
	if err != nil {
		return nil, fmt.Errorf("exchange: open %v: %w", id, err)
	}
	in, err := g.claim(id.Producer())
	if err != nil {
		return nil, fmt.Errorf("exchange: open %v: %w", id, err)
	}
	for range g.credits { // the initial grant, taken directly by Send
		in.credits <- struct{}{}
	}
	x.log.Debug("local channel open", "channel", id)
	return &localChannel{id: id, ctx: ctx, gate: g, in: in, closing: make(chan struct{})}, nil
}

// conn returns the shared client connection to addr.
func (x *Exchange) conn(addr string) (*grpc.ClientConn, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil, ErrClosed
	}
	if c, ok := x.conns[addr]; ok {
		return c, nil
	}
	// No interceptors or stats handlers: remoteChannel relies on gRPC not
	// looking at a message after SendMsg returned (see remoteChannel.Send).
	c, err := grpc.NewClient(addr, append(rpcopts.StreamDialOptions(), tlsconf.DialOption(x.cfg.TLS))...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	x.conns[addr] = c
	return c, nil
}

// Close closes the cached client connections, which breaks the remote
// channels still open, and makes OpenChannel calls, and Serve calls still
// waiting for a gate, fail with ErrClosed. Registered gates and the streams
// feeding them are not affected. Close is idempotent.
func (x *Exchange) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	close(x.done)
	conns := x.conns
	x.conns = nil
	x.mu.Unlock()
	var errs []error
	for addr, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}
