package anomaly

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/runtime"
)

// Late is the side output of the events that arrive behind the watermark:
// an in-order detector cannot place them among the events it has already
// judged, so they go to <output>/late with the reason instead of being
// judged out of order or dropped.
var Late = runtime.NewOutputTag[file.DeadLetter]("late", file.DeadLetterCodec{})

// inOrder is a keyed process function that hands a detector each key's
// events in event-time order: events wait in keyed state until the
// watermark passes their time, and events with equal times go in the
// order of (file, line), so every run (any parallelism, any restore)
// judges them in the same order and raises the same alerts.
type inOrder[K comparable] struct {
	// open registers the detector's state; judge sees each event.
	open  func(ctx *runtime.KeyedContext[K]) error
	judge func(e Event, ctx *runtime.KeyedContext[K], out runtime.Collector[Alert]) error

	pending runtime.MapState[int64, []Event]
	late    runtime.Collector[file.DeadLetter]
}

func (o *inOrder[K]) Open(ctx *runtime.KeyedContext[K]) (err error) {
	if o.pending, err = runtime.GetMapState(ctx, "pending", runtime.Int64Codec{}, eventsCodec{}); err != nil {
		return err
	}
	o.late = runtime.SideCollector(ctx.RuntimeContext, Late)
	if o.open != nil {
		return o.open(ctx)
	}
	return nil
}

func (o *inOrder[K]) ProcessElement(e Event, ctx *runtime.KeyedContext[K], _ runtime.Collector[Alert]) error {
	if wm := ctx.CurrentWatermark(); e.Time <= wm {
		o.late.Collect(file.DeadLetter{Source: e.Source, Line: e.Line, Text: fmt.Sprintf("%+v", e),
			Reason: fmt.Sprintf("late: event time %s is behind the watermark %s",
				time.UnixMilli(e.Time).UTC().Format(time.RFC3339Nano), time.UnixMilli(wm).UTC().Format(time.RFC3339Nano))})
		return nil
	}
	es, _ := o.pending.Get(e.Time)
	o.pending.Put(e.Time, append(es, e))
	ctx.RegisterEventTimeTimer(e.Time)
	return nil
}

func (o *inOrder[K]) OnTimer(ts int64, ctx *runtime.KeyedContext[K], out runtime.Collector[Alert]) error {
	es, ok := o.pending.Get(ts)
	if !ok {
		return nil
	}
	o.pending.Remove(ts)
	// A checkpoint being written may still hold this slice: sort a copy.
	es = slices.Clone(es)
	slices.SortStableFunc(es, func(a, b Event) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Line, b.Line))
	})
	for _, e := range es {
		if err := o.judge(e, ctx, out); err != nil {
			return err
		}
	}
	return nil
}

// eventsCodec serialises the events waiting at one timestamp.
type eventsCodec struct{}

func (eventsCodec) Append(dst []byte, es []Event) []byte {
	dst = binary64(dst, int64(len(es)))
	for _, e := range es {
		dst = appendString(dst, string(EventCodec{}.Append(nil, e)))
	}
	return dst
}

func (eventsCodec) Decode(src []byte) ([]Event, error) {
	r := runtime.NewReader(src)
	n := r.Varint()
	if n < 0 || n > int64(len(src)) {
		return nil, fmt.Errorf("events: %w", runtime.ErrCorrupt)
	}
	es := make([]Event, 0, n)
	for range n {
		e, err := EventCodec{}.Decode(r.Bytes())
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return es, nil
}
