package engine

import (
	"context"
	"sync"
)

// BufferSize is the capacity a data buffer is flushed at. Like Flink's
// network buffers (32 KiB), it is large enough to amortise per-frame costs and
// small enough that a few per channel bound a TaskManager's memory.
const BufferSize = 32 << 10

// BufferKind says what a Buffer carries.
type BufferKind uint8

const (
	// BufferData holds records, each prefixed by its uvarint length.
	BufferData BufferKind = iota
	// BufferEndOfPartition is the last buffer of a channel.
	BufferEndOfPartition
	// BufferLatencyMarker carries a creation time (Unix ns) in Value.
	BufferLatencyMarker
	// BufferBarrier carries a checkpoint barrier, encoded in Data
	// (EncodeBarrier); Value holds its checkpoint ID.
	BufferBarrier
	// BufferWatermark carries an event-time watermark (Unix ms) in Value:
	// no record with an earlier timestamp follows on the channel.
	BufferWatermark
	// BufferWatermarkStatus says whether the channel is idle (Value 1)
	// or active again (0). An idle channel is left out of its consumer's
	// watermark, so a quiet input does not hold event time back.
	BufferWatermarkStatus
)

// IsTaskEvent reports whether k is one of the runtime's in-band events,
// which a transport passes through opaquely (kind, Value and Data), in order
// with the records and without taking credit. Data and end-of-partition are
// the two kinds a transport itself understands.
func (k BufferKind) IsTaskEvent() bool { return k > BufferEndOfPartition }

// Buffer is the unit of the data exchange: a batch of serialised records or
// one in-band event. Events travel in order with the records of their channel.
type Buffer struct {
	Kind BufferKind
	// Channel is the index of the input channel the buffer arrived on; set
	// by the receiving side (InputGate), ignored when sending.
	Channel int
	Data    []byte
	Records int
	Value   int64
}

var bufferPool = sync.Pool{New: func() any { return &Buffer{Data: make([]byte, 0, BufferSize)} }}

// GetBuffer returns an empty data buffer from the pool.
func GetBuffer() *Buffer {
	b := bufferPool.Get().(*Buffer)
	b.Kind, b.Channel, b.Records, b.Value = BufferData, 0, 0, 0
	b.Data = b.Data[:0]
	return b
}

// PutBuffer returns b to the pool. The caller MUST NOT use b afterwards.
func PutBuffer(b *Buffer) {
	if cap(b.Data) < BufferSize || cap(b.Data) > 4*BufferSize {
		return // foreign or oversized storage: let the GC have it
	}
	bufferPool.Put(b)
}

// OutputChannel sends buffers from one producer subtask to one consumer
// subtask. Implementations live in the taskmanager (local queues, gRPC).
type OutputChannel interface {
	// Send transfers ownership of b to the channel. For data buffers it
	// blocks until the consumer has granted a credit (backpressure), or ctx
	// ends. Buffers are delivered in the order sent.
	Send(ctx context.Context, b *Buffer) error
	// Close releases the channel after the last buffer (normally an
	// end-of-partition event) has been sent or the task has failed. Close
	// MUST be idempotent.
	Close() error
}

// InputGate merges the input channels of one consumer subtask.
type InputGate interface {
	// NumChannels is the number of producer subtasks feeding the gate.
	NumChannels() int
	// Buffers delivers buffers from all channels; Buffer.Channel tells which.
	// Buffers of one channel arrive in the order they were sent.
	Buffers() <-chan *Buffer
	// Recycle is called once the task has consumed b; it MUST be called for
	// every data buffer, since it returns the channel's credit to its producer.
	Recycle(b *Buffer)
	// Err reports a failure of the gate's transport (a broken stream), which
	// fails the task; nil while healthy.
	Err() <-chan error
}

// OutputChannelStats is implemented by output channels that measure their
// backpressure; the task sums it over its channels.
type OutputChannelStats interface {
	// BackpressuredNanos is how long Send has waited for credit in total,
	// a wait under way included.
	BackpressuredNanos() int64
	// Credits returns the data buffers sent and not yet consumed
	// (recycled) by the consumer, and the most there may be.
	Credits() (inUse, capacity int)
}

// InputGateStats is implemented by input gates that can tell how full
// their queue is.
type InputGateStats interface {
	// Queued returns the buffers waiting for the task and the queue's
	// capacity.
	Queued() (queued, capacity int)
}
