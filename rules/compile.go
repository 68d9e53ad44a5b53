package rules

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Kind is what a rule computes.
type Kind uint8

// The rule kinds. Sequence and profile rules of the draft format are not
// implemented yet and are refused by name.
const (
	KindFilter Kind = iota + 1
	KindAggregate
	KindBaseline
	KindSequence
)

func (k Kind) String() string {
	switch k {
	case KindFilter:
		return "filter"
	case KindAggregate:
		return "aggregate"
	case KindBaseline:
		return "baseline"
	case KindSequence:
		return "sequence"
	}
	return "unknown"
}

// WindowType is an aggregate rule's window.
type WindowType uint8

// Window types: tumbling, sliding and session windows close when the
// watermark passes their end; a lookback window is the events of the last
// `size` up to and including the current one, evaluated on every event.
const (
	Tumbling WindowType = iota + 1
	Sliding
	Session
	Lookback
)

// maxNodes bounds an expression's AST; memoryBudget bounds what one run
// may allocate (expr's own defaults, set explicitly so they are visible).
const (
	maxNodes     = 10_000
	memoryBudget = 1_000_000
	// maxWindowsPerEvent bounds size/slide of a sliding window: each
	// event updates that many windows.
	maxWindowsPerEvent = 1000
	maxLastN           = 10_000
)

// Rule is a compiled rule: immutable once compiled, shared by every
// Runner that evaluates it.
type Rule struct {
	ID      string
	Version int64
	Kind    Kind
	// State is active, shadow (alerts marked shadow) or paused (not
	// evaluated).
	State  string
	Action string
	Key    []string

	params  map[string]any
	lists   map[string]List
	when    *program
	cond    *program
	fields  []namedProgram
	dedupe  int64 // ms; 0 = every hit alerts
	aggs    []aggregate
	fns     []aggFn // the aggregates' functions, in order
	derived []namedProgram
	window  window
	reset   bool
	profile profile
	pattern *seqPattern
	spec    *Spec
	guard   *guard // the leading equality an Engine indexes (index.go)
	drift   DriftSpec
	digest  uint64 // set by CompileDocs (see Set.Digest); 0 otherwise
	stateID string // set by CompileDocs; "" otherwise
	// priority is emit.priority: nil if the rule takes no part in
	// decisions (decide.go).
	priority *int
}

// Drift is the rule's own drift parameters; zero fields are the job's.
func (r *Rule) Drift() DriftSpec { return r.drift }

type namedProgram struct {
	name string
	prog *program
}

type aggFn uint8

const (
	fnCount aggFn = iota + 1
	fnSum
	fnAvg
	fnMin
	fnMax
	fnCountDistinct
)

var aggFns = map[string]aggFn{"count": fnCount, "sum": fnSum, "avg": fnAvg, "min": fnMin, "max": fnMax, "countDistinct": fnCountDistinct}

type aggregate struct {
	name  string
	fn    aggFn
	of    *program // nil for count
	where *program // nil = every event
}

type window struct {
	typ                      WindowType
	size, slide, gap, offset int64 // ms
	lateness                 int64 // ms a fired window is kept for late events
}

type profile struct {
	horizon int64 // ms
	stats   []string
	lastN   []lastN
	seen    []string
	// global statistics: over every event of the rule (key: []), with
	// their own horizon.
	global        []string
	globalHorizon int64 // ms
}

// keep is how long the profile keeps anything: its longest horizon.
func (p *profile) keep() int64 { return max(p.horizon, p.globalHorizon) }

type lastN struct {
	field string
	n     int
}

// Spec is the document the rule was compiled from.
func (r *Rule) Spec() *Spec { return r.spec }

// Source is the rule's document as YAML: with the version, what a store
// of rules (etcd, broadcast state) keeps, and Compile turns back into the
// same rule.
func (r *Rule) Source() []byte { return r.spec.source }

// Set is a compiled set of rules and the lists they read.
type Set struct {
	Rules []*Rule
	Lists map[string]List

	lists []*Spec // the list documents, for Append
	// listsKey is the hash of the lists (CompileDocs), under which the
	// rules reading them are cached; zero for a set compiled otherwise.
	listsKey [32]byte
	// enc is the set's SetCodec encoding once made: broadcast state
	// writes the same set into checkpoint after checkpoint.
	enc atomic.Pointer[[]byte]
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Compile checks and compiles specs: list documents first, then every
// rule, whose inline tests must pass. Every refused document is reported,
// each as an *Error with its file and line.
func Compile(specs []*Spec) (*Set, error) { return compile(specs, true) }

// CompileStored compiles specs that were checked, inline tests included,
// when they were stored (in etcd, in broadcast state): their tests are
// not run again.
func CompileStored(specs []*Spec) (*Set, error) { return compile(specs, false) }

// Source is the document as YAML, what a store of rules keeps.
func (s *Spec) Source() []byte { return s.source }

// File is where the document came from.
func (s *Spec) File() string { return s.file }

// addLists compiles the list documents of specs into set, noting each
// id's place in ids; added, if set, hears each list taken with its
// position in specs.
func (set *Set) addLists(specs []*Spec, ids map[string]string, added func(i int, s *Spec)) []error {
	var errs []error
	for i, s := range specs {
		if s.Kind != "list" {
			continue
		}
		l, err := compileList(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if where, dup := ids[s.ID]; dup {
			errs = append(errs, s.errorf(s.lineOf("id"), "list %s is also defined at %s", s.ID, where))
			continue
		}
		ids[s.ID] = fmt.Sprintf("%s:%d", s.file, s.lineOf())
		set.Lists[s.ID] = l
		set.lists = append(set.lists, s)
		if added != nil {
			added(i, s)
		}
	}
	return errs
}

func compile(specs []*Spec, tests bool) (*Set, error) {
	set := &Set{Lists: map[string]List{}}
	ids := map[string]string{}
	errs := set.addLists(specs, ids, nil)
	for _, s := range specs {
		if s.Kind == "list" {
			continue
		}
		r, err := compileRule(s, set.Lists)
		if err == nil && tests {
			err = runInlineTests(r, set.Lists)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if where, dup := ids[s.ID]; dup {
			errs = append(errs, s.errorf(s.lineOf("id"), "id %s is also used at %s", s.ID, where))
			continue
		}
		ids[s.ID] = fmt.Sprintf("%s:%d", s.file, s.lineOf())
		set.Rules = append(set.Rules, r)
	}
	return set, errors.Join(errs...)
}

func (s *Spec) errorf(line int, format string, args ...any) *Error {
	return &Error{File: s.file, Line: line, Rule: s.ID, Msg: fmt.Sprintf(format, args...)}
}

func compileList(s *Spec) (List, error) {
	if !idPattern.MatchString(s.ID) {
		return nil, s.errorf(s.lineOf("id"), "a list needs an id of letters, digits, '.', '_' or '-' (got %q)", s.ID)
	}
	for _, f := range []string{"key", "params", "condition", "when", "window", "aggregates", "profile", "emit", "tests"} {
		if child(s.node, f) != nil {
			return nil, s.errorf(s.lineOf(f), "%s does not belong in a list document (kind: list has id and items)", f)
		}
	}
	l := make(List, len(s.Items))
	for i := range s.Items {
		n := &s.Items[i]
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, s.errorf(n.Line, "items[%d]: %v", i, err)
		}
		switch v.(type) {
		case string, int, int64, uint64, float64, bool:
		default:
			return nil, s.errorf(n.Line, "items[%d]: want a string, number or boolean", i)
		}
		l[normValue(v)] = struct{}{}
	}
	return l, nil
}

// compileRule validates s and compiles its expressions.
func compileRule(s *Spec, lists map[string]List) (*Rule, error) {
	r := &Rule{ID: s.ID, Version: s.Version, State: s.State, Action: s.Emit.Action, Key: s.Key, spec: s, lists: lists}
	if s.APIVersion != "" && s.APIVersion != APIVersion {
		return nil, s.errorf(s.lineOf("apiVersion"), "apiVersion %q: want %s", s.APIVersion, APIVersion)
	}
	if !idPattern.MatchString(s.ID) {
		return nil, s.errorf(s.lineOf("id"), "a rule needs an id of letters, digits, '.', '_' or '-', at most 128 (got %q)", s.ID)
	}
	if s.Version < 0 {
		return nil, s.errorf(s.lineOf("version"), "version %d: must be positive", s.Version)
	}
	if r.Version == 0 {
		r.Version = 1
	}
	switch s.State {
	case "":
		r.State = "active"
	case "active", "shadow", "paused":
	default:
		return nil, s.errorf(s.lineOf("state"), "state %q: want active, shadow or paused", s.State)
	}
	switch s.Time {
	case "", "event":
	case "processing":
		return nil, s.errorf(s.lineOf("time"), "time: processing is not supported: rules run on event time, so a replay gives the same alerts")
	default:
		return nil, s.errorf(s.lineOf("time"), "time %q: want event", s.Time)
	}
	// Refused by design, with the reason (README, "Compared with the first
	// draft of the format").
	switch {
	case s.Emit.Sinks != nil:
		return nil, s.errorf(s.lineOf("emit", "sinks"), "emit.sinks: a rule does not choose sinks: rules change while the job runs, "+
			"its sinks are fixed when it is submitted (its sink parameter); every alert goes to them")
	case s.Emit.Format != nil:
		return nil, s.errorf(s.lineOf("emit", "format"), "emit.format: alerts are JSON lines in every sink, whatever rule raised them; "+
			"put the evidence in emit.fields")
	}
	unsupported := map[string]any{"history": s.History, "serve": s.Serve}
	for _, f := range slices.Sorted(maps.Keys(unsupported)) {
		if unsupported[f] != nil {
			return nil, s.errorf(s.lineOf(strings.Split(f, ".")...), "%s is not supported yet", f)
		}
	}
	if len(s.Items) > 0 {
		return nil, s.errorf(s.lineOf("items"), "items belong in a kind: list document")
	}
	seenKey := map[string]bool{}
	for i, k := range s.Key {
		if k == "" || seenKey[k] {
			return nil, s.errorf(s.lineOf("key", fmt.Sprint(i)), "key: field %q is empty or repeated", k)
		}
		seenKey[k] = true
	}
	switch s.Emit.Action {
	case "":
		r.Action = "alert"
	case "alert", "review", "block", "allow", "tag":
	default:
		return nil, s.errorf(s.lineOf("emit", "action"), "emit.action %q: want alert, review, block, allow or tag", s.Emit.Action)
	}
	if d := s.Emit.Dedupe; d != nil {
		if d.For.D <= 0 {
			return nil, s.errorf(s.lineOf("emit", "dedupe"), "emit.dedupe.for must be a positive duration")
		}
		r.dedupe = d.For.D.Milliseconds()
	}
	if p := s.Emit.Priority; p != nil {
		if *p < 0 || *p > 1_000_000 {
			return nil, s.errorf(s.lineOf("emit", "priority"), "emit.priority %d: want 0 to 1000000 (lower wins)", *p)
		}
		r.priority = p
	}
	r.params = make(map[string]any, len(s.Params))
	for k, p := range s.Params {
		r.params[k] = p.V
	}

	c := &compiler{s: s, r: r}
	switch s.Kind {
	case "filter":
		r.Kind = KindFilter
	case "aggregate":
		r.Kind = KindAggregate
	case "baseline":
		r.Kind = KindBaseline
	case "sequence":
		r.Kind = KindSequence
	case "profile":
		return nil, s.errorf(s.lineOf("kind"), "kind %s is not supported yet", s.Kind)
	case "":
		return nil, s.errorf(s.lineOf(), "kind is missing: want filter, aggregate, baseline, sequence or list")
	default:
		return nil, s.errorf(s.lineOf("kind"), "kind %q: want filter, aggregate, baseline, sequence or list", s.Kind)
	}
	if err := c.kindFields(); err != nil {
		return nil, err
	}
	var err error
	if s.When.Src != "" {
		if r.when, err = c.compile("when", s.When, true, scopeEvent); err != nil {
			return nil, err
		}
	}
	if s.Condition.Src == "" && s.Kind != "sequence" {
		return nil, s.errorf(s.lineOf(), "condition is missing")
	}
	scope := scopeEvent
	switch r.Kind {
	case KindAggregate:
		if err := c.aggregate(); err != nil {
			return nil, err
		}
		scope = scopeAgg
	case KindBaseline:
		if err := c.baseline(); err != nil {
			return nil, err
		}
		scope = scopeBaseline
	case KindSequence:
		if err := c.sequence(); err != nil {
			return nil, err
		}
		scope = scopeSequence
	}
	if s.Condition.Src != "" {
		if r.cond, err = c.compile("condition", s.Condition, true, scope); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Emit.Fields)) {
		p, err := c.compile("emit.fields."+name, s.Emit.Fields[name], false, scope)
		if err != nil {
			return nil, err
		}
		r.fields = append(r.fields, namedProgram{name, p})
	}
	if d := s.Drift; d != nil {
		switch {
		case d.Factor != 0 && !(d.Factor > 1 && d.Factor < math.Inf(1)):
			return nil, s.errorf(s.lineOf("drift", "factor"), "drift.factor %v: must be above 1", d.Factor)
		case d.Window < 0 || d.Window > 10000:
			return nil, s.errorf(s.lineOf("drift", "window"), "drift.window %d: must be from 1 to 10000 intervals", d.Window)
		case d.MinEvaluations < 0:
			return nil, s.errorf(s.lineOf("drift", "minEvaluations"), "drift.minEvaluations %d: must be positive", d.MinEvaluations)
		}
		r.drift = *d
	}
	r.guard = guardOf(r)
	return r, nil
}

// kindFields refuses fields that belong to another kind.
func (c *compiler) kindFields() error {
	s := c.s
	own := map[string]Kind{"window": KindAggregate, "aggregates": KindAggregate, "derived": KindAggregate,
		"evaluate": KindAggregate, "resetOnFire": KindAggregate, "lateness": KindAggregate, "profile": KindBaseline, "global": KindBaseline, "pattern": KindSequence}
	for _, f := range slices.Sorted(maps.Keys(own)) {
		if k := own[f]; k != c.r.Kind && child(s.node, f) != nil {
			return s.errorf(s.lineOf(f), "%s belongs to kind %s, not %s", f, k, c.r.Kind)
		}
	}
	return nil
}

func (c *compiler) aggregate() error {
	s, r := c.s, c.r
	if s.Window == nil {
		return s.errorf(s.lineOf(), "an aggregate rule needs a window")
	}
	if err := c.windowSpec(); err != nil {
		return err
	}
	if len(s.Aggregates) == 0 {
		return s.errorf(s.lineOf(), "an aggregate rule needs aggregates")
	}
	for _, name := range slices.Sorted(maps.Keys(s.Aggregates)) {
		a := s.Aggregates[name]
		line := s.lineOf("aggregates", name)
		fn, ok := aggFns[a.Fn]
		if !ok {
			return s.errorf(line, "aggregates.%s: fn %q: want count, sum, avg, min, max or countDistinct", name, a.Fn)
		}
		ag := aggregate{name: name, fn: fn}
		var err error
		switch {
		case fn == fnCount && a.Of.Src != "":
			return s.errorf(a.Of.Line, "aggregates.%s: count takes no `of` (filter the events with `where`)", name)
		case fn != fnCount && a.Of.Src == "":
			return s.errorf(line, "aggregates.%s: %s needs `of`, the value to aggregate", name, a.Fn)
		case fn != fnCount:
			if ag.of, err = c.compile("aggregates."+name+".of", a.Of, false, scopeEvent); err != nil {
				return err
			}
		}
		if a.Where.Src != "" {
			if ag.where, err = c.compile("aggregates."+name+".where", a.Where, true, scopeEvent); err != nil {
				return err
			}
		}
		r.aggs = append(r.aggs, ag)
		r.fns = append(r.fns, fn)
		c.aggNames = append(c.aggNames, name)
	}
	// Derived values read the aggregates only, so their order is free.
	for _, name := range slices.Sorted(maps.Keys(s.Derived)) {
		if _, dup := s.Aggregates[name]; dup {
			return s.errorf(s.lineOf("derived", name), "derived.%s: an aggregate has the same name", name)
		}
		p, err := c.compile("derived."+name, s.Derived[name], false, scopeAgg)
		if err != nil {
			return err
		}
		r.derived = append(r.derived, namedProgram{name, p})
	}
	for name := range s.Derived {
		c.aggNames = append(c.aggNames, name)
	}
	return nil
}

func (c *compiler) windowSpec() error {
	s, w := c.s, c.s.Window
	ms := func(d Duration) int64 { return d.D.Milliseconds() }
	line := s.lineOf("window")
	set := map[string]bool{"size": w.Size.D > 0, "slide": w.Slide.D > 0, "gap": w.Gap.D > 0, "offset": w.Offset.D != 0}
	need := func(typ string, needed []string, allowed ...string) error {
		for _, f := range needed {
			if !set[f] {
				return s.errorf(line, "window: a %s window needs a positive %s", typ, f)
			}
		}
		for _, f := range []string{"size", "slide", "gap", "offset"} {
			if set[f] && !slices.Contains(needed, f) && !slices.Contains(allowed, f) {
				return s.errorf(s.lineOf("window", f), "window: a %s window has no %s", typ, f)
			}
		}
		return nil
	}
	win := window{size: ms(w.Size), slide: ms(w.Slide), gap: ms(w.Gap), offset: ms(w.Offset)}
	for _, d := range []Duration{w.Size, w.Slide, w.Gap, w.Offset} {
		if d.D%time.Millisecond != 0 {
			return s.errorf(d.Line, "window: durations are whole milliseconds")
		}
	}
	var err error
	switch w.Type {
	case "tumbling":
		win.typ = Tumbling
		if err = need("tumbling", []string{"size"}, "offset"); err == nil && win.offset >= win.size {
			err = s.errorf(w.Offset.Line, "window: offset %s must be less than size %s", w.Offset.D, w.Size.D)
		}
	case "sliding":
		win.typ = Sliding
		err = need("sliding", []string{"size", "slide"}, "offset")
		switch {
		case err != nil:
		case win.slide > win.size:
			err = s.errorf(w.Slide.Line, "window: slide %s is larger than size %s (events between windows would be lost)", w.Slide.D, w.Size.D)
		case win.size/win.slide > maxWindowsPerEvent:
			err = s.errorf(w.Slide.Line, "window: size/slide is %d; at most %d windows per event", win.size/win.slide, maxWindowsPerEvent)
		case win.offset >= win.slide:
			err = s.errorf(w.Offset.Line, "window: offset %s must be less than slide %s", w.Offset.D, w.Slide.D)
		}
	case "session":
		win.typ = Session
		err = need("session", []string{"gap"})
	case "lookback":
		win.typ = Lookback
		err = need("lookback", []string{"size"})
	case "":
		err = s.errorf(line, "window: type is missing: want tumbling, sliding, session or lookback")
	default:
		err = s.errorf(s.lineOf("window", "type"), "window: type %q: want tumbling, sliding, session or lookback", w.Type)
	}
	if err != nil {
		return err
	}
	switch ev := s.Evaluate; {
	case win.typ == Lookback && ev != "" && ev != "onEvent":
		return s.errorf(s.lineOf("evaluate"), "evaluate %q: a lookback window is evaluated onEvent", ev)
	case win.typ != Lookback && ev != "" && ev != "onWindowClose":
		return s.errorf(s.lineOf("evaluate"), "evaluate %q: a %s window is evaluated onWindowClose", ev, w.Type)
	case win.typ != Lookback && s.ResetOnFire:
		return s.errorf(s.lineOf("resetOnFire"), "resetOnFire applies to lookback windows (a closed window is gone anyway)")
	}
	if l := s.Lateness; l != nil {
		switch {
		case win.typ != Tumbling && win.typ != Sliding:
			return s.errorf(s.lineOf("lateness"), "lateness applies to tumbling and sliding windows: a %s window sees each key's events in event-time order only", w.Type)
		case l.D <= 0 || l.D%time.Millisecond != 0:
			return s.errorf(s.lineOf("lateness"), "lateness must be a positive whole number of milliseconds")
		}
		win.lateness = l.D.Milliseconds()
	}
	c.r.window, c.r.reset = win, s.ResetOnFire
	return nil
}

func (c *compiler) baseline() error {
	s, p := c.s, c.s.Profile
	if p == nil && s.Global == nil {
		return s.errorf(s.lineOf(), "a baseline rule needs a profile or global statistics")
	}
	if p != nil {
		if p.Horizon.D <= 0 {
			return s.errorf(s.lineOf("profile"), "profile: horizon must be a positive duration")
		}
		if len(p.Stats)+len(p.LastN)+len(p.Seen) == 0 {
			return s.errorf(s.lineOf("profile"), "profile: give stats, lastN or seen fields")
		}
		c.r.profile = profile{horizon: p.Horizon.D.Milliseconds(), stats: p.Stats, seen: p.Seen}
		for _, f := range slices.Sorted(maps.Keys(p.LastN)) {
			if n := p.LastN[f]; n < 1 || n > maxLastN {
				return s.errorf(s.lineOf("profile", "lastN", f), "profile: lastN.%s is %d: want 1 to %d", f, n, maxLastN)
			}
			c.r.profile.lastN = append(c.r.profile.lastN, lastN{f, p.LastN[f]})
		}
		for _, l := range [][]string{p.Stats, p.Seen} {
			for i, f := range l {
				if f == "" || slices.Index(l, f) != i {
					return s.errorf(s.lineOf("profile"), "profile: field %q is empty or repeated", f)
				}
			}
		}
	}
	if g := s.Global; g != nil {
		// Exact statistics over every key need every event in one place;
		// with key: [] the rule's one key is that place (see README,
		// "Global statistics").
		if len(s.Key) > 0 {
			return s.errorf(s.lineOf("global"), "global statistics need key: [] (every event of the rule in one place, "+
				"so the statistics are exact and the same at any parallelism); key %q has its own profile", s.Key)
		}
		if g.Horizon.D <= 0 {
			return s.errorf(s.lineOf("global"), "global: horizon must be a positive duration")
		}
		if len(g.Stats) == 0 {
			return s.errorf(s.lineOf("global"), "global: give stats fields")
		}
		for i, f := range g.Stats {
			if f == "" || slices.Index(g.Stats, f) != i {
				return s.errorf(s.lineOf("global"), "global: field %q is empty or repeated", f)
			}
		}
		c.r.profile.global, c.r.profile.globalHorizon = g.Stats, g.Horizon.D.Milliseconds()
	}
	return nil
}

// scope is the set of environment names an expression may use.
type scope uint8

const (
	scopeEvent    scope = iota // e, ts, p, lists
	scopeAgg                   // + agg
	scopeBaseline              // + stats, hist, seen, prev
	scopeSequence              // + m
)

var scopeOf = map[string]scope{"e": scopeEvent, "ts": scopeEvent, "p": scopeEvent, "lists": scopeEvent,
	"agg": scopeAgg, "stats": scopeBaseline, "global": scopeBaseline, "hist": scopeBaseline, "seen": scopeBaseline, "prev": scopeBaseline, "m": scopeSequence}

type compiler struct {
	s        *Spec
	r        *Rule
	aggNames []string
}

// program is a compiled expression. One that reads only event fields and
// params (most conditions, when, of and where) is compiled with e.<field>
// rewritten to a plain name and runs with the event map itself as its
// environment: expr then reads a field with one map lookup instead of
// reflection and an allocation.
type program struct {
	p       *vm.Program
	onEvent bool
	readsM  bool // names m (sequence rules)
}

// compile compiles one expression of the rule.
func (c *compiler) compile(what string, e Expr, asBool bool, sc scope) (*program, error) {
	onEvent := eventOnly(e.Src)
	refs := &refCheck{c: c, scope: sc, noEvent: sc == scopeAgg && c.r.window.typ != Lookback, onEvent: onEvent}
	opts := []expr.Option{expr.Env(Env{}), expr.DisableBuiltin("now"), expr.MaxNodes(maxNodes), expr.Patch(refs)}
	if onEvent {
		opts = []expr.Option{expr.Env(map[string]any{}), expr.AllowUndefinedVariables(), expr.DisableBuiltin("now"),
			expr.MaxNodes(maxNodes), expr.Patch(refs)}
	}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	prog, err := expr.Compile(e.Src, opts...)
	if refs.err != "" {
		// A name error found while walking the tree is the precise one;
		// the type checker's message would follow from it.
		return nil, c.s.errorf(e.Line, "%s: %s", what, refs.err)
	}
	if err != nil {
		msg := err.Error()
		var fe *file.Error
		if errors.As(err, &fe) {
			msg = fe.Message
			if fe.Snippet != "" { // bound to a place in the source
				msg = fmt.Sprintf("%s (column %d)", fe.Message, fe.Column+1)
			}
		}
		return nil, c.s.errorf(e.Line, "%s: %q does not compile: %s", what, e.Src, msg)
	}
	return &program{p: prog, onEvent: onEvent, readsM: refs.readsM}, nil
}

// eventOnly reports whether src names nothing but e.<field> (a field
// that is a plain name and not a builtin's) and p.<param>.
func eventOnly(src string) bool {
	tree, err := parser.Parse(src)
	if err != nil {
		return false
	}
	v := &eventOnlyCheck{ok: true}
	ast.Walk(&tree.Node, v)
	return v.ok && v.fields == v.es && v.params == v.ps
}

type eventOnlyCheck struct {
	ok         bool
	es, fields int // uses of e; of e as e.<field>
	ps, params int // uses of p; of p as p.<name> (folded to constants)
}

var plainName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (v *eventOnlyCheck) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		switch x.Value {
		case "e":
			v.es++
		case "p":
			v.ps++
		default:
			v.ok = false
		}
	case *ast.BuiltinNode:
		if x.Name == "now" {
			v.ok = false
		}
	case *ast.MemberNode:
		id, ok := x.Node.(*ast.IdentifierNode)
		prop, ok2 := x.Property.(*ast.StringNode)
		if ok && id.Value == "e" {
			if !ok2 || x.Optional || !plainName.MatchString(prop.Value) || isBuiltin(prop.Value) {
				v.ok = false
			}
			v.fields++
		}
		if ok && id.Value == "p" && ok2 && !x.Optional {
			v.params++
		}
	}
}

func isBuiltin(name string) bool {
	_, ok := builtin.Index[name]
	return ok || name == "nil" || name == "true" || name == "false" || name == "e" || name == "p"
}

// refCheck resolves p.x, agg.x, stats.x, hist.x, seen.x and lists.x
// against what the rule declares, and the environment's names against
// the expression's scope.
type refCheck struct {
	c       *compiler
	scope   scope
	noEvent bool // a window's condition: it sees the window, not one event
	onEvent bool // rewrite e.<field> to <field>: the program runs on the event map
	readsM  bool
	err     string
}

func (v *refCheck) Visit(n *ast.Node) {
	if v.err != "" {
		return
	}
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		if x.Value == "m" {
			v.readsM = true
		}
		if v.noEvent && x.Value == "e" {
			v.err = "e is not available here: a window evaluated onWindowClose sees its aggregates (agg), not one event"
			return
		}
		if sc, ok := scopeOf[x.Value]; ok && sc != scopeEvent && sc != v.scope {
			switch sc {
			case scopeAgg:
				v.err = fmt.Sprintf("%s is only available in an aggregate rule's condition, derived values and emit.fields", x.Value)
			case scopeSequence:
				v.err = fmt.Sprintf("%s is only available in a sequence rule's steps, condition and emit.fields", x.Value)
			default:
				v.err = fmt.Sprintf("%s is only available in a baseline rule's condition and emit.fields", x.Value)
			}
		}
	case *ast.MemberNode:
		id, ok := x.Node.(*ast.IdentifierNode)
		prop, ok2 := x.Property.(*ast.StringNode)
		if !ok || !ok2 {
			return
		}
		s, c := v.c.s, v.c
		if v.onEvent && id.Value == "e" {
			ast.Patch(n, &ast.IdentifierNode{Value: prop.Value})
			return
		}
		var known []string
		what := ""
		switch id.Value {
		case "p":
			known, what = slices.Collect(maps.Keys(s.Params)), "params"
		case "agg":
			known, what = v.c.aggNames, "aggregates or derived values"
		case "lists":
			known, what = slices.Collect(maps.Keys(v.c.r.lists)), "lists"
		case "m":
			if s.Pattern == nil {
				return // the scope check reports it
			}
			for _, st := range s.Pattern.Steps {
				known = append(known, st.Name)
			}
			what = "pattern steps"
		case "global":
			if s.Global != nil {
				known = s.Global.Stats
			}
			what = "global.stats fields"
		case "stats", "seen", "hist":
			if s.Profile == nil {
				known, what = nil, "profile fields"
				break
			}
			switch id.Value {
			case "stats":
				known, what = s.Profile.Stats, "profile.stats fields"
			case "seen":
				known, what = s.Profile.Seen, "profile.seen fields"
			default:
				known, what = slices.Collect(maps.Keys(s.Profile.LastN)), "profile.lastN fields"
			}
		default:
			return
		}
		if id.Value == "p" && slices.Contains(known, prop.Value) {
			// A param is a constant of this version of the rule: folding
			// it saves a map lookup per run and lets the optimizer fold
			// what depends on it. Tuning it compiles a new version, whose
			// state shape (key, window, aggregates) is unchanged.
			switch v := c.s.Params[prop.Value].V.(type) {
			case float64:
				ast.Patch(n, &ast.FloatNode{Value: v})
			case string:
				ast.Patch(n, &ast.StringNode{Value: v})
			case bool:
				ast.Patch(n, &ast.BoolNode{Value: v})
			}
			return
		}
		if !slices.Contains(known, prop.Value) {
			sort.Strings(known)
			list := "none"
			if len(known) > 0 {
				list = strings.Join(known, ", ")
			}
			v.err = fmt.Sprintf("unknown name %s.%s (%s: %s)", id.Value, prop.Value, what, list)
		}
	}
}
