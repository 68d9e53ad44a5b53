package cep

import (
	"encoding/binary"
	"fmt"

	"github.com/weirstream/weir/runtime"
)

// Option configures Detect.
type Option[T any] func(*config[T])

type config[T any] struct {
	processingTime bool
	late           *runtime.OutputTag[T]
	// timedOut binds the timed-out side output in Open.
	timedOut func(rc *runtime.RuntimeContext) func(Match[T], int64)
}

// InProcessingTime matches events in arrival order, stamped with the wall
// clock when they reach the operator, instead of in event-time order.
func InProcessingTime[T any]() Option[T] {
	return func(c *config[T]) { c.processingTime = true }
}

// LateDataTo sends events that arrive behind the watermark (timestamp at or
// before it) to tag instead of dropping them.
func LateDataTo[T any](tag runtime.OutputTag[T]) Option[T] {
	return func(c *config[T]) { c.late = &tag }
}

// TimedOutTo sends the partial matches that Within discards to tag, as fn
// makes them from the match and the time it timed out. Read them with
// runtime.SideOutput on the stream Detect returns.
func TimedOutTo[T, X any](tag runtime.OutputTag[X], fn func(m Match[T], timeout int64) X) Option[T] {
	return func(c *config[T]) {
		c.timedOut = func(rc *runtime.RuntimeContext) func(Match[T], int64) {
			out := runtime.SideCollector(rc, tag)
			return func(m Match[T], ts int64) { out.Collect(fn(m, ts)) }
		}
	}
}

// Detect matches p on each key of ks and emits selectFn's result for every
// match. The pattern is compiled here, so a malformed one fails the job
// build. In event time (the default) the stream needs timestamps and
// watermarks (runtime.AssignTimestampsAndWatermarks): events are buffered
// in keyed state until the watermark passes them, then matched in
// timestamp order (ties in arrival order); events at or behind the
// watermark are late. The matcher's state is keyed state, so checkpoints
// and rescaling carry partial matches along. Set a UID on the returned
// stream. The subtasks share the compiled pattern, so its conditions must
// be safe to call concurrently (pure functions of their arguments are).
func Detect[K comparable, T, OUT any](ks runtime.KeyedStream[T, K], name string, p *Pattern[T], eventCodec runtime.Codec[T],
	selectFn func(key K, m Match[T]) OUT, outCodec runtime.Codec[OUT], opts ...Option[T]) (runtime.Stream[OUT], error) {
	n, err := p.Compile()
	if err != nil {
		return runtime.Stream[OUT]{}, fmt.Errorf("cep %s: %w", name, err)
	}
	var cfg config[T]
	for _, o := range opts {
		o(&cfg)
	}
	return runtime.Process(ks, name, func() runtime.KeyedProcessFunction[K, T, OUT] {
		return &detector[K, T, OUT]{nfa: n, cfg: cfg, events: eventCodec, sel: selectFn, initial: n.NewState()}
	}, outCodec), nil
}

// detector is the keyed process function behind Detect.
type detector[K comparable, T, OUT any] struct {
	nfa     *NFA[T]
	cfg     config[T]
	events  runtime.Codec[T]
	sel     func(K, Match[T]) OUT
	initial *State[T] // immutable, shared by keys without state

	state runtime.ValueState[*State[T]]
	// buffer holds, in event time, the events the watermark has not
	// passed yet, in timestamp order (ties in arrival order). A slice per
	// key, replaced on every change, is cheaper on the heap backend than
	// Flink's map of lists, and a snapshot may keep the old one.
	buffer   runtime.ValueState[[]pending[T]]
	late     runtime.Collector[T]
	timedOut func(Match[T], int64)
}

type pending[T any] struct {
	ts int64
	ev T
}

func (d *detector[K, T, OUT]) Open(ctx *runtime.KeyedContext[K]) (err error) {
	if d.state, err = runtime.GetValueState(ctx, "cep-nfa", d.nfa.StateCodec(d.events)); err != nil {
		return err
	}
	if !d.cfg.processingTime {
		if d.buffer, err = runtime.GetValueState(ctx, "cep-buffer", runtime.Codec[[]pending[T]](bufferCodec[T]{d.events})); err != nil {
			return err
		}
	}
	if d.cfg.late != nil {
		d.late = runtime.SideCollector(ctx.RuntimeContext, *d.cfg.late)
	}
	if d.cfg.timedOut != nil {
		d.timedOut = d.cfg.timedOut(ctx.RuntimeContext)
	}
	return nil
}

func (d *detector[K, T, OUT]) ProcessElement(v T, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	if d.cfg.processingTime {
		now := ctx.CurrentProcessingTime()
		s, res, err := d.nfa.Process(d.load(), v, now)
		if err != nil {
			return err
		}
		d.emit(ctx.CurrentKey(), res, out)
		d.store(s, ctx)
		return nil
	}
	ts := ctx.Timestamp()
	if ts == runtime.NoTimestamp {
		return fmt.Errorf("cep: a record without a timestamp in event time; assign timestamps with runtime.AssignTimestampsAndWatermarks or use InProcessingTime")
	}
	if ts <= ctx.CurrentWatermark() {
		if d.late != nil {
			d.late.Collect(v)
		}
		return nil
	}
	old, _ := d.buffer.Value()
	i := len(old)
	for i > 0 && old[i-1].ts > ts {
		i--
	}
	buf := make([]pending[T], 0, len(old)+1)
	buf = append(append(append(buf, old[:i]...), pending[T]{ts, v}), old[i:]...)
	d.buffer.Update(buf)
	if i == 0 || old[i-1].ts != ts {
		ctx.RegisterEventTimeTimer(ts)
	}
	return nil
}

func (d *detector[K, T, OUT]) OnTimer(ts int64, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	if d.cfg.processingTime {
		s, res, err := d.nfa.Advance(d.load(), ts)
		if err != nil {
			return err
		}
		d.emit(ctx.CurrentKey(), res, out)
		d.store(s, ctx)
		return nil
	}
	wm := ctx.CurrentWatermark()
	buf, _ := d.buffer.Value()
	s := d.load()
	key := ctx.CurrentKey()
	i := 0
	for ; i < len(buf) && buf[i].ts <= wm; i++ {
		p := buf[i]
		var res Result[T]
		var err error
		if s, res, err = d.nfa.Process(s, p.ev, p.ts); err != nil {
			return err
		}
		d.emit(key, res, out)
		if p.ts != ts && (i == 0 || buf[i-1].ts != p.ts) {
			ctx.DeleteEventTimeTimer(p.ts) // its events are matched already
		}
	}
	if i == len(buf) {
		if len(buf) > 0 {
			d.buffer.Clear()
		}
	} else if i > 0 {
		d.buffer.Update(buf[i:])
	}
	s, res, err := d.nfa.Advance(s, wm)
	if err != nil {
		return err
	}
	d.emit(key, res, out)
	d.store(s, ctx)
	return nil
}

func (d *detector[K, T, OUT]) load() *State[T] {
	if s, ok := d.state.Value(); ok {
		return s
	}
	return d.initial
}

// store keeps s (or clears the key's state when it holds nothing) and asks
// for a timer when its oldest partial match times out.
func (d *detector[K, T, OUT]) store(s *State[T], ctx *runtime.KeyedContext[K]) {
	if d.nfa.Idle(s) {
		d.state.Clear()
		return
	}
	d.state.Update(s)
	if t, ok := d.nfa.NextTimeout(s); ok {
		if d.cfg.processingTime {
			ctx.RegisterProcessingTimeTimer(t)
		} else {
			ctx.RegisterEventTimeTimer(t)
		}
	}
}

func (d *detector[K, T, OUT]) emit(key K, res Result[T], out runtime.Collector[OUT]) {
	for _, m := range res.Matches {
		out.Collect(d.sel(key, m))
	}
	if d.timedOut != nil {
		for _, t := range res.TimedOut {
			d.timedOut(t.Match, t.Timestamp)
		}
	}
}

// bufferCodec encodes a key's buffered events with their timestamps.
type bufferCodec[T any] struct{ c runtime.Codec[T] }

func (l bufferCodec[T]) Append(dst []byte, v []pending[T]) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	var b []byte
	for _, p := range v {
		dst = binary.AppendVarint(dst, p.ts)
		b = l.c.Append(b[:0], p.ev)
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	return dst
}

func (l bufferCodec[T]) Decode(src []byte) ([]pending[T], error) {
	d := &decoder{b: src}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		return nil, fmt.Errorf("cep buffer: %w", runtime.ErrCorrupt)
	}
	out := make([]pending[T], 0, n)
	for i := uint64(0); i < n; i++ {
		ts := d.varint()
		sz := d.uvarint()
		if d.err != nil || sz > uint64(len(d.b)) {
			return nil, fmt.Errorf("cep buffer: %w", runtime.ErrCorrupt)
		}
		e, err := l.c.Decode(d.b[:sz])
		if err != nil {
			return nil, fmt.Errorf("cep buffer: %w", err)
		}
		d.b = d.b[sz:]
		if len(out) > 0 && ts < out[len(out)-1].ts {
			return nil, fmt.Errorf("cep buffer: timestamps out of order: %w", runtime.ErrCorrupt)
		}
		out = append(out, pending[T]{ts, e})
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("cep buffer: %w", runtime.ErrCorrupt)
	}
	return out, nil
}
