package runtime

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// NoTimestamp is the timestamp of a record that has none, and the
// watermark of an operator before its first watermark (Flink's
// Long.MIN_VALUE).
const NoTimestamp = engine.NoTimestamp

// MaxWatermark is the watermark of an input that has ended: every
// event-time timer fires and every window closes.
const MaxWatermark = engine.MaxWatermark

// TimeDomain says which clock a timer belongs to.
type TimeDomain uint8

const (
	// ProcessingTime timers fire on the wall clock.
	ProcessingTime TimeDomain = iota
	// EventTime timers fire when the watermark passes them.
	EventTime
)

func (d TimeDomain) String() string {
	if d == EventTime {
		return "event-time"
	}
	return "processing-time"
}

// WatermarkStrategy tells the runtime where a stream's records get their
// event timestamps and how far its watermark trails them (Flink's
// WatermarkStrategy). Build one with ForBoundedOutOfOrderness or
// ForMonotonousTimestamps and apply it with AssignTimestampsAndWatermarks.
type WatermarkStrategy[T any] struct {
	timestamp      func(T) int64
	outOfOrderness int64 // ms
	idleness       time.Duration
}

// ForBoundedOutOfOrderness reads each record's timestamp (Unix ms) with ts
// and lets records arrive up to maxOutOfOrderness behind the newest one
// seen: the watermark is that newest timestamp minus maxOutOfOrderness
// minus 1 ms.
func ForBoundedOutOfOrderness[T any](maxOutOfOrderness time.Duration, ts func(T) int64) WatermarkStrategy[T] {
	return WatermarkStrategy[T]{timestamp: ts, outOfOrderness: maxOutOfOrderness.Milliseconds()}
}

// ForMonotonousTimestamps is for records that arrive in timestamp order:
// the watermark follows the newest timestamp (minus 1 ms).
func ForMonotonousTimestamps[T any](ts func(T) int64) WatermarkStrategy[T] {
	return WatermarkStrategy[T]{timestamp: ts}
}

// WithIdleness marks the stream idle after d without records, so that its
// consumers leave it out of their watermark instead of waiting for it; the
// first record after that makes it active again.
func (w WatermarkStrategy[T]) WithIdleness(d time.Duration) WatermarkStrategy[T] {
	w.idleness = d
	return w
}

// AssignTimestampsAndWatermarks gives every record of s its event
// timestamp and makes s's watermark: after each batch of records the
// watermark advances to the newest timestamp seen less the strategy's
// out-of-orderness, and when the input ends it becomes MaxWatermark. As in
// Flink, watermarks arriving from upstream are replaced by the ones made
// here. Assign timestamps at the source (chained to it), so that the
// operators before this one in the chain do not see its watermark early.
func AssignTimestampsAndWatermarks[T any](s Stream[T], ws WatermarkStrategy[T]) Stream[T] {
	if ws.timestamp == nil {
		s.env.fail(fmt.Errorf("operator %s: a watermark strategy needs a timestamp function", s.node.name))
	}
	if ws.outOfOrderness < 0 || ws.idleness < 0 {
		s.env.fail(fmt.Errorf("operator %s: out-of-orderness and idleness must not be negative", s.node.name))
	}
	var codec Codec[T]
	if c, ok := s.node.codec.(Codec[T]); ok {
		codec = c
	}
	n := newNode[T, T]("timestamps", codec)
	n.eventTime = true
	n.instantiate = func(oc *opContext, out any) (any, error) {
		a := &assigner[T]{ts: oc.ts, strategy: ws, out: collectorOrDiscard[T](out), count: oc.counters, max: NoTimestamp}
		oc.generator = a
		return a, nil
	}
	return Stream[T]{env: s.env, node: s.env.add(n, s.node)}
}

// watermarkGenerator is the task-facing side of an assigner.
type watermarkGenerator = engine.WatermarkGenerator

type assigner[T any] struct {
	ts       *int64
	strategy WatermarkStrategy[T]
	out      Collector[T]
	count    *opCounters
	max      int64 // newest timestamp seen
	seen     int64
}

func (a *assigner[T]) Collect(v T) {
	a.count.in++
	a.seen++
	ts := a.strategy.timestamp(v)
	*a.ts = ts
	if ts > a.max {
		a.max = ts
	}
	a.out.Collect(v)
}

func (a *assigner[T]) Watermark() int64 {
	if a.max == NoTimestamp {
		return NoTimestamp
	}
	return a.max - a.strategy.outOfOrderness - 1
}

func (a *assigner[T]) Records() int64 { return a.seen }

func (a *assigner[T]) IdleTimeout() time.Duration { return a.strategy.idleness }
