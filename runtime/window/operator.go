package window

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/weirstream/weir/runtime"
)

// ProcessWindowFunction sees all of a window's elements when it fires,
// with the window's key and bounds (Flink's ProcessWindowFunction).
// elements belongs to the window's state: read it, do not modify or keep
// it. Combined with an aggregate (AggregateProcess) it sees the single
// aggregated result instead. Optional Open(*runtime.RuntimeContext) error
// and Close() error methods are called around the subtask's work.
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
		op.pane = gcd(a.size, a.slide)
		op.restoredLow, op.restoredHigh = runtime.NoTimestamp, runtime.NoTimestamp
		return op
	}, codec)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// operator is the window operator for one subtask: a keyed process
// function whose state maps the panes or sessions of a key to their
// accumulators.
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

	// windows maps the start of a pane (tumbling and sliding windows) or
	// of a session's state window (a key's sessions are disjoint, so the
	// start names it) to its accumulator; an int64 key hashes faster
	// than a window.
	windows runtime.MapState[int64, ACC]
	// sessions holds a key's session windows, each with the window its
	// accumulator is stored under (merging assigners only). It is one
	// value, read without iterating a map; being shared with
	// checkpoints, it is replaced, never modified.
	sessions runtime.ValueState[[]mapped]
	late     runtime.Collector[IN]

	// pane is the length of the slices a tumbling or sliding window is
	// made of: the greatest common divisor of size and slide, so that
	// each element goes into one pane, and a window's result merges its
	// size/pane panes (Flink SQL's window slicing).
	pane     int64
	assigned []Window
	ms       mergingSet
	// dropped counts late records dropped for want of a late output.
	dropped int64
	logger  *slog.Logger
	ctx     *runtime.KeyedContext[K]

	// After a restore, event time starts again from nothing, below the
	// watermarks the subtasks had reached at the checkpoint: the lowest
	// and the highest of them. Up to the highest, windows that fired
	// before the checkpoint may get records again, and a fired window
	// has no timer any more: while the watermark is below it, each
	// record registers the timers of its windows, as Flink's trigger
	// does for every record. A window that surely fired before (not
	// after the lowest) is not chained to by its predecessor's timer.
	restoredLow, restoredHigh int64
}

func (o *operator[K, IN, ACC, OUT]) Open(ctx *runtime.KeyedContext[K]) (err error) {
	if o.windows, err = runtime.GetMapState(ctx, "window-contents", runtime.Int64Codec{}, o.accCodec); err != nil {
		return fmt.Errorf("window state: %w", err)
	}
	if o.assigner.merging() {
		if o.sessions, err = runtime.GetValueState(ctx, "merging-windows", sessionsCodec{}); err != nil {
			return fmt.Errorf("session state: %w", err)
		}
	}
	o.logger, o.ctx = ctx.Logger(), ctx
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

// InitializeState reads the watermarks the subtasks had reached at the
// checkpoint restored from (every subtask gets all of them).
func (o *operator[K, IN, ACC, OUT]) InitializeState(_ *runtime.RuntimeContext, entries [][]byte) error {
	o.restoredLow, o.restoredHigh = runtime.NoTimestamp, runtime.NoTimestamp
	for i, e := range entries {
		wm, err := runtime.Int64Codec{}.Decode(e)
		if err != nil {
			return fmt.Errorf("restored watermark: %w", err)
		}
		if i == 0 || wm < o.restoredLow {
			o.restoredLow = wm
		}
		o.restoredHigh = max(o.restoredHigh, wm)
	}
	return nil
}

// SnapshotState records the subtask's watermark.
func (o *operator[K, IN, ACC, OUT]) SnapshotState(int64) ([][]byte, error) {
	if !o.eventTime() || o.ctx == nil {
		return nil, nil
	}
	return [][]byte{runtime.Int64Codec{}.Append(nil, o.ctx.CurrentWatermark())}, nil
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
	if ts < minTimestamp || ts > maxTimestamp {
		// Window arithmetic stays exact within ±2^62 ms (146 million
		// years); a record outside is no real event: handle it as late.
		o.toLate(v)
		return nil
	}
	if o.assigner.merging() {
		o.assigned = o.assigner.Assign(ts, o.assigned[:0])
		return o.processMerging(v, ts, wm, ctx, out)
	}
	a := &o.assigner
	// The windows holding ts start at last, last-slide, ... down to
	// above ts-size; ts is in a gap when slide > size.
	last := windowStart(ts, a.offset, a.slide)
	latest := Window{Start: last, End: last + a.size}
	if latest.End <= ts || o.cleanupTime(latest) <= wm {
		// Every window holding ts is past its cleanup time (the latest
		// one is the last to go), or there is none.
		o.lateRecord(v, ts, wm)
		return nil
	}
	ps := windowStart(ts, a.offset, o.pane)
	acc, ok := o.windows.Get(ps)
	if !ok {
		acc = o.create()
	}
	acc = o.add(v, acc)
	o.windows.Put(ps, acc)
	if !ok {
		// A new pane: the earliest window holding it that has yet to
		// fire needs its timer (time and key identify a timer, so one
		// registered already is not doubled); each window that fires
		// registers the next one's if that holds a pane (see OnTimer),
		// so the later windows follow. The pane goes when the latest
		// window holding it is cleaned up. Timers are restored with the
		// panes, so later elements need not touch the timer service.
		first := last - (last-ts+a.size-1)/a.slide*a.slide
		for s := first; s <= last; s += a.slide {
			if m := s + a.size - 1; m > wm {
				o.registerTimer(ctx, m)
				break
			}
		}
		if c := o.cleanupTime(latest); c != latest.MaxTimestamp() {
			o.registerTimer(ctx, c)
		}
	} else if wm < o.restoredHigh {
		for s := last; s > ts-a.size; s -= a.slide {
			if m := s + a.size - 1; m > wm {
				o.registerTimer(ctx, m)
			}
		}
	}
	if ts <= wm {
		// Some window holding ts may have fired already: each one that
		// is not yet cleaned up fires again at once with the update.
		for s := last; s > ts-a.size; s -= a.slide {
			if w := (Window{Start: s, End: s + a.size}); w.MaxTimestamp() <= wm && o.cleanupTime(w) > wm {
				// The result belongs to the window's end, as on time.
				err := runtime.AtTimestamp(ctx.RuntimeContext, w.MaxTimestamp(), func() error { return o.fire(ctx, w, out) })
				if err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Timestamps the operator accepts: see ProcessElement.
const (
	minTimestamp = -1 << 62
	maxTimestamp = 1 << 62
)

// fire emits w's result: the merge of its panes (its one pane for
// tumbling windows). A window without panes has no elements and no result.
func (o *operator[K, IN, ACC, OUT]) fire(ctx *runtime.KeyedContext[K], w Window, out runtime.Collector[OUT]) error {
	if o.pane == o.assigner.size {
		if acc, ok := o.windows.Get(w.Start); ok {
			return o.emit(ctx.CurrentKey(), w, acc, out)
		}
		return nil
	}
	var acc ACC
	found := false
	for ps := w.Start; ps < w.End; ps += o.pane {
		p, ok := o.windows.Get(ps)
		if !ok {
			continue
		}
		if !found {
			// Merge into a fresh accumulator: the pane's own must not
			// change (an element list would grow in place).
			acc, found = o.create(), true
		}
		acc = o.merge(acc, p)
	}
	if !found {
		return nil
	}
	return o.emit(ctx.CurrentKey(), w, acc, out)
}

// hasPane reports whether a pane starts in [from, to).
func (o *operator[K, IN, ACC, OUT]) hasPane(from, to int64) bool {
	for ps := from; ps < to; ps += o.pane {
		if o.windows.Contains(ps) {
			return true
		}
	}
	return false
}

// lateRecord handles a record that went into no window: it is late if its
// timestamp is past the allowed lateness (otherwise the assigner simply
// has no window for it, as sliding windows with gaps between them).
func (o *operator[K, IN, ACC, OUT]) lateRecord(v IN, ts, wm int64) {
	if ts+o.lateness <= wm {
		o.toLate(v)
	}
}

// toLate sends v to the late output, or drops and counts it.
func (o *operator[K, IN, ACC, OUT]) toLate(v IN) {
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
	a := &o.assigner
	// A timer at ts is the firing time of the window ending at ts+1, and
	// the cleanup time of the window ending lateness earlier, with whose
	// cleanup the panes starting in its first slide go: look them up
	// rather than scan the key's panes.
	if s := ts + 1 - a.size; windowStart(s, a.offset, a.slide) == s {
		w := Window{Start: s, End: s + a.size}
		if err := o.fire(ctx, w, out); err != nil {
			return err
		}
		if next := w.MaxTimestamp() + a.slide; a.slide < a.size && next > o.restoredLow && o.hasPane(w.Start+a.slide, w.End+a.slide) {
			o.registerTimer(ctx, next)
		}
	}
	if s := ts + 1 - a.size - o.lateness; windowStart(s, a.offset, a.slide) == s {
		for ps := s; ps < s+min(a.slide, a.size); ps += o.pane {
			o.windows.Remove(ps)
		}
	}
	return nil
}

// loadSessions copies the key's session windows into o.ms.
func (o *operator[K, IN, ACC, OUT]) loadSessions() {
	stored, _ := o.sessions.Value()
	o.ms.set = append(o.ms.set[:0], stored...)
}

// storeSessions writes o.ms back if it differs from what is stored.
func (o *operator[K, IN, ACC, OUT]) storeSessions() {
	stored, _ := o.sessions.Value()
	switch {
	case slices.Equal(stored, o.ms.set):
	case len(o.ms.set) == 0:
		o.sessions.Clear()
	default:
		o.sessions.Update(slices.Clone(o.ms.set))
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
			err := runtime.AtTimestamp(ctx.RuntimeContext, actual.MaxTimestamp(), func() error {
				return o.emit(ctx.CurrentKey(), actual, acc, out)
			})
			if err != nil {
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
