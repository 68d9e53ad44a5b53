package rulesjob

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
)

// The rule_stats stream and drift alerts.
//
// Every evaluator subtask counts, per rule version, the evaluations, hits
// (alerts, shadow ones too), errors and evaluation time of each interval
// of event time (stats-interval; an event, or an engine timer, belongs to
// the interval of the time the evaluator processes it at). It holds the
// counts of the open interval in memory and sends them on as StatParts
// when the watermark passes the interval's end (an event-time timer at
// the interval's last millisecond makes sure it wakes up then) and before
// every checkpoint barrier (PreBarrierFlusher), so that a restore neither
// loses nor repeats counts. The statistician, keyed by rule version, sums
// the parts of all subtasks and, once its watermark passes an interval's
// end (no part of it can come later: each subtask sends its parts before
// it lets the watermark past the end), writes one JSON line per rule
// version and interval to <output>/rule-stats/ and compares the interval's
// hit rate with the rule version's trailing baseline.
//
// Keys in state travel the same way, as changes: a part carries how many
// keys gained (or lost) a state written by the rule version in the
// interval, on that subtask (keys.go). The statistician keeps each
// version's running total in keyed state and writes it with the line, so
// a line's keys are those holding the version's state at the interval's
// end, summed over all subtasks; the total survives restores and rescales
// because the changes, like the counts, cross each barrier before it.
//
// The alerts pass through the statistician on their way to the sinks
// (keyed by their own text, so they spread evenly), which is how the
// rule-drift alerts join them in <output>/alerts/ without a second writer
// in that directory. A shadow rule's alerts pass through marked, and go
// with its drift alerts to <output>/shadow/.

// RuleStatsDir is the directory of the rule_stats stream under output.
const RuleStatsDir = "rule-stats"

// StatisticianUID is the UID of the operator summing the stats.
const StatisticianUID = "rule-stats"

// DriftAction is the action of a drift alert.
const DriftAction = "rule-drift"

// StatPart is one evaluator subtask's counts of one rule version in the
// stats interval starting at Start (event time, Unix ms).
type StatPart struct {
	Rule        string
	Version     int64
	Start       int64
	Evaluations int64
	Hits        int64
	Errors      int64
	EvalNanos   int64
	// The rule's own drift parameters (its YAML's drift:), zero for the
	// job's.
	Drift rules.DriftSpec
	// Keys is the change in the number of keys holding a state the
	// version wrote.
	Keys int64
	// Shadow is set for a shadow rule version: its drift alerts go to the
	// shadow output, like its other alerts.
	Shadow bool
}

func (p StatPart) key() string { return p.Rule + "\x00" + strconv.FormatInt(p.Version, 10) }

// StatPartCodec serialises StatParts.
type StatPartCodec struct{}

func (StatPartCodec) Append(dst []byte, p StatPart) []byte {
	dst = appendBytes(dst, []byte(p.Rule))
	for _, v := range [...]int64{p.Version, p.Start, p.Evaluations, p.Hits, p.Errors, p.EvalNanos,
		int64(math.Float64bits(p.Drift.Factor)), int64(p.Drift.Window), p.Drift.MinEvaluations, p.Keys} {
		dst = runtime.Int64Codec{}.Append(dst, v)
	}
	if p.Shadow { // absent when false: parts written before it decode the same
		dst = runtime.Int64Codec{}.Append(dst, 1)
	}
	return dst
}

func (StatPartCodec) Decode(src []byte) (StatPart, error) {
	rd := runtime.NewReader(src)
	p := StatPart{Rule: string(rd.Bytes())}
	p.Version, p.Start, p.Evaluations = rd.Varint(), rd.Varint(), rd.Varint()
	p.Hits, p.Errors, p.EvalNanos = rd.Varint(), rd.Varint(), rd.Varint()
	p.Drift.Factor, p.Drift.Window, p.Drift.MinEvaluations = math.Float64frombits(uint64(rd.Varint())), int(rd.Varint()), rd.Varint()
	// Parts written before keys were counted (in a savepoint's pending
	// intervals) end here; Shadow follows Keys only when set.
	if rd.More() {
		p.Keys = rd.Varint()
	}
	if rd.More() {
		p.Shadow = rd.Varint() == 1
	}
	if err := rd.Done(); err != nil {
		return StatPart{}, fmt.Errorf("rule stats: %w", err)
	}
	return p, nil
}

// statParts is the evaluator's side output of StatParts.
var statParts = runtime.NewOutputTag[StatPart]("rule-stat-parts", StatPartCodec{})

// The statistician's side outputs: the rule_stats stream, and the alerts
// (drift alerts too) of shadow rules.
var (
	ruleStatLines = runtime.NewOutputTag[string]("rule-stats", runtime.StringCodec{})
	shadowAlerts  = runtime.NewOutputTag[string]("shadow-alerts", runtime.StringCodec{})
)

// StatsConfig is the stats interval and the drift parameters.
type StatsConfig struct {
	// Interval is the length of a stats interval in event time (ms).
	Interval int64
	// DriftFactor > 1 raises a drift alert when an interval's hit rate
	// is at least DriftFactor times its baseline or at most its
	// 1/DriftFactor; 0 turns drift alerts off.
	DriftFactor float64
	// DriftWindow is how many of the rule version's previous intervals
	// (those in which it evaluated anything) make its baseline.
	DriftWindow int
	// DriftMinEvaluations is how many evaluations both the interval and
	// the baseline need before their rates are compared.
	DriftMinEvaluations int64
}

// intervalStart is the start of the stats interval holding t.
func (c StatsConfig) intervalStart(t int64) int64 {
	s := t - t%c.Interval
	if t%c.Interval < 0 {
		s -= c.Interval
	}
	return s
}

// RuleStat is one line of the rule_stats stream: a rule version's counts
// in one interval, summed over the evaluator's subtasks.
type RuleStat struct {
	Rule        string  `json:"rule"`
	Version     int64   `json:"version"`
	Start       int64   `json:"start"`
	End         int64   `json:"end"`
	Evaluations int64   `json:"evaluations"`
	Hits        int64   `json:"hits"`
	Errors      int64   `json:"errors"`
	HitRate     float64 `json:"hitRate"`
	EvalNanos   int64   `json:"eval_ns"`
	// Keys holding the version's state at the interval's end, summed
	// over the subtasks.
	Keys int64 `json:"keys"`
}

// baselineEntry is one past interval of a rule version, for its baseline.
type baselineEntry struct{ start, evals, hits int64 }

type baselineCodec struct{}

func (baselineCodec) Append(dst []byte, bs []baselineEntry) []byte {
	dst = runtime.Int64Codec{}.Append(dst, int64(len(bs)))
	for _, b := range bs {
		dst = runtime.Int64Codec{}.Append(runtime.Int64Codec{}.Append(runtime.Int64Codec{}.Append(dst, b.start), b.evals), b.hits)
	}
	return dst
}

func (baselineCodec) Decode(src []byte) ([]baselineEntry, error) {
	rd := runtime.NewReader(src)
	n := rd.Varint()
	if n < 0 || n > int64(len(src)) {
		return nil, fmt.Errorf("rule stats baseline: %d entries", n)
	}
	bs := make([]baselineEntry, n)
	for i := range bs {
		bs[i] = baselineEntry{rd.Varint(), rd.Varint(), rd.Varint()}
	}
	if err := rd.Done(); err != nil {
		return nil, fmt.Errorf("rule stats baseline: %w", err)
	}
	return bs, nil
}

// forRule is c with the rule's own drift parameters in place of the
// job's where it has them.
func (c StatsConfig) forRule(d rules.DriftSpec) StatsConfig {
	if d.Factor != 0 {
		c.DriftFactor = d.Factor
	}
	if d.Window != 0 {
		c.DriftWindow = d.Window
	}
	if d.MinEvaluations != 0 {
		c.DriftMinEvaluations = d.MinEvaluations
	}
	return c
}

// drift compares an interval's hits/evals with the baseline's and returns
// the drift alert's fields, or nil when the rates are within the factor
// (or there is too little to compare, or the baseline rate is 0: no
// factor of nothing says how far a rate has moved).
func (c StatsConfig) drift(evals, hits int64, base []baselineEntry) map[string]any {
	if c.DriftFactor <= 1 || evals < c.DriftMinEvaluations || len(base) == 0 {
		return nil
	}
	var be, bh int64
	for _, b := range base {
		be, bh = be+b.evals, bh+b.hits
	}
	if be < c.DriftMinEvaluations || bh == 0 {
		return nil
	}
	// (hits/evals) / (bh/be), in one division so that round numbers
	// stay round.
	factor := float64(hits) * float64(be) / (float64(evals) * float64(bh))
	if factor < c.DriftFactor && factor > 1/c.DriftFactor {
		return nil
	}
	return map[string]any{
		"hitRate": float64(hits) / float64(evals), "baselineRate": float64(bh) / float64(be), "factor": factor,
		"evaluations": evals, "hits": hits, "baselineEvaluations": be, "baselineHits": bh, "baselineIntervals": len(base),
	}
}

// statistician sums the StatParts of each rule version (first input,
// keyed by rule version) and passes the alerts through (second input).
type statistician struct {
	cfg     StatsConfig
	pending runtime.MapState[int64, StatPart]
	base    runtime.ValueState[[]baselineEntry]
	// keys is the version's running total of keys in state.
	keys   runtime.ValueState[int64]
	lines  runtime.Collector[string]
	shadow runtime.Collector[string]
	buf    []byte
}

func (s *statistician) Open(ctx *runtime.KeyedContext[string]) (err error) {
	if s.pending, err = runtime.GetMapState(ctx, "intervals", runtime.Int64Codec{}, StatPartCodec{}); err != nil {
		return err
	}
	if s.base, err = runtime.GetValueState(ctx, "baseline", baselineCodec{}); err != nil {
		return err
	}
	if s.keys, err = runtime.GetValueState(ctx, "keys", runtime.Int64Codec{}); err != nil {
		return err
	}
	s.lines = runtime.SideCollector(ctx.RuntimeContext, ruleStatLines)
	s.shadow = runtime.SideCollector(ctx.RuntimeContext, shadowAlerts)
	return nil
}

func (s *statistician) ProcessElement1(p StatPart, ctx *runtime.KeyedContext[string], _ runtime.Collector[string]) error {
	end := p.Start + s.cfg.Interval
	if wm := ctx.CurrentWatermark(); end-1 <= wm {
		// The evaluators send an interval's parts before the watermark
		// passes its end, so this does not happen; if it did, the
		// interval's line is written already and this part cannot join it.
		ctx.Logger().Warn("rule stats: a part came after its interval was written; dropped",
			"rule", p.Rule, "version", p.Version, "start", p.Start, "watermark", wm)
		return nil
	}
	sum, ok := s.pending.Get(p.Start)
	if !ok {
		sum = StatPart{Rule: p.Rule, Version: p.Version, Start: p.Start, Drift: p.Drift, Shadow: p.Shadow}
		ctx.RegisterEventTimeTimer(end - 1)
	}
	sum.Evaluations += p.Evaluations
	sum.Hits += p.Hits
	sum.Errors += p.Errors
	sum.EvalNanos += p.EvalNanos
	sum.Keys += p.Keys
	if p.Drift != (rules.DriftSpec{}) {
		sum.Drift = p.Drift // a part of keys only has none
	}
	s.pending.Put(p.Start, sum)
	return nil
}

// ProcessElement2 passes an alert through, a shadow rule's to the shadow
// output.
func (s *statistician) ProcessElement2(l alertLine, _ *runtime.KeyedContext[string], out runtime.Collector[string]) error {
	if l.Shadow {
		s.shadow.Collect(l.Text)
	} else {
		out.Collect(l.Text)
	}
	return nil
}

func (s *statistician) OnTimer(t int64, ctx *runtime.KeyedContext[string], out runtime.Collector[string]) error {
	var due []int64
	for start := range s.pending.All() {
		if start+s.cfg.Interval-1 <= t {
			due = append(due, start)
		}
	}
	slices.Sort(due)
	for _, start := range due {
		p, _ := s.pending.Get(start)
		s.pending.Remove(start)
		if err := s.finish(p, out); err != nil {
			return err
		}
	}
	return nil
}

// finish writes an interval's line, raises a drift alert if its hit rate
// moved beyond the factor, and adds the interval to the baseline.
func (s *statistician) finish(p StatPart, out runtime.Collector[string]) error {
	keys, _ := s.keys.Value()
	if p.Keys != 0 {
		keys += p.Keys
		if keys == 0 {
			s.keys.Clear()
		} else {
			s.keys.Update(keys)
		}
	}
	if p.Evaluations == 0 && p.Hits == 0 && p.Errors == 0 && p.Keys == 0 {
		return nil // only timers that did nothing: no line
	}
	st := RuleStat{Rule: p.Rule, Version: p.Version, Start: p.Start, End: p.Start + s.cfg.Interval,
		Evaluations: p.Evaluations, Hits: p.Hits, Errors: p.Errors, EvalNanos: p.EvalNanos, Keys: keys}
	if p.Evaluations > 0 {
		st.HitRate = float64(p.Hits) / float64(p.Evaluations)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("rule stats: %w", err)
	}
	s.lines.Collect(string(b))
	if p.Evaluations == 0 {
		return nil // timers only: no rate to compare or to remember
	}
	base, _ := s.base.Value()
	cfg := s.cfg.forRule(p.Drift)
	if f := cfg.drift(p.Evaluations, p.Hits, base); f != nil {
		a := rules.Alert{Rule: p.Rule, Version: p.Version, Key: map[string]any{}, Time: st.End - 1, Action: DriftAction,
			Shadow: p.Shadow, Window: &rules.Bounds{Start: st.Start, End: st.End}, Fields: f}
		if b, err = json.Marshal(&a); err != nil {
			return fmt.Errorf("drift alert: %w", err)
		}
		if p.Shadow {
			s.shadow.Collect(string(b))
		} else {
			out.Collect(string(b))
		}
	}
	base = append(base, baselineEntry{start: p.Start, evals: p.Evaluations, hits: p.Hits})
	if n := max(cfg.DriftWindow, 1); len(base) > n {
		base = slices.Clone(base[len(base)-n:])
	}
	s.base.Update(base)
	return nil
}

// statsAcc is an evaluator's open interval of one rule key's engine: what
// its rules counted since the last flush, and whether the engine counted
// more since the last push (counted at dirtyT, in the same interval).
type statsAcc struct {
	rules    []*rules.Rule
	acc      []rules.RuleStats // per rule, deltas
	start    int64
	open     bool
	dirty    bool
	dirtyT   int64
	lastPush time.Time
}

// pushEvery bounds how stale the per-rule metrics get: pushing an engine's
// counts costs a pass over its rules, too much on every event and key
// with thousands of rules.
const pushEvery = 200 * time.Millisecond

// beforeCounting pushes se's counts when t is in a later interval than
// the counts not pushed yet, so that each interval gets its own.
func (e *evaluator) beforeCounting(se *sigGroup, t int64) {
	if a := &se.stats; a.dirty && e.statsCfg.intervalStart(a.dirtyT) != e.statsCfg.intervalStart(t) {
		e.push(se, a.dirtyT)
	}
}

// afterCounting notes that se counted at t, on the key of the timer being
// processed, and pushes the counts if the last push is pushEvery old.
func (e *evaluator) afterCounting(se *sigGroup, t int64) {
	a := &se.stats
	a.dirty, a.dirtyT = true, t
	e.wakeAtEnd(t)
	if now := time.Now(); now.Sub(a.lastPush) >= pushEvery {
		e.push(se, t)
		a.lastPush = now
	}
}

// wakeAtEnd makes sure the subtask flushes the interval of t: at the
// interval's last millisecond it wakes up even if no event comes then
// (any key will do: the current one).
func (e *evaluator) wakeAtEnd(t int64) {
	end := e.statsCfg.intervalStart(t) + e.statsCfg.Interval
	e.openEnd = min(e.openEnd, end)
	if end-1 > t && e.wakeAt != end-1 {
		e.ctx.RegisterEventTimeTimer(end - 1)
		e.wakeAt = end - 1
	}
}

// addStats adds one rule's deltas, counted at time t, to the open
// interval, flushing the previous interval first if t is in a later one.
func (e *evaluator) addStats(se *sigGroup, i int, t int64, d rules.RuleStats) {
	if d.Evaluations == 0 && d.Alerts == 0 && d.Errors == 0 && d.EvalNanos == 0 {
		return
	}
	start := e.statsCfg.intervalStart(t)
	a := &se.stats
	if a.open && a.start != start {
		e.sendStats(se)
	}
	if !a.open {
		a.open, a.start = true, start
		if a.acc == nil {
			a.acc = make([]rules.RuleStats, len(a.rules))
		}
		e.openEnd = min(e.openEnd, start+e.statsCfg.Interval)
	}
	x := &a.acc[i]
	x.Evaluations += d.Evaluations
	x.Alerts += d.Alerts
	x.Errors += d.Errors
	x.EvalNanos += d.EvalNanos
}

// flushStats pushes what se counted and sends its open interval on.
func (e *evaluator) flushStats(se *sigGroup) {
	if se.stats.dirty {
		e.push(se, se.stats.dirtyT)
	}
	e.sendStats(se)
}

// sendStats sends se's open interval on as StatParts.
func (e *evaluator) sendStats(se *sigGroup) {
	a := &se.stats
	if !a.open {
		return
	}
	a.open = false
	_ = runtime.AtTimestamp(e.ctx.RuntimeContext, a.start+e.statsCfg.Interval-1, func() error {
		for i, x := range a.acc {
			if x != (rules.RuleStats{}) {
				r := a.rules[i]
				e.parts.Collect(StatPart{Rule: r.ID, Version: r.Version, Start: a.start,
					Evaluations: x.Evaluations, Hits: x.Alerts, Errors: x.Errors, EvalNanos: x.EvalNanos, Drift: r.Drift(),
					Shadow: r.State == "shadow"})
				a.acc[i] = rules.RuleStats{}
			}
		}
		return nil
	})
}

// pendingStart is the interval of se's counts not sent yet, if any.
func (e *evaluator) pendingStart(se *sigGroup) (int64, bool) {
	switch {
	case se.stats.open:
		return se.stats.start, true
	case se.stats.dirty:
		return e.statsCfg.intervalStart(se.stats.dirtyT), true
	}
	return 0, false
}

// flushDueStats flushes the intervals that end at or before t + 1 (the
// watermark is about to pass them).
func (e *evaluator) flushDueStats(t int64) {
	if t < e.openEnd-1 {
		return
	}
	e.openEnd = math.MaxInt64
	for _, se := range e.groups {
		if start, ok := e.pendingStart(se); ok && start+e.statsCfg.Interval-1 <= t {
			e.flushStats(se)
		}
		if start, ok := e.pendingStart(se); ok {
			e.openEnd = min(e.openEnd, start+e.statsCfg.Interval)
		}
	}
	if k := &e.keys; k.open && k.start+e.statsCfg.Interval-1 <= t {
		e.sendKeys()
	}
	if k := &e.keys; k.open {
		e.openEnd = min(e.openEnd, k.start+e.statsCfg.Interval)
	}
}

// FlushPreBarrier sends every open interval's counts on before a
// checkpoint barrier: they are not in state, and the statistician's
// state holds them once they are past the barrier.
func (e *evaluator) FlushPreBarrier(int64) error {
	for _, se := range e.groups {
		e.flushStats(se)
	}
	e.sendKeys()
	e.openEnd = math.MaxInt64
	return nil
}

// defaultStatsInterval is stats-interval's default.
const defaultStatsInterval = time.Minute
