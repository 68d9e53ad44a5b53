package rules

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/weirstream/weir/runtime/cep"
)

// PatternSpec is a sequence rule's pattern: runtime/cep's pattern API
// written as data, with Flink CEP's semantics.
type PatternSpec struct {
	Skip   string `yaml:"skip"`
	Within *struct {
		Size Duration `yaml:"size"`
		Type string   `yaml:"type"`
	} `yaml:"within"`
	Steps     []StepSpec   `yaml:"steps"`
	OnTimeout *TimeoutSpec `yaml:"onTimeout"`
}

// TimeoutSpec is what a partial match that `within` discards produces: an
// alert marked timedOut, with its own action and evidence (fields see the
// partial match as m and its last event as e).
type TimeoutSpec struct {
	Action string          `yaml:"action"`
	Fields map[string]Expr `yaml:"fields"`
	// Sink is the draft's name for where they go; refused, as rules do
	// not choose sinks (the job sends timed-out matches to their output).
	Sink any `yaml:"sink"`
}

// StepSpec is one step of a pattern.
type StepSpec struct {
	Name         string    `yaml:"name"`
	After        string    `yaml:"after"`
	Where        Expr      `yaml:"where"`
	Times        TimesSpec `yaml:"times"`
	OneOrMore    bool      `yaml:"oneOrMore"`
	Optional     bool      `yaml:"optional"`
	Greedy       bool      `yaml:"greedy"`
	Consecutive  bool      `yaml:"consecutive"`
	Combinations bool      `yaml:"combinations"`
	Until        Expr      `yaml:"until"`
}

// TimesSpec is `times: n` or `times: [from, to]`.
type TimesSpec struct {
	From, To int
	Set      bool
}

// UnmarshalYAML reads either form.
func (t *TimesSpec) UnmarshalYAML(n *yaml.Node) error {
	var one int
	if n.Kind == yaml.ScalarNode && n.Decode(&one) == nil {
		*t = TimesSpec{From: one, To: one, Set: true}
		return nil
	}
	var two []int
	if n.Kind == yaml.SequenceNode && n.Decode(&two) == nil && len(two) == 2 {
		*t = TimesSpec{From: two[0], To: two[1], Set: true}
		return nil
	}
	return fmt.Errorf("line %d: times: want a count (3) or a range ([2, 4])", n.Line)
}

// seqPattern is a compiled pattern: the steps' programs, from which each
// Runner builds its own automaton (the conditions run on its VM).
type seqPattern struct {
	spec   *PatternSpec
	steps  []seqStep
	skip   cep.SkipStrategy
	window int64
	// onTimeout: alerts for timed-out partial matches, with this action
	// and these fields.
	onTimeout     bool
	timeoutAction string
	timeoutFields []namedProgram
}

type seqStep struct {
	where, until *program
}

// usesMatch reports whether p reads m, the events accepted so far: such a
// condition is iterative (Flink's IterativeCondition) and gets them.
func (p *program) usesMatch() bool { return p.readsM }

var afters = []string{"next", "followedBy", "followedByAny", "notNext", "notFollowedBy"}

func (c *compiler) sequence() error {
	s, p := c.s, c.s.Pattern
	if p == nil || len(p.Steps) == 0 {
		return s.errorf(s.lineOf(), "a sequence rule needs a pattern with steps")
	}
	sp := &seqPattern{spec: p}
	switch {
	case p.Skip == "" || p.Skip == "pastLastEvent":
		// One alert per episode: Flink's default, NoSkip, would alert
		// again for every overlapping match.
		sp.skip = cep.SkipPastLastEvent()
	case p.Skip == "noSkip":
		sp.skip = cep.NoSkip()
	case p.Skip == "toNext":
		sp.skip = cep.SkipToNext()
	case strings.HasPrefix(p.Skip, "toFirst:"):
		sp.skip = cep.SkipToFirst(strings.TrimPrefix(p.Skip, "toFirst:"))
	case strings.HasPrefix(p.Skip, "toLast:"):
		sp.skip = cep.SkipToLast(strings.TrimPrefix(p.Skip, "toLast:"))
	default:
		return s.errorf(s.lineOf("pattern", "skip"), "pattern.skip %q: want noSkip, toNext, pastLastEvent, toFirst:<step> or toLast:<step>", p.Skip)
	}
	if w := p.Within; w != nil {
		if w.Size.D <= 0 {
			return s.errorf(s.lineOf("pattern", "within"), "pattern.within.size must be a positive duration")
		}
		if w.Type != "" && w.Type != "firstAndLast" {
			return s.errorf(s.lineOf("pattern", "within"), "pattern.within.type %q: only firstAndLast is supported", w.Type)
		}
		sp.window = w.Size.D.Milliseconds()
	}
	names := map[string]bool{}
	for i, st := range p.Steps {
		line := s.lineOf("pattern", "steps", fmt.Sprint(i))
		what := fmt.Sprintf("pattern.steps[%d]", i)
		if !idPattern.MatchString(st.Name) || names[st.Name] {
			return s.errorf(line, "%s: name %q is empty, repeated or not letters, digits, '.', '_' or '-'", what, st.Name)
		}
		names[st.Name] = true
		if i == 0 && st.After != "" {
			return s.errorf(line, "%s: the first step has no `after`", what)
		}
		if i > 0 && !slices.Contains(afters, st.After) {
			return s.errorf(line, "%s: after %q: want %s", what, st.After, strings.Join(afters, ", "))
		}
		if st.Where.Src == "" {
			return s.errorf(line, "%s: where is missing", what)
		}
		var ss seqStep
		var err error
		if ss.where, err = c.compile(what+".where", st.Where, true, scopeSequence); err != nil {
			return err
		}
		if st.Until.Src != "" {
			if ss.until, err = c.compile(what+".until", st.Until, true, scopeSequence); err != nil {
				return err
			}
		}
		sp.steps = append(sp.steps, ss)
	}
	if err := c.onTimeout(sp); err != nil {
		return err
	}
	c.r.pattern = sp
	// Build once here so a pattern Flink would reject is refused now,
	// with cep's reason, rather than in a Runner.
	if _, err := sp.build(nil); err != nil {
		return s.errorf(s.lineOf("pattern"), "pattern: %v", err)
	}
	return nil
}

// onTimeout compiles pattern.onTimeout into sp.
func (c *compiler) onTimeout(sp *seqPattern) error {
	s, o := c.s, c.s.Pattern.OnTimeout
	if o == nil {
		return nil
	}
	line := s.lineOf("pattern", "onTimeout")
	switch {
	case sp.window == 0:
		return s.errorf(line, "pattern.onTimeout needs pattern.within: only a window times a partial match out")
	case o.Sink != nil:
		return s.errorf(s.lineOf("pattern", "onTimeout", "sink"), "pattern.onTimeout.sink: a rule does not choose sinks; "+
			"timed-out matches are alerts marked timedOut, which the rules job writes to <output>/timeouts/")
	}
	sp.onTimeout, sp.timeoutAction = true, o.Action
	switch o.Action {
	case "":
		sp.timeoutAction = c.r.Action
	case "alert", "review", "block", "allow", "tag":
	default:
		return s.errorf(s.lineOf("pattern", "onTimeout", "action"), "pattern.onTimeout.action %q: want alert, review, block, allow or tag", o.Action)
	}
	for _, name := range slices.Sorted(maps.Keys(o.Fields)) {
		p, err := c.compile("pattern.onTimeout.fields."+name, o.Fields[name], false, scopeSequence)
		if err != nil {
			return err
		}
		sp.timeoutFields = append(sp.timeoutFields, namedProgram{name, p})
	}
	return nil
}

// build compiles the automaton whose conditions run on rn (nil: for
// checking only).
func (sp *seqPattern) build(rn *Runner) (*cep.NFA[*Event], error) {
	eval := func(p *program, ev *Event) bool {
		if rn == nil {
			return false
		}
		rn.env.E, rn.env.TS = ev.Fields, ev.TS
		ok, err := rn.runBool(p)
		if err != nil && rn.seqErr == nil {
			rn.seqErr = err
		}
		return ok
	}
	cond := func(p *program) func(*Event) bool {
		return func(ev *Event) bool { return eval(p, ev) }
	}
	names := make([]string, len(sp.spec.Steps))
	for i, st := range sp.spec.Steps {
		names[i] = st.Name
	}
	iterative := func(p *program) func(*Event, cep.Context[*Event]) bool {
		return func(ev *Event, ctx cep.Context[*Event]) bool {
			if rn == nil {
				return false
			}
			m := make(map[string][]map[string]any, len(names))
			for _, name := range names {
				evs := ctx.Events(name)
				l := make([]map[string]any, len(evs))
				for i, e := range evs {
					l[i] = e.Fields
				}
				m[name] = l
			}
			rn.env.M = m
			ok := eval(p, ev)
			rn.env.M = nil
			return ok
		}
	}
	var pat *cep.Pattern[*Event]
	for i, st := range sp.spec.Steps {
		switch st.After {
		case "":
			pat = cep.Begin[*Event](st.Name, sp.skip)
		case "next":
			pat = pat.Next(st.Name)
		case "followedBy":
			pat = pat.FollowedBy(st.Name)
		case "followedByAny":
			pat = pat.FollowedByAny(st.Name)
		case "notNext":
			pat = pat.NotNext(st.Name)
		case "notFollowedBy":
			pat = pat.NotFollowedBy(st.Name)
		}
		if w := sp.steps[i].where; w.usesMatch() {
			pat = pat.WhereCtx(iterative(w))
		} else {
			pat = pat.Where(cond(w))
		}
		switch {
		case st.Times.Set && st.Times.From == st.Times.To:
			pat = pat.Times(st.Times.From)
		case st.Times.Set:
			pat = pat.TimesRange(st.Times.From, st.Times.To)
		}
		if st.OneOrMore {
			pat = pat.OneOrMore()
		}
		if st.Optional {
			pat = pat.Optional()
		}
		if st.Greedy {
			pat = pat.Greedy()
		}
		if st.Consecutive {
			pat = pat.Consecutive()
		}
		if st.Combinations {
			pat = pat.AllowCombinations()
		}
		if u := sp.steps[i].until; u != nil && u.usesMatch() {
			pat = pat.UntilCtx(iterative(u))
		} else if u != nil {
			pat = pat.Until(cond(u))
		}
	}
	if sp.window > 0 {
		pat = pat.Within(msDuration(sp.window))
	}
	return pat.Compile()
}

// nfa is r's automaton on this Runner, built on first use.
func (rn *Runner) nfa(r *Rule) (*cep.NFA[*Event], error) {
	if n, ok := rn.nfas[r]; ok {
		return n, nil
	}
	n, err := r.pattern.build(rn)
	if err != nil {
		return nil, err
	}
	if rn.nfas == nil {
		rn.nfas = map[*Rule]*cep.NFA[*Event]{}
	}
	rn.nfas[r] = n
	return n, nil
}

func (rn *Runner) sequenceEvent(r *Rule, st *State, ev *Event, timers Timers, out []Alert) ([]Alert, error) {
	n, err := rn.nfa(r)
	if err != nil {
		return out, wrap(r, "pattern", err)
	}
	if st.seq == nil {
		st.seq = n.NewState()
	}
	rn.seqErr = nil
	ns, res, err := n.Process(st.seq, ev, ev.TS)
	if err != nil {
		return out, wrap(r, "pattern", err)
	}
	st.seq = ns
	if rn.seqErr != nil {
		// The failing condition counted as false; the match goes on
		// without that event.
		err = wrap(r, "pattern.where", rn.seqErr)
	}
	out, merr := rn.matches(r, st, res.Matches, ev.TS, out)
	if merr == nil {
		out, merr = rn.timedOut(r, st, res.TimedOut, out)
	}
	rn.armSequence(n, st, timers)
	if err == nil {
		err = merr
	}
	return out, err
}

func (rn *Runner) sequenceTimer(r *Rule, st *State, t int64, timers Timers, out []Alert) ([]Alert, error) {
	if st.seq == nil {
		return out, nil
	}
	n, err := rn.nfa(r)
	if err != nil {
		return out, wrap(r, "pattern", err)
	}
	ns, res, err := n.Advance(st.seq, t)
	if err != nil {
		return out, wrap(r, "pattern", err)
	}
	st.seq = ns
	out, err = rn.matches(r, st, res.Matches, t, out)
	if err == nil {
		out, err = rn.timedOut(r, st, res.TimedOut, out)
	}
	rn.armSequence(n, st, timers)
	return out, err
}

// armSequence asks for a timer at the next timeout, and marks an idle
// state so its owner may drop it.
func (rn *Runner) armSequence(n *cep.NFA[*Event], st *State, timers Timers) {
	st.seqIdle = n.Idle(st.seq)
	if t, ok := n.NextTimeout(st.seq); ok && timers != nil {
		timers.Register(t)
	}
}

// bindMatch sets m to the events each step of m accepted and e to its
// last event.
func (rn *Runner) bindMatch(m cep.Match[*Event]) {
	mm := make(map[string][]map[string]any, len(m))
	var last *Event
	for name, evs := range m {
		l := make([]map[string]any, len(evs))
		for i, e := range evs {
			l[i] = e.Fields
			if last == nil || e.TS > last.TS {
				last = e
			}
		}
		mm[name] = l
	}
	rn.env.M = mm
	if last != nil {
		rn.env.E, rn.env.TS = last.Fields, last.TS
	}
}

// stepTimes is the default evidence of a match: each step's event times.
func stepTimes(m cep.Match[*Event]) map[string]any {
	f := make(map[string]any, len(m))
	for name, evs := range m {
		t := make([]int64, len(evs))
		for i, e := range evs {
			t[i] = e.TS
		}
		f[name] = t
	}
	return f
}

// matches turns completed matches into alerts: m.<step> is the events each
// step accepted; the condition, if any, filters them.
func (rn *Runner) matches(r *Rule, st *State, ms []cep.Match[*Event], ts int64, out []Alert) ([]Alert, error) {
	for _, m := range ms {
		rn.bindMatch(m)
		var err error
		n := len(out)
		if r.cond != nil {
			out, err = rn.hit(r, st, ts, nil, out)
		} else {
			out, err = rn.emit(r, st, ts, nil, out)
		}
		if err != nil {
			return out, err
		}
		if len(out) > n && len(r.fields) == 0 {
			out[len(out)-1].Fields = stepTimes(m)
		}
	}
	rn.env.M = nil
	return out, nil
}

// timedOut turns the partial matches that within discarded into alerts
// marked TimedOut, if the rule asks for them (pattern.onTimeout): the
// time is when the match timed out (its first event's plus the window),
// the evidence onTimeout's fields or each step's event times. Neither the
// condition nor dedupe applies: a timeout is not a match.
func (rn *Runner) timedOut(r *Rule, st *State, tos []cep.TimedOut[*Event], out []Alert) ([]Alert, error) {
	sp := r.pattern
	if !sp.onTimeout || len(tos) == 0 {
		return out, nil
	}
	defer func() { rn.env.M = nil }()
	for i, to := range tos {
		// The automaton may hold the same partial match in two of its
		// states (a looping step's); one alert each.
		if slices.ContainsFunc(tos[:i], func(o cep.TimedOut[*Event]) bool { return sameTimeout(o, to) }) {
			continue
		}
		rn.bindMatch(to.Match)
		a := Alert{Rule: r.ID, Version: r.Version, Key: st.key, Time: to.Timestamp, Action: sp.timeoutAction,
			Shadow: r.State == "shadow", TimedOut: true}
		if len(sp.timeoutFields) == 0 {
			a.Fields = stepTimes(to.Match)
		} else {
			a.Fields = make(map[string]any, len(sp.timeoutFields))
			for _, f := range sp.timeoutFields {
				v, err := rn.run(f.prog)
				if err != nil {
					return out, wrap(r, "pattern.onTimeout.fields."+f.name, err)
				}
				a.Fields[f.name] = jsonSafe(v)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// sameTimeout reports whether a and b are the same partial match (the
// same events at each step) timed out at the same time.
func sameTimeout(a, b cep.TimedOut[*Event]) bool {
	if a.Timestamp != b.Timestamp || len(a.Match) != len(b.Match) {
		return false
	}
	for name, evs := range a.Match {
		if !slices.Equal(evs, b.Match[name]) {
			return false
		}
	}
	return true
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
