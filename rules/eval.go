package rules

import (
	"errors"
	"fmt"
	"math"

	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/weirstream/weir/runtime/cep"
)

// Event is one input record: its fields (JSON types: float64, string,
// bool, nil, []any, map[string]any) and its event time in Unix ms.
type Event struct {
	Fields map[string]any
	TS     int64
	Line   int // its line in the input, for messages; 0 if none
}

// Alert is what a rule's hit produces; it is written as one JSON line.
type Alert struct {
	Rule    string         `json:"rule"`
	Version int64          `json:"version"`
	Key     map[string]any `json:"key"`
	Time    int64          `json:"time"` // Unix ms: the event's, or the window's last millisecond
	Action  string         `json:"action"`
	Shadow  bool           `json:"shadow,omitempty"`
	// TimedOut marks a sequence's partial match that its window
	// discarded (pattern.onTimeout).
	TimedOut bool `json:"timedOut,omitempty"`
	// Late marks a window fired again for an event behind the watermark
	// (the rule's lateness).
	Late bool `json:"late,omitempty"`
	// Priority is the rule's emit.priority, if it has one (decide.go).
	Priority *int           `json:"priority,omitempty"`
	Window   *Bounds        `json:"window,omitempty"`
	Fields   map[string]any `json:"fields,omitempty"`
}

// Bounds are a window's [Start, End) in Unix ms.
type Bounds struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// State is one rule's state for one key. Its parts depend on the kind.
type State struct {
	key       map[string]any
	alerted   bool
	lastAlert int64

	look    *lookback          // aggregate, lookback window
	wins    map[int64]*accs    // aggregate, tumbling and sliding: window start -> accumulators
	session *sessionWindow     // aggregate, session window
	prof    *profileState      // baseline
	seq     *cep.State[*Event] // sequence
	seqIdle bool
	cleanup int64 // look-back, baseline: the armed cleanup timer, 0 if none
}

// armCleanup arms the timer at which a look-back's or a profile's entries
// are all gone, unless one is armed: one timer per rule and key at a
// time, re-armed when it fires on a state that has grown since. Between
// timers, entries expire as events arrive.
func (st *State) armCleanup(timers Timers, t int64) {
	if st.cleanup == 0 {
		st.cleanup = t
		timers.Register(t)
	}
}

// NewState is the empty state of r for a key; key maps the key fields to
// the key's values (shared by every state of the key, and by its alerts).
func (r *Rule) NewState(key map[string]any) *State {
	st := &State{key: key}
	switch {
	case r.Kind == KindAggregate && r.window.typ == Lookback:
		st.look = newLookback(r.fns, false)
	case r.Kind == KindAggregate && r.window.typ == Session:
	case r.Kind == KindAggregate:
		st.wins = map[int64]*accs{}
	case r.Kind == KindBaseline:
		st.prof = newProfileState(&r.profile)
	}
	return st
}

// Stateless reports whether r keeps nothing between events (a filter
// without dedupe): its owner need not hold a State per key for it.
func (r *Rule) Stateless() bool { return r.Kind == KindFilter && r.dedupe == 0 }

// KeyOf maps r's key fields to their values in fields.
func (r *Rule) KeyOf(fields map[string]any) map[string]any {
	key := make(map[string]any, len(r.Key))
	for _, k := range r.Key {
		key[k] = fields[k]
	}
	return key
}

// Empty reports whether st holds nothing a later event or timer needs,
// so its owner may drop it.
func (st *State) Empty() bool {
	switch {
	case st.look != nil:
		return st.look.len() == 0 && !st.alerted
	case st.wins != nil:
		return len(st.wins) == 0 && !st.alerted
	case st.prof != nil:
		return st.prof.empty() && !st.alerted
	case st.seq != nil:
		return st.seqIdle && !st.alerted
	}
	return st.session == nil && !st.alerted
}

// Runner evaluates compiled rules. It holds the expression VM and the
// environment scratch, so it is not safe for concurrent use: give each
// goroutine (each subtask) its own.
type Runner struct {
	nfas   map[*Rule]*cep.NFA[*Event] // sequence automata, whose conditions run here
	seqErr error                      // the first condition error of a Process
	vm     vm.VM
	env    Env
	ins    []aggInput
	stats  []Stats
	global []Stats
	// mute makes a firing evaluate nothing and raise nothing: a paused
	// rule's timers only move its state on (see KeyGroup).
	mute bool
}

// NewRunner is a Runner with its scratch allocated.
func NewRunner() *Runner {
	r := &Runner{env: Env{Agg: map[string]float64{}, Stats: map[string]*Stats{}, Global: map[string]*Stats{}, Hist: map[string][]any{},
		Seen: map[string]map[any]int64{}}}
	r.vm.MemoryBudget = memoryBudget
	return r
}

// Timers is where a rule asks to be called back: OnTimer(t) once the
// watermark reaches t. Registering the same t twice for a key must fire
// once (runtime event-time timers behave so).
type Timers interface {
	Register(t int64)
}

func (rn *Runner) run(p *program) (any, error) {
	if p.onEvent {
		return rn.vm.Run(p.p, rn.env.E)
	}
	return rn.vm.Run(p.p, &rn.env)
}

func (rn *Runner) runBool(p *program) (bool, error) {
	v, err := rn.run(p)
	if err != nil {
		return false, err
	}
	b, _ := v.(bool)
	return b, nil
}

// bind sets the environment for r and ev.
func (rn *Runner) bind(r *Rule, ev *Event) {
	rn.env.E, rn.env.TS, rn.env.P, rn.env.Lists = ev.Fields, ev.TS, r.params, r.lists
	rn.env.Prev = nil
}

// OnEvent evaluates r on ev with the key's state st, appends the alerts to
// out, and asks timers for the window ends it must hear about. The result
// depends only on (ev, st, r's params): no clock, no randomness. An error
// leaves st as it was before the event only for filter and lookback
// rules; the caller counts it and sends the event to its dead letters.
func (rn *Runner) OnEvent(r *Rule, st *State, ev *Event, timers Timers, out []Alert) ([]Alert, error) {
	out, err := rn.onEvent(r, st, ev, timers, out)
	if st.alerted {
		// Dedupe holds the state until its interval has passed.
		timers.Register(st.lastAlert + r.dedupe)
	}
	return out, err
}

func (rn *Runner) onEvent(r *Rule, st *State, ev *Event, timers Timers, out []Alert) ([]Alert, error) {
	rn.bind(r, ev)
	if r.when != nil {
		ok, err := rn.runBool(r.when)
		if err != nil || !ok {
			return out, wrap(r, "when", err)
		}
	}
	switch r.Kind {
	case KindFilter:
		return rn.hit(r, st, ev.TS, nil, out)
	case KindAggregate:
		return rn.aggregateEvent(r, st, ev, timers, out)
	case KindBaseline:
		return rn.baselineEvent(r, st, ev, timers, out)
	case KindSequence:
		return rn.sequenceEvent(r, st, ev, timers, out)
	}
	return out, fmt.Errorf("rule %s: unknown kind", r.ID)
}

// OnTimer fires the windows of st that end at t+1, times out the partial
// matches of a sequence at t (which may ask for the next timer), or drops
// from a look-back or a profile what is older than its size or horizon
// at t, so that a key whose state is all gone is Empty.
func (rn *Runner) OnTimer(r *Rule, st *State, t int64, timers Timers, out []Alert) ([]Alert, error) {
	if st.alerted && t >= st.lastAlert+r.dedupe {
		st.alerted = false
	}
	switch r.Kind {
	case KindAggregate:
		if st.look != nil {
			if t == st.cleanup {
				st.look.expire(t - r.window.size)
				st.cleanup = 0
				if n := len(st.look.ts); n > 0 {
					st.armCleanup(timers, st.look.ts[n-1]+r.window.size)
				}
			}
			return out, nil
		}
		return rn.aggregateTimer(r, st, t, timers, out)
	case KindBaseline:
		if t == st.cleanup {
			st.prof.expire(&r.profile, t)
			st.cleanup = 0
			if !st.prof.empty() {
				st.armCleanup(timers, st.prof.prevTS+r.profile.keep())
			}
		}
		return out, nil
	case KindSequence:
		rn.bind(r, &Event{TS: t})
		return rn.sequenceTimer(r, st, t, timers, out)
	}
	return out, nil
}

// hit evaluates the condition (the environment is bound) and emits.
func (rn *Runner) hit(r *Rule, st *State, ts int64, win *Bounds, out []Alert) ([]Alert, error) {
	if rn.mute {
		return out, nil
	}
	ok, err := rn.runBool(r.cond)
	if err != nil || !ok {
		return out, wrap(r, "condition", err)
	}
	return rn.emit(r, st, ts, win, out)
}

// emit appends the alert of a hit, unless dedupe holds it back.
func (rn *Runner) emit(r *Rule, st *State, ts int64, win *Bounds, out []Alert) ([]Alert, error) {
	if rn.mute {
		return out, nil
	}
	if r.dedupe > 0 && st.alerted && ts < st.lastAlert+r.dedupe {
		return out, nil
	}
	key := st.key
	if key == nil { // a stateless rule's shared State
		key = r.KeyOf(rn.env.E)
	}
	a := Alert{Rule: r.ID, Version: r.Version, Key: key, Time: ts, Action: r.Action, Shadow: r.State == "shadow", Window: win,
		Priority: r.priority}
	if len(r.fields) > 0 {
		a.Fields = make(map[string]any, len(r.fields))
		for _, f := range r.fields {
			v, err := rn.run(f.prog)
			if err != nil {
				return out, wrap(r, "emit.fields."+f.name, err)
			}
			a.Fields[f.name] = jsonSafe(v)
		}
	} else if r.Kind == KindAggregate {
		// Without fields, the evidence of an aggregate is its values.
		a.Fields = make(map[string]any, len(rn.env.Agg))
		for k, v := range rn.env.Agg {
			a.Fields[k] = jsonSafe(v)
		}
	}
	if r.dedupe > 0 {
		st.alerted, st.lastAlert = true, ts
	}
	return append(out, a), nil
}

// jsonSafe replaces what encoding/json refuses (NaN, ±Inf) with nil.
func jsonSafe(v any) any {
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return nil
	}
	return v
}

// EvalError is an expression that failed on an event: the rule and the
// part, with expr's reason.
type EvalError struct {
	Rule    string
	Version int64
	Part    string
	Err     error
}

func (e *EvalError) Error() string {
	msg := e.Err.Error()
	// expr's runtime errors carry a multi-line snippet; one line is
	// what a dead-letter record and a terminal want.
	var fe *file.Error
	if errors.As(e.Err, &fe) {
		msg = fe.Message
	}
	return fmt.Sprintf("rule %s version %d: %s: %s", e.Rule, e.Version, e.Part, msg)
}

func (e *EvalError) Unwrap() error { return e.Err }

func wrap(r *Rule, part string, err error) error {
	if err == nil {
		return nil
	}
	return &EvalError{Rule: r.ID, Version: r.Version, Part: part, Err: err}
}

// number converts an expression's value to float64 for an aggregate.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float32:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case bool:
		return 0, false
	}
	return 0, false
}
