package window

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/weirstream/weir/runtime"
)

// ProcessWindowFunction sees all of a window's elements when it fires,
// with the window's key and bounds (Flink's ProcessWindowFunction).
// elements belongs to the window's state: read it, do not modify or keep
// it. Combined with an aggregate (AggregateProcess) it sees the single
// aggregated result instead.
type ProcessWindowFunction[K comparable, IN, OUT any] interface {
	Process(key K, w Window, elements []IN, out runtime.Collector[OUT]) error
}

// ProcessFunc adapts a function to a ProcessWindowFunction.
type ProcessFunc[K comparable, IN, OUT any] func(key K, w Window, elements []IN, out runtime.Collector[OUT]) error

func (f ProcessFunc[K, IN, OUT]) Process(key K, w Window, elements []IN, out runtime.Collector[OUT]) error {
	return f(key, w, elements, out)
}

// Option configures a window operator.
type Option func(*options)

type options struct {
	lateness int64
	lateTag  any // runtime.OutputTag[IN]
	err      error
}

// AllowedLateness keeps an event-time window's state for d after it
// fires; records arriving for it meanwhile fire it again with the updated
// result. Processing-time windows ignore it.
func AllowedLateness(d time.Duration) Option {
	return func(o *options) {
		o.lateness = d.Milliseconds()
		if d < 0 {
			o.err = fmt.Errorf("allowed lateness %v must not be negative", d)
		}
	}
}

// LateOutput sends records that arrive after all their windows were
// purged to tag's side output (runtime.SideOutput) instead of dropping
// them. tag's type must be the window's input type.
func LateOutput[IN any](tag runtime.OutputTag[IN]) Option {
	return func(o *options) { o.lateTag = tag }
}

// Aggregate windows a keyed stream and emits agg's result for every window
// and key when the window fires. accCodec serialises accumulators for
// checkpoints; it may be nil when agg provides one (AccumulatorCoder), as
// the ready-made aggregates do. codec may be nil when the output stays
// chained to its consumer.
func Aggregate[K comparable, IN, ACC, OUT any](ks runtime.KeyedStream[IN, K], name string, a Assigner,
	agg AggregateFunction[IN, ACC, OUT], accCodec runtime.Codec[ACC], codec runtime.Codec[OUT], opts ...Option) runtime.Stream[OUT] {
	accCodec = accumulatorCodec(ks, name, agg, accCodec)
	return build(ks, name, a, opts, func() *operator[K, IN, ACC, OUT] {
		return &operator[K, IN, ACC, OUT]{
			create: agg.CreateAccumulator, add: agg.Add, merge: agg.Merge, accCodec: accCodec,
			emit: func(_ K, _ Window, acc ACC, out runtime.Collector[OUT]) error {
				out.Collect(agg.Result(acc))
				return nil
			},
		}
	}, codec)
}

// AggregateProcess is Aggregate followed by a process window function
// that sees the single result with the window's key and bounds (Flink's
// aggregate(aggFn, windowFn)). newFn is called once per subtask.
func AggregateProcess[K comparable, IN, ACC, R, OUT any](ks runtime.KeyedStream[IN, K], name string, a Assigner,
	agg AggregateFunction[IN, ACC, R], accCodec runtime.Codec[ACC], newFn func() ProcessWindowFunction[K, R, OUT],
	codec runtime.Codec[OUT], opts ...Option) runtime.Stream[OUT] {
	accCodec = accumulatorCodec(ks, name, agg, accCodec)
	return build(ks, name, a, opts, func() *operator[K, IN, ACC, OUT] {
		fn := newFn()
		var one [1]R
		return &operator[K, IN, ACC, OUT]{
			create: agg.CreateAccumulator, add: agg.Add, merge: agg.Merge, accCodec: accCodec, fn: fn,
			emit: func(k K, w Window, acc ACC, out runtime.Collector[OUT]) error {
				one[0] = agg.Result(acc)
				return fn.Process(k, w, one[:], out)
			},
		}
	}, codec)
}

// Process windows a keyed stream keeping every element, and calls the
// process window function with them when a window fires. elemCodec
// serialises elements for checkpoints. Prefer Aggregate where an
// incremental aggregate will do: it keeps one accumulator per window.
func Process[K comparable, IN, OUT any](ks runtime.KeyedStream[IN, K], name string, a Assigner,
	newFn func() ProcessWindowFunction[K, IN, OUT], elemCodec runtime.Codec[IN], codec runtime.Codec[OUT], opts ...Option) runtime.Stream[OUT] {
	if elemCodec == nil {
		ks.Env().Fail(fmt.Errorf("window %s: an element codec is needed to checkpoint the windows' elements", name))
	}
	return build(ks, name, a, opts, func() *operator[K, IN, []IN, OUT] {
		fn := newFn()
		return &operator[K, IN, []IN, OUT]{
			create: func() []IN { return nil },
			// Appending never writes into the part of an array that an
			// earlier checkpoint's copy of the list sees (it is no longer
			// than the live list), so lists can grow in place.
			add:      func(v IN, l []IN) []IN { return append(l, v) },
			merge:    func(a, b []IN) []IN { return append(a, b...) },
			accCodec: SliceCodec[IN]{Elem: elemCodec}, fn: fn,
			emit: func(k K, w Window, l []IN, out runtime.Collector[OUT]) error {
				return fn.Process(k, w, l, out)
			},
		}
	}, codec)
}

func accumulatorCodec[K comparable, IN, ACC, OUT any](ks runtime.KeyedStream[IN, K], name string, agg AggregateFunction[IN, ACC, OUT], c runtime.Codec[ACC]) runtime.Codec[ACC] {
	if c != nil {
		return c
	}
	if ac, ok := agg.(AccumulatorCoder[ACC]); ok {
		return ac.AccumulatorCodec()
	}
	ks.Env().Fail(fmt.Errorf("window %s: an accumulator codec is needed to checkpoint the windows", name))
	return nil
}

func build[K comparable, IN, ACC, OUT any](ks runtime.KeyedStream[IN, K], name string, a Assigner, opts []Option,
	newOp func() *operator[K, IN, ACC, OUT], codec runtime.Codec[OUT]) runtime.Stream[OUT] {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var lateTag *runtime.OutputTag[IN]
	if o.lateTag != nil {
		tag, ok := o.lateTag.(runtime.OutputTag[IN])
		if !ok {
			o.err = errors.Join(o.err, fmt.Errorf("the late output's tag has type %T, not an OutputTag of the window's input", o.lateTag))
		}
		lateTag = &tag
	}
	if err := errors.Join(a.Err(), o.err); err != nil {
		ks.Env().Fail(fmt.Errorf("window %s: %w", name, err))
	}
	if a.domain == ProcessingTime {
		o.lateness = 0 // nothing is late in processing time
	}
	return runtime.Process(ks, name, func() runtime.KeyedProcessFunction[K, IN, OUT] {
		op := newOp()
		op.assigner, op.lateness, op.lateTag = a, o.lateness, lateTag
		return op
	}, codec)
}

// operator is the window operator for one subtask: a keyed process
// function whose state maps each window of a key to its accumulator.
type operator[K comparable, IN, ACC, OUT any] struct {
	assigner Assigner
	lateness int64
	lateTag  *runtime.OutputTag[IN]

	create   func() ACC
	add      func(IN, ACC) ACC
	merge    func(ACC, ACC) ACC
	emit     func(K, Window, ACC, runtime.Collector[OUT]) error
	accCodec runtime.Codec[ACC]
	fn       any // the user's process window function, for Open/Close

	// windows maps a window's start to its accumulator: the start alone
	// names a window of a tumbling or sliding assigner (the end follows
	// from the size), and a session's state window too (a key's sessions
	// are disjoint), and an int64 key hashes faster than a window.
	windows runtime.MapState[int64, ACC]
	// sessions maps a key's session windows to the window their
	// accumulator is stored under (merging assigners only).
	sessions runtime.MapState[Window, Window]
	late     runtime.Collector[IN]

	assigned []Window
	due      []Window
	ms       mergingSet
	old      []mapped
	// dropped counts late records dropped for want of a late output.
	dropped int64
	logger  *slog.Logger
}

func (o *operator[K, IN, ACC, OUT]) Open(ctx *runtime.KeyedContext[K]) (err error) {
	if o.windows, err = runtime.GetMapState(ctx, "window-contents", runtime.Int64Codec{}, o.accCodec); err != nil {
		return fmt.Errorf("window state: %w", err)
	}
	if o.assigner.merging() {
		if o.sessions, err = runtime.GetMapState(ctx, "merging-windows", Codec{}, Codec{}); err != nil {
			return fmt.Errorf("session state: %w", err)
		}
	}
	o.logger = ctx.Logger()
	if o.lateTag != nil {
		o.late = runtime.SideCollector(ctx.RuntimeContext, *o.lateTag)
	}
	if op, ok := o.fn.(interface {
		Open(*runtime.RuntimeContext) error
	}); ok {
		return op.Open(ctx.RuntimeContext)
	}
	return nil
}

func (o *operator[K, IN, ACC, OUT]) Close() error {
	if o.dropped > 0 {
		o.logger.Warn("window dropped late records", "records", o.dropped)
	}
	if c, ok := o.fn.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

func (o *operator[K, IN, ACC, OUT]) eventTime() bool { return o.assigner.domain == EventTime }

// cleanupTime is when w's state goes: maxTimestamp plus the allowed
// lateness, saturated at the end of time.
func (o *operator[K, IN, ACC, OUT]) cleanupTime(w Window) int64 {
	m := w.MaxTimestamp()
	if m > math.MaxInt64-o.lateness {
		return math.MaxInt64
	}
	return m + o.lateness
}

func (o *operator[K, IN, ACC, OUT]) registerTimer(ctx *runtime.KeyedContext[K], ts int64) {
	if o.eventTime() {
		ctx.RegisterEventTimeTimer(ts)
	} else {
		ctx.RegisterProcessingTimeTimer(ts)
	}
}

func (o *operator[K, IN, ACC, OUT]) deleteTimer(ctx *runtime.KeyedContext[K], ts int64) {
	if o.eventTime() {
		ctx.DeleteEventTimeTimer(ts)
	} else {
		ctx.DeleteProcessingTimeTimer(ts)
	}
}

// registerCleanup registers w's cleanup timer where it differs from its
// firing timer; at the end of time there is nothing to clean up for.
func (o *operator[K, IN, ACC, OUT]) registerCleanup(ctx *runtime.KeyedContext[K], w Window) {
	if c := o.cleanupTime(w); c != w.MaxTimestamp() && c != math.MaxInt64 {
		o.registerTimer(ctx, c)
	}
}

func (o *operator[K, IN, ACC, OUT]) ProcessElement(v IN, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	var ts, wm int64
	if o.eventTime() {
		ts, wm = ctx.Timestamp(), ctx.CurrentWatermark()
		if ts == runtime.NoTimestamp {
			return errors.New("a record without a timestamp reached an event-time window: assign timestamps with runtime.AssignTimestampsAndWatermarks before it, or use processing-time windows")
		}
	} else {
		ts, wm = ctx.CurrentProcessingTime(), runtime.NoTimestamp
	}
	o.assigned = o.assigner.Assign(ts, o.assigned[:0])
	if o.assigner.merging() {
		return o.processMerging(v, ts, wm, ctx, out)
	}
	skipped := true
	for _, w := range o.assigned {
		if o.cleanupTime(w) <= wm {
			continue // late for this window: its state is gone
		}
		skipped = false
		acc, ok := o.windows.Get(w.Start)
		if !ok {
			acc = o.create()
		}
		acc = o.add(v, acc)
		o.windows.Put(w.Start, acc)
		// The timers of a window are registered with its first element
		// and restored with its state, so later elements need not touch
		// the timer service.
		if w.MaxTimestamp() <= wm {
			// The watermark has passed the window's end but not its
			// cleanup time: fire at once with the updated result.
			if err := o.emit(ctx.CurrentKey(), w, acc, out); err != nil {
				return err
			}
		} else if !ok {
			o.registerTimer(ctx, w.MaxTimestamp())
		}
		if !ok {
			o.registerCleanup(ctx, w)
		}
	}
	if skipped {
		o.lateRecord(v, ts, wm)
	}
	return nil
}

// lateRecord handles a record that went into no window: it is late if its
// timestamp is past the allowed lateness (otherwise the assigner simply
// has no window for it, as sliding windows with gaps between them).
func (o *operator[K, IN, ACC, OUT]) lateRecord(v IN, ts, wm int64) {
	if ts > math.MaxInt64-o.lateness || ts+o.lateness > wm {
		return
	}
	if o.late != nil {
		o.late.Collect(v)
	} else {
		o.dropped++
	}
}

func (o *operator[K, IN, ACC, OUT]) OnTimer(ts int64, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	if (ctx.TimeDomain() == runtime.EventTime) != o.eventTime() {
		return nil // not one of ours
	}
	if o.assigner.merging() {
		return o.onTimerMerging(ts, ctx, out)
	}
	size := o.assigner.size
	if ts >= math.MaxInt64-size-o.lateness-1 {
		return o.onTimerScan(ts, ctx, out) // windows at the end of time are cut short
	}
	// A timer at ts is the firing time of the window starting at
	// ts+1-size and the cleanup time of the one starting lateness
	// earlier: look them up rather than scan the key's windows.
	fire := ts + 1 - size
	if acc, ok := o.windows.Get(fire); ok {
		if err := o.emit(ctx.CurrentKey(), Window{Start: fire, End: fire + size}, acc, out); err != nil {
			return err
		}
	}
	o.windows.Remove(fire - o.lateness)
	return nil
}

// onTimerScan fires and purges the windows due at ts by scanning the key's
// windows; it handles windows whose end was saturated at the end of time.
func (o *operator[K, IN, ACC, OUT]) onTimerScan(ts int64, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	o.due = o.due[:0]
	for start := range o.windows.All() {
		w := Window{Start: start, End: end(start, o.assigner.size)}
		if w.MaxTimestamp() == ts || o.cleanupTime(w) == ts {
			o.due = append(o.due, w)
		}
	}
	for _, w := range o.due {
		if w.MaxTimestamp() == ts {
			acc, _ := o.windows.Get(w.Start)
			if err := o.emit(ctx.CurrentKey(), w, acc, out); err != nil {
				return err
			}
		}
		if o.cleanupTime(w) == ts {
			o.windows.Remove(w.Start)
		}
	}
	return nil
}

// loadSessions reads the key's session windows into o.ms and keeps a copy
// in o.old to write back only what changed.
func (o *operator[K, IN, ACC, OUT]) loadSessions() {
	o.ms.set = o.ms.set[:0]
	for w, st := range o.sessions.All() {
		o.ms.set = append(o.ms.set, mapped{w: w, state: st})
	}
	o.old = append(o.old[:0], o.ms.set...)
}

func (o *operator[K, IN, ACC, OUT]) storeSessions() {
	for _, m := range o.old {
		if _, ok := o.ms.stateOf(m.w); !ok {
			o.sessions.Remove(m.w)
		}
	}
	for _, m := range o.ms.set {
		if st, ok := o.sessions.Get(m.w); !ok || st != m.state {
			o.sessions.Put(m.w, m.state)
		}
	}
}

// timerInUse reports whether a window of the key still fires or is
// cleaned up at ts: timers are per (key, time), so a merged-away window's
// timer may be shared.
func (o *operator[K, IN, ACC, OUT]) timerInUse(ts int64) bool {
	for _, m := range o.ms.set {
		if m.w.MaxTimestamp() == ts || o.cleanupTime(m.w) == ts {
			return true
		}
	}
	return false
}

func (o *operator[K, IN, ACC, OUT]) processMerging(v IN, ts, wm int64, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	o.loadSessions()
	for _, nw := range o.assigned {
		actual := o.ms.add(nw)
		for _, op := range o.ms.ops {
			if o.cleanupTime(op.result) <= wm {
				// Merging only grows windows, and a key's windows are
				// purged as the watermark passes them, so this would
				// be a broken invariant (Flink refuses it too).
				return fmt.Errorf("merging session windows %v gave %v, already past the watermark %d", op.merged, op.result, wm)
			}
			if !o.eventTime() || op.result.MaxTimestamp() > wm {
				o.registerTimer(ctx, op.result.MaxTimestamp())
			}
			o.registerCleanup(ctx, op.result)
			for _, m := range op.merged {
				for _, t := range [2]int64{m.MaxTimestamp(), o.cleanupTime(m)} {
					if !o.timerInUse(t) {
						o.deleteTimer(ctx, t)
					}
				}
			}
			acc, ok := o.windows.Get(op.state.Start)
			for _, sw := range op.mergedState {
				if b, found := o.windows.Get(sw.Start); found {
					if ok {
						acc = o.merge(acc, b)
					} else {
						acc, ok = b, true
					}
					o.windows.Remove(sw.Start)
				}
			}
			if ok {
				o.windows.Put(op.state.Start, acc)
			}
		}
		if o.cleanupTime(actual) <= wm {
			// A new session that is late already; it merged with
			// nothing (see above), so it has no state.
			o.ms.retire(actual)
			o.lateRecord(v, ts, wm)
			continue
		}
		sw, _ := o.ms.stateOf(actual)
		acc, ok := o.windows.Get(sw.Start)
		if !ok {
			acc = o.create()
		}
		acc = o.add(v, acc)
		o.windows.Put(sw.Start, acc)
		if actual.MaxTimestamp() <= wm {
			if err := o.emit(ctx.CurrentKey(), actual, acc, out); err != nil {
				return err
			}
		} else {
			o.registerTimer(ctx, actual.MaxTimestamp())
		}
		o.registerCleanup(ctx, actual)
	}
	o.storeSessions()
	return nil
}

func (o *operator[K, IN, ACC, OUT]) onTimerMerging(ts int64, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	o.loadSessions()
	changed := false
	// A timer of a window merged away finds no window here: ignored.
	for i := 0; i < len(o.ms.set); i++ {
		m := o.ms.set[i]
		if m.w.MaxTimestamp() == ts {
			if acc, ok := o.windows.Get(m.state.Start); ok {
				if err := o.emit(ctx.CurrentKey(), m.w, acc, out); err != nil {
					return err
				}
			}
		}
		if o.cleanupTime(m.w) == ts {
			o.windows.Remove(m.state.Start)
			o.ms.retire(m.w)
			changed = true
			i--
		}
	}
	if changed {
		o.storeSessions()
	}
	return nil
}
