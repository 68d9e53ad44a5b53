package cep

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"time"
)

// action is what an edge does with the event under evaluation.
type action uint8

const (
	take    action = iota // accept the event and move to the target
	ignore                // skip the event, move to the target
	proceed               // move to the target without consuming the event
)

// stateKind classifies compiled states.
type stateKind uint8

const (
	normalState  stateKind = iota
	startState             // where every match begins; never discarded
	finalState             // reaching it completes a match
	stopState              // reaching it discards the branch (a NOT matched)
	pendingState           // trailing NotFollowedBy: completes when the window closes
)

// cstate is a state during compilation: built back to front with pointers,
// then flattened into indices.
type cstate[T any] struct {
	name  string // the step's name (what taken events are filed under)
	kind  stateKind
	edges []*cedge[T]
	id    int
}

type cedge[T any] struct {
	act    action
	target *cstate[T]
	cond   cond[T]
}

func (s *cstate[T]) add(a action, target *cstate[T], c cond[T]) {
	s.edges = append(s.edges, &cedge[T]{act: a, target: target, cond: c})
}

// compiler turns a pattern sequence into a state graph the way Flink's
// NFACompiler does, walking the steps from last to first so that each
// step's states can point at the already-built states after it.
type compiler[T any] struct {
	steps     []*Pattern[T]
	cur       int // index of the step being converted
	states    []*cstate[T]
	stops     map[string]*cstate[T]
	originals map[*cstate[T]]*cstate[T] // pre-greedy copies, for Until
}

func (c *compiler[T]) newState(name string, kind stateKind) *cstate[T] {
	s := &cstate[T]{name: name, kind: kind, id: len(c.states)}
	c.states = append(c.states, s)
	return s
}

func (c *compiler[T]) step() *Pattern[T] { return c.steps[c.cur] }

// following is the step after the current one, or nil.
func (c *compiler[T]) following() *Pattern[T] {
	if c.cur+1 < len(c.steps) {
		return c.steps[c.cur+1]
	}
	return nil
}

// Compile validates the pattern sequence ending at p and builds its NFA.
func (p *Pattern[T]) Compile() (*NFA[T], error) {
	var steps []*Pattern[T]
	for s := p; s != nil; s = s.prev {
		steps = append(steps, s)
	}
	for i, j := 0, len(steps)-1; i < j; i, j = i+1, j-1 {
		steps[i], steps[j] = steps[j], steps[i]
	}
	if err := validate(steps); err != nil {
		return nil, err
	}
	c := &compiler[T]{steps: steps, stops: map[string]*cstate[T]{}, originals: map[*cstate[T]]*cstate[T]{}}
	sink := c.newState("$end$", finalState)
	for c.cur = len(steps) - 1; c.cur > 0; c.cur-- {
		st := c.step()
		switch st.contig {
		case notFollow:
			// A trailing NotFollowedBy waits in a pending state until the
			// window closes; elsewhere it becomes stop edges of the states
			// that wait for the next step.
			if sink.kind == finalState {
				nc := st.cond
				pending := c.newState(st.name, pendingState)
				pending.add(proceed, c.stopState(nc, st.name), nc)
				pending.add(ignore, pending, not(nc))
				sink = pending
			}
		case notNext:
			nc := st.cond
			s := c.newState(st.name, normalState)
			if sink.kind == finalState {
				// An ignore, not a proceed: a proceed to the final state
				// would complete the match before the next event is seen.
				s.add(ignore, sink, not(nc))
			} else {
				s.add(proceed, sink, not(nc))
			}
			s.add(proceed, c.stopState(nc, st.name), nc)
			sink = s
		default:
			sink = c.convert(sink)
		}
	}
	start := c.convert(sink)
	start.kind = startState

	var window time.Duration
	for _, st := range steps {
		if st.window > 0 && (window == 0 || st.window < window) {
			window = st.window
		}
	}
	last := steps[len(steps)-1]
	if last.contig == notFollow && window == 0 {
		return nil, fmt.Errorf("%w: NotFollowedBy %q ends the pattern without Within, so it could never complete", ErrMalformedPattern, last.name)
	}
	return c.build(start, window), nil
}

func validate[T any](steps []*Pattern[T]) error {
	names := map[string]bool{}
	for i, st := range steps {
		if st.err != nil {
			return st.err
		}
		if st.name == "" {
			return fmt.Errorf("%w: step %d has an empty name", ErrMalformedPattern, i)
		}
		if names[st.name] {
			return fmt.Errorf("%w: duplicate step name %q; names must be unique", ErrMalformedPattern, st.name)
		}
		names[st.name] = true
		if (st.contig == notNext || st.contig == notFollow) && i > 0 && steps[i-1].optional {
			return fmt.Errorf("%w: NOT step %q cannot follow the optional step %q", ErrMalformedPattern, st.name, steps[i-1].name)
		}
		if st.optional && i > 0 && steps[i-1].greedy {
			return fmt.Errorf("%w: optional step %q cannot follow the greedy step %q", ErrMalformedPattern, st.name, steps[i-1].name)
		}
	}
	if sk := steps[0].skip; sk.kind == skipToFirst || sk.kind == skipToLast {
		if !names[sk.name] {
			return fmt.Errorf("%w: skip strategy %v names no step of the pattern", ErrMalformedPattern, sk)
		}
	}
	return nil
}

// ignoreCond is the condition for skipping an event while waiting for the
// first event of st, from how st is joined to the step before it.
func ignoreCond[T any](st *Pattern[T], contig contiguity) cond[T] {
	switch contig {
	case skipTillNext:
		return not(st.cond)
	case skipTillAny:
		return nil
	}
	return nil // strict: no ignore edge at all
}

func hasIgnore(contig contiguity) bool { return contig == skipTillNext || contig == skipTillAny }

// withUntil extends a condition with NOT until where Until applies.
func withUntil[T any](c, until cond[T], isTake bool, present bool) (cond[T], bool) {
	switch {
	case until != nil && present:
		return and(not(until), c), true
	case until != nil && isTake:
		return not(until), true
	}
	return c, present
}

type notCond[T any] struct {
	cond cond[T]
	name string
}

// currentNots are the NotFollowedBy conditions that still apply while
// waiting for the current step: those of NOT steps reachable backwards
// through optional steps.
func (c *compiler[T]) currentNots() []notCond[T] {
	var out []notCond[T]
	for j := c.cur - 1; j >= 0 && (c.steps[j].optional || c.steps[j].contig == notFollow); j-- {
		if c.steps[j].contig == notFollow {
			out = append(out, notCond[T]{c.steps[j].cond, c.steps[j].name})
		}
	}
	return out
}

func (c *compiler[T]) stopState(nc cond[T], name string) *cstate[T] {
	if s, ok := c.stops[name]; ok {
		return s
	}
	s := c.newState(name, stopState)
	// Taking the negative event lands the branch in the stop state, which
	// discards it.
	s.add(take, s, nc)
	c.stops[name] = s
	return s
}

func (c *compiler[T]) addStops(s *cstate[T]) {
	for _, n := range c.currentNots() {
		s.add(proceed, c.stopState(n.cond, n.name), n.cond)
	}
}

// addLoopStop makes a looping state honour a NotFollowedBy right after it.
func (c *compiler[T]) addLoopStop(s *cstate[T]) {
	if f := c.following(); f != nil && f.contig == notFollow {
		s.add(proceed, c.stopState(f.cond, f.name), f.cond)
	}
}

// withoutTransitiveNots returns sink, or a copy of it without the stop edges
// of NOT steps before the current optional step: once that step has taken
// an event, the earlier NOTs no longer apply.
func (c *compiler[T]) withoutTransitiveNots(sink *cstate[T]) *cstate[T] {
	nots := c.currentNots()
	if len(nots) == 0 || !c.step().optional {
		return sink
	}
	cp := c.newState(sink.name, sink.kind)
	for _, e := range sink.edges {
		if e.act != proceed {
			t := e.target
			if t == sink {
				t = cp
			}
			cp.add(e.act, t, e.cond)
			continue
		}
		t := e.target
		if t.kind == stopState {
			drop := false
			for _, n := range nots {
				if t.name == n.name {
					drop = true
				}
			}
			if drop {
				continue
			}
		} else {
			t = c.withoutTransitiveNots(t)
		}
		cp.add(e.act, t, e.cond)
	}
	return cp
}

func (c *compiler[T]) copyState(s *cstate[T]) *cstate[T] {
	cp := c.newState(s.name, s.kind)
	for _, e := range s.edges {
		t := e.target
		if t == s {
			t = cp
		}
		cp.add(e.act, t, e.cond)
	}
	return cp
}

// greedify stops the state after a greedy loop from seeing events the loop
// can still take.
func greedify[T any](s *cstate[T], loopTake cond[T]) {
	nt := not(loopTake)
	for _, e := range s.edges {
		e.cond = and(e.cond, nt)
	}
}

func (c *compiler[T]) convert(sink *cstate[T]) *cstate[T] {
	st := c.step()
	var first *cstate[T]
	switch st.kind {
	case looping:
		loop := c.looping(c.withoutTransitiveNots(sink))
		first = c.timesStates(loop, sink, st.from, st.from)
	case times:
		first = c.timesStates(sink, sink, st.from, st.to)
	default:
		first = c.singleton(sink, sink, st.cond, ignoreCond(st, st.contig), hasIgnore(st.contig), st.optional)
	}
	c.addStops(first)
	return first
}

// timesStates builds the chain of states for from..to events: from-1
// mandatory states after the first and to-from optional ones, each
// optional one able to proceed to proceedTo.
func (c *compiler[T]) timesStates(sink, proceedTo *cstate[T], from, to int) *cstate[T] {
	st := c.step()
	innerIgn, innerHas := withUntil(ignoreCond(st, st.inner), st.until, false, hasIgnore(st.inner))
	tk, _ := withUntil(st.cond, st.until, true, true)
	if st.greedy && from != to {
		if st.until != nil {
			c.originals[sink] = c.copyState(sink)
		}
		greedify(sink, tk)
	}
	last := sink
	for i := from; i < to; i++ {
		last = c.singleton(last, proceedTo, tk, innerIgn, innerHas, true)
		c.addLoopStop(last)
	}
	for i := 0; i < from-1; i++ {
		last = c.singleton(last, nil, tk, innerIgn, innerHas, false)
		c.addLoopStop(last)
	}
	return c.singleton(last, proceedTo, tk, ignoreCond(st, st.contig), hasIgnore(st.contig), st.optional)
}

// singleton builds a state taking one event into sink. An optional one can
// proceed to proceedTo; its ignore edge leads to a copy without that
// proceed edge, so that a branch proceeds only once per skipped stretch.
func (c *compiler[T]) singleton(sink, proceedTo *cstate[T], tk, ign cond[T], hasIgn, optional bool) *cstate[T] {
	st := c.step()
	s := c.newState(st.name, normalState)
	to := c.withoutTransitiveNots(sink)
	s.add(take, to, tk)
	if optional && proceedTo != nil {
		if st.greedy && st.until != nil {
			if orig, ok := c.originals[proceedTo]; ok {
				s.add(proceed, orig, st.until)
			}
			s.add(proceed, proceedTo, not(st.until))
		} else {
			s.add(proceed, proceedTo, nil)
		}
	}
	if hasIgn {
		target := s
		if optional {
			target = c.newState(st.name, normalState)
			target.add(take, to, tk)
			target.add(ignore, target, ign)
			c.addStops(target)
		}
		s.add(ignore, target, ign)
	}
	return s
}

// looping builds the state of a loop: it takes events into itself and can
// proceed to sink at any time. Its ignore edge leads to a twin without the
// proceed edge, as in singleton.
func (c *compiler[T]) looping(sink *cstate[T]) *cstate[T] {
	st := c.step()
	ign, has := withUntil(ignoreCond(st, st.inner), st.until, false, hasIgnore(st.inner))
	tk, _ := withUntil(st.cond, st.until, true, true)
	l := c.newState(st.name, normalState)
	if st.greedy {
		if st.until != nil {
			cp := c.copyState(sink)
			l.add(proceed, cp, st.until)
			c.originals[sink] = cp
			l.add(proceed, sink, not(st.until))
		} else {
			l.add(proceed, sink, nil)
		}
		greedify(sink, st.cond)
	} else {
		l.add(proceed, sink, nil)
	}
	l.add(take, l, tk)
	c.addLoopStop(l)
	if has {
		tw := c.newState(st.name, normalState)
		tw.add(take, l, tk)
		tw.add(ignore, tw, ign)
		l.add(ignore, tw, ign)
		c.addLoopStop(tw)
	}
	return l
}

// build flattens the graph reachable from start into the NFA's tables.
func (c *compiler[T]) build(start *cstate[T], window time.Duration) *NFA[T] {
	n := &NFA[T]{window: window.Milliseconds(), skip: c.steps[0].skip, names: map[string]int32{}}
	if n.window == 0 && window > 0 {
		n.window = 1
	}
	for i, st := range c.steps {
		n.names[st.name] = int32(i)
		n.stepNames = append(n.stepNames, st.name)
	}
	// Number the reachable states in a fixed order so that the state
	// fingerprint (checked on restore) is stable.
	index := map[*cstate[T]]int32{}
	var order []*cstate[T]
	var visit func(s *cstate[T])
	visit = func(s *cstate[T]) {
		if _, ok := index[s]; ok {
			return
		}
		index[s] = int32(len(order))
		order = append(order, s)
		for _, e := range s.edges {
			visit(e.target)
		}
	}
	visit(start)
	h := fnv.New64a()
	for _, s := range order {
		ns := nstate[T]{kind: s.kind, step: n.names[s.name]}
		h.Write([]byte(s.name + "/" + strconv.Itoa(int(s.kind)) + ":"))
		for _, e := range s.edges {
			ns.edges = append(ns.edges, nedge[T]{act: e.act, target: index[e.target], cond: e.cond})
			h.Write([]byte(strconv.Itoa(int(e.act)) + ">" + strconv.Itoa(int(index[e.target])) + ","))
		}
		n.states = append(n.states, ns)
	}
	n.start = index[start]
	n.fingerprint = h.Sum64()
	return n
}
