package cep

import (
	"fmt"
	"math"
	"slices"
)

// NFA is a compiled pattern: an immutable state graph, safe to share
// between goroutines. The per-key progress lives in State values.
type NFA[T any] struct {
	states      []nstate[T]
	start       int32
	window      int64 // ms; 0: none
	skip        SkipStrategy
	names       map[string]int32
	stepNames   []string
	fingerprint uint64
}

type nstate[T any] struct {
	kind  stateKind
	step  int32 // index of the step whose name taken events are filed under
	edges []nedge[T]
}

type nedge[T any] struct {
	act    action
	target int32
	cond   cond[T]
}

// node is one accepted event of a partial match. Nodes are immutable and
// shared: all branches that accepted the same prefix point at the same
// chain, which is what Flink's shared buffer achieves with reference counts.
type node[T any] struct {
	prev *node[T]
	ev   T
	ts   int64
	seq  int64 // per-key arrival number: with ts, the event's identity
	step int32
}

// eventID orders events as Flink's EventId does: by timestamp, then by
// arrival.
type eventID struct{ ts, seq int64 }

func (a eventID) less(b eventID) bool { return a.ts < b.ts || (a.ts == b.ts && a.seq < b.seq) }

// noStart sorts after every event, as the start state's computation does in
// Flink's ordering of partial matches.
var noStart = eventID{math.MaxInt64, math.MaxInt64}

// run is one partial match (Flink's ComputationState): a state of the NFA
// plus the events accepted on the way there.
type run[T any] struct {
	path  *node[T] // last accepted event; nil for the start run
	start eventID  // first accepted event; noStart for the start run
	state int32
}

// State is the matching progress for one key: the partial matches and the
// completed matches a skip strategy holds back. Process and Advance never
// modify a State; they return a new one, so a State stored in keyed state
// can be snapshotted while matching goes on.
type State[T any] struct {
	runs []run[T] // ordered by start; the start run last
	done []run[T] // completed, waiting for earlier partial matches (skip strategies)
	seq  int64    // next arrival number
}

// Match is a completed match: the accepted events by step name, each list
// in acceptance order.
type Match[T any] map[string][]T

// TimedOut is a partial match discarded by Within, with the time it timed
// out (its first event's timestamp plus the window).
type TimedOut[T any] struct {
	Match     Match[T]
	Timestamp int64
}

// Result is what one Process or Advance call produced.
type Result[T any] struct {
	Matches  []Match[T]
	TimedOut []TimedOut[T]
}

// NewState is the state of a key that has seen nothing.
func (n *NFA[T]) NewState() *State[T] {
	return &State[T]{runs: []run[T]{{start: noStart, state: n.start}}}
}

// Window is the pattern's Within in milliseconds (0: none).
func (n *NFA[T]) Window() int64 { return n.window }

// Idle reports whether s holds no partial or held-back match, so that a key
// in this state needs no stored state.
func (n *NFA[T]) Idle(s *State[T]) bool { return len(s.runs) <= 1 && len(s.done) == 0 }

// NextTimeout is the earliest time at which Advance would time out a partial
// match of s, if any.
func (n *NFA[T]) NextTimeout(s *State[T]) (int64, bool) {
	if n.window == 0 {
		return 0, false
	}
	best, ok := int64(math.MaxInt64), false
	for _, r := range s.runs {
		if r.path != nil && r.start.ts+n.window < best {
			best, ok = r.start.ts+n.window, true
		}
	}
	return best, ok
}

// Process feeds one event with timestamp ts (Unix ms) to the NFA: partial
// matches older than the window at ts are timed out first, then the event
// is matched. Events must come in timestamp order (the operator sorts them).
// It returns the new state and what completed or timed out.
func (n *NFA[T]) Process(s *State[T], ev T, ts int64) (*State[T], Result[T], error) {
	s, res, err := n.Advance(s, ts)
	if err != nil {
		return s, res, err
	}
	id := eventID{ts, s.seq}
	runs := make([]run[T], 0, len(s.runs)+2)
	var potential []run[T]
	// Scratch space on the stack for the common case of few branches.
	var nextBuf [8]run[T]
	var edgeBuf [8]edgeRef
	next, edges := nextBuf[:0], edgeBuf[:0]
	cc := &condCtx[T]{n: n}
	for _, r := range s.runs {
		cc.reset(r.path, ts)
		next, edges, err = n.step(next[:0], edges[:0], r, ev, id, cc)
		if err != nil {
			return s, res, err
		}
		discard := false
		keep := len(runs)
		for _, nr := range next {
			switch n.states[nr.state].kind {
			case finalState:
				potential = append(potential, nr)
			case stopState:
				discard = true
			default:
				runs = append(runs, nr)
			}
		}
		if discard {
			// A NOT step matched on this branch: drop everything it made.
			runs = runs[:keep]
		}
	}
	sortRuns(runs)
	ns := &State[T]{runs: runs, done: s.done, seq: s.seq + 1}
	if n.skip.kind == noSkip {
		sortRuns(potential)
		for _, m := range potential {
			res.Matches = append(res.Matches, n.materialize(m.path))
		}
		return ns, res, nil
	}
	err = n.emitSkipping(ns, potential, &res)
	return ns, res, err
}

// Advance moves the state's clock to t (a watermark, or the processing
// time): partial matches whose first event is at least the window older
// than t time out, and a trailing NotFollowedBy whose window has closed
// completes.
func (n *NFA[T]) Advance(s *State[T], t int64) (*State[T], Result[T], error) {
	var res Result[T]
	if n.window == 0 {
		return s, res, nil
	}
	expired := -1
	for i, r := range s.runs {
		if n.timedOut(r, t) {
			expired = i
			break
		}
	}
	if expired < 0 {
		return s, res, nil
	}
	runs := make([]run[T], 0, len(s.runs))
	runs = append(runs, s.runs[:expired]...)
	var pending []run[T]
	for _, r := range s.runs[expired:] {
		if !n.timedOut(r, t) {
			runs = append(runs, r)
			continue
		}
		if n.states[r.state].kind == pendingState {
			pending = append(pending, r)
			continue
		}
		res.TimedOut = append(res.TimedOut, TimedOut[T]{Match: n.materialize(r.path), Timestamp: r.start.ts + n.window})
	}
	ns := &State[T]{runs: runs, done: s.done, seq: s.seq}
	// Completed matches held back by a skip strategy may now be free, and
	// pending ones go through the same ordering, as in Flink.
	err := n.emitSkipping(ns, pending, &res)
	return ns, res, err
}

func (n *NFA[T]) timedOut(r run[T], t int64) bool {
	return r.path != nil && t-r.start.ts >= n.window
}

func sortRuns[T any](rs []run[T]) {
	slices.SortStableFunc(rs, func(a, b run[T]) int {
		switch {
		case a.start.less(b.start):
			return -1
		case b.start.less(a.start):
			return 1
		}
		return 0
	})
}

// emitSkipping adds the new completed matches to those held back, then
// emits, earliest first, every one that no remaining partial match started
// before, pruning partial and completed matches by the skip strategy after
// each. ns is modified (it is new).
func (n *NFA[T]) emitSkipping(ns *State[T], potential []run[T], res *Result[T]) error {
	if len(potential) == 0 && len(ns.done) == 0 {
		return nil
	}
	done := make([]run[T], 0, len(ns.done)+len(potential))
	done = append(append(done, ns.done...), potential...)
	sortRuns(done)
	for len(done) > 0 {
		m := done[0]
		if len(ns.runs) > 0 && ns.runs[0].start.less(m.start) {
			break // an earlier partial match may still complete first
		}
		done = done[1:]
		prune, ok, err := n.pruningID(m.path)
		if err != nil {
			return err
		}
		if ok {
			ns.runs = n.prune(ns.runs, prune)
			done = n.prune(done, prune)
		}
		res.Matches = append(res.Matches, n.materialize(m.path))
	}
	if len(done) == 0 {
		done = nil
	}
	ns.done = done
	return nil
}

// pruningID is the event relative to which the skip strategy discards
// matches after match m.
func (n *NFA[T]) pruningID(m *node[T]) (eventID, bool, error) {
	switch n.skip.kind {
	case skipPastLast:
		return eventID{m.ts, m.seq}, true, nil // the last event has the largest id
	case skipToNext:
		first := m
		for first.prev != nil {
			first = first.prev
		}
		return eventID{first.ts, first.seq}, true, nil
	case skipToFirst, skipToLast:
		step := n.names[n.skip.name]
		var id eventID
		found := false
		for x := m; x != nil; x = x.prev {
			if x.step != step {
				continue
			}
			if n.skip.kind == skipToLast && found {
				continue // walking backwards: the first seen is the last
			}
			id, found = eventID{x.ts, x.seq}, true
		}
		if !n.skip.errorOnMiss {
			return id, found, nil
		}
		if !found {
			return id, false, fmt.Errorf("cep: skip strategy %v: the match has no event for %q", n.skip, n.skip.name)
		}
		// Skipping to the match's own first event would find the same
		// match again; in the error mode (as Flink's) that is an error.
		first := m
		for first.prev != nil {
			first = first.prev
		}
		if id == (eventID{first.ts, first.seq}) {
			return id, false, fmt.Errorf("cep: skip strategy %v: cannot skip to the first event of the match", n.skip)
		}
		return id, true, nil
	}
	return eventID{}, false, nil
}

func (n *NFA[T]) prune(rs []run[T], id eventID) []run[T] {
	inclusive := n.skip.kind == skipPastLast || n.skip.kind == skipToNext
	out := rs[:0:0]
	for _, r := range rs {
		if r.path != nil && (r.start.less(id) || (inclusive && r.start == id)) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// materialize turns a path into a match map.
func (n *NFA[T]) materialize(p *node[T]) Match[T] {
	counts := make([]int, len(n.stepNames))
	for x := p; x != nil; x = x.prev {
		counts[x.step]++
	}
	m := make(Match[T], 2)
	for i, c := range counts {
		if c > 0 {
			m[n.stepNames[i]] = make([]T, c)
		}
	}
	for x := p; x != nil; x = x.prev {
		l := m[n.stepNames[x.step]]
		counts[x.step]--
		l[counts[x.step]] = x.ev
	}
	return m
}

type edgeRef struct {
	src  int32
	edge int32
}

// step computes the runs that r becomes on event ev: it collects the take
// and ignore edges enabled from r's state, following proceed edges, then
// applies them (Flink's computeNextStates).
func (n *NFA[T]) step(out []run[T], edges []edgeRef, r run[T], ev T, id eventID, cc *condCtx[T]) ([]run[T], []edgeRef, error) {
	var stackBuf [8]int32
	stack := append(stackBuf[:0], r.state)
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for i, e := range n.states[s].edges {
			if e.cond != nil && !e.cond(ev, cc) {
				continue
			}
			if e.act == proceed {
				stack = append(stack, e.target)
			} else {
				edges = append(edges, edgeRef{s, int32(i)})
			}
		}
	}
	isStart := n.states[r.state].kind == startState
	for _, er := range edges {
		e := n.states[er.src].edges[er.edge]
		switch e.act {
		case ignore:
			if !isStart {
				out = append(out, run[T]{path: r.path, start: r.start, state: e.target})
			}
		case take:
			nd := &node[T]{prev: r.path, ev: ev, ts: id.ts, seq: id.seq, step: n.states[er.src].step}
			start := r.start
			if isStart {
				start = id
			}
			out = append(out, run[T]{path: nd, start: start, state: e.target})
			if f, ok := n.finalAfterProceed(e.target, ev, cc); ok {
				out = append(out, run[T]{path: nd, start: start, state: f})
			}
		}
	}
	if isStart {
		out = append(out, r)
	}
	return out, edges, nil
}

// finalAfterProceed reports whether a final state is reachable from s by
// enabled proceed edges: then the event just taken also completes a match
// (e.g. after the first event of a trailing loop).
func (n *NFA[T]) finalAfterProceed(s int32, ev T, cc *condCtx[T]) (int32, bool) {
	var stackBuf [8]int32
	stack := append(stackBuf[:0], s)
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, e := range n.states[cur].edges {
			if e.act != proceed || (e.cond != nil && !e.cond(ev, cc)) {
				continue
			}
			if n.states[e.target].kind == finalState {
				return e.target, true
			}
			stack = append(stack, e.target)
		}
	}
	return 0, false
}

// condCtx is the Context of iterative conditions for one partial match; it
// materialises the match's events only when a condition asks.
type condCtx[T any] struct {
	n      *NFA[T]
	path   *node[T]
	ts     int64
	events Match[T]
}

func (c *condCtx[T]) reset(p *node[T], ts int64) { c.path, c.ts, c.events = p, ts, nil }

func (c *condCtx[T]) Events(name string) []T {
	if c.events == nil {
		c.events = c.n.materialize(c.path)
	}
	return c.events[name]
}

func (c *condCtx[T]) Timestamp() int64 { return c.ts }
