package runtime

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// Env collects the operators of a job while its builder runs; Graph turns
// them into a JobGraph.
type Env struct {
	name           string
	parallelism    int
	maxParallelism int
	nodes          []*node
	err            error
}

// NewEnv starts a job whose operators default to the given parallelism
// (0 means 1).
func NewEnv(name string, parallelism int) (*Env, error) {
	if parallelism == 0 {
		parallelism = 1
	}
	if parallelism < 0 {
		return nil, fmt.Errorf("parallelism %d must be at least 1", parallelism)
	}
	return &Env{name: name, parallelism: parallelism}, nil
}

// Parallelism is the job's default operator parallelism.
func (e *Env) Parallelism() int { return e.parallelism }

// SetMaxParallelism fixes the number of key groups (1..32768). It cannot
// change over a job's lifetime, since state is partitioned by it.
func (e *Env) SetMaxParallelism(n int) {
	if n < 1 || n > 32768 {
		e.fail(fmt.Errorf("maxParallelism %d must be between 1 and 32768", n))
		return
	}
	e.maxParallelism = n
}

// MaxParallelism is the maxParallelism the builder fixed with
// SetMaxParallelism, or 0 when it left the default to the runtime.
func (e *Env) MaxParallelism() int { return e.maxParallelism }

func (e *Env) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// node is one operator of the logical dataflow. Its factories are closures
// made by the typed constructors below, where the element types are known,
// so a task instantiates typed operators without reflection.
type node struct {
	id           int
	uid, name    string
	parallelism  int
	input        *node
	consumers    []*node
	partitioning Partitioning
	chained      bool
	codec        any // Codec[OUT]; nil if the output never crosses an exchange
	// side is the output tag this node reads from its input's operator;
	// empty for a node fed by the input's main output.
	side string
	// eventTime marks a timestamp assigner: the job's records then carry
	// their timestamps across exchanges.
	eventTime bool

	// instantiate builds the operator for one subtask. out is a
	// Collector[OUT] (nil for sinks); it returns a Collector[IN], or a
	// sourceRunner for sources.
	instantiate func(oc *opContext, out any) (any, error)
	// decoder returns a function that decodes one record of the node's
	// input type and hands it to in (a Collector[IN]).
	decoder func(in any) func([]byte) error
	// input2 is the second input of a two-input node (the broadcast side
	// of ConnectBroadcast, the second stream of ProcessConnected),
	// decoder2 decodes its records, partitioning2 routes them (Hash or
	// BroadcastEdge) and keyGroupOf2 (Hash only) gives their key groups.
	input2        *node
	decoder2      func(in any) func([]byte) error
	partitioning2 Partitioning
	keyGroupOf2   func(maxP int) any
	// writer builds the collector that serialises this node's output onto
	// the given output channels for an edge to consumer.
	writer func(t *Task, e *Edge, consumer *node, channels []engine.OutputChannel, subtask int) any
	// keyGroupOf (hash inputs only) returns a func(IN) int giving a record's
	// key group.
	keyGroupOf func(maxP int) any
	// fanOut combines several Collector[OUT] writers into one.
	fanOut func(ws []any) any
}

func (e *Env) add(n *node, input *node) *node {
	n.id = len(e.nodes)
	n.input = input
	if input != nil {
		input.consumers = append(input.consumers, n)
	}
	e.nodes = append(e.nodes, n)
	return n
}

// mainConsumers counts the consumers fed by n's main output.
func (n *node) mainConsumers() int {
	c := 0
	for _, m := range n.consumers {
		if m.side == "" {
			c++
		}
	}
	return c
}

// Collector receives an operator's output records.
type Collector[T any] interface {
	Collect(T)
}

// Stream is a typed stream of records produced by one operator.
type Stream[T any] struct {
	env  *Env
	node *node
}

// UID sets the operator's stable identifier, under which its state is
// stored; set it on every stateful operator.
func (s Stream[T]) UID(uid string) Stream[T] { s.node.uid = uid; return s }

// Parallelism sets the operator's parallelism.
func (s Stream[T]) Parallelism(p int) Stream[T] {
	if p < 1 {
		s.env.fail(fmt.Errorf("operator %s: parallelism %d must be at least 1", s.node.name, p))
	}
	s.node.parallelism = p
	return s
}

func newNode[IN, OUT any](name string, codec Codec[OUT]) *node {
	n := &node{name: name}
	n.fanOut = func(ws []any) any {
		f := make(fanOut[OUT], len(ws))
		for i, w := range ws {
			f[i] = w.(Collector[OUT])
		}
		return f
	}
	if codec != nil {
		n.codec = codec
		n.writer = func(t *Task, e *Edge, consumer *node, chs []engine.OutputChannel, subtask int) any {
			return newRecordWriter[OUT](t, codec, chs, e, consumer, subtask)
		}
	}
	n.decoder = func(in any) func([]byte) error {
		var c Codec[IN]
		if n.input != nil {
			c, _ = n.input.codec.(Codec[IN])
		}
		next := in.(Collector[IN])
		return func(rec []byte) error {
			v, err := c.Decode(rec)
			if err != nil {
				return err
			}
			next.Collect(v)
			return nil
		}
	}
	return n
}

// SourceFunction produces a stream's records. Poll is called repeatedly by
// the task's goroutine; it emits whatever is ready and returns how long to
// wait before the next call (0: call again at once), or ErrEndOfInput when
// a bounded source is done. Optional Open(*RuntimeContext) error and
// Close() error methods are called around the polls.
type SourceFunction[T any] interface {
	Poll(out Collector[T]) (wait time.Duration, err error)
}

// FromSource adds a source operator. newSource is called once per subtask.
func FromSource[T any](env *Env, name string, newSource func() SourceFunction[T], codec Codec[T]) Stream[T] {
	n := newNode[struct{}, T](name, codec)
	n.instantiate = func(oc *opContext, out any) (any, error) {
		fn := newSource()
		registerFunction(oc, fn)
		if o, ok := fn.(interface{ Open(*RuntimeContext) error }); ok {
			oc.opens = append(oc.opens, func() error { return o.Open(&oc.RuntimeContext) })
		}
		return &sourceOperator[T]{fn: fn, out: collectorOrDiscard[T](out)}, nil
	}
	return Stream[T]{env: env, node: env.add(n, nil)}
}

// Map applies fn to every record. codec may be nil when the output stays
// chained to its consumer.
func Map[IN, OUT any](s Stream[IN], name string, fn func(IN) OUT, codec Codec[OUT]) Stream[OUT] {
	n := newNode[IN, OUT](name, codec)
	n.instantiate = func(oc *opContext, out any) (any, error) {
		return &mapOperator[IN, OUT]{fn: fn, out: collectorOrDiscard[OUT](out), count: oc.counters}, nil
	}
	return Stream[OUT]{env: s.env, node: s.env.add(n, s.node)}
}

// Filter keeps the records for which fn returns true.
func Filter[T any](s Stream[T], name string, fn func(T) bool) Stream[T] {
	var codec Codec[T]
	if c, ok := s.node.codec.(Codec[T]); ok {
		codec = c
	}
	n := newNode[T, T](name, codec)
	n.instantiate = func(oc *opContext, out any) (any, error) {
		return &filterOperator[T]{fn: fn, out: collectorOrDiscard[T](out), count: oc.counters}, nil
	}
	return Stream[T]{env: s.env, node: s.env.add(n, s.node)}
}

// Rebalanced passes s's records on round-robin over the next operator's
// subtasks (Flink's rebalance()), through an exchange: the operators after
// it run in a task of their own. That is also how one operator's output
// feeds both inputs of a two-input operator, whose inputs must come from
// two tasks. s's operator needs a codec.
func Rebalanced[T any](s Stream[T]) Stream[T] {
	codec, ok := s.node.codec.(Codec[T])
	if !ok {
		s.env.fail(fmt.Errorf("operator %s: its output is rebalanced over an exchange but has no codec", s.node.name))
	}
	n := newNode[T, T]("rebalance", codec)
	n.partitioning = Rebalance
	n.instantiate = func(oc *opContext, out any) (any, error) {
		return &filterOperator[T]{fn: func(T) bool { return true }, out: collectorOrDiscard[T](out), count: oc.counters}, nil
	}
	return Stream[T]{env: s.env, node: s.env.add(n, s.node)}
}

// FlatMap calls fn for every record; fn emits zero or more outputs.
func FlatMap[IN, OUT any](s Stream[IN], name string, fn func(IN, Collector[OUT]), codec Codec[OUT]) Stream[OUT] {
	n := newNode[IN, OUT](name, codec)
	n.instantiate = func(oc *opContext, out any) (any, error) {
		return &flatMapOperator[IN, OUT]{fn: fn, out: collectorOrDiscard[OUT](out), count: oc.counters}, nil
	}
	return Stream[OUT]{env: s.env, node: s.env.add(n, s.node)}
}

// KeyedStream is a stream partitioned by key: the next operator sees all
// records of a key in one subtask and has state scoped to the current key.
type KeyedStream[T any, K comparable] struct {
	s   Stream[T]
	kt  KeyType[K]
	sel func(T) K
}

// KeyBy partitions s by the key sel extracts; kt hashes keys the way Flink
// does (Int64Key, StringKey).
func KeyBy[T any, K comparable](s Stream[T], kt KeyType[K], sel func(T) K) KeyedStream[T, K] {
	return KeyedStream[T, K]{s: s, kt: kt, sel: sel}
}

// KeyedProcessFunction is Flink's KeyedProcessFunction: ProcessElement sees
// each record with state scoped to its key; OnTimer runs when a
// processing-time timer registered for a key fires. An optional
// Open(*KeyedContext[K]) error method registers state before any record.
type KeyedProcessFunction[K comparable, IN, OUT any] interface {
	ProcessElement(v IN, ctx *KeyedContext[K], out Collector[OUT]) error
	OnTimer(timestamp int64, ctx *KeyedContext[K], out Collector[OUT]) error
}

// Process applies a keyed process function; newFn is called once per subtask.
func Process[K comparable, IN, OUT any](ks KeyedStream[IN, K], name string, newFn func() KeyedProcessFunction[K, IN, OUT], codec Codec[OUT]) Stream[OUT] {
	n := newNode[IN, OUT](name, codec)
	n.partitioning = Hash
	n.keyGroupOf = func(maxP int) any {
		g := newKeyGroups(maxP)
		return func(v IN) int { return g.of(ks.kt.Hash(ks.sel(v))) }
	}
	n.instantiate = func(oc *opContext, out any) (any, error) {
		fn := newFn()
		op, err := newProcessOperator(oc, fn, ks.kt, ks.sel, collectorOrDiscard[OUT](out))
		if err != nil {
			return nil, err
		}
		op.holdBack(oc)
		if oc.restore != nil {
			if err := op.restore(oc.restore); err != nil {
				return nil, fmt.Errorf("restoring state: %w", err)
			}
		}
		oc.keyedSnap = op.snapshot
		registerFunction(oc, fn)
		if o, ok := fn.(interface{ Open(*KeyedContext[K]) error }); ok {
			oc.opens = append(oc.opens, func() error { return o.Open(op.ctx) })
		}
		oc.timers = append(oc.timers, op)
		oc.eventTimers = append(oc.eventTimers, op)
		return op, nil
	}
	return Stream[OUT]{env: ks.s.env, node: ks.s.env.add(n, ks.s.node)}
}

// SinkFunction writes records out of the job. Optional Open(*RuntimeContext)
// error and Close() error methods are called around the writes.
type SinkFunction[T any] interface {
	Invoke(v T) error
}

// Sink is the handle of a sink operator.
type Sink struct {
	env  *Env
	node *node
}

// UID sets the sink's stable identifier.
func (s Sink) UID(uid string) Sink { s.node.uid = uid; return s }

// Parallelism sets the sink's parallelism.
func (s Sink) Parallelism(p int) Sink {
	if p < 1 {
		s.env.fail(fmt.Errorf("operator %s: parallelism %d must be at least 1", s.node.name, p))
	}
	s.node.parallelism = p
	return s
}

// SinkTo adds a sink; newSink is called once per subtask.
func SinkTo[T any](s Stream[T], name string, newSink func() SinkFunction[T]) Sink {
	n := newNode[T, struct{}](name, nil)
	n.instantiate = func(oc *opContext, _ any) (any, error) {
		fn := newSink()
		registerFunction(oc, fn)
		if o, ok := fn.(interface{ Open(*RuntimeContext) error }); ok {
			oc.opens = append(oc.opens, func() error { return o.Open(&oc.RuntimeContext) })
		}
		return &sinkOperator[T]{fn: fn, fail: oc.fail, count: oc.counters, name: name}, nil
	}
	return Sink{env: s.env, node: s.env.add(n, s.node)}
}

// registerFunction hooks a user function into the task's lifecycle: state
// restore and snapshots, checkpoint notifications, end of input and Close.
// Call it before adding the function's Open, which must follow
// InitializeState.
func registerFunction(oc *opContext, fn any) {
	if c, ok := fn.(CheckpointedFunction); ok {
		oc.fnState = c
		var entries [][]byte
		if oc.restore != nil {
			entries = oc.restore.OperatorState
		}
		oc.opens = append(oc.opens, func() error { return c.InitializeState(&oc.RuntimeContext, entries) })
	}
	if l, ok := fn.(CheckpointListener); ok {
		oc.listeners = append(oc.listeners, l)
	}
	if e, ok := fn.(BoundedInput); ok {
		oc.endInputs = append(oc.endInputs, e)
	}
	if f, ok := fn.(PreBarrierFlusher); ok {
		oc.flushers = append(oc.flushers, f)
	}
	addCloser(oc, fn)
}

func addCloser(oc *opContext, fn any) {
	if c, ok := fn.(interface{ Close() error }); ok {
		oc.closes = append(oc.closes, c.Close)
	}
}

type discard[T any] struct{}

func (discard[T]) Collect(T) {}

func collectorOrDiscard[T any](out any) Collector[T] {
	if out == nil {
		return discard[T]{}
	}
	return out.(Collector[T])
}
