package exchange

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime/engine"
)

// remoteChannel is the producer end of a channel whose consumer runs in
// another TaskManager: one TaskManager.Exchange stream. Send runs on the
// task's goroutine; the channel's own goroutine (receiveCredits) reads the
// consumer's credits until the stream ends.
type remoteChannel struct {
	id     ChannelID
	ctx    context.Context // the producer task's, for why it closes early
	addr   string
	log    *slog.Logger
	stream weirv1.TaskManager_ExchangeClient
	cancel context.CancelFunc // ends the stream
	drain  time.Duration      // how long Close waits for the consumer after end-of-partition

	// out is the message of every Send. Send holds sending while it
	// writes; Close takes it to tell the consumer of a cancellation.
	out     outFrame
	sending sync.Mutex

	// avail is the number of credits granted and not yet spent. Only Send
	// decrements it, only receiveCredits increments it. capacity is the
	// consumer's initial grant, the most there may be.
	avail    atomic.Int64
	capacity int64
	bp       backpressure
	// granted is signalled (without blocking) when credits arrive.
	granted chan struct{}
	// dead is closed when the stream has ended; err (set before) says why:
	// io.EOF when the consumer ended it normally, after end-of-partition.
	dead chan struct{}
	err  error

	eop       atomic.Bool // end-of-partition was sent
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

func (x *Exchange) openRemote(ctx context.Context, id ChannelID, addr string) (*remoteChannel, error) {
	conn, err := x.conn(addr)
	if err != nil {
		return nil, fmt.Errorf("exchange: open %v at %s: %w", id, addr, err)
	}
	// The stream outlives ctx, which only bounds opening it; the stream's
	// own context ends it when the channel is closed.
	sctx, cancel := context.WithCancel(context.Background())
	octx, ocancel := context.WithTimeout(ctx, x.cfg.OpenTimeout)
	defer ocancel()
	stopAbort := context.AfterFunc(octx, cancel)
	c := &remoteChannel{id: id, ctx: ctx, addr: addr, log: x.log.With("channel", id, "consumer", addr),
		cancel: cancel, drain: x.cfg.OpenTimeout,
		granted: make(chan struct{}, 1), dead: make(chan struct{})}

	opened := false
	c.stream, err = weirv1.NewTaskManagerClient(conn).Exchange(sctx, grpc.CallContentSubtype(codecName))
	if err == nil {
		open := &weirv1.ExchangeFrame{Open: &weirv1.ChannelOpen{JobId: id.JobID, Attempt: int32(id.Attempt),
			ProducerVertexId: int32(id.ProducerVertex), ProducerSubtask: int32(id.ProducerSubtask),
			ConsumerVertexId: int32(id.ConsumerVertex), ConsumerSubtask: int32(id.ConsumerSubtask)}}
		// An error here aborts the stream; receiveCredits reports why.
		_ = c.stream.SendMsg(open)
		go c.receiveCredits()
		// The consumer grants the initial credits once its gate is there.
		select {
		case <-c.granted:
			opened = true
		case <-c.dead:
		case <-octx.Done():
		}
	}
	stopped := stopAbort()
	if opened && stopped {
		c.capacity = c.avail.Load() // nothing is sent yet: all of it is the initial grant
		c.log.Debug("remote channel open", "credits", c.avail.Load())
		return c, nil
	}
	cancel()
	if c.stream != nil {
		<-c.dead
		err = fromStatus(c.err)
		if c.err == io.EOF {
			err = fmt.Errorf("%w: consumer ended the stream before granting credit", ErrProtocol)
		}
	}
	if !stopped || octx.Err() != nil { // opening was aborted: say why
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		} else {
			err = fmt.Errorf("%w: no credit from the consumer within %v", ErrGateNotFound, x.cfg.OpenTimeout)
		}
	}
	return nil, fmt.Errorf("exchange: open %v at %s: %w", id, addr, err)
}

// receiveCredits reads the consumer's credit grants until the stream ends.
func (c *remoteChannel) receiveCredits() {
	var m weirv1.ExchangeCredit
	for {
		if err := c.stream.RecvMsg(&m); err != nil {
			c.err = err
			close(c.dead)
			return
		}
		if m.Credits <= 0 {
			continue
		}
		c.avail.Add(int64(m.Credits))
		select {
		case c.granted <- struct{}{}:
		default:
		}
	}
}

// Send writes b to the stream, first spending a credit if b holds data, and
// returns b to the buffer pool. ctx is honoured while waiting for credit;
// the write itself is bounded by HTTP/2 flow control, which the consumer's
// TaskManager drains without waiting for the task (credits bound what it
// queues), and is aborted by Close or a broken connection.
func (c *remoteChannel) Send(ctx context.Context, b *engine.Buffer) error {
	if c.closed.Load() {
		engine.PutBuffer(b)
		return fmt.Errorf("exchange: send on %v: %w", c.id, ErrClosed)
	}
	switch b.Kind {
	case engine.BufferData:
		if c.avail.Load() <= 0 {
			since := c.bp.begin()
			err := c.awaitCredit(ctx)
			c.bp.end(since)
			if err != nil {
				engine.PutBuffer(b)
				return err
			}
		}
		c.avail.Add(-1)
	case engine.BufferEndOfPartition:
	default:
		if b.Kind.IsTaskEvent() {
			break
		}
		engine.PutBuffer(b)
		return fmt.Errorf("exchange: send on %v: unknown buffer kind %d", c.id, b.Kind)
	}
	// SendMsg has encoded the frame (frameCodec) when it returns, and the
	// connection has no stats handler or interceptor that could look at the
	// message later, so the buffer is free for reuse then.
	c.sending.Lock()
	c.out.buf = b
	err := c.stream.SendMsg(&c.out)
	c.out.buf = nil
	c.sending.Unlock()
	kind := b.Kind
	engine.PutBuffer(b)
	if err != nil {
		if err == io.EOF { // the stream ended; its status tells why
			<-c.dead
			return c.deadErr()
		}
		return fmt.Errorf("exchange: send on %v: %w", c.id, err)
	}
	if kind == engine.BufferEndOfPartition {
		c.eop.Store(true)
	}
	return nil
}

// awaitCredit waits until the consumer has granted a credit.
func (c *remoteChannel) awaitCredit(ctx context.Context) error {
	for c.avail.Load() <= 0 {
		select {
		case <-c.granted:
		case <-c.dead:
			return c.deadErr()
		case <-ctx.Done():
			return fmt.Errorf("exchange: send on %v: %w", c.id, context.Cause(ctx))
		}
	}
	return nil
}

// BackpressuredNanos is how long Send has waited for credit.
func (c *remoteChannel) BackpressuredNanos() int64 { return c.bp.nanos() }

// Credits returns the buffers sent and not yet recycled by the consumer,
// and the consumer's grant.
func (c *remoteChannel) Credits() (inUse, capacity int) {
	return int(max(c.capacity-c.avail.Load(), 0)), int(c.capacity)
}

// deadErr is the error of Send on an ended stream.
func (c *remoteChannel) deadErr() error {
	err := c.err
	if err == io.EOF {
		err = fmt.Errorf("%w: consumer ended the stream", ErrClosed)
	}
	return fmt.Errorf("exchange: send on %v: %w", c.id, fromStatus(err))
}

// canceledDrain bounds how long Close waits for the consumer to take a
// cancellation; it is told to the consumer's TaskManager, whose Serve
// answers without waiting for the task.
const canceledDrain = time.Second

// Close ends the stream. After end-of-partition it half-closes the stream
// and waits (up to OpenTimeout) for the consumer to end it, so no frame in
// flight is lost. Before, it cancels the stream, which fails the consumer's
// gate; if the producer was canceled it first sends a PRODUCER_CANCELED
// event (unless a Send is writing at that moment) and waits briefly for the
// consumer to take it, so the consumer ends canceled rather than failed.
// Close may be called from another goroutine to abort a blocked Send.
func (c *remoteChannel) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if !c.eop.Load() && canceled(c.ctx) && c.sending.TryLock() {
			err := c.stream.SendMsg(&weirv1.ExchangeFrame{Event: weirv1.EventKind_EVENT_KIND_PRODUCER_CANCELED})
			if err == nil {
				err = c.stream.CloseSend()
			}
			c.sending.Unlock()
			t := time.NewTimer(canceledDrain)
			select {
			case <-c.dead:
			case <-t.C:
			}
			t.Stop()
			c.log.Debug("remote channel closed: producer canceled", "err", err)
		}
		if c.eop.Load() {
			// Send is done: CloseSend cannot run concurrently with SendMsg.
			if err := c.stream.CloseSend(); err != nil {
				c.log.Debug("close send", "err", err)
			}
			t := time.NewTimer(c.drain)
			select {
			case <-c.dead:
				if c.err != io.EOF {
					c.closeErr = fmt.Errorf("exchange: close %v: %w", c.id, fromStatus(c.err))
				}
			case <-t.C:
				c.closeErr = fmt.Errorf("exchange: close %v: consumer did not end the stream within %v", c.id, c.drain)
			}
			t.Stop()
		}
		c.cancel()
		<-c.dead
		if c.closeErr != nil {
			c.log.Warn("remote channel closed with error", "err", c.closeErr)
		} else {
			c.log.Debug("remote channel closed", "eop", c.eop.Load())
		}
	})
	return c.closeErr
}

var _ engine.OutputChannel = (*remoteChannel)(nil)
var _ engine.OutputChannel = (*localChannel)(nil)
var _ engine.InputGate = (*Gate)(nil)
