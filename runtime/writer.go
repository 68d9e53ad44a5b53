package runtime

import (
	"encoding/binary"
)

// eventWriter is the type-erased face of a recordWriter the task drives.
type eventWriter interface {
	// flush sends every non-empty buffer downstream.
	flush()
	// broadcast sends an event to every channel, after their pending records.
	broadcast(kind BufferKind, value int64)
	// forwardMarker sends a latency marker to one channel, round-robin.
	forwardMarker(value int64)
	// broadcastBarrier sends a checkpoint barrier to every channel.
	broadcastBarrier(b Barrier)
	closeChannels()
	// channelList returns the writer's channels, for stats.
	channelList() []OutputChannel
}

// recordWriter serialises records of type T into one buffer per output
// channel and routes them by the edge's partitioning. It runs on the task's
// goroutine and allocates nothing per record once its buffers are pooled.
type recordWriter[T any] struct {
	t        *Task
	codec    Codec[T]
	channels []OutputChannel
	bufs     []*Buffer
	mode     Partitioning
	kgOf     func(T) int
	maxP     int
	next     int // rebalance and marker cursor
	scratch  []byte
	count    *int64 // records out of the chain's tail, or nil
	// ts, when the job has event time, is the task's current record
	// timestamp, written before each record.
	ts *int64
}

func newRecordWriter[T any](t *Task, codec Codec[T], chs []OutputChannel, e *Edge, consumer *node, subtask int) *recordWriter[T] {
	w := &recordWriter[T]{t: t, codec: codec, channels: chs, bufs: make([]*Buffer, len(chs)),
		mode: e.Partitioning, maxP: t.graph.MaxParallelism, next: subtask % len(chs),
		scratch: make([]byte, 0, 256)}
	if t.graph.EventTime {
		w.ts = &t.wmk.ts
	}
	if w.mode == Hash {
		kgOf := consumer.keyGroupOf
		if e.from == consumer.input2 {
			kgOf = consumer.keyGroupOf2
		}
		w.kgOf = kgOf(w.maxP).(func(T) int)
	}
	for i := range w.bufs {
		w.bufs[i] = GetBuffer()
	}
	return w
}

func (w *recordWriter[T]) Collect(v T) {
	if w.count != nil {
		*w.count++
	}
	ch := 0
	switch w.mode {
	case Hash:
		ch = w.kgOf(v) * len(w.channels) / w.maxP
	case Rebalance:
		ch = w.next
		if w.next++; w.next == len(w.channels) {
			w.next = 0
		}
	}
	w.scratch = w.scratch[:0]
	if w.ts != nil {
		w.scratch = binary.AppendVarint(w.scratch, *w.ts)
	}
	w.scratch = w.codec.Append(w.scratch, v)
	if w.mode == BroadcastEdge {
		for ch := range w.bufs {
			w.append(ch)
		}
		return
	}
	w.append(ch)
}

// append adds the record in scratch to channel ch's buffer, sending the
// buffer first if the record does not fit.
func (w *recordWriter[T]) append(ch int) {
	b := w.bufs[ch]
	if len(b.Data)+len(w.scratch)+binary.MaxVarintLen32 > cap(b.Data) && b.Records > 0 {
		w.send(ch)
		b = w.bufs[ch]
	}
	b.Data = binary.AppendUvarint(b.Data, uint64(len(w.scratch)))
	b.Data = append(b.Data, w.scratch...)
	b.Records++
}

func (w *recordWriter[T]) send(ch int) {
	b := w.bufs[ch]
	w.bufs[ch] = GetBuffer()
	if w.t.err != nil {
		PutBuffer(b)
		return
	}
	w.t.stats.bytesOut += int64(len(b.Data))
	w.t.stats.buffersOut++
	if err := w.channels[ch].Send(w.t.ctx, b); err != nil {
		w.t.fail(err)
	}
}

func (w *recordWriter[T]) flushChannel(ch int) {
	if w.bufs[ch].Records > 0 {
		w.send(ch)
	}
}

func (w *recordWriter[T]) flush() {
	for ch := range w.bufs {
		w.flushChannel(ch)
	}
}

func (w *recordWriter[T]) sendEvent(ch int, kind BufferKind, value int64) {
	w.flushChannel(ch)
	if w.t.err != nil {
		return
	}
	b := GetBuffer()
	b.Kind, b.Value = kind, value
	if err := w.channels[ch].Send(w.t.ctx, b); err != nil {
		w.t.fail(err)
	}
}

func (w *recordWriter[T]) broadcast(kind BufferKind, value int64) {
	for ch := range w.channels {
		w.sendEvent(ch, kind, value)
	}
}

func (w *recordWriter[T]) broadcastBarrier(bar Barrier) {
	for ch := range w.channels {
		w.flushChannel(ch)
		if w.t.err != nil {
			return
		}
		b := GetBuffer()
		b.Kind, b.Value = BufferBarrier, bar.ID
		b.Data = EncodeBarrier(b.Data, bar)
		if err := w.channels[ch].Send(w.t.ctx, b); err != nil {
			w.t.fail(err)
		}
	}
}

func (w *recordWriter[T]) forwardMarker(value int64) {
	ch := w.next
	if w.next++; w.next == len(w.channels) {
		w.next = 0
	}
	w.sendEvent(ch, BufferLatencyMarker, value)
}

func (w *recordWriter[T]) channelList() []OutputChannel { return w.channels }

func (w *recordWriter[T]) closeChannels() {
	for i, b := range w.bufs {
		if b != nil {
			PutBuffer(b)
			w.bufs[i] = nil
		}
	}
	for _, c := range w.channels {
		c.Close()
	}
}

// fanOut hands every record to several writers (a stream with several
// consumers).
type fanOut[T any] []Collector[T]

func (f fanOut[T]) Collect(v T) {
	for _, c := range f {
		c.Collect(v)
	}
}
