// Package join joins two keyed streams on their key, as Flink's DataStream
// and streaming SQL joins do: a regular join that keeps both sides, an
// interval join that pairs records whose event times are close, and a
// window join that pairs the records of one tumbling window.
//
// Like runtime/window, the package sits on runtime's public API: each join
// is a runtime.KeyedCoProcessFunction (runtime.ProcessConnected) whose
// keyed state buffers the records of both sides and whose event-time
// timers drop them once no later record can match. The buffered records
// are therefore checkpointed and redistributed on rescale like any keyed
// state, with no support from the engine.
//
// Buffered records are stored per key and timestamp (interval join) or per
// key and window (window join) as lists. A list is never appended to in
// place where an earlier checkpoint might still be reading it: adding a
// record copies the list, which is cheap for the few records of one key
// and millisecond.
//
// As in Flink, a record whose event time is at or behind the operator's
// watermark when it arrives is late: the interval and window joins drop it,
// since the records it would pair with may already be gone.
package join

import (
	"fmt"
	"slices"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

// Func receives each matching pair and emits zero or more results.
type Func[K comparable, A, B, OUT any] func(key K, a A, b B, out runtime.Collector[OUT]) error

// Regular joins a and b on their key, keeping every record of both sides
// for good (Flink SQL's regular inner join without a state TTL): each
// record is paired with every record of the other side seen before it, so
// every pair is emitted exactly once, whatever the order of arrival, with
// the timestamp of the record that completed it.
// codecA and codecB serialise the buffered records for checkpoints.
func Regular[K comparable, A, B, OUT any](a runtime.KeyedStream[A, K], b runtime.KeyedStream[B, K], name string,
	fn Func[K, A, B, OUT], codecA runtime.Codec[A], codecB runtime.Codec[B], codec runtime.Codec[OUT]) runtime.Stream[OUT] {
	if codecA == nil || codecB == nil {
		a.Env().Fail(fmt.Errorf("join %s: codecs of both sides are needed to checkpoint the buffered records", name))
	}
	return runtime.ProcessConnected(runtime.ConnectKeyed(a, b), name, func() runtime.KeyedCoProcessFunction[K, A, B, OUT] {
		return &regular[K, A, B, OUT]{fn: fn, codecA: codecA, codecB: codecB}
	}, codec)
}

type regular[K comparable, A, B, OUT any] struct {
	fn     Func[K, A, B, OUT]
	codecA runtime.Codec[A]
	codecB runtime.Codec[B]
	left   runtime.ListState[A]
	right  runtime.ListState[B]
}

func (r *regular[K, A, B, OUT]) Open(ctx *runtime.KeyedContext[K]) (err error) {
	if r.left, err = runtime.GetListState(ctx, "join-left", r.codecA); err != nil {
		return err
	}
	r.right, err = runtime.GetListState(ctx, "join-right", r.codecB)
	return err
}

func (r *regular[K, A, B, OUT]) ProcessElement1(v A, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	r.left.Add(v)
	for _, b := range r.right.Get() {
		if err := r.fn(ctx.CurrentKey(), v, b, out); err != nil {
			return err
		}
	}
	return nil
}

func (r *regular[K, A, B, OUT]) ProcessElement2(v B, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	r.right.Add(v)
	for _, a := range r.left.Get() {
		if err := r.fn(ctx.CurrentKey(), a, v, out); err != nil {
			return err
		}
	}
	return nil
}

func (r *regular[K, A, B, OUT]) OnTimer(int64, *runtime.KeyedContext[K], runtime.Collector[OUT]) error {
	return nil
}

// Interval joins a and b on their key and event time: a record b of the
// second side pairs with a record a of the first when
// a.ts+lower <= b.ts <= a.ts+upper (Flink's intervalJoin between lower
// and upper, both bounds inclusive). Each result carries the later of the
// two timestamps. A record of a is dropped from state once the watermark
// passes a.ts+upper, one of b once it passes b.ts-lower. The streams need
// event time (runtime.AssignTimestampsAndWatermarks upstream).
func Interval[K comparable, A, B, OUT any](a runtime.KeyedStream[A, K], b runtime.KeyedStream[B, K], name string,
	lower, upper time.Duration, fn Func[K, A, B, OUT], codecA runtime.Codec[A], codecB runtime.Codec[B], codec runtime.Codec[OUT]) runtime.Stream[OUT] {
	switch {
	case codecA == nil || codecB == nil:
		a.Env().Fail(fmt.Errorf("join %s: codecs of both sides are needed to checkpoint the buffered records", name))
	case lower > upper:
		a.Env().Fail(fmt.Errorf("join %s: the lower bound %v is above the upper bound %v", name, lower, upper))
	}
	lo, hi := lower.Milliseconds(), upper.Milliseconds()
	return runtime.ProcessConnected(runtime.ConnectKeyed(a, b), name, func() runtime.KeyedCoProcessFunction[K, A, B, OUT] {
		return &interval[K, A, B, OUT]{fn: fn, lower: lo, upper: hi, codecA: codecA, codecB: codecB}
	}, codec)
}

type interval[K comparable, A, B, OUT any] struct {
	fn           Func[K, A, B, OUT]
	lower, upper int64 // ms
	codecA       runtime.Codec[A]
	codecB       runtime.Codec[B]
	left         runtime.MapState[int64, []A] // by event time
	right        runtime.MapState[int64, []B]
}

func (j *interval[K, A, B, OUT]) Open(ctx *runtime.KeyedContext[K]) (err error) {
	if j.left, err = runtime.GetMapState(ctx, "join-left", runtime.Int64Codec{}, runtime.Codec[[]A](window.SliceCodec[A]{Elem: j.codecA})); err != nil {
		return err
	}
	j.right, err = runtime.GetMapState(ctx, "join-right", runtime.Int64Codec{}, runtime.Codec[[]B](window.SliceCodec[B]{Elem: j.codecB}))
	return err
}

// late reports whether a record at ts came behind the watermark.
func late[K comparable](ctx *runtime.KeyedContext[K], ts int64) bool {
	return ts == runtime.NoTimestamp || ts <= ctx.CurrentWatermark()
}

func (j *interval[K, A, B, OUT]) ProcessElement1(v A, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	ts := ctx.Timestamp()
	if late(ctx, ts) {
		return nil
	}
	l, _ := j.left.Get(ts)
	j.left.Put(ts, append(slices.Clip(l), v))
	ctx.RegisterEventTimeTimer(ts + j.upper)
	for tb, bs := range j.right.All() {
		if tb < ts+j.lower || tb > ts+j.upper {
			continue
		}
		for _, b := range bs {
			if err := j.emit(ctx, max(ts, tb), v, b, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func (j *interval[K, A, B, OUT]) ProcessElement2(v B, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	ts := ctx.Timestamp()
	if late(ctx, ts) {
		return nil
	}
	l, _ := j.right.Get(ts)
	j.right.Put(ts, append(slices.Clip(l), v))
	ctx.RegisterEventTimeTimer(ts - j.lower)
	for ta, as := range j.left.All() {
		if ts < ta+j.lower || ts > ta+j.upper {
			continue
		}
		for _, a := range as {
			if err := j.emit(ctx, max(ts, ta), a, v, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func (j *interval[K, A, B, OUT]) emit(ctx *runtime.KeyedContext[K], ts int64, a A, b B, out runtime.Collector[OUT]) error {
	return runtime.AtTimestamp(ctx.RuntimeContext, ts, func() error { return j.fn(ctx.CurrentKey(), a, b, out) })
}

// OnTimer drops what the watermark has made useless: at time t, the first
// side's records of t-upper and the second side's of t+lower (one timer
// may stand for both).
func (j *interval[K, A, B, OUT]) OnTimer(t int64, _ *runtime.KeyedContext[K], _ runtime.Collector[OUT]) error {
	j.left.Remove(t - j.upper)
	j.right.Remove(t + j.lower)
	return nil
}

// WindowFunc receives the records of both sides of one key and window,
// when the window closes and both sides have some.
type WindowFunc[K comparable, A, B, OUT any] func(key K, w window.Window, as []A, bs []B, out runtime.Collector[OUT]) error

// Window joins a and b on their key within tumbling event-time windows of
// size aligned to the epoch: when the watermark passes a window's end, fn
// sees the records of each key that both sides had in it (Flink's window
// join, with a function that sees the whole group, as a CoGroup; pairing
// every a with every b in fn is the inner join). Results carry the
// window's last millisecond as their timestamp; the window's records are
// then dropped. The streams need event time.
func Window[K comparable, A, B, OUT any](a runtime.KeyedStream[A, K], b runtime.KeyedStream[B, K], name string,
	size time.Duration, fn WindowFunc[K, A, B, OUT], codecA runtime.Codec[A], codecB runtime.Codec[B], codec runtime.Codec[OUT]) runtime.Stream[OUT] {
	switch {
	case codecA == nil || codecB == nil:
		a.Env().Fail(fmt.Errorf("join %s: codecs of both sides are needed to checkpoint the buffered records", name))
	case size.Milliseconds() < 1:
		a.Env().Fail(fmt.Errorf("join %s: window size %v must be at least 1ms", name, size))
	}
	return runtime.ProcessConnected(runtime.ConnectKeyed(a, b), name, func() runtime.KeyedCoProcessFunction[K, A, B, OUT] {
		return &windowJoin[K, A, B, OUT]{fn: fn, size: size.Milliseconds(), codecA: codecA, codecB: codecB}
	}, codec)
}

type windowJoin[K comparable, A, B, OUT any] struct {
	fn     WindowFunc[K, A, B, OUT]
	size   int64
	codecA runtime.Codec[A]
	codecB runtime.Codec[B]
	left   runtime.MapState[int64, []A] // by window end
	right  runtime.MapState[int64, []B]
}

func (j *windowJoin[K, A, B, OUT]) Open(ctx *runtime.KeyedContext[K]) (err error) {
	if j.left, err = runtime.GetMapState(ctx, "join-left", runtime.Int64Codec{}, runtime.Codec[[]A](window.SliceCodec[A]{Elem: j.codecA})); err != nil {
		return err
	}
	j.right, err = runtime.GetMapState(ctx, "join-right", runtime.Int64Codec{}, runtime.Codec[[]B](window.SliceCodec[B]{Elem: j.codecB}))
	return err
}

// end is the end of the window holding ts, or false for a late record.
func (j *windowJoin[K, A, B, OUT]) end(ctx *runtime.KeyedContext[K]) (int64, bool) {
	ts := ctx.Timestamp()
	if ts == runtime.NoTimestamp {
		return 0, false
	}
	end := ts - ((ts%j.size)+j.size)%j.size + j.size
	if end-1 <= ctx.CurrentWatermark() {
		return 0, false
	}
	return end, true
}

func (j *windowJoin[K, A, B, OUT]) ProcessElement1(v A, ctx *runtime.KeyedContext[K], _ runtime.Collector[OUT]) error {
	if end, ok := j.end(ctx); ok {
		l, _ := j.left.Get(end)
		j.left.Put(end, append(slices.Clip(l), v))
		ctx.RegisterEventTimeTimer(end - 1)
	}
	return nil
}

func (j *windowJoin[K, A, B, OUT]) ProcessElement2(v B, ctx *runtime.KeyedContext[K], _ runtime.Collector[OUT]) error {
	if end, ok := j.end(ctx); ok {
		l, _ := j.right.Get(end)
		j.right.Put(end, append(slices.Clip(l), v))
		ctx.RegisterEventTimeTimer(end - 1)
	}
	return nil
}

func (j *windowJoin[K, A, B, OUT]) OnTimer(t int64, ctx *runtime.KeyedContext[K], out runtime.Collector[OUT]) error {
	end := t + 1
	as, _ := j.left.Get(end)
	bs, _ := j.right.Get(end)
	j.left.Remove(end)
	j.right.Remove(end)
	if len(as) == 0 || len(bs) == 0 {
		return nil
	}
	return j.fn(ctx.CurrentKey(), window.Window{Start: end - j.size, End: end}, as, bs, out)
}
