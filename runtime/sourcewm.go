package runtime

import "time"

// Sources that make their own event time, after Flink's SourceContext
// (collectWithTimestamp, emitWatermark, markAsTemporarilyIdle). A source
// that reads several partitions (Kafka) knows more than an assigner after
// it could: which partition a record came from, and that one partition
// is quiet while the others are not. It keeps a watermark per partition,
// emits their minimum, and says itself when all of them are idle.

// SourceOutput is what a WatermarkingSource emits into.
type SourceOutput[T any] interface {
	// Collect emits a record without an event timestamp (NoTimestamp).
	Collector[T]
	// CollectWithTimestamp emits a record with event timestamp ts (Unix
	// ms).
	CollectWithTimestamp(v T, ts int64)
	// EmitWatermark moves the source's watermark to wm; a wm not above
	// the current one is ignored. It makes an idle source active again.
	EmitWatermark(wm int64)
	// MarkIdle says the source has nothing to emit for now: its consumers
	// leave it out of their watermarks until its next record or
	// watermark.
	MarkIdle()
}

// WatermarkingSource is a SourceFunction that stamps its records and makes
// its stream's watermarks. Poll is called as SourceFunction.Poll is; the
// runtime forwards a watermark emitted during a poll once the poll
// returns. Optional Open, Close, CheckpointedFunction and
// CheckpointListener methods work as for SourceFunction.
type WatermarkingSource[T any] interface {
	Poll(out SourceOutput[T]) (wait time.Duration, err error)
}

// FromWatermarkingSource adds a source operator whose records carry the
// timestamps the source gives them and whose watermarks are the source's:
// the stream is in event time as if AssignTimestampsAndWatermarks
// followed it. When a bounded source ends, its watermark becomes
// MaxWatermark; a source stopped by a savepoint keeps its last one.
// newSource is called once per subtask.
func FromWatermarkingSource[T any](env *Env, name string, newSource func() WatermarkingSource[T], codec Codec[T]) Stream[T] {
	n := newNode[struct{}, T](name, codec)
	n.eventTime = true
	n.instantiate = func(oc *opContext, out any) (any, error) {
		fn := newSource()
		registerFunction(oc, fn)
		if o, ok := fn.(interface{ Open(*RuntimeContext) error }); ok {
			oc.opens = append(oc.opens, func() error { return o.Open(&oc.RuntimeContext) })
		}
		so := &sourceOutput[T]{ts: oc.ts, out: collectorOrDiscard[T](out), wm: NoTimestamp}
		oc.generator = so
		return &watermarkingSourceOperator[T]{fn: fn, out: so}, nil
	}
	return Stream[T]{env: env, node: env.add(n, nil)}
}

type watermarkingSourceOperator[T any] struct {
	fn  WatermarkingSource[T]
	out *sourceOutput[T]
}

func (s *watermarkingSourceOperator[T]) poll() (time.Duration, error) { return s.fn.Poll(s.out) }

// sourceOutput stamps records into the task's timestamp variable and
// keeps the watermark and idleness the source declared, which the task
// reads after each poll as it reads an assigner's.
type sourceOutput[T any] struct {
	ts       *int64
	out      Collector[T]
	wm, seen int64
	idle     bool
}

func (o *sourceOutput[T]) Collect(v T) {
	o.CollectWithTimestamp(v, NoTimestamp)
}

func (o *sourceOutput[T]) CollectWithTimestamp(v T, ts int64) {
	o.seen++
	o.idle = false
	*o.ts = ts
	o.out.Collect(v)
}

func (o *sourceOutput[T]) EmitWatermark(wm int64) {
	o.idle = false
	o.wm = max(o.wm, wm)
}

func (o *sourceOutput[T]) MarkIdle() { o.idle = true }

func (o *sourceOutput[T]) Watermark() int64 { return o.wm }

func (o *sourceOutput[T]) Records() int64 { return o.seen }

// IdleTimeout is 0: the source decides idleness itself (IsIdle).
func (o *sourceOutput[T]) IdleTimeout() time.Duration { return 0 }

// IsIdle implements engine.IdleDeclarer.
func (o *sourceOutput[T]) IsIdle() bool { return o.idle }
