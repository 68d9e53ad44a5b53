package engine

import (
	"context"
	"encoding/binary"
)

// WriterHost is what a Writer needs of its task: the context its sends
// block under, the task's failure (after which nothing is sent), and the
// task's output counters. It is called per buffer, never per record.
type WriterHost interface {
	Context() context.Context
	Failed() bool
	Fail(err error)
	// Sent counts a data buffer of n bytes handed to a channel.
	Sent(n int)
}

// Writer frames serialised records into one buffer per output channel and
// sends the buffers and in-band events downstream. It knows nothing of
// records' types or of partitioning: runtime's typed writer encodes a
// record and picks its channel, then calls Append. It runs on the task's
// goroutine and allocates nothing per record once its buffers are pooled.
type Writer struct {
	host     WriterHost
	channels []OutputChannel
	bufs     []*Buffer
	marker   int // round-robin cursor of latency markers
}

// NewWriter returns a writer over chs; markers start at channel first.
func NewWriter(host WriterHost, chs []OutputChannel, first int) *Writer {
	w := &Writer{host: host, channels: chs, bufs: make([]*Buffer, len(chs))}
	if len(chs) > 0 {
		w.marker = first % len(chs)
	}
	for i := range w.bufs {
		w.bufs[i] = GetBuffer()
	}
	return w
}

// NumChannels is the number of output channels.
func (w *Writer) NumChannels() int { return len(w.channels) }

// Append adds one serialised record to channel ch's buffer, sending the
// buffer first if the record does not fit.
func (w *Writer) Append(ch int, rec []byte) {
	b := w.bufs[ch]
	if len(b.Data)+len(rec)+binary.MaxVarintLen32 > cap(b.Data) && b.Records > 0 {
		w.send(ch)
		b = w.bufs[ch]
	}
	b.Data = binary.AppendUvarint(b.Data, uint64(len(rec)))
	b.Data = append(b.Data, rec...)
	b.Records++
}

func (w *Writer) send(ch int) {
	b := w.bufs[ch]
	w.bufs[ch] = GetBuffer()
	if w.host.Failed() {
		PutBuffer(b)
		return
	}
	w.host.Sent(len(b.Data))
	if err := w.channels[ch].Send(w.host.Context(), b); err != nil {
		w.host.Fail(err)
	}
}

func (w *Writer) flushChannel(ch int) {
	if w.bufs[ch].Records > 0 {
		w.send(ch)
	}
}

// Flush sends every non-empty buffer downstream.
func (w *Writer) Flush() {
	for ch := range w.bufs {
		w.flushChannel(ch)
	}
}

// sendEvent sends an event buffer to ch behind the records before it.
func (w *Writer) sendEvent(ch int, b *Buffer) {
	w.flushChannel(ch)
	if w.host.Failed() {
		PutBuffer(b)
		return
	}
	if err := w.channels[ch].Send(w.host.Context(), b); err != nil {
		w.host.Fail(err)
	}
}

// Broadcast sends an event (watermark, idle status, end of partition) to
// every channel, after their pending records.
func (w *Writer) Broadcast(kind BufferKind, value int64) {
	for ch := range w.channels {
		b := GetBuffer()
		b.Kind, b.Value = kind, value
		w.sendEvent(ch, b)
	}
}

// BroadcastBarrier sends checkpoint barrier bar to every channel.
func (w *Writer) BroadcastBarrier(bar Barrier) {
	for ch := range w.channels {
		b := GetBuffer()
		b.Kind, b.Value = BufferBarrier, bar.ID
		b.Data = EncodeBarrier(b.Data, bar)
		w.sendEvent(ch, b)
	}
}

// ForwardMarker sends a latency marker created at value (Unix ns) to one
// channel, round-robin.
func (w *Writer) ForwardMarker(value int64) {
	ch := w.marker
	if w.marker++; w.marker == len(w.channels) {
		w.marker = 0
	}
	b := GetBuffer()
	b.Kind, b.Value = BufferLatencyMarker, value
	w.sendEvent(ch, b)
}

// Channels returns the writer's channels, for stats.
func (w *Writer) Channels() []OutputChannel { return w.channels }

// Close returns the writer's buffers to the pool and closes its channels.
func (w *Writer) Close() {
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
