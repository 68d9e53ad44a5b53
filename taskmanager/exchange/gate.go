package exchange

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/weirstream/weir/runtime/engine"
)

// eventSlack is how many event buffers per channel the gate's queue holds
// beyond the channels' credits, so that data never waits for queue space.
const eventSlack = 4

// Gate is the input gate of one consumer subtask: it merges its input
// channels, local and remote, into one Go channel and returns credits to their
// producers as the task recycles buffers. It implements engine.InputGate.
type Gate struct {
	key     GateKey
	credits int
	log     *slog.Logger

	inputs  []*inputChannel
	buffers chan *engine.Buffer
	errs    chan error    // holds the first failure
	done    chan struct{} // closed when the gate is unregistered

	mu sync.Mutex // guards inputChannel.open and unregistered
	// byProducer maps a producer to its channel index; read-only.
	byProducer   map[Producer]int
	unregistered bool
}

// inputChannel is the consumer's end of one channel.
type inputChannel struct {
	index    int
	producer Producer
	// credits holds the credits the consumer has returned and the producer
	// has not yet taken. A local producer takes them directly (the channel
	// starts full); for a remote one Serve forwards them as ExchangeCredit
	// messages (the channel starts empty, the initial grant is one message).
	credits chan struct{}
	open    bool
}

func newGate(key GateKey, channels []Producer, credits int, log *slog.Logger) *Gate {
	g := &Gate{key: key, credits: credits, log: log.With("gate", key),
		inputs:     make([]*inputChannel, len(channels)),
		buffers:    make(chan *engine.Buffer, len(channels)*(credits+eventSlack)),
		errs:       make(chan error, 1),
		done:       make(chan struct{}),
		byProducer: make(map[Producer]int, len(channels))}
	for i, p := range channels {
		if _, dup := g.byProducer[p]; dup {
			return nil
		}
		g.byProducer[p] = i
		g.inputs[i] = &inputChannel{index: i, producer: p, credits: make(chan struct{}, credits)}
	}
	return g
}

// Key returns the gate's key.
func (g *Gate) Key() GateKey { return g.key }

// NumChannels is the number of input channels.
func (g *Gate) NumChannels() int { return len(g.inputs) }

// Buffers delivers the buffers of all channels; Buffer.Channel tells which.
func (g *Gate) Buffers() <-chan *engine.Buffer { return g.buffers }

// Queued returns the buffers waiting for the task and the most the gate
// queues (the channels' credits plus room for events).
func (g *Gate) Queued() (queued, capacity int) { return len(g.buffers), cap(g.buffers) }

// Err delivers the first failure of an input channel: a producer that went
// away before its end-of-partition.
func (g *Gate) Err() <-chan error { return g.errs }

// Recycle hands b back once the task has consumed it; every buffer of the
// gate, local or remote, comes from runtime's pool and goes back to it. For a data buffer it
// returns the channel's credit to the producer. The caller MUST NOT use b
// afterwards.
func (g *Gate) Recycle(b *engine.Buffer) {
	if b.Channel < 0 || b.Channel >= len(g.inputs) {
		g.log.Error("recycled buffer of unknown channel", "channel", b.Channel)
		return
	}
	if b.Kind == engine.BufferData {
		select {
		case g.inputs[b.Channel].credits <- struct{}{}:
		default:
			g.log.Error("more credits returned than granted (buffer recycled twice?)", "channel", b.Channel)
		}
	}
	engine.PutBuffer(b)
}

// claim marks the producer's channel open and returns it.
func (g *Gate) claim(p Producer) (*inputChannel, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unregistered {
		return nil, ErrGateUnregistered
	}
	i, ok := g.byProducer[p]
	if !ok {
		return nil, ErrUnknownChannel
	}
	in := g.inputs[i]
	if in.open {
		return nil, ErrChannelInUse
	}
	in.open = true
	return in, nil
}

// fail reports err on Err unless a failure was reported already.
func (g *Gate) fail(err error) {
	select {
	case <-g.done:
		g.log.Debug("input channel failed after the gate was unregistered", "err", err)
		return
	default:
	}
	select {
	case g.errs <- err:
		if errors.Is(err, ErrCanceled) {
			g.log.Debug("input channel canceled", "err", err) // the task is being canceled anyway
		} else {
			g.log.Warn("input channel failed", "err", err)
		}
	default:
		g.log.Debug("input channel failed (gate already failed)", "err", err)
	}
}

// unregister stops the gate: producers still sending get ErrGateUnregistered
// and queued buffers are dropped.
func (g *Gate) unregister() {
	g.mu.Lock()
	if g.unregistered {
		g.mu.Unlock()
		return
	}
	g.unregistered = true
	close(g.done)
	g.mu.Unlock()
	for {
		select {
		case b := <-g.buffers:
			engine.PutBuffer(b)
		default:
			return
		}
	}
}
