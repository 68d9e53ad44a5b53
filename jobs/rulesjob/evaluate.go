package rulesjob

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/rules/store"
	"github.com/weirstream/weir/runtime"
)

// Change is a rule set taking effect from event time From on: every event
// at or after From (and before the next change's From) is evaluated by Set.
// A Change without a Set or a Delta is a tick of the rule source: it only
// moves the rule watermark (see live.go).
// Changes are broadcast, so every subtask holds the same ones, and since
// an event is evaluated only once the watermark (the lower of the events'
// and the changes') has passed it, every subtask agrees on which events
// saw which set.
//
// The live rule source sends its first set whole and every later one as
// a Delta of the one before (the latest set a subtask holds): a change of
// one rule of 10,000 carries that rule, not megabytes of sources. A
// subtask whose latest set is not the delta's base fails (applyChange),
// and the job restarts from its checkpoint, where the rule source's state
// and the broadcast state agree and the source's first set is whole again.
type Change struct {
	From  int64
	Set   *rules.Set
	Delta *rules.Delta
}

// ChangeCodec serialises changes; a set travels as its rules' sources, a
// delta as its documents.
type ChangeCodec struct{}

func (ChangeCodec) Append(dst []byte, c Change) []byte {
	dst = runtime.Int64Codec{}.Append(dst, c.From)
	switch {
	case c.Delta != nil:
		return appendBytes(dst, rules.DeltaCodec{}.Append(nil, *c.Delta))
	case c.Set != nil:
		return appendBytes(dst, rules.SetCodec{}.Append(nil, c.Set))
	}
	return appendBytes(dst, nil) // a tick: an empty field
}

func (ChangeCodec) Decode(src []byte) (Change, error) {
	rd := runtime.NewReader(src)
	from, b := rd.Varint(), rd.Bytes()
	if err := rd.Done(); err != nil {
		return Change{}, fmt.Errorf("rule change: %w", err)
	}
	if len(b) == 0 {
		return Change{From: from}, nil
	}
	if rules.IsDelta(b) {
		d, err := rules.DeltaCodec{}.Decode(b)
		if err != nil {
			return Change{}, fmt.Errorf("rule change: %w", err)
		}
		return Change{From: from, Delta: &d}, nil
	}
	set, err := rules.SetCodec{}.Decode(b)
	if err != nil {
		return Change{}, fmt.Errorf("rule change: %w", err)
	}
	return Change{From: from, Set: set}, nil
}

// setSource emits the rule set loaded at start, once. With a continuous
// input (forever) it then stays, without records, instead of ending: an
// ended input's watermark is the maximum, and while the events' input is
// idle (left out of the evaluator's watermark) that maximum alone would
// fire every window and let every waiting event through at once. Its
// watermark strategy makes it idle instead (see Build).
type setSource struct {
	set     *rules.Set
	forever bool
	done    bool
}

// setIdlePoll is how often a setSource that stays polls for nothing.
const setIdlePoll = 100 * time.Millisecond

func (s *setSource) Poll(out runtime.Collector[Change]) (time.Duration, error) {
	if s.done {
		if s.forever {
			return setIdlePoll, nil
		}
		return 0, runtime.ErrEndOfInput
	}
	s.done = true
	out.Collect(Change{From: setTime, Set: s.set})
	return 0, nil
}

// The evaluator's side outputs.
var (
	// timeoutAlerts are sequences' timed-out partial matches (a rule's
	// pattern.onTimeout), apart from the matches, as Flink CEP's
	// timed-out side output.
	timeoutAlerts = runtime.NewOutputTag[string]("timeout-alerts", runtime.StringCodec{})
	evalErrors    = runtime.NewOutputTag[file.DeadLetter]("rule-errors", file.DeadLetterCodec{})
	lateRecords   = runtime.NewOutputTag[file.DeadLetter]("late-records", file.DeadLetterCodec{})
	// ruleStateReports says, per key, which rule's state a change of its
	// state shape dropped.
	ruleStateReports = runtime.NewOutputTag[string]("rule-state", runtime.StringCodec{})
)

// ruleStateName is the keyed state of the rules' states.
const ruleStateName = "rule-state"

// ruleSets is the broadcast state: the rule set of each change, by From.
var ruleSets = runtime.BroadcastStateDescriptor[int64, *rules.Set]{Name: "rule-sets", Key: runtime.Int64Codec{}, Value: rules.SetCodec{}}

// evaluator runs the rules of each routed key. Events wait in keyed state
// until the watermark passes their time; then the engine of their rule key
// sees them in order, with its own timers fired before (those due before
// the events' time) and after (those due at it), as rules.Run does.
type evaluator struct {
	ctx     *runtime.KeyedContext[string]
	sets    runtime.BroadcastState[int64, *rules.Set]
	pending runtime.MapState[int64, []Record]
	timeout runtime.Collector[string]
	// What rules with a priority raised on each event, for its decision.
	decide runtime.Collector[decisionPart]
	cands  []rules.Candidate
	errs   runtime.Collector[file.DeadLetter]
	late   runtime.Collector[file.DeadLetter]

	// Every rule's state of the current key, in keyed state (see
	// rules.KeyStates): checkpoints, savepoints and rescales carry it.
	states runtime.ValueState[*rules.KeyStates]
	// keys counts the keys in state per rule version (keys.go).
	keys keyCounts
	// What changed rules' dropped state is reported to, as JSON lines.
	ruleState runtime.Collector[string]

	// static is the job's rule set without live rules (staticSet).
	static *rules.Set
	// The set in force and one group per rule key of it.
	from    int64
	active  *rules.Set
	groups  map[string]*sigGroup
	alerts  []rules.Alert
	dropped []rules.Dropped
	// The StateIDs whose dropping this subtask has logged, and the
	// counters of dropped and removed keys per rule.
	logged      map[string]bool
	droppedKeys map[string]runtime.Counter
	removedKeys map[string]runtime.Counter

	setFrom, switchedAt, inForce runtime.Gauge

	// The rule_stats stream (stats.go): where the counts go, and the end
	// of the earliest open interval and the last wake-up timer armed.
	statsCfg        StatsConfig
	parts           runtime.Collector[StatPart]
	openEnd, wakeAt int64

	// With live rules, the per-rule counts are published to etcd for
	// `weir rules stats` by a goroutine reading stats.
	live    *liveConfig
	statsMu sync.Mutex
	stats   map[string]*atomicStat
	// counters is every rule version's counters, by ID and version.
	counters map[string]ruleCounters
	stop     context.CancelFunc
	done     chan struct{}
}

func (e *evaluator) Open(ctx *runtime.KeyedContext[string]) (err error) {
	e.ctx = ctx
	e.stats, e.counters = map[string]*atomicStat{}, map[string]ruleCounters{}
	if e.live != nil {
		e.startPublisher(ctx.RuntimeContext)
	}
	if e.sets, err = runtime.GetBroadcastState(ctx.RuntimeContext, ruleSets); err != nil {
		return err
	}
	if e.pending, err = runtime.GetMapState(ctx, "pending", runtime.Int64Codec{}, recordsCodec{}); err != nil {
		return err
	}
	if e.states, err = runtime.GetValueState(ctx, ruleStateName, rules.KeyStatesCodec{}); err != nil {
		return err
	}
	e.logged, e.droppedKeys, e.removedKeys = map[string]bool{}, map[string]runtime.Counter{}, map[string]runtime.Counter{}
	g := ctx.Metrics()
	e.setFrom = g.Gauge("rules_set_from_ms", "the event time (Unix ms) from which the rule set this subtask evaluates with applies")
	e.switchedAt = g.Gauge("rules_switched_at_ms", "the wall-clock time (Unix ms) this subtask first evaluated an event or timer under its current rule set")
	e.inForce = g.Gauge("rules_in_force", "the rules (paused ones too) of the rule set this subtask evaluates with")
	e.timeout = runtime.SideCollector(ctx.RuntimeContext, timeoutAlerts)
	e.decide = runtime.SideCollector(ctx.RuntimeContext, decisionParts)
	e.errs = runtime.SideCollector(ctx.RuntimeContext, evalErrors)
	e.late = runtime.SideCollector(ctx.RuntimeContext, lateRecords)
	e.ruleState = runtime.SideCollector(ctx.RuntimeContext, ruleStateReports)
	e.parts = runtime.SideCollector(ctx.RuntimeContext, statParts)
	e.openEnd = math.MaxInt64
	return e.recountKeys(ctx)
}

func (e *evaluator) ProcessBroadcastElement(c Change, ctx *runtime.BroadcastContext, _ runtime.Collector[alertLine]) error {
	return applyChange(e.sets, c, ctx.CurrentWatermark())
}

// applyChange keeps c's set (a delta's applied to the latest set held; a
// tick has none: it only moves the watermark) and drops the sets
// superseded by one in force at the watermark wm: no event waiting (all
// are after wm) needs them. A delta whose base is not the latest set is
// an error: evaluating under another set than the other subtasks is not
// an option.
func applyChange(sets runtime.BroadcastState[int64, *rules.Set], c Change, wm int64) error {
	if c.Delta != nil {
		latest, base := int64(math.MinInt64), (*rules.Set)(nil)
		for from, s := range sets.All() {
			if base == nil || from > latest {
				latest, base = from, s
			}
		}
		if base == nil {
			return fmt.Errorf("rules: a rule set delta arrived before any rule set: %w", rules.ErrDeltaBase)
		}
		set, err := base.Apply(*c.Delta)
		if err != nil {
			return fmt.Errorf("rules: the change from event time %d: %w", c.From, err)
		}
		c.Set = set
	}
	if c.Set != nil {
		sets.Put(c.From, c.Set)
	}
	var inForce int64 = math.MinInt64
	for from := range sets.All() {
		if from <= wm && from > inForce {
			inForce = from
		}
	}
	var old []int64
	for from := range sets.All() {
		if from < inForce {
			old = append(old, from)
		}
	}
	for _, from := range old {
		sets.Remove(from)
	}
	return nil
}

func (e *evaluator) ProcessElement(r Routed, ctx *runtime.KeyedContext[string], out runtime.Collector[alertLine]) error {
	if wm := ctx.CurrentWatermark(); r.Rec.TS <= wm {
		// The router lets a late record through only when a rule of the
		// set has lateness; one line per rule key that did not take it.
		if !e.processLate(r.Rec, wm, ctx, out) {
			e.late.Collect(file.DeadLetter{Source: r.Rec.Source, Line: r.Rec.Line, Text: r.Rec.Text(),
				Reason: fmt.Sprintf("late: event time %d is behind the watermark %d and no rule of key [%s] takes it (no lateness, or past it)",
					r.Rec.TS, wm, strings.ReplaceAll(sigOf(ctx.CurrentKey()), "\x1f", ", "))})
		}
		return nil
	}
	rs, _ := e.pending.Get(r.Rec.TS)
	e.pending.Put(r.Rec.TS, append(rs, r.Rec))
	ctx.RegisterEventTimeTimer(r.Rec.TS)
	return nil
}

// processLate gives a record behind the watermark wm to the rules of its
// key in force at wm that take late events (window rules with lateness):
// they add it to the windows still within their lateness and fire those
// again at once. It reports whether any rule took it; if none did, it is
// late for all of them. The counts go to the interval after wm.
func (e *evaluator) processLate(rec Record, wm int64, ctx *runtime.KeyedContext[string], out runtime.Collector[alertLine]) bool {
	sg := e.group(sigOf(ctx.CurrentKey()), wm)
	if sg == nil || !slices.ContainsFunc(sg.kg.Rules(), (*rules.Rule).AcceptsLate) {
		return false
	}
	kg := sg.kg
	ks, _ := e.states.Value()
	e.dropped = kg.Load(ks, e.dropped[:0])
	for _, d := range e.dropped {
		e.report(ctx, d, ks.Key, wm)
	}
	e.beforeCounting(sg, wm+1)
	defer e.afterCounting(sg, wm+1)
	ev := rules.Event{Fields: rec.Fields, TS: rec.TS, Line: int(rec.Line)}
	var took bool
	var err error
	e.alerts, took, err = kg.ProcessLate(&ev, wm, e.alerts[:0])
	e.emit(out)
	if err != nil {
		e.errs.Collect(file.DeadLetter{Source: rec.Source, Line: rec.Line, Text: rec.Text(),
			Reason: strings.ReplaceAll(err.Error(), "\n", "; ")})
		took = true // reported there, with the reason
	}
	e.saveStates(ctx, kg, ks, wm+1)
	return took
}

// setAt is the rule set in force at event time t and its From.
func setAt(sets runtime.BroadcastState[int64, *rules.Set], t int64) (int64, *rules.Set) {
	best, set := int64(math.MinInt64), (*rules.Set)(nil)
	for from, s := range sets.All() {
		if from <= t && (set == nil || from > best) {
			best, set = from, s
		}
	}
	return best, set
}

// group is the group of sig's rules under the set in force at t. When the
// set changes, the groups whose rules are the same compiled rules (the
// same ID, version, state, source and lists: sets share the rules they
// have in common, see rules.CompileDocs and Set.With) are kept with their
// counters; the others are built anew. Either way the rules' state is in
// keyed state, by rule and state shape, so a rule whose shape did not
// change keeps it (see rules.KeyGroup).
func (e *evaluator) group(sig string, t int64) *sigGroup {
	from, set := int64(setTime), e.static
	if set == nil {
		from, set = setAt(e.sets, t)
	}
	if set == nil {
		return nil
	}
	if set != e.active || from != e.from {
		e.from, e.active = from, set
		e.setFrom.Set(float64(from))
		e.inForce.Set(float64(len(set.Rules)))
		// Once the groups are built: what this subtask pays for a change.
		defer func() { e.switchedAt.Set(float64(time.Now().UnixMilli())) }()
		bySig := map[string][]*rules.Rule{}
		for _, r := range set.Rules {
			s := keySig(r.Key)
			bySig[s] = append(bySig[s], r)
		}
		groups := make(map[string]*sigGroup, len(bySig))
		for s, rs := range bySig {
			old, ok := e.groups[s]
			if ok && slices.Equal(old.all, rs) {
				groups[s] = old
				continue
			}
			// Paused rules are in the group too: they keep their state
			// (their timers still expire it) and count nothing.
			var kg *rules.KeyGroup
			if ok {
				// Most changes replace a rule or two of the group: the
				// new group reuses the old one's index.
				kg = old.kg.Next(rs)
			} else {
				kg = rules.NewKeyGroup(rs)
				// A rule's timers are runtime timers of its key, so they
				// are checkpointed and move with the key on a rescale.
				kg.Wake = e.ctx.RegisterEventTimeTimer
				kg.TimeRules = true
			}
			sg := &sigGroup{kg: kg, all: rs, pushed: make([]rules.RuleStats, len(rs)), stats: statsAcc{rules: rs},
				counters: make([]ruleCounters, len(rs))}
			if ok {
				e.takeOver(old, sg)
			}
			for i, r := range rs {
				if sg.counters[i].sum == nil {
					sg.counters[i] = e.ruleCounters(r)
				}
			}
			groups[s] = sg
		}
		for s, old := range e.groups {
			if groups[s] != old {
				e.flushStats(old) // its counts are done (those not taken over)
			}
		}
		e.groups = groups
	}
	return e.groups[sig]
}

// takeOver gives next, the group that follows old after a change, the
// counters and the counts not sent yet of the rules both have (the same
// compiled rule: same ID and version), so that a change of one rule of
// 10,000 sends on the counts of that rule, not of all 10,000 (the others'
// go on in their interval, as if the change had not been).
func (e *evaluator) takeOver(old, next *sigGroup) {
	if old.stats.dirty {
		e.push(old, old.stats.dirtyT)
	}
	at := func(i int) int { // the position in old of next's rule i
		if len(old.all) == len(next.all) && old.all[i] == next.all[i] {
			return i
		}
		return -1
	}
	if len(old.all) != len(next.all) {
		pos := make(map[*rules.Rule]int, len(old.all))
		for j, r := range old.all {
			pos[r] = j
		}
		at = func(i int) int {
			if j, ok := pos[next.all[i]]; ok {
				return j
			}
			return -1
		}
	}
	o, n := &old.stats, &next.stats
	for i := range next.all {
		j := at(i)
		if j < 0 {
			continue
		}
		next.counters[i] = old.counters[j]
		if o.open && o.acc[j] != (rules.RuleStats{}) {
			if n.acc == nil {
				n.acc = make([]rules.RuleStats, len(next.all))
				n.open, n.start = true, o.start
			}
			n.acc[i], o.acc[j] = o.acc[j], rules.RuleStats{}
		}
	}
	n.lastPush = o.lastPush
}

// sigGroup is the rules of one rule key and what they are, with the
// per-rule counters and what of the group's counts they hold.
type sigGroup struct {
	kg       *rules.KeyGroup
	all      []*rules.Rule // paused ones too
	counters []ruleCounters
	pushed   []rules.RuleStats
	stats    statsAcc
}

// ruleCounters are one rule version's metrics: registered by rule and
// version, so a version's counts survive its engine being rebuilt and
// every version has its own.
type ruleCounters struct {
	evals, alerts, errs, nanos runtime.Counter
	// The same counts, for the publisher's goroutine.
	sum *atomicStat
}

// atomicStat is one rule version's counts in this subtask.
type atomicStat struct {
	rule                       string
	version                    int64
	evals, alerts, errs, nanos atomic.Int64
	// keys is the version's keys in state (keys.go).
	keys atomic.Int64
}

// statOf is the counts of a rule version, made on first use.
func (e *evaluator) statOf(rule string, version int64) *atomicStat {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	k := rule + "\x00" + strconv.FormatInt(version, 10)
	sum := e.stats[k]
	if sum == nil {
		sum = &atomicStat{rule: rule, version: version}
		e.stats[k] = sum
	}
	return sum
}

func (e *evaluator) ruleCounters(r *rules.Rule) ruleCounters {
	// Kept by rule and version: a change rebuilding a group of 10,000
	// rules looks up 10,000 counters, not 40,000 metrics.
	k := r.ID + "\x00" + strconv.FormatInt(r.Version, 10)
	if c, ok := e.counters[k]; ok {
		return c
	}
	c := e.newRuleCounters(r)
	e.counters[k] = c
	return c
}

func (e *evaluator) newRuleCounters(r *rules.Rule) ruleCounters {
	g := e.ctx.Metrics().With("rule", r.ID).With("version", strconv.FormatInt(r.Version, 10))
	return ruleCounters{sum: e.statOf(r.ID, r.Version),
		evals:  g.Counter("rule_evaluations_total", "events and timers a rule version evaluated"),
		alerts: g.Counter("rule_alerts_total", "alerts a rule version raised (shadow ones too)"),
		errs:   g.Counter("rule_errors_total", "events and timers a rule version failed on"),
		nanos:  g.Counter("rule_eval_nanoseconds_total", "time spent evaluating a rule version"),
	}
}

// push adds what the group counted since the last push (at time t) to
// the metrics and to the rule_stats interval of t.
func (e *evaluator) push(se *sigGroup, t int64) {
	se.stats.dirty = false
	for i, st := range se.kg.StatsView() {
		p, c := &se.pushed[i], se.counters[i]
		e.addStats(se, i, t, rules.RuleStats{Evaluations: st.Evaluations - p.Evaluations, Alerts: st.Alerts - p.Alerts,
			Errors: st.Errors - p.Errors, EvalNanos: st.EvalNanos - p.EvalNanos})
		c.evals.Add(st.Evaluations - p.Evaluations)
		c.alerts.Add(st.Alerts - p.Alerts)
		c.errs.Add(st.Errors - p.Errors)
		c.nanos.Add(st.EvalNanos - p.EvalNanos)
		c.sum.evals.Add(st.Evaluations - p.Evaluations)
		c.sum.alerts.Add(st.Alerts - p.Alerts)
		c.sum.errs.Add(st.Errors - p.Errors)
		c.sum.nanos.Add(st.EvalNanos - p.EvalNanos)
		*p = st
	}
}

func (e *evaluator) OnTimer(t int64, ctx *runtime.KeyedContext[string], out runtime.Collector[alertLine]) error {
	defer e.flushDueStats(t)
	rs, _ := e.pending.Get(t)
	if len(rs) > 0 {
		e.pending.Remove(t)
	}
	ks, _ := e.states.Value()
	sg := e.group(sigOf(ctx.CurrentKey()), t)
	if sg == nil {
		// No rule of the set in force has this key: whatever state the
		// key holds belongs to rules that are gone or whose key fields
		// changed (the router copies events here for that: retire.go).
		if ks != nil {
			for _, s := range ks.States {
				e.report(ctx, rules.Dropped{ID: s.ID, Version: s.Version}, ks.Key, t)
			}
			e.states.Clear()
			e.storeStates(ks, nil, t)
		}
		return nil
	}
	kg := sg.kg
	e.dropped = kg.Load(ks, e.dropped[:0])
	for _, d := range e.dropped {
		e.report(ctx, d, ks.Key, t)
	}
	e.beforeCounting(sg, t)
	defer e.afterCounting(sg, t)
	var err error
	e.alerts, err = kg.Fire(t-1, e.alerts[:0])
	e.emit(out)
	if err != nil {
		ctx.Logger().Warn("a rule failed on a timer", "time", t-1, "err", err)
	}
	// A checkpoint being written may still hold this slice: sort a copy.
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, compareRecords)
	for i := range rs {
		ev := rules.Event{Fields: rs[i].Fields, TS: rs[i].TS, Line: int(rs[i].Line)}
		e.alerts, err = kg.Process(&ev, e.alerts[:0])
		if e.cands = rules.Candidates(e.cands[:0], e.alerts); len(e.cands) > 0 {
			e.decide.Collect(decisionPart{Source: rs[i].Source, Line: rs[i].Line, Time: rs[i].TS, Candidates: slices.Clone(e.cands)})
		}
		e.emit(out)
		if err != nil {
			// The other rules saw the event; this one's failure goes to
			// the dead letters with the reason.
			e.errs.Collect(file.DeadLetter{Source: rs[i].Source, Line: rs[i].Line, Text: rs[i].Text(),
				Reason: strings.ReplaceAll(err.Error(), "\n", "; ")})
		}
	}
	e.alerts, err = kg.Fire(t, e.alerts[:0])
	e.emit(out)
	if err != nil {
		ctx.Logger().Warn("a rule failed on a timer", "time", t, "err", err)
	}
	e.saveStates(ctx, kg, ks, t)
	return nil
}

// report counts a stored rule state that the rules in force did not take
// for this key. A state whose rule is still in the set in force, with
// another state shape (or another key: then it is under another routed
// key) or that did not decode, was dropped: logged once per rule state
// and subtask, counted per key, and reported with the key on the
// rule-state output. A state of a deleted rule was removed: counted only.
// (A paused rule keeps its state: see rules.KeyGroup.)
func (e *evaluator) report(ctx *runtime.KeyedContext[string], d rules.Dropped, key map[string]any, t int64) {
	rule := rules.RuleOfStateID(d.ID)
	var now *rules.Rule
	if e.active != nil {
		for _, r := range e.active.Rules {
			if r.ID == rule {
				now = r
				break
			}
		}
	}
	if now == nil {
		counter(ctx, e.removedKeys, rule, "rule_state_removed_keys_total",
			"keys whose state of a rule was removed because the rule was deleted")
		return
	}
	counter(ctx, e.droppedKeys, rule, "rule_state_dropped_keys_total",
		"keys whose state of a rule was dropped because the rule's state shape changed")
	reason := "state shape changed (key, window, aggregates, profile or pattern)"
	switch {
	case d.Err != nil:
		reason = "state did not decode: " + d.Err.Error()
	case !d.Changed:
		reason = "key fields changed"
	}
	if !e.logged[d.ID] {
		e.logged[d.ID] = true
		ctx.Logger().Warn("rules: a rule's state is dropped; it starts empty", "rule", rule, "from_version", d.Version,
			"to_version", now.Version, "reason", reason)
	}
	b, err := json.Marshal(stateReport{Rule: rule, Version: d.Version, NewVersion: now.Version, Key: key, Time: t, State: "dropped", Reason: reason})
	if err == nil {
		e.ruleState.Collect(string(b))
	}
}

// stateReport is a line of the rule-state output.
type stateReport struct {
	Rule       string         `json:"rule"`
	Version    int64          `json:"version"`     // the version whose state was dropped
	NewVersion int64          `json:"new_version"` // the version in force
	Key        map[string]any `json:"key"`
	Time       int64          `json:"time"` // the event time at which the key saw the new version
	State      string         `json:"state"`
	Reason     string         `json:"reason"`
}

func counter(ctx *runtime.KeyedContext[string], m map[string]runtime.Counter, rule, name, help string) {
	c, ok := m[rule]
	if !ok {
		c = ctx.Metrics().With("rule", rule).Counter(name, help)
		m[rule] = c
	}
	c.Add(1)
}

// emit sends the alerts on as JSON lines, marked shadow for a shadow rule
// (the statistician writes those to the shadow output; a shadow rule's
// timeouts are shadow alerts), a timed-out match's to the timeouts output.
func (e *evaluator) emit(out runtime.Collector[alertLine]) {
	for i := range e.alerts {
		b, err := json.Marshal(&e.alerts[i])
		if err != nil {
			b = fmt.Appendf(nil, `{"rule":%q,"error":%q}`, e.alerts[i].Rule, err.Error())
		}
		switch {
		case e.alerts[i].Shadow:
			out.Collect(alertLine{Text: string(b), Shadow: true})
		case e.alerts[i].TimedOut:
			e.timeout.Collect(string(b))
		default:
			out.Collect(alertLine{Text: string(b)})
		}
	}
}

// alertLine is an alert on its way from the evaluator, through the
// statistician, to the alerts or (Shadow) the shadow output.
type alertLine struct {
	Text   string
	Shadow bool
}

// alertLineCodec serialises alertLines.
type alertLineCodec struct{}

func (alertLineCodec) Append(dst []byte, l alertLine) []byte {
	var shadow int64
	if l.Shadow {
		shadow = 1
	}
	return appendBytes(runtime.Int64Codec{}.Append(dst, shadow), []byte(l.Text))
}

func (alertLineCodec) Decode(src []byte) (alertLine, error) {
	rd := runtime.NewReader(src)
	shadow, text := rd.Varint(), rd.Bytes()
	if err := rd.Done(); err != nil {
		return alertLine{}, fmt.Errorf("alert line: %w", err)
	}
	return alertLine{Text: string(text), Shadow: shadow == 1}, nil
}

// statsEvery is how often a subtask publishes its rule counts.
const statsEvery = 2 * time.Second

// startPublisher publishes this subtask's per-rule counts to etcd every
// statsEvery (under a lease, so a subtask that is gone drops out), off
// the task's goroutine; an unreachable etcd costs a skipped publication.
func (e *evaluator) startPublisher(rc *runtime.RuntimeContext) {
	ctx, cancel := context.WithCancel(context.Background())
	e.stop, e.done = cancel, make(chan struct{})
	subtask, job, log := rc.SubtaskIndex(), e.live.rulesName(rc), rc.Logger()
	go func() {
		defer close(e.done)
		cli, err := clientv3.New(clientv3.Config{Endpoints: e.live.endpoints, DialTimeout: etcdTimeout, Logger: zap.NewNop()})
		if err != nil {
			log.Warn("rules: no etcd client for the rule stats", "err", err)
			return
		}
		defer cli.Close()
		st := store.New(cli, e.live.cluster, job)
		every := statsEvery
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			e.statsMu.Lock()
			out := make([]store.RuleStat, 0, len(e.stats))
			for _, s := range e.stats {
				out = append(out, store.RuleStat{Rule: s.rule, Version: s.version, Evaluations: s.evals.Load(),
					Alerts: s.alerts.Load(), Errors: s.errs.Load(), EvalNanos: s.nanos.Load(), Keys: s.keys.Load()})
			}
			e.statsMu.Unlock()
			// About 100 bytes per rule version: with thousands of rules,
			// publish less often (statsEvery per 1000 versions), so etcd
			// does not take a megabyte per subtask every 2 s.
			every = statsEvery * time.Duration(max(1, len(out)/1000))
			pctx, pcancel := context.WithTimeout(ctx, etcdTimeout)
			_ = st.PublishStats(pctx, subtask, out, max(1, int64(5*every/time.Second))) // the next one retries
			pcancel()
		}
	}()
}

// Close stops the publisher.
func (e *evaluator) Close() error {
	if e.stop != nil {
		e.stop()
		<-e.done
	}
	return nil
}

// saveStates writes the key's rule states back if kg changed them (old
// is the stored value kg loaded) and counts the keys' change at t. The
// stored value is built anew, never changed in place: a snapshot being
// written may hold the previous one.
func (e *evaluator) saveStates(ctx *runtime.KeyedContext[string], kg *rules.KeyGroup, old *rules.KeyStates, t int64) {
	if !kg.Changed() {
		return
	}
	next, err := kg.Store()
	if err != nil {
		ctx.Logger().Warn("rules: a rule state was left out of keyed state", "err", err)
	}
	if next == nil {
		e.states.Clear()
	} else {
		e.states.Update(next)
	}
	e.storeStates(old, next, t)
}
