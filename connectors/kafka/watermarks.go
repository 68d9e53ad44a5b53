package kafka

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/runtime"
)

// Watermarks is how a source makes event time, per partition (Flink's
// bounded out-of-orderness strategy with idleness, applied by its Kafka
// source to each partition it reads).
type Watermarks[T any] struct {
	// Timestamp is a record's event time in Unix ms; nil takes the Kafka
	// record's timestamp.
	Timestamp func(v T, r *kgo.Record) int64
	// OutOfOrderness is how far a record may arrive behind the newest
	// record of its partition: a partition's watermark is its newest
	// timestamp less this, less 1 ms.
	OutOfOrderness time.Duration
	// Idleness leaves a partition without records for this long out of
	// the watermark until its next record; 0 never does, so that a
	// partition that stops receiving records holds the watermark back
	// for good.
	Idleness time.Duration
}

// EventTimeSource is a Source with per-partition watermarks, for
// runtime.FromWatermarkingSource. Each partition the subtask reads keeps
// its own watermark; the subtask's is the lowest of the partitions that
// are not idle, and when all are idle (or the subtask reads none, having
// more subtasks than partitions) the subtask is idle and its consumers
// leave it out. A partition that moves to another subtask (a rescale) or
// is read again after a restore starts with no watermark, as in Flink.
type EventTimeSource[T any] struct {
	*Source[T]
	w   Watermarks[T]
	out runtime.SourceOutput[T]
	// now is the clock, read once per poll (Unix ns); tests replace it.
	now   func() int64
	nowNs int64
	emit  func(p *partition, r *kgo.Record, v T)
}

// EventTime returns s with per-partition watermarks made by w.
func (s *Source[T]) EventTime(w Watermarks[T]) *EventTimeSource[T] {
	e := &EventTimeSource[T]{Source: s, w: w, now: func() int64 { return time.Now().UnixNano() }}
	e.emit = e.collect
	return e
}

// Open checks the strategy, then opens the source.
func (e *EventTimeSource[T]) Open(ctx *runtime.RuntimeContext) error {
	if e.w.OutOfOrderness < 0 || e.w.Idleness < 0 {
		return fmt.Errorf("kafka source: out-of-orderness %v and idleness %v must not be negative", e.w.OutOfOrderness, e.w.Idleness)
	}
	return e.Source.Open(ctx)
}

// Poll emits the records fetched so far, stamped, then the subtask's
// watermark, or that it is idle.
func (e *EventTimeSource[T]) Poll(out runtime.SourceOutput[T]) (time.Duration, error) {
	e.out, e.nowNs = out, e.now()
	wait, err := e.Source.poll(e.emit)
	if err != nil {
		return wait, err // the end of a bounded input: the runtime sends MaxWatermark
	}
	e.watermark()
	return wait, nil
}

func (e *EventTimeSource[T]) collect(p *partition, r *kgo.Record, v T) {
	var ts int64
	if e.w.Timestamp != nil {
		ts = e.w.Timestamp(v, r)
	} else {
		ts = r.Timestamp.UnixMilli()
	}
	p.maxTs = max(p.maxTs, ts)
	p.activeAt = e.nowNs
	e.out.CollectWithTimestamp(v, ts)
}

// watermark emits the lowest watermark of the active partitions.
func (e *EventTimeSource[T]) watermark() {
	lo, active := runtime.MaxWatermark, false
	ooo, idle := e.w.OutOfOrderness.Milliseconds(), int64(e.w.Idleness)
	for _, p := range e.order {
		if idle > 0 && e.nowNs-p.activeAt >= idle {
			continue
		}
		active = true
		wm := runtime.NoTimestamp
		if p.maxTs != runtime.NoTimestamp {
			wm = p.maxTs - ooo - 1
		}
		lo = min(lo, wm)
	}
	if !active {
		e.out.MarkIdle()
		return
	}
	e.out.EmitWatermark(lo)
}
