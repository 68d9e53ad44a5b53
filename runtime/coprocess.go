package runtime

import "fmt"

// KeyedCoProcessFunction is Flink's KeyedCoProcessFunction: it sees the
// records of two keyed streams with the same key type, ProcessElement1
// those of the first and ProcessElement2 those of the second, and OnTimer
// its timers. Both sides and the timers share the key's state, which is
// what joins keep their buffered records in. An optional
// Open(*KeyedContext[K]) error method registers state before any record.
type KeyedCoProcessFunction[K comparable, IN1, IN2, OUT any] interface {
	ProcessElement1(v IN1, ctx *KeyedContext[K], out Collector[OUT]) error
	ProcessElement2(v IN2, ctx *KeyedContext[K], out Collector[OUT]) error
	OnTimer(timestamp int64, ctx *KeyedContext[K], out Collector[OUT]) error
}

// ConnectedKeyedStreams are two keyed streams whose records of one key meet
// in one subtask (Flink's ConnectedStreams of two KeyedStreams).
type ConnectedKeyedStreams[IN1, IN2 any, K comparable] struct {
	first  KeyedStream[IN1, K]
	second KeyedStream[IN2, K]
}

// ConnectKeyed connects two keyed streams of one job. Both are partitioned
// with the first's key type, so equal keys of either side land in the same
// key group.
func ConnectKeyed[IN1, IN2 any, K comparable](first KeyedStream[IN1, K], second KeyedStream[IN2, K]) ConnectedKeyedStreams[IN1, IN2, K] {
	return ConnectedKeyedStreams[IN1, IN2, K]{first: first, second: second}
}

// Env is the job the streams belong to.
func (c ConnectedKeyedStreams[IN1, IN2, K]) Env() *Env { return c.first.s.env }

// ProcessConnected applies a keyed co-process function to connected keyed
// streams; newFn is called once per subtask. Its keyed state and timers
// are checkpointed and redistributed on rescale like those of Process.
func ProcessConnected[K comparable, IN1, IN2, OUT any](cs ConnectedKeyedStreams[IN1, IN2, K], name string,
	newFn func() KeyedCoProcessFunction[K, IN1, IN2, OUT], codec Codec[OUT]) Stream[OUT] {
	a, b := cs.first, cs.second
	env := a.s.env
	if b.s.env != env {
		env.fail(fmt.Errorf("operator %s: the second stream belongs to another job", name))
	}
	for _, in := range []*node{a.s.node, b.s.node} {
		if in.codec == nil {
			env.fail(fmt.Errorf("operator %s: its input %s crosses an exchange but has no codec", name, in.name))
		}
	}
	kt := a.kt
	n := newNode[IN1, OUT](name, codec)
	n.partitioning, n.partitioning2 = Hash, Hash
	n.keyGroupOf = func(maxP int) any {
		g := newKeyGroups(maxP)
		return func(v IN1) int { return g.of(kt.Hash(a.sel(v))) }
	}
	n.keyGroupOf2 = func(maxP int) any {
		g := newKeyGroups(maxP)
		return func(v IN2) int { return g.of(kt.Hash(b.sel(v))) }
	}
	n.input2 = b.s.node
	n.decoder2 = func(in any) func([]byte) error {
		c := b.s.node.codec.(Codec[IN2])
		next := in.(Collector[IN2])
		return func(rec []byte) error {
			v, err := c.Decode(rec)
			if err != nil {
				return err
			}
			next.Collect(v)
			return nil
		}
	}
	n.instantiate = func(oc *opContext, out any) (any, error) {
		fn := newFn()
		if _, ok := fn.(CheckpointedFunction); ok {
			return nil, fmt.Errorf("a keyed co-process function keeps its state in keyed state, not as a CheckpointedFunction")
		}
		op, err := newProcessOperator(oc, KeyedProcessFunction[K, IN1, OUT](firstSide[K, IN1, IN2, OUT]{fn}), kt, a.sel, collectorOrDiscard[OUT](out))
		if err != nil {
			return nil, err
		}
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
		return twoInputs{first: op, second: &secondSide[K, IN1, IN2, OUT]{op: op, fn: fn, sel: b.sel}}, nil
	}
	env.add(n, a.s.node)
	b.s.node.consumers = append(b.s.node.consumers, n)
	return Stream[OUT]{env: env, node: n}
}

// firstSide presents a co-process function as a one-input one, for the
// operator that drives the first input, the timers and the state.
type firstSide[K comparable, IN1, IN2, OUT any] struct {
	fn KeyedCoProcessFunction[K, IN1, IN2, OUT]
}

func (f firstSide[K, IN1, IN2, OUT]) ProcessElement(v IN1, ctx *KeyedContext[K], out Collector[OUT]) error {
	return f.fn.ProcessElement1(v, ctx, out)
}

func (f firstSide[K, IN1, IN2, OUT]) OnTimer(ts int64, ctx *KeyedContext[K], out Collector[OUT]) error {
	return f.fn.OnTimer(ts, ctx, out)
}

// secondSide feeds the second input's records to the function with the
// first side's keyed context, so both see one key's state.
type secondSide[K comparable, IN1, IN2, OUT any] struct {
	op  *processOperator[K, IN1, OUT]
	fn  KeyedCoProcessFunction[K, IN1, IN2, OUT]
	sel func(IN2) K
}

func (s *secondSide[K, IN1, IN2, OUT]) Collect(v IN2) {
	o := s.op
	o.count.in++
	k := s.sel(v)
	h := o.kt.Hash(k)
	kg := o.kgOf.of(h)
	if !o.keyGroups.Contains(kg) {
		o.fail(fmt.Errorf("%s: record with key group %d reached subtask %d, which owns %v", o.ctx.operatorName, kg, o.ctx.subtask, o.keyGroups))
		return
	}
	o.kgRecords[kg-o.keyGroups.First]++
	// Everything processOperator.Collect sets for the current key: state
	// and timers find the key by its hash.
	o.ctx.key, o.ctx.kg, o.ctx.hash = k, kg, h
	if err := s.fn.ProcessElement2(v, o.ctx, o.out); err != nil {
		o.fail(fmt.Errorf("%s: %w", o.ctx.operatorName, err))
	}
}
