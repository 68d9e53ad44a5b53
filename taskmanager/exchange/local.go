package exchange

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/weirstream/weir/runtime"
)

// localChannel is the producer end of a channel whose consumer runs in this
// TaskManager: Send passes the buffer itself into the consumer's gate.
type localChannel struct {
	id   ChannelID
	gate *Gate
	in   *inputChannel

	eop       atomic.Bool   // end-of-partition was delivered
	closing   chan struct{} // closed by Close; aborts a blocked Send
	closeOnce sync.Once
}

// Send delivers b to the consumer's gate, first taking a credit if b holds
// data. It blocks while the channel has no credit and, for events, while
// the gate's queue is full.
func (c *localChannel) Send(ctx context.Context, b *runtime.Buffer) error {
	select {
	case <-c.closing:
		runtime.PutBuffer(b)
		return fmt.Errorf("exchange: send on %v: %w", c.id, ErrClosed)
	case <-c.gate.done:
		runtime.PutBuffer(b)
		return fmt.Errorf("exchange: send on %v: %w", c.id, ErrGateUnregistered)
	default:
	}
	data := b.Kind == runtime.BufferData
	if data {
		select {
		case <-c.in.credits:
		default:
			select {
			case <-c.in.credits:
			case <-ctx.Done():
				runtime.PutBuffer(b)
				return fmt.Errorf("exchange: send on %v: %w", c.id, context.Cause(ctx))
			case <-c.gate.done:
				runtime.PutBuffer(b)
				return fmt.Errorf("exchange: send on %v: %w", c.id, ErrGateUnregistered)
			case <-c.closing:
				runtime.PutBuffer(b)
				return fmt.Errorf("exchange: send on %v: %w", c.id, ErrClosed)
			}
		}
	}
	b.Channel = c.in.index
	kind := b.Kind
	select {
	case c.gate.buffers <- b:
		if kind == runtime.BufferEndOfPartition {
			c.eop.Store(true)
		}
		return nil
	default:
	}
	var err error
	select {
	case c.gate.buffers <- b:
		if kind == runtime.BufferEndOfPartition {
			c.eop.Store(true)
		}
		return nil
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-c.gate.done:
		err = ErrGateUnregistered
	case <-c.closing:
		err = ErrClosed
	}
	if data {
		select {
		case c.in.credits <- struct{}{}: // give back the credit taken above
		default:
		}
	}
	runtime.PutBuffer(b)
	return fmt.Errorf("exchange: send on %v: %w", c.id, err)
}

// Close releases the channel. Closed before its end-of-partition was sent,
// the channel fails the consumer's gate with ErrIncomplete.
func (c *localChannel) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		if !c.eop.Load() {
			c.gate.fail(fmt.Errorf("exchange: %v: producer closed the channel: %w", c.id, ErrIncomplete))
		}
	})
	return nil
}
