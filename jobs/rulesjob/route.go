package rulesjob

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
)

// routeBuckets spreads the router's input over this many keys.
const routeBuckets = 1024

// bucketOf spreads records over the router's subtasks by where they were
// read (any spread will do: the router keeps no state across records
// beyond the wait for the watermark).
func bucketOf(r Record) int64 {
	h := fnv.New64a()
	h.Write([]byte(r.Source))
	h.Write(strconv.AppendInt(nil, r.Line, 10))
	return int64(h.Sum64() % routeBuckets)
}

// router copies each event once per distinct rule key of the set in force
// at the event's time. Like the evaluator it waits for the watermark, so
// that a change bringing a rule with a new key has arrived before the
// events it applies to are routed.
type router struct {
	sets    runtime.BroadcastState[int64, *rules.Set]
	retired runtime.BroadcastState[string, int64] // retire.go
	pending runtime.MapState[int64, []Record]
	late    runtime.Collector[file.DeadLetter]

	static *rules.Set // the job's rule set without live rules (staticSet)
	set    *rules.Set
	sigs   []sigFields
	key    []byte
	extra  []sigFields
}

func (r *router) Open(ctx *runtime.KeyedContext[int64]) (err error) {
	if r.sets, err = runtime.GetBroadcastState(ctx.RuntimeContext, ruleSets); err != nil {
		return err
	}
	if r.retired, err = runtime.GetBroadcastState(ctx.RuntimeContext, retiredSigs); err != nil {
		return err
	}
	if r.pending, err = runtime.GetMapState(ctx, "pending", runtime.Int64Codec{}, recordsCodec{}); err != nil {
		return err
	}
	r.late = runtime.SideCollector(ctx.RuntimeContext, lateRecords)
	return nil
}

func (r *router) ProcessBroadcastElement(c Change, ctx *runtime.BroadcastContext, _ runtime.Collector[Routed]) error {
	prev := latestSet(r.sets)
	if err := applyChange(r.sets, c, ctx.CurrentWatermark()); err != nil {
		return err
	}
	if next, ok := r.sets.Get(c.From); ok && prev != nil && next != prev && (c.Set != nil || c.Delta != nil) {
		retire(r.retired, prev, next, c.From)
	}
	pruneRetired(r.retired, ctx.CurrentWatermark())
	return nil
}

func (r *router) ProcessElement(rec Record, ctx *runtime.KeyedContext[int64], out runtime.Collector[Routed]) error {
	if wm := ctx.CurrentWatermark(); rec.TS <= wm {
		set := r.static
		if set == nil {
			_, set = setAt(r.sets, wm)
		}
		if set != nil && slices.ContainsFunc(set.Rules, (*rules.Rule).AcceptsLate) {
			// Some rule takes late events: every rule key's evaluator
			// sees it now and says whether one of its rules took it.
			r.route(set, rec, out)
			return nil
		}
		r.late.Collect(file.DeadLetter{Source: rec.Source, Line: rec.Line, Text: rec.Text(),
			Reason: fmt.Sprintf("late: event time %d is behind the watermark %d (raise out-of-orderness to wait longer)", rec.TS, wm)})
		return nil
	}
	rs, _ := r.pending.Get(rec.TS)
	r.pending.Put(rec.TS, append(rs, rec))
	ctx.RegisterEventTimeTimer(rec.TS)
	return nil
}

func (r *router) OnTimer(t int64, _ *runtime.KeyedContext[int64], out runtime.Collector[Routed]) error {
	rs, ok := r.pending.Get(t)
	if !ok {
		return nil
	}
	r.pending.Remove(t)
	set := r.static
	if set == nil {
		_, set = setAt(r.sets, t)
	}
	if set != r.set {
		r.set, r.sigs = set, nil
		if set != nil {
			r.sigs = keySigs(set)
		}
	}
	// Copies for the rule keys a change left without a rule, so that the
	// state there goes at the key's next event (retire.go).
	r.extra = retiredAt(r.extra[:0], r.retired, t, r.sigs)
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, compareRecords)
	for _, rec := range rs {
		r.emit(r.sigs, rec, out)
		r.emit(r.extra, rec, out)
	}
	return nil
}

// route sends rec to the rule keys of set.
func (r *router) route(set *rules.Set, rec Record, out runtime.Collector[Routed]) {
	if set != r.set {
		r.set, r.sigs = set, keySigs(set)
	}
	r.emit(r.sigs, rec, out)
}

func (r *router) emit(sigs []sigFields, rec Record, out runtime.Collector[Routed]) {
	for _, s := range sigs {
		r.key = appendKey(r.key[:0], s.sig, s.fields, rec)
		out.Collect(Routed{Key: string(r.key), Rec: rec})
	}
}
