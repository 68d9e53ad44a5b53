package rules

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Engine runs a rule Set over a stream of events on one goroutine: the
// local counterpart of the keyed operator a cluster job runs. Rules with
// the same key fields share one state lookup per event (a group), and
// event-time timers fire in (time, rule, key) order, so a run is
// deterministic.
type Engine struct {
	set    *Set
	rn     *Runner
	groups []*group
	timers timerHeap
	armed  map[timer]struct{}
	stats  []RuleStats
	loc    []struct {
		g *group
		i int
	} // per rule: its group and place in it

	// The rule and key whose OnEvent is running, for Register.
	cur       int
	curKey    string
	curKeySet bool
	keyBuf    []byte
	scratch   State // the State of stateless rules
	all       []int // 0, 1, 2, ...: the positions of a group without an index

	// Run's decisions of the events on which rules with a priority fired.
	decisions []Decision

	// Wake, if set, hears every timer a rule arms, so that a driver whose
	// clock is not Advance's caller (a keyed operator of the runtime,
	// which fires timers per key) can ask to be woken at t and then call
	// Advance(t). Several wakes at one t are harmless.
	Wake func(t int64)
	// TimeRules adds each rule's evaluation time to its EvalNanos (two
	// clock reads per rule and event).
	TimeRules bool
}

// RuleStats counts one rule's work in an Engine.
type RuleStats struct {
	Rule        string `json:"rule"`
	Version     int64  `json:"version"`
	Evaluations int64  `json:"evaluations"`
	Alerts      int64  `json:"alerts"`
	Errors      int64  `json:"errors"`
	// EvalNanos is the time spent evaluating the rule, with TimeRules.
	EvalNanos int64 `json:"eval_ns"`
}

type group struct {
	key       []string
	rules     []int // indexes into set.Rules
	stateless bool  // every rule is: no slot per key
	slots     map[string]*slot
	index     *ruleIndex // nil: every rule runs on every event
	// events counts the events the group evaluated: each of its rules'
	// evaluations (StatsView fills them in).
	events int64
}

// slot is one key's states in a group: one per rule, nil until needed.
type slot struct {
	key    map[string]any
	states slotStates
}

// slotStates are a key's states in a group, by position in the group: a
// slice for small groups, and for large ones a map of the states that
// exist, so that a key of a group of 10,000 rules costs what its live
// states take, not 10,000 slots, and finding it empty is not a scan.
type slotStates struct {
	dense  []*State
	sparse map[int]*State
	n      int // states held
}

// denseStates is the largest group whose slots are slices.
const denseStates = 64

func newSlotStates(rules int) slotStates {
	if rules <= denseStates {
		return slotStates{dense: make([]*State, rules)}
	}
	return slotStates{sparse: map[int]*State{}}
}

func (s *slotStates) get(i int) *State {
	if s.dense != nil {
		return s.dense[i]
	}
	return s.sparse[i]
}

// set sets position i's state; nil drops it.
func (s *slotStates) set(i int, st *State) {
	had := s.get(i) != nil
	switch {
	case s.dense != nil:
		s.dense[i] = st
	case st == nil:
		delete(s.sparse, i)
	default:
		s.sparse[i] = st
	}
	switch {
	case had && st == nil:
		s.n--
	case !had && st != nil:
		s.n++
	}
}

type timer struct {
	t    int64
	rule int
	key  string
}

type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	return cmp.Or(cmp.Compare(h[i].t, h[j].t), cmp.Compare(h[i].rule, h[j].rule), cmp.Compare(h[i].key, h[j].key)) < 0
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// NewEngine prepares set to run. Paused rules are not evaluated.
func NewEngine(set *Set) *Engine {
	e := &Engine{set: set, rn: NewRunner(), armed: map[timer]struct{}{}, stats: make([]RuleStats, len(set.Rules))}
	e.loc = make([]struct {
		g *group
		i int
	}, len(set.Rules))
	byKey := map[string]*group{}
	for i, r := range set.Rules {
		e.stats[i] = RuleStats{Rule: r.ID, Version: r.Version}
		if r.State == "paused" {
			continue
		}
		sig := fmt.Sprintf("%q", r.Key)
		g := byKey[sig]
		if g == nil {
			g = &group{key: r.Key, slots: map[string]*slot{}, stateless: true}
			byKey[sig] = g
			e.groups = append(e.groups, g)
		}
		e.loc[i].g, e.loc[i].i = g, len(g.rules)
		g.rules = append(g.rules, i)
		g.stateless = g.stateless && r.Stateless()
	}
	for _, g := range e.groups {
		rs := make([]*Rule, len(g.rules))
		for i, ri := range g.rules {
			rs[i] = set.Rules[ri]
		}
		g.index = newRuleIndex(rs)
	}
	return e
}

// Stats are the counters of every rule, in the set's order.
func (e *Engine) Stats() []RuleStats { return slices.Clone(e.StatsView()) }

// StatsView is Stats without the copy: the engine's own counters, to read
// (not keep) between calls.
func (e *Engine) StatsView() []RuleStats {
	// A rule evaluates every event its group does (or the group's index
	// did for it): counted once per event rather than per rule.
	for _, g := range e.groups {
		for _, ri := range g.rules {
			e.stats[ri].Evaluations = g.events
		}
	}
	return e.stats
}

// Register arms an event-time timer for the rule and key being evaluated.
func (e *Engine) Register(t int64) {
	if !e.curKeySet {
		// Only timers need the key as a string: make it once per event.
		e.curKey, e.curKeySet = string(e.keyBuf), true
	}
	tm := timer{t: t, rule: e.cur, key: e.curKey}
	if _, ok := e.armed[tm]; ok {
		return
	}
	e.armed[tm] = struct{}{}
	heap.Push(&e.timers, tm)
	if e.Wake != nil {
		e.Wake(t)
	}
}

// Process evaluates every rule on ev and appends the alerts to out. A rule
// that fails on the event is reported in the joined error; the other
// rules still see the event.
func (e *Engine) Process(ev *Event, out []Alert) ([]Alert, error) {
	var errs []error
	for _, g := range e.groups {
		kb, err := appendKey(e.keyBuf[:0], ev, g.key)
		e.keyBuf = kb
		if err != nil {
			for _, ri := range g.rules {
				e.stats[ri].Errors++
				errs = append(errs, &EvalError{Rule: e.set.Rules[ri].ID, Version: e.set.Rules[ri].Version, Part: "key", Err: err})
			}
			continue
		}
		var sl *slot
		if !g.stateless {
			if sl = g.slots[string(kb)]; sl == nil {
				sl = &slot{key: e.set.Rules[g.rules[0]].KeyOf(ev.Fields), states: newSlotStates(len(g.rules))}
				g.slots[string(kb)] = sl
			}
		}
		e.curKey, e.curKeySet = "", false
		g.events++
		for _, i := range e.candidates(g, ev) {
			ri := g.rules[i]
			r := e.set.Rules[ri]
			var st *State
			switch {
			case r.Stateless():
				e.scratch = State{}
				st = &e.scratch
			case sl.states.get(i) == nil:
				st = r.NewState(sl.key)
				sl.states.set(i, st)
			default:
				st = sl.states.get(i)
			}
			e.cur = ri
			n := len(out)
			var t0 time.Time
			if e.TimeRules {
				t0 = time.Now()
			}
			out, err = e.rn.OnEvent(r, st, ev, e, out)
			if e.TimeRules {
				e.stats[ri].EvalNanos += int64(time.Since(t0))
			}
			e.stats[ri].Alerts += int64(len(out) - n)
			if err != nil {
				e.stats[ri].Errors++
				errs = append(errs, err)
			}
			if sl != nil && sl.states.get(i) != nil && st.Empty() {
				sl.states.set(i, nil) // e.g. a sequence back at its start
			}
		}
		if sl != nil && sl.states.n == 0 {
			delete(g.slots, string(kb))
		}
	}
	return out, errors.Join(errs...)
}

// Advance fires the timers at or before the watermark wm, in order.
func (e *Engine) Advance(wm int64, out []Alert) ([]Alert, error) {
	var errs []error
	for len(e.timers) > 0 && e.timers[0].t <= wm {
		tm := heap.Pop(&e.timers).(timer)
		delete(e.armed, tm)
		r := e.set.Rules[tm.rule]
		g, i := e.groupOf(tm.rule)
		sl := g.slots[tm.key]
		if sl == nil || sl.states.get(i) == nil {
			continue
		}
		st := sl.states.get(i)
		n := len(out)
		var err error
		e.cur, e.curKey, e.curKeySet = tm.rule, tm.key, true
		var t0 time.Time
		if e.TimeRules {
			t0 = time.Now()
		}
		out, err = e.rn.OnTimer(r, st, tm.t, e, out)
		if e.TimeRules {
			e.stats[tm.rule].EvalNanos += int64(time.Since(t0))
		}
		e.stats[tm.rule].Alerts += int64(len(out) - n)
		if err != nil {
			e.stats[tm.rule].Errors++
			errs = append(errs, err)
		}
		if st.Empty() {
			sl.states.set(i, nil)
			if sl.states.n == 0 {
				delete(g.slots, tm.key)
			}
		}
	}
	return out, errors.Join(errs...)
}

// candidates are the positions in g of the rules to run on ev: all of
// them, or those its index says may act on ev.
func (e *Engine) candidates(g *group, ev *Event) []int {
	if g.index != nil {
		return g.index.candidates(ev.Fields)
	}
	if len(e.all) < len(g.rules) {
		e.all = make([]int, len(g.rules))
		for i := range e.all {
			e.all[i] = i
		}
	}
	return e.all[:len(g.rules)]
}

func (e *Engine) groupOf(rule int) (*group, int) {
	l := e.loc[rule]
	return l.g, l.i
}

// appendKey appends the encoding of ev's key fields: each value tagged
// with its type, so the string "1" and the number 1 are different keys.
func appendKey(dst []byte, ev *Event, fields []string) ([]byte, error) {
	for _, f := range fields {
		v, ok := ev.Fields[f]
		if !ok || v == nil {
			return dst, fmt.Errorf("the event has no key field %q", f)
		}
		switch x := v.(type) {
		case string:
			dst = append(dst, 's')
			dst = strconv.AppendQuote(dst, x)
		case float64:
			dst = append(dst, 'n')
			dst = strconv.AppendFloat(dst, x, 'g', -1, 64)
		case bool:
			dst = append(dst, 'b')
			dst = strconv.AppendBool(dst, x)
		default:
			if f, ok := number(v); ok {
				dst = append(dst, 'n')
				dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
				break
			}
			return dst, fmt.Errorf("key field %q is a %T: want a string, number or boolean", f, v)
		}
		dst = append(dst, 0)
	}
	return dst, nil
}

// Run evaluates set on events as a job with a perfect watermark would:
// events in event-time order (stable, so equal times keep their input
// order), the watermark one millisecond behind each event, and every
// remaining timer fired at the end. Errors of single events do not stop
// the run; they are returned with the index of the event.
func Run(set *Set, events []Event) ([]Alert, *Engine, []error) {
	order := make([]int, len(events))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(events[a].TS, events[b].TS) })
	e := NewEngine(set)
	var out []Alert
	var errs []error
	for _, i := range order {
		ev := &events[i]
		var err error
		if out, err = e.Advance(ev.TS-1, out); err != nil {
			errs = append(errs, fmt.Errorf("at time %d: %w", ev.TS-1, err))
		}
		n := len(out)
		if out, err = e.Process(ev, out); err != nil {
			errs = append(errs, &EventError{Index: i, Err: err})
		}
		if cs := Candidates(nil, out[n:]); len(cs) > 0 {
			e.decisions = append(e.decisions, Decide(ev.TS, "", int64(ev.Line), cs))
		}
	}
	out, err := e.Advance(math.MaxInt64, out)
	if err != nil {
		errs = append(errs, fmt.Errorf("at the end of input: %w", err))
	}
	return out, e, errs
}

// Decisions are the decisions of Run's events, in the order the events
// were evaluated (see decide.go).
func (e *Engine) Decisions() []Decision { return e.decisions }

// EventError is a failure of one input event (its index in the input).
type EventError struct {
	Index int
	Err   error
}

func (e *EventError) Error() string { return fmt.Sprintf("event %d: %v", e.Index+1, e.Err) }

func (e *EventError) Unwrap() error { return e.Err }
