package runtime

import "fmt"

// OutputTag names a side output of type T: a second stream an operator can
// emit to beside its main output, such as late records, dead letters or
// timed-out patterns (Flink's OutputTag). Its codec serialises the records
// when the side stream crosses an exchange.
type OutputTag[T any] struct {
	id    string
	codec Codec[T]
}

// NewOutputTag returns the tag id; two tags with the same id on one
// operator are the same side output.
func NewOutputTag[T any](id string, codec Codec[T]) OutputTag[T] {
	return OutputTag[T]{id: id, codec: codec}
}

// ID is the tag's name.
func (t OutputTag[T]) ID() string { return t.id }

// SideOutput is the stream of the records that the operator producing s
// emitted to tag. It runs chained to that operator, so handing a record to
// it is a direct call; its own consumers are connected as for any stream.
func SideOutput[T, X any](s Stream[X], tag OutputTag[T]) Stream[T] {
	if tag.id == "" {
		s.env.fail(fmt.Errorf("operator %s: a side output needs a tag made with NewOutputTag", s.node.name))
	}
	n := newNode[T, T](s.node.name+"["+tag.id+"]", tag.codec)
	n.side = tag.id
	n.instantiate = func(oc *opContext, out any) (any, error) {
		return &passOperator[T]{out: collectorOrDiscard[T](out), count: oc.counters}, nil
	}
	// Records reach the side node from its producer's side collector, not
	// over an edge, so its decoder is never used.
	return Stream[T]{env: s.env, node: s.env.add(n, s.node)}
}

// SideCollector returns the collector for tag's side output of the
// operator ctx belongs to. Call it once, in Open, and keep it: emitting is
// then a plain Collect. When nothing consumes the tag, the records are
// discarded.
func SideCollector[T any](ctx *RuntimeContext, tag OutputTag[T]) Collector[T] {
	if c, ok := ctx.sideOuts[tag.id].(Collector[T]); ok {
		return c
	}
	return discard[T]{}
}

// passOperator is a side output's node: it counts and forwards.
type passOperator[T any] struct {
	out   Collector[T]
	count *opCounters
}

func (o *passOperator[T]) Collect(v T) {
	o.count.in++
	o.out.Collect(v)
}

// ProcessFunction is Flink's (non-keyed) ProcessFunction: it sees every
// record with its context and may emit to its main output and, through
// collectors from SideCollector, to side outputs. Optional methods:
// Open(*ProcessContext) error, Close() error, and the checkpoint
// interfaces (CheckpointedFunction, CheckpointListener, BoundedInput).
type ProcessFunction[IN, OUT any] interface {
	ProcessElement(v IN, ctx *ProcessContext, out Collector[OUT]) error
}

// ProcessContext is the context of a ProcessFunction.
type ProcessContext struct {
	*RuntimeContext
}

// Timestamp is the event time (Unix ms) of the record being processed, or
// NoTimestamp.
func (c *ProcessContext) Timestamp() int64 { return *c.ts }

// CurrentWatermark is the operator's event-time clock (NoTimestamp before
// the first watermark).
func (c *ProcessContext) CurrentWatermark() int64 { return *c.wm }

type processStreamOperator[IN, OUT any] struct {
	fn    ProcessFunction[IN, OUT]
	ctx   *ProcessContext
	out   Collector[OUT]
	count *opCounters
	fail  func(error)
}

func (o *processStreamOperator[IN, OUT]) Collect(v IN) {
	o.count.in++
	if err := o.fn.ProcessElement(v, o.ctx, o.out); err != nil {
		o.fail(fmt.Errorf("%s: %w", o.ctx.operatorName, err))
	}
}

// ProcessStream applies a process function to every record of s; newFn is
// called once per subtask.
func ProcessStream[IN, OUT any](s Stream[IN], name string, newFn func() ProcessFunction[IN, OUT], codec Codec[OUT]) Stream[OUT] {
	n := newNode[IN, OUT](name, codec)
	n.instantiate = func(oc *opContext, out any) (any, error) {
		fn := newFn()
		op := &processStreamOperator[IN, OUT]{fn: fn, ctx: &ProcessContext{RuntimeContext: &oc.RuntimeContext},
			out: collectorOrDiscard[OUT](out), count: oc.counters, fail: oc.fail}
		registerFunction(oc, fn)
		if o, ok := fn.(interface{ Open(*ProcessContext) error }); ok {
			oc.opens = append(oc.opens, func() error { return o.Open(op.ctx) })
		}
		return op, nil
	}
	return Stream[OUT]{env: s.env, node: s.env.add(n, s.node)}
}
