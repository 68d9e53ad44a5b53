package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"maps"
)

// BroadcastStream is a stream every record of which reaches every parallel
// instance of the operator it is connected to (Flink's BroadcastStream):
// the way rules, thresholds and lists reach a keyed stream.
type BroadcastStream[B any] struct{ s Stream[B] }

// Broadcast turns s into a broadcast stream, to be connected to a keyed
// stream with ConnectBroadcast.
func Broadcast[B any](s Stream[B]) BroadcastStream[B] { return BroadcastStream[B]{s: s} }

// KeyedBroadcastProcessFunction is Flink's KeyedBroadcastProcessFunction:
// ProcessElement and OnTimer see the keyed stream's records and timers with
// keyed state, and may only read broadcast state; ProcessBroadcastElement
// sees every broadcast record, in every subtask, and is the only place
// broadcast state changes, so that all subtasks hold the same state.
// Optional Open(*KeyedContext[K]) error registers keyed and broadcast state.
type KeyedBroadcastProcessFunction[K comparable, IN, B, OUT any] interface {
	KeyedProcessFunction[K, IN, OUT]
	ProcessBroadcastElement(b B, ctx *BroadcastContext, out Collector[OUT]) error
}

// BroadcastContext is the context of ProcessBroadcastElement.
type BroadcastContext struct {
	*RuntimeContext
}

// Timestamp is the broadcast record's event time, or NoTimestamp.
func (c *BroadcastContext) Timestamp() int64 { return *c.ts }

// CurrentWatermark is the operator's watermark.
func (c *BroadcastContext) CurrentWatermark() int64 { return *c.wm }

// BroadcastStateDescriptor names a broadcast map state and its codecs.
type BroadcastStateDescriptor[K comparable, V any] struct {
	Name  string
	Key   Codec[K]
	Value Codec[V]
}

// BroadcastState is a map every subtask of a broadcast operator holds
// identically. Writes are allowed in ProcessBroadcastElement only; a write
// elsewhere fails the task.
type BroadcastState[K comparable, V any] interface {
	Get(k K) (V, bool)
	Put(k K, v V)
	Remove(k K)
	Contains(k K) bool
	Len() int
	// All iterates the entries; do not modify the state while iterating.
	All() iter.Seq2[K, V]
	Clear()
}

// broadcastStore holds a broadcast operator's states. Only subtask 0
// writes them into checkpoints (all subtasks hold the same), and on
// restore every subtask, at any parallelism, reads that one copy.
type broadcastStore struct {
	subtask  int
	writable bool
	fail     func(error)
	states   map[string]broadcastTable
	restored map[string][][2][]byte // name -> encoded entries, until registered
}

// broadcastTable is the type-erased face of one state, for snapshots.
type broadcastTable interface {
	appendEntries(dst [][]byte, name string) [][]byte
}

var errBroadcastReadOnly = errors.New("broadcast state is read-only outside ProcessBroadcastElement: " +
	"every subtask must hold the same state, so only the broadcast side may change it")

// GetBroadcastState registers (or reopens) the broadcast state desc of a
// broadcast operator; call it in Open.
func GetBroadcastState[K comparable, V any](ctx *RuntimeContext, desc BroadcastStateDescriptor[K, V]) (BroadcastState[K, V], error) {
	st := ctx.broadcast
	if st == nil {
		return nil, fmt.Errorf("operator %s: broadcast state belongs to the function of ConnectBroadcast", ctx.operatorName)
	}
	if desc.Name == "" || desc.Key == nil || desc.Value == nil {
		return nil, fmt.Errorf("operator %s: a broadcast state needs a name and key and value codecs", ctx.operatorName)
	}
	if t, ok := st.states[desc.Name]; ok {
		if bt, ok := t.(*broadcastMap[K, V]); ok {
			return bt, nil
		}
		return nil, fmt.Errorf("operator %s: broadcast state %q is registered with other types", ctx.operatorName, desc.Name)
	}
	bt := &broadcastMap[K, V]{store: st, desc: desc, m: map[K]V{}}
	for _, e := range st.restored[desc.Name] {
		k, err := desc.Key.Decode(e[0])
		if err != nil {
			return nil, fmt.Errorf("broadcast state %q: key: %w", desc.Name, err)
		}
		v, err := desc.Value.Decode(e[1])
		if err != nil {
			return nil, fmt.Errorf("broadcast state %q: value: %w", desc.Name, err)
		}
		bt.m[k] = v
	}
	delete(st.restored, desc.Name)
	st.states[desc.Name] = bt
	return bt, nil
}

type broadcastMap[K comparable, V any] struct {
	store *broadcastStore
	desc  BroadcastStateDescriptor[K, V]
	m     map[K]V
}

func (b *broadcastMap[K, V]) Get(k K) (V, bool)    { v, ok := b.m[k]; return v, ok }
func (b *broadcastMap[K, V]) Contains(k K) bool    { _, ok := b.m[k]; return ok }
func (b *broadcastMap[K, V]) Len() int             { return len(b.m) }
func (b *broadcastMap[K, V]) All() iter.Seq2[K, V] { return maps.All(b.m) }

func (b *broadcastMap[K, V]) writable() bool {
	if !b.store.writable {
		b.store.fail(errBroadcastReadOnly)
	}
	return b.store.writable
}

func (b *broadcastMap[K, V]) Put(k K, v V) {
	if b.writable() {
		b.m[k] = v
	}
}

func (b *broadcastMap[K, V]) Remove(k K) {
	if b.writable() {
		delete(b.m, k)
	}
}

func (b *broadcastMap[K, V]) Clear() {
	if b.writable() {
		clear(b.m)
	}
}

// appendEntries encodes every entry as name, key, value (length-prefixed).
func (b *broadcastMap[K, V]) appendEntries(dst [][]byte, name string) [][]byte {
	for k, v := range b.m {
		e := appendField(nil, []byte(name))
		e = appendField(e, b.desc.Key.Append(nil, k))
		dst = append(dst, b.desc.Value.Append(e, v))
	}
	return dst
}

// appendField appends b with its length, as Reader.Bytes reads it.
func appendField(dst, b []byte) []byte {
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// InitializeState keeps subtask 0's entries, decoded when Open registers
// each state.
func (st *broadcastStore) InitializeState(_ *RuntimeContext, entries [][]byte) error {
	st.restored = map[string][][2][]byte{}
	for _, e := range entries {
		r := NewReader(e)
		name := string(r.Bytes())
		key := r.Bytes()
		if r.err != nil {
			return fmt.Errorf("broadcast state entry: %w", ErrCorrupt)
		}
		st.restored[name] = append(st.restored[name], [2][]byte{key, r.b})
	}
	return nil
}

// SnapshotState writes the states from subtask 0 only.
func (st *broadcastStore) SnapshotState(int64) ([][]byte, error) {
	if st.subtask != 0 {
		return nil, nil
	}
	var out [][]byte
	for name, t := range st.states {
		out = t.appendEntries(out, name)
	}
	// States restored but not registered by this version of the job are
	// kept, so a rule state survives a release that does not read it.
	for name, es := range st.restored {
		for _, e := range es {
			b := appendField(appendField(nil, []byte(name)), e[0])
			out = append(out, append(b, e[1]...))
		}
	}
	return out, nil
}

// ConnectBroadcast connects a keyed stream with a broadcast stream: fn sees
// the keyed records with keyed state and timers, and every broadcast record
// in every subtask with broadcast state it alone may write. newFn is called
// once per subtask.
func ConnectBroadcast[K comparable, IN, B, OUT any](ks KeyedStream[IN, K], bs BroadcastStream[B], name string,
	newFn func() KeyedBroadcastProcessFunction[K, IN, B, OUT], codec Codec[OUT]) Stream[OUT] {
	env := ks.s.env
	if bs.s.env != env {
		env.fail(fmt.Errorf("operator %s: the broadcast stream belongs to another job", name))
	}
	if _, ok := bs.s.node.codec.(Codec[B]); !ok {
		env.fail(fmt.Errorf("operator %s: the broadcast stream %s crosses an exchange but has no codec", name, bs.s.node.name))
	}
	n := newNode[IN, OUT](name, codec)
	n.partitioning = Hash
	n.keyGroupOf = func(maxP int) any {
		g := newKeyGroups(maxP)
		return func(v IN) int { return g.of(ks.kt.Hash(ks.sel(v))) }
	}
	n.input2, n.partitioning2 = bs.s.node, BroadcastEdge
	n.decoder2 = func(in any) func([]byte) error {
		c := bs.s.node.codec.(Codec[B])
		next := in.(Collector[B])
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
			return nil, fmt.Errorf("a broadcast process function keeps its state in keyed or broadcast state, not as a CheckpointedFunction")
		}
		st := &broadcastStore{subtask: oc.subtask, fail: oc.fail, states: map[string]broadcastTable{}}
		oc.broadcast = st
		op, err := newProcessOperator(oc, KeyedProcessFunction[K, IN, OUT](fn), ks.kt, ks.sel, collectorOrDiscard[OUT](out))
		if err != nil {
			return nil, err
		}
		if oc.restore != nil {
			if err := op.restore(oc.restore); err != nil {
				return nil, fmt.Errorf("restoring state: %w", err)
			}
		}
		oc.keyedSnap = op.snapshot
		registerFunction(oc, st)
		registerFunction(oc, fn)
		if o, ok := fn.(interface{ Open(*KeyedContext[K]) error }); ok {
			oc.opens = append(oc.opens, func() error { return o.Open(op.ctx) })
		}
		oc.timers = append(oc.timers, op)
		oc.eventTimers = append(oc.eventTimers, op)
		side := &broadcastSide[B, OUT]{fn: fn, store: st, ctx: &BroadcastContext{RuntimeContext: &oc.RuntimeContext},
			out: op.out, count: oc.counters, fail: oc.fail}
		return twoInputs{first: op, second: side}, nil
	}
	env.add(n, ks.s.node)
	bs.s.node.consumers = append(bs.s.node.consumers, n)
	return Stream[OUT]{env: env, node: n}
}

// twoInputs is what a two-input node's instantiate returns: the
// collectors of its first and second input.
type twoInputs struct{ first, second any }

type broadcastSide[B, OUT any] struct {
	fn interface {
		ProcessBroadcastElement(b B, ctx *BroadcastContext, out Collector[OUT]) error
	}
	store *broadcastStore
	ctx   *BroadcastContext
	out   Collector[OUT]
	count *opCounters
	fail  func(error)
}

func (s *broadcastSide[B, OUT]) Collect(b B) {
	s.count.in++
	s.store.writable = true
	err := s.fn.ProcessBroadcastElement(b, s.ctx, s.out)
	s.store.writable = false
	if err != nil {
		s.fail(fmt.Errorf("%s: broadcast: %w", s.ctx.operatorName, err))
	}
}
