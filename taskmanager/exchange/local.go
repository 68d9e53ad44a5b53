package exchange

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/weirstream/weir/runtime/engine"
)

// localChannel is the producer end of a channel whose consumer runs in this
// TaskManager: Send passes the buffer itself into the consumer's gate.
type localChannel struct {
	id   ChannelID
	ctx  context.Context // the producer task's, for why it closes early
	gate *Gate
	in   *inputChannel

	bp        backpressure
	eop       atomic.Bool   // end-of-partition was delivered
	closing   chan struct{} // closed by Close; aborts a blocked Send
	closeOnce sync.Once
}

// Send delivers b to the consumer's gate, first taking a credit if b holds
// data. It blocks while the channel has no credit and, for events, while
// the gate's queue is full.
func (c *localChannel) Send(ctx context.Context, b *engine.Buffer) error {
	select {
	case <-c.closing:
		return c.drop(b, ErrClosed)
	case <-c.gate.done:
		return c.drop(b, ErrGateUnregistered)
	default:
	}
	data := b.Kind == engine.BufferData
	if data {
		select {
		case <-c.in.credits: // the common case, without a multi-way select
		default:
			since := c.bp.begin()
			err := c.wait(ctx, c.in.credits, nil, nil)
			c.bp.end(since)
			if err != nil {
				return c.drop(b, err)
			}
		}
	}
	b.Channel = c.in.index
	eop := b.Kind == engine.BufferEndOfPartition
	select {
	case c.gate.buffers <- b:
	default:
		if err := c.wait(ctx, nil, c.gate.buffers, b); err != nil {
			if data {
				select {
				case c.in.credits <- struct{}{}: // give back the credit taken above
				default:
				}
			}
			return c.drop(b, err)
		}
	}
	// b belongs to the consumer now.
	if eop {
		c.eop.Store(true)
	}
	return nil
}

// wait blocks until it has taken a credit from take or put b into put, or
// the send is aborted.
func (c *localChannel) wait(ctx context.Context, take <-chan struct{}, put chan<- *engine.Buffer, b *engine.Buffer) error {
	select {
	case <-take:
		return nil
	case put <- b:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-c.gate.done:
		return ErrGateUnregistered
	case <-c.closing:
		return ErrClosed
	}
}

// BackpressuredNanos is how long Send has waited for credit.
func (c *localChannel) BackpressuredNanos() int64 { return c.bp.nanos() }

// Credits returns the buffers sent and not yet recycled by the consumer,
// and the channel's credit.
func (c *localChannel) Credits() (inUse, capacity int) {
	return c.gate.credits - len(c.in.credits), c.gate.credits
}

func (c *localChannel) drop(b *engine.Buffer, err error) error {
	engine.PutBuffer(b)
	return fmt.Errorf("exchange: send on %v: %w", c.id, err)
}

// Close releases the channel. Closed before its end-of-partition was sent,
// the channel fails the consumer's gate with ErrCanceled if the producer
// was canceled, else with ErrIncomplete.
func (c *localChannel) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		switch {
		case c.eop.Load():
		case canceled(c.ctx):
			c.gate.fail(fmt.Errorf("exchange: %v: the producer ended early: %w", c.id, ErrCanceled))
		default:
			c.gate.fail(fmt.Errorf("exchange: %v: producer closed the channel: %w", c.id, ErrIncomplete))
		}
	})
	return nil
}

// canceled reports whether the producer task's context was canceled with
// a cause matching ErrCanceled.
func canceled(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrCanceled)
}
