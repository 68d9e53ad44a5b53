package exchange

import (
	"fmt"
	"io"
	"sync/atomic"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime/engine"
)

// Serve handles one incoming TaskManager.Exchange stream: the consumer's end
// of a remote channel. It reads the ChannelOpen, waits up to OpenTimeout for
// the consumer's gate, grants the initial credits, and then, while its
// goroutine (receiveFrames) forwards the frames to the gate in order, sends
// the credits the consumer returns. It returns nil after end-of-partition,
// and an error (as a gRPC status) when the gate is missing or unregistered,
// the producer breaks the protocol, or the stream breaks — which, before
// end-of-partition, also fails the gate.
func (x *Exchange) Serve(stream weirv1.TaskManager_ExchangeServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return toStatus(fmt.Errorf("exchange: receive channel open: %w", err))
	}
	o := first.GetOpen()
	if o == nil {
		return toStatus(fmt.Errorf("%w: first frame carries no ChannelOpen", ErrProtocol))
	}
	id := ChannelID{JobID: o.JobId, Attempt: int(o.Attempt),
		ProducerVertex: int(o.ProducerVertexId), ProducerSubtask: int(o.ProducerSubtask),
		ConsumerVertex: int(o.ConsumerVertexId), ConsumerSubtask: int(o.ConsumerSubtask)}
	if first.Data != nil || first.Event != weirv1.EventKind_EVENT_KIND_UNSPECIFIED {
		return toStatus(fmt.Errorf("%w: %v: the open frame carries a buffer", ErrProtocol, id))
	}
	g, err := x.waitGate(ctx, id.Gate())
	if err != nil {
		return toStatus(fmt.Errorf("exchange: %v: %w", id, err))
	}
	in, err := g.claim(id.Producer())
	if err != nil {
		return toStatus(fmt.Errorf("exchange: %v: %w", id, err))
	}
	log := g.log.With("channel", id)
	log.Debug("remote channel open")

	r := &inbound{id: id, gate: g, in: in, stream: stream,
		result: make(chan error, 1), stop: make(chan struct{})}
	defer close(r.stop)
	r.window.Store(int64(g.credits))
	if err := stream.Send(&weirv1.ExchangeCredit{Credits: int32(g.credits)}); err != nil {
		err = fmt.Errorf("exchange: %v: grant credits: %w", id, err)
		g.fail(fmt.Errorf("%w: %w", ErrIncomplete, err))
		return toStatus(err)
	}
	go r.receiveFrames()
	for {
		select {
		case <-in.credits:
			n := int32(1)
		drain:
			for {
				select {
				case <-in.credits:
					n++
				default:
					break drain
				}
			}
			// Count the credit before the producer can spend it.
			r.window.Add(int64(n))
			// A new message each time: a server's stats handlers may
			// look at it after Send returns.
			if err := stream.Send(&weirv1.ExchangeCredit{Credits: n}); err != nil {
				// receiveFrames sees the broken stream and fails the gate.
				log.Debug("send credit", "err", err)
				return toStatus(fmt.Errorf("exchange: %v: send credit: %w", id, err))
			}
		case err := <-r.result:
			if err == nil {
				log.Debug("remote channel finished")
			}
			return toStatus(err)
		case <-g.done:
			select {
			case err := <-r.result: // finished just before: not an error
				return toStatus(err)
			default:
			}
			return toStatus(fmt.Errorf("exchange: %v: %w", id, ErrGateUnregistered))
		case <-ctx.Done():
			// receiveFrames sees the broken stream and fails the gate.
			return toStatus(ctx.Err())
		}
	}
}

// inbound is one remote channel being served.
type inbound struct {
	id     ChannelID
	gate   *Gate
	in     *inputChannel
	stream weirv1.TaskManager_ExchangeServer
	// window is the credit granted and not yet spent by a data frame.
	window atomic.Int64
	result chan error    // receiveFrames' outcome: nil after end-of-partition
	stop   chan struct{} // closed when Serve returns
}

// receiveFrames forwards the frames of the stream to the gate, in order,
// until end-of-partition or until the stream breaks, which fails the gate.
// It is owned by Serve and ends at the latest when the stream does, that is
// when Serve has returned.
func (r *inbound) receiveFrames() {
	f := new(inFrame)
	for {
		// frameCodec decodes the frame straight into a pooled buffer.
		b := engine.GetBuffer()
		f.buf = b
		err := r.stream.RecvMsg(f)
		f.buf = nil
		if err != nil {
			engine.PutBuffer(b)
			if err == io.EOF {
				err = fmt.Errorf("producer closed the stream")
			}
			r.finish(fmt.Errorf("exchange: %v: %w: %w", r.id, ErrIncomplete, err))
			return
		}
		b.Channel = r.in.index
		switch {
		case f.open:
			err = fmt.Errorf("%w: a second ChannelOpen", ErrProtocol)
		case f.event == weirv1.EventKind_EVENT_KIND_UNSPECIFIED:
			if r.window.Add(-1) < 0 {
				err = fmt.Errorf("%w: data frame without credit", ErrProtocol)
			}
		case f.event == weirv1.EventKind_EVENT_KIND_END_OF_PARTITION:
			b.Kind, b.Value = engine.BufferEndOfPartition, f.value
		case f.event == weirv1.EventKind_EVENT_KIND_TASK_EVENT && f.taskEvent != 0:
			b.Kind, b.Value = f.taskEvent, f.value
		case f.event == weirv1.EventKind_EVENT_KIND_PRODUCER_CANCELED:
			engine.PutBuffer(b)
			r.finish(fmt.Errorf("exchange: %v: the producer ended early: %w", r.id, ErrCanceled))
			return
		default:
			err = fmt.Errorf("%w: unknown event kind %v", ErrProtocol, f.event)
		}
		if err != nil {
			engine.PutBuffer(b)
			r.finish(fmt.Errorf("exchange: %v: %w", r.id, err))
			return
		}
		eop := b.Kind == engine.BufferEndOfPartition
		select {
		case r.gate.buffers <- b: // b belongs to the consumer now
		case <-r.gate.done:
			engine.PutBuffer(b)
			r.finish(fmt.Errorf("exchange: %v: %w", r.id, ErrGateUnregistered))
			return
		case <-r.stop:
			engine.PutBuffer(b)
			r.finish(fmt.Errorf("exchange: %v: %w: stream ended", r.id, ErrIncomplete))
			return
		}
		if eop {
			r.result <- nil
			return
		}
	}
}

// finish reports the failure of the channel to the gate and to Serve.
func (r *inbound) finish(err error) {
	r.gate.fail(err)
	r.result <- err
}
