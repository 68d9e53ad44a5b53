package rules

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// A keyed operator that keeps rule state in its keyed state evaluates the
// rules of one rule key (a KeyGroup) one key at a time: it loads the
// key's stored states, feeds the key's events and fires the key's due
// timers, and stores what is left. Each rule's state is stored under its
// StateID, so a change of the rule set keeps the state of every rule whose
// state shape did not change, whatever happened to the rules beside it.

// StateShape is the fingerprint of what r's state means: its key, kind,
// window, aggregates (functions and inputs), profile and pattern. Params,
// the condition, when, derived values, dedupe, emit and action are not
// part of it: a rule that changes only those reads its state the same
// way, so it keeps it.
func (r *Rule) StateShape() string {
	var b strings.Builder
	fmt.Fprintf(&b, "key=%q;kind=%s;", r.Key, r.Kind)
	s := r.spec
	switch r.Kind {
	case KindAggregate:
		w := r.window
		fmt.Fprintf(&b, "window=%d/%d/%d/%d/%d;", w.typ, w.size, w.slide, w.gap, w.offset)
		if w.lateness > 0 { // absent otherwise: older rules keep their shape
			fmt.Fprintf(&b, "lateness=%d;", w.lateness)
		}
		for _, a := range r.aggs {
			var of, where string
			if s != nil {
				as := s.Aggregates[a.name]
				of, where = as.Of.Src, as.Where.Src
			}
			fmt.Fprintf(&b, "agg=%q/%d/%q/%q;", a.name, a.fn, of, where)
		}
	case KindBaseline:
		p := r.profile
		fmt.Fprintf(&b, "profile=%d/%q/%q;", p.horizon, p.stats, p.seen)
		for _, l := range p.lastN {
			fmt.Fprintf(&b, "lastN=%q/%d;", l.field, l.n)
		}
		if len(p.global) > 0 { // absent otherwise: older rules keep their shape
			fmt.Fprintf(&b, "global=%d/%q;", p.globalHorizon, p.global)
		}
	case KindSequence:
		p := r.pattern.spec
		fmt.Fprintf(&b, "skip=%q;", p.Skip)
		if p.Within != nil {
			fmt.Fprintf(&b, "within=%d/%q;", p.Within.Size.D, p.Within.Type)
		}
		for _, st := range p.Steps {
			fmt.Fprintf(&b, "step=%q/%q/%q/%v/%v/%v/%v/%v/%v/%q;", st.Name, st.After, st.Where.Src, st.Times,
				st.OneOrMore, st.Optional, st.Greedy, st.Consecutive, st.Combinations, st.Until.Src)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

// StateLifetime bounds how long, in event time, r's state for a key can
// outlast the key's last event: by then the rule's own timers have closed
// its windows and expired its look-back, profile, dedupe interval and
// partial matches. It is 0 for a rule that keeps no state, and not
// bounded (false) for a sequence without `within`, whose partial matches
// wait for the key's next event.
func (r *Rule) StateLifetime() (int64, bool) {
	var d int64
	switch r.Kind {
	case KindAggregate:
		d = r.window.size // look-back, tumbling and sliding windows
		if r.window.typ == Session {
			d = r.window.gap
		}
	case KindBaseline:
		d = r.profile.horizon
	case KindSequence:
		if r.pattern.window <= 0 {
			return 0, false
		}
		d = r.pattern.window
	}
	return d + r.dedupe, true
}

// StateID names r's state: its ID and its StateShape. Versions of a rule
// with the same StateID share their state.
func (r *Rule) StateID() string {
	if r.stateID != "" {
		return r.stateID // made once by CompileDocs, for the cached rule
	}
	return r.ID + "#" + r.StateShape()
}

// RuleOfStateID is the rule ID part of a StateID.
func RuleOfStateID(id string) string {
	rule, _, _ := strings.Cut(id, "#")
	return rule
}

// KeyStates is what a keyed operator stores for one key of a rule key:
// the key's field values and, per stateful rule, its encoded State and
// the event-time timers it armed. A KeyStates is not changed once built,
// so a snapshot may hold it while evaluation goes on.
type KeyStates struct {
	Key    map[string]any
	States []RuleState // in the order of their rules in the group
}

// RuleState is one rule's stored state for one key.
type RuleState struct {
	ID      string // the rule's StateID
	Version int64  // the rule version that wrote it
	Timers  []int64
	Data    []byte
}

// keyStatesFormat is the first byte of an encoded KeyStates.
const keyStatesFormat = 1

// KeyStatesCodec serialises KeyStates for snapshots. It has the shape of
// runtime.Codec[*KeyStates].
type KeyStatesCodec struct{}

// Append appends the encoding of ks; keys hold JSON values only, which
// always encode.
func (KeyStatesCodec) Append(dst []byte, ks *KeyStates) []byte {
	w := stateWriter{b: append(dst, keyStatesFormat)}
	w.value(ks.Key)
	w.uvarint(uint64(len(ks.States)))
	for _, s := range ks.States {
		w.bytes([]byte(s.ID))
		w.varint(s.Version)
		w.uvarint(uint64(len(s.Timers)))
		for _, t := range s.Timers {
			w.varint(t)
		}
		w.bytes(s.Data)
	}
	return w.b
}

// Decode reads an encoded KeyStates.
func (KeyStatesCodec) Decode(src []byte) (*KeyStates, error) {
	if len(src) == 0 || src[0] != keyStatesFormat {
		return nil, fmt.Errorf("key states: %w: unknown format", ErrCorruptState)
	}
	d := &stateReader{b: src[1:]}
	key, ok := d.value().(map[string]any)
	if d.err == nil && !ok {
		d.fail()
	}
	ks := &KeyStates{Key: key}
	n := d.count()
	for i := 0; d.err == nil && i < n; i++ {
		s := RuleState{ID: string(d.bytes()), Version: d.varint()}
		m := d.count()
		for j := 0; d.err == nil && j < m; j++ {
			s.Timers = append(s.Timers, d.varint())
		}
		s.Data = d.bytes()
		ks.States = append(ks.States, s)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return nil, fmt.Errorf("key states: %w", d.err)
	}
	return ks, nil
}

// KeyGroup evaluates the rules sharing one rule key for one key at a time.
// It is not safe for concurrent use.
//
// A paused rule of the group keeps its state: it sees no event, and its
// timers still fire so that windows close, look-backs and profiles expire
// and idle sequences time out (memory stays bounded), but muted: they
// evaluate no condition and raise no alert. Resumed (a new version with
// the same StateID), the rule goes on from what is left.
type KeyGroup struct {
	rules  []*Rule
	paused []bool
	active int // rules not paused
	ids    []string
	byID   map[string]int
	rn     *Runner
	stats  []RuleStats
	// index finds the rules an event's guard values select; nil runs
	// every rule (all) on every event. Every rule counts every event as
	// evaluated, as in an Engine, so events counts them once.
	index  *ruleIndex
	all    []int
	events int64

	// The key being evaluated.
	key    map[string]any
	states []*State
	timers [][]int64 // per rule: armed, ascending
	// live lists the rules that may hold a state or timers for the key
	// (isLive says which are listed): a key of a group of 10,000 rules
	// holds state in a few, and loading, firing and storing a key visits
	// those, not all 10,000, on every event.
	live   []int
	isLive []bool
	dirty  bool
	cur    int
	keyBuf []byte
	due    []dueTimer

	// loaded is what Load was given and stored what Store returned since;
	// cache holds the decoded states of keys by the stored value they
	// equal, so that a key whose value in keyed state is still that one
	// skips decoding. Evaluating after Store forgets stored: the states
	// no longer equal it.
	loaded, stored *KeyStates
	cache          map[*KeyStates]*decodedKey

	// Wake, if set, hears every timer a rule arms, so that the caller can
	// call Fire for the key once the watermark reaches it.
	Wake func(t int64)
	// TimeRules adds each rule's evaluation time to its EvalNanos.
	TimeRules bool
}

// decodedKey is a key's decoded states and timers, of the rules at
// positions rules.
type decodedKey struct {
	rules  []int
	states []*State
	timers [][]int64
}

// maxCached bounds a group's cache of decoded keys; a full cache is
// emptied.
const maxCached = 1 << 14

// NewKeyGroup prepares rules, which must share their Key, to be evaluated
// key by key. Paused rules keep their state (see KeyGroup).
func NewKeyGroup(rules []*Rule) *KeyGroup {
	g := &KeyGroup{rules: rules, rn: NewRunner(), byID: make(map[string]int, len(rules)), stats: make([]RuleStats, len(rules)),
		states: make([]*State, len(rules)), timers: make([][]int64, len(rules)), cache: map[*KeyStates]*decodedKey{},
		paused: make([]bool, len(rules)), isLive: make([]bool, len(rules))}
	for i, r := range rules {
		id := r.StateID()
		g.ids = append(g.ids, id)
		g.byID[id] = i
		g.stats[i] = RuleStats{Rule: r.ID, Version: r.Version}
		if r.State == "paused" {
			g.paused[i] = true
			continue
		}
		g.active++
		g.all = append(g.all, i)
	}
	g.index = newRuleIndex(rules)
	return g
}

// Next is the group of rules, which follow g's rules (the same rule key)
// after a change of the set: NewKeyGroup(rules), with Wake and TimeRules
// as g's. When rules differ from g's only in rules replaced in place (the
// same ID at the same position: a new version, a pause, a resume, a new
// threshold), it reuses g's bookkeeping and index and updates those
// positions, rather than indexing 10,000 rules again for one. g is not
// modified; its counters (StatsView) stay readable.
func (g *KeyGroup) Next(rules []*Rule) *KeyGroup {
	var pos []int
	if len(rules) == len(g.rules) {
		for i, r := range rules {
			if r != g.rules[i] {
				if r.ID != g.rules[i].ID {
					pos = nil
					break
				}
				pos = append(pos, i)
			}
		}
	}
	if pos == nil || g.index == nil || len(pos) > len(rules)/8 {
		n := NewKeyGroup(rules)
		n.Wake, n.TimeRules = g.Wake, g.TimeRules
		return n
	}
	x := g.index.replaced(g.rules, rules, pos)
	if x == nil {
		n := NewKeyGroup(rules)
		n.Wake, n.TimeRules = g.Wake, g.TimeRules
		return n
	}
	n := &KeyGroup{rules: rules, rn: NewRunner(), ids: slices.Clone(g.ids), byID: maps.Clone(g.byID),
		stats: make([]RuleStats, len(rules)), states: make([]*State, len(rules)), timers: make([][]int64, len(rules)),
		cache: map[*KeyStates]*decodedKey{}, paused: slices.Clone(g.paused), isLive: make([]bool, len(rules)),
		index: x, Wake: g.Wake, TimeRules: g.TimeRules}
	for i, r := range rules {
		n.stats[i] = RuleStats{Rule: r.ID, Version: r.Version}
	}
	for _, i := range pos {
		delete(n.byID, n.ids[i])
		n.ids[i] = rules[i].StateID()
		n.byID[n.ids[i]] = i
		n.paused[i] = rules[i].State == "paused"
	}
	for i, p := range n.paused {
		if !p {
			n.active++
			n.all = append(n.all, i)
		}
	}
	return n
}

// Rules are the group's rules.
func (g *KeyGroup) Rules() []*Rule { return g.rules }

// StatsView is the group's counters, to read (not keep) between calls. A
// paused rule counts nothing.
func (g *KeyGroup) StatsView() []RuleStats {
	for i := range g.stats {
		if !g.paused[i] {
			g.stats[i].Evaluations = g.events
		}
	}
	return g.stats
}

// Dropped is a stored state Load did not take.
type Dropped struct {
	ID      string // its StateID
	Version int64  // the rule version that wrote it
	// Changed is set when the group has a rule of that ID with another
	// state shape; otherwise the rule is gone (deleted).
	Changed bool
	// Err is set when the state was the group's but did not decode.
	Err error
}

// Load makes ks (nil for a key without state) the key being evaluated and
// appends to dropped the stored states that no rule of the group takes.
func (g *KeyGroup) Load(ks *KeyStates, dropped []Dropped) []Dropped {
	// Keep the previous key's states if they equal its stored value.
	switch {
	case g.stored != nil:
		g.keep(g.stored)
	case !g.dirty && g.loaded != nil:
		g.keep(g.loaded)
	}
	g.key, g.dirty, g.loaded, g.stored = nil, false, ks, nil
	for _, i := range g.live {
		g.states[i], g.timers[i], g.isLive[i] = nil, g.timers[i][:0], false
	}
	g.live = g.live[:0]
	if ks == nil {
		return dropped
	}
	g.key = ks.Key
	if d, ok := g.cache[ks]; ok {
		// Stored by this group: every state is one of its rules'.
		delete(g.cache, ks)
		for j, i := range d.rules {
			g.setLive(i)
			g.states[i] = d.states[j]
			g.timers[i] = append(g.timers[i], d.timers[j]...)
		}
		return dropped
	}
	for _, s := range ks.States {
		i, ok := g.byID[s.ID]
		if !ok {
			rule := RuleOfStateID(s.ID)
			changed := slices.ContainsFunc(g.rules, func(r *Rule) bool { return r.ID == rule })
			dropped = append(dropped, Dropped{ID: s.ID, Version: s.Version, Changed: changed})
			g.dirty = true
			continue
		}
		st, err := g.rn.DecodeState(g.rules[i], g.key, s.Data)
		if err != nil {
			dropped = append(dropped, Dropped{ID: s.ID, Version: s.Version, Changed: true, Err: err})
			g.dirty = true
			continue
		}
		g.setLive(i)
		g.states[i] = st
		g.timers[i] = append(g.timers[i], s.Timers...)
		if s.Version != g.rules[i].Version {
			g.dirty = true // stored again under the new version
		}
	}
	return dropped
}

// keep caches the current key's states as those of ks.
func (g *KeyGroup) keep(ks *KeyStates) {
	if len(g.cache) >= maxCached {
		clear(g.cache)
	}
	d := &decodedKey{}
	for _, i := range g.live {
		if g.states[i] == nil && len(g.timers[i]) == 0 {
			continue
		}
		d.rules = append(d.rules, i)
		d.states = append(d.states, g.states[i])
		var ts []int64
		if len(g.timers[i]) > 0 {
			ts = slices.Clone(g.timers[i])
		}
		d.timers = append(d.timers, ts)
	}
	g.cache[ks] = d
}

// setLive lists rule i among those that may hold a state or timers.
func (g *KeyGroup) setLive(i int) {
	if !g.isLive[i] {
		g.isLive[i] = true
		g.live = append(g.live, i)
	}
}

// Key is the key being evaluated: its field values, nil before its first
// event.
func (g *KeyGroup) Key() map[string]any { return g.key }

// Register arms an event-time timer for the rule being evaluated.
func (g *KeyGroup) Register(t int64) {
	ts := g.timers[g.cur]
	i, found := slices.BinarySearch(ts, t)
	if found {
		return
	}
	g.setLive(g.cur)
	g.timers[g.cur] = slices.Insert(ts, i, t)
	if g.Wake != nil {
		g.Wake(t)
	}
}

// Process evaluates every rule on ev, an event of the loaded key, and
// appends the alerts to out. A rule that fails on the event is reported
// in the joined error; the other rules still see the event.
func (g *KeyGroup) Process(ev *Event, out []Alert) ([]Alert, error) {
	g.stored = nil
	if g.active == 0 {
		return out, nil
	}
	var errs []error
	kb, err := appendKey(g.keyBuf[:0], ev, g.rules[0].Key)
	g.keyBuf = kb
	if err != nil {
		for i, r := range g.rules {
			if g.paused[i] {
				continue
			}
			g.stats[i].Errors++
			errs = append(errs, &EvalError{Rule: r.ID, Version: r.Version, Part: "key", Err: err})
		}
		return out, errors.Join(errs...)
	}
	if g.key == nil {
		g.key = g.rules[0].KeyOf(ev.Fields)
	}
	var scratch State
	cand := g.all
	if g.index != nil {
		cand = g.index.candidates(ev.Fields)
	}
	g.events++
	for _, i := range cand {
		if g.paused[i] { // the index holds every rule
			continue
		}
		r := g.rules[i]
		st := g.states[i]
		switch {
		case r.Stateless():
			scratch = State{}
			st = &scratch
		case st == nil:
			st = r.NewState(g.key)
			g.states[i] = st
			g.setLive(i)
		}
		g.cur = i
		g.dirty = g.dirty || !r.Stateless()
		n := len(out)
		var t0 time.Time
		if g.TimeRules {
			t0 = time.Now()
		}
		out, err = g.rn.OnEvent(r, st, ev, g, out)
		if g.TimeRules {
			g.stats[i].EvalNanos += int64(time.Since(t0))
		}
		g.stats[i].Alerts += int64(len(out) - n)
		if err != nil {
			g.stats[i].Errors++
			errs = append(errs, err)
		}
		if g.states[i] != nil && st.Empty() {
			g.drop(i) // e.g. a sequence back at its start
		}
	}
	return out, errors.Join(errs...)
}

// ProcessLate gives ev, whose time is at or behind the watermark wm, to
// the group's rules that take late events (Rule.AcceptsLate) for the
// loaded key, and reports whether any of them took it: if none did, the
// event is late for every rule of the group.
func (g *KeyGroup) ProcessLate(ev *Event, wm int64, out []Alert) ([]Alert, bool, error) {
	g.stored = nil
	var errs []error
	took := false
	for i, r := range g.rules {
		if !r.AcceptsLate() {
			continue
		}
		if g.key == nil {
			g.key = r.KeyOf(ev.Fields)
		}
		st := g.states[i]
		if st == nil {
			st = r.NewState(g.key)
			g.states[i] = st
			g.setLive(i)
		}
		g.cur = i
		g.dirty = true
		n := len(out)
		var ok bool
		var err error
		out, ok, err = g.rn.OnLateEvent(r, st, ev, wm, g, out)
		took = took || ok
		g.stats[i].Alerts += int64(len(out) - n)
		if err != nil {
			g.stats[i].Errors++
			errs = append(errs, err)
		}
		if st.Empty() {
			g.drop(i)
		}
	}
	return out, took, errors.Join(errs...)
}

func (g *KeyGroup) drop(i int) {
	g.states[i] = nil
	g.timers[i] = g.timers[i][:0]
}

// Fire fires the loaded key's timers at or before the watermark wm, in
// (time, rule) order, as the local Engine does.
func (g *KeyGroup) Fire(wm int64, out []Alert) ([]Alert, error) {
	g.stored = nil
	var errs []error
	for {
		// The due timers, taken out of their rules' lists in one pass;
		// a timer a firing arms at or before wm makes another pass.
		due := g.due[:0]
		for _, i := range g.live {
			ts := g.timers[i]
			n := 0
			for n < len(ts) && ts[n] <= wm {
				due = append(due, dueTimer{t: ts[n], rule: i})
				n++
			}
			if n > 0 {
				g.timers[i] = slices.Delete(ts, 0, n)
			}
		}
		g.due = due
		if len(due) == 0 {
			return out, errors.Join(errs...)
		}
		g.dirty = true
		slices.SortFunc(due, func(a, b dueTimer) int {
			if a.t != b.t {
				return cmp.Compare(a.t, b.t)
			}
			return cmp.Compare(a.rule, b.rule)
		})
		for _, d := range due {
			st, r := g.states[d.rule], g.rules[d.rule]
			if st == nil {
				continue
			}
			g.cur = d.rule
			if g.paused[d.rule] {
				// Muted: the state moves on, nothing is raised or counted.
				g.rn.mute = true
				_, _ = g.rn.OnTimer(r, st, d.t, g, nil)
				g.rn.mute = false
				if st.Empty() {
					g.drop(d.rule)
				}
				continue
			}
			n := len(out)
			var t0 time.Time
			if g.TimeRules {
				t0 = time.Now()
			}
			var err error
			out, err = g.rn.OnTimer(r, st, d.t, g, out)
			if g.TimeRules {
				g.stats[d.rule].EvalNanos += int64(time.Since(t0))
			}
			g.stats[d.rule].Alerts += int64(len(out) - n)
			if err != nil {
				g.stats[d.rule].Errors++
				errs = append(errs, err)
			}
			if st.Empty() {
				g.drop(d.rule)
			}
		}
	}
}

type dueTimer struct {
	t    int64
	rule int
}

// Changed reports whether the key's states differ from what Load was
// given, so they must be stored again.
func (g *KeyGroup) Changed() bool { return g.dirty }

// Store encodes the key's states: nil when no rule holds any. An error
// names a rule whose state holds a value that has no encoding; that
// rule's state is left out. The result shares no memory with the group.
func (g *KeyGroup) Store() (*KeyStates, error) {
	var errs []error
	n, nt := 0, 0
	// In rule order, as the stored value was always written.
	slices.Sort(g.live)
	for _, i := range g.live {
		if g.states[i] != nil {
			n++
			nt += len(g.timers[i])
		}
	}
	if n == 0 {
		return nil, nil
	}
	ks := &KeyStates{Key: g.key, States: make([]RuleState, 0, n)}
	// One allocation for every rule's bytes and one for their timers.
	buf := make([]byte, 0, 64*n)
	timers := make([]int64, 0, nt)
	for _, i := range g.live {
		st := g.states[i]
		if st == nil {
			continue
		}
		start := len(buf)
		b, err := g.rn.AppendState(buf, g.rules[i], st)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		buf = b
		t0 := len(timers)
		timers = append(timers, g.timers[i]...)
		ks.States = append(ks.States, RuleState{ID: g.ids[i], Version: g.rules[i].Version,
			Timers: timers[t0:len(timers):len(timers)], Data: buf[start:len(buf):len(buf)]})
	}
	if len(ks.States) == 0 {
		return nil, errors.Join(errs...)
	}
	if len(errs) == 0 {
		g.stored = ks
	}
	return ks, errors.Join(errs...)
}
