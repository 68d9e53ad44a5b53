package rules

import "fmt"

// aggInput is one event's contribution to one aggregate: ok is false when
// the aggregate's where is false or its value is nil.
type aggInput struct {
	ok bool
	f  float64 // the number (sum, avg, min, max)
	v  any     // the value (countDistinct)
}

// acc accumulates one aggregate of a closing window; nothing leaves it.
type acc struct {
	count, sum, min, max float64
	distinct             map[any]struct{}
}

func (a *acc) add(in aggInput) {
	if !in.ok {
		return
	}
	if a.count == 0 || in.f < a.min {
		a.min = in.f
	}
	if a.count == 0 || in.f > a.max {
		a.max = in.f
	}
	a.count++
	a.sum += in.f
	if in.v != nil {
		if a.distinct == nil {
			a.distinct = map[any]struct{}{}
		}
		a.distinct[in.v] = struct{}{}
	}
}

func (a *acc) value(fn aggFn) float64 {
	switch fn {
	case fnCount:
		return a.count
	case fnSum:
		return a.sum
	case fnAvg:
		if a.count == 0 {
			return 0
		}
		return a.sum / a.count
	case fnMin:
		return a.min
	case fnMax:
		return a.max
	case fnCountDistinct:
		return float64(len(a.distinct))
	}
	return 0
}

// lookback holds the events of the last `size` for n aggregates (or the
// fields of a baseline's stats): running count, sum and sum of squares,
// monotonic queues for min and max, and value counts for countDistinct,
// so adding and expiring an event is amortised O(1) per aggregate.
type lookback struct {
	base int64      // sequence number of ts[0]
	head int        // first live entry
	ts   []int64    // entry times
	in   []aggInput // len(ts)*len(cols)
	cols []lbColumn
}

// lbColumn is one aggregate's running values. The queues are kept only
// for min and max, the value counts only for countDistinct.
type lbColumn struct {
	count, sum, sumsq float64
	minmax            bool
	minQ, maxQ        []int64 // sequence numbers, values increasing / decreasing
	distinct          map[any]int
}

// newLookback makes the columns of fns; minmax keeps min and max for all.
func newLookback(fns []aggFn, minmax bool) *lookback {
	l := &lookback{cols: make([]lbColumn, len(fns))}
	for j, fn := range fns {
		l.cols[j].minmax = minmax || fn == fnMin || fn == fnMax
	}
	return l
}

func (l *lookback) len() int { return len(l.ts) - l.head }

func (l *lookback) input(seq int64, j int) aggInput { return l.in[int(seq-l.base)*len(l.cols)+j] }

// expire drops the entries at or before t.
func (l *lookback) expire(t int64) {
	n := len(l.cols)
	for l.head < len(l.ts) && l.ts[l.head] <= t {
		seq := l.base + int64(l.head)
		for j := range l.cols {
			in, c := l.in[l.head*n+j], &l.cols[j]
			if !in.ok {
				continue
			}
			c.count--
			c.sum -= in.f
			c.sumsq -= in.f * in.f
			if c.count == 0 {
				c.sum, c.sumsq = 0, 0 // no rounding residue in an empty window
			}
			if len(c.minQ) > 0 && c.minQ[0] == seq {
				c.minQ = c.minQ[1:]
			}
			if len(c.maxQ) > 0 && c.maxQ[0] == seq {
				c.maxQ = c.maxQ[1:]
			}
			if c.distinct != nil && in.v != nil {
				if c.distinct[in.v]--; c.distinct[in.v] <= 0 {
					delete(c.distinct, in.v)
				}
			}
		}
		l.head++
	}
	switch {
	case l.head == len(l.ts):
		// Empty: start over at the front of the same arrays.
		l.base += int64(l.head)
		l.ts, l.in, l.head = l.ts[:0], l.in[:0], 0
	case l.head > 32 && l.head*2 > len(l.ts):
		l.base += int64(l.head)
		l.ts = append(l.ts[:0], l.ts[l.head:]...)
		l.in = append(l.in[:0], l.in[l.head*n:]...)
		l.head = 0
	}
}

// add appends an entry at t with one input per aggregate.
func (l *lookback) add(t int64, ins []aggInput) {
	seq := l.base + int64(len(l.ts))
	l.ts = append(l.ts, t)
	l.in = append(l.in, ins...)
	for j, in := range ins {
		c := &l.cols[j]
		if !in.ok {
			continue
		}
		c.count++
		c.sum += in.f
		c.sumsq += in.f * in.f
		if c.minmax {
			q := c.minQ
			for len(q) > 0 && l.input(q[len(q)-1], j).f >= in.f {
				q = q[:len(q)-1]
			}
			c.minQ = append(q, seq)
			q = c.maxQ
			for len(q) > 0 && l.input(q[len(q)-1], j).f <= in.f {
				q = q[:len(q)-1]
			}
			c.maxQ = append(q, seq)
		}
		if in.v != nil {
			if c.distinct == nil {
				c.distinct = map[any]int{}
			}
			c.distinct[in.v]++
		}
	}
}

func (l *lookback) reset() {
	l.expire(1<<63 - 1)
}

func (l *lookback) value(j int, fn aggFn) float64 {
	c := &l.cols[j]
	switch fn {
	case fnCount:
		return c.count
	case fnSum:
		return c.sum
	case fnAvg:
		if c.count == 0 {
			return 0
		}
		return c.sum / c.count
	case fnMin:
		if len(c.minQ) > 0 {
			return l.input(c.minQ[0], j).f
		}
	case fnMax:
		if len(c.maxQ) > 0 {
			return l.input(c.maxQ[0], j).f
		}
	case fnCountDistinct:
		return float64(len(c.distinct))
	}
	return 0
}

type sessionWindow struct {
	start, last int64
	a           []acc
}

// aggInputs evaluates every aggregate's where and of for the bound event,
// before any state changes, so an error leaves the state untouched.
func (rn *Runner) aggInputs(r *Rule) ([]aggInput, error) {
	ins := rn.ins[:0]
	for _, a := range r.aggs {
		var in aggInput
		if a.where != nil {
			ok, err := rn.runBool(a.where)
			if err != nil {
				return nil, wrap(r, "aggregates."+a.name+".where", err)
			}
			if !ok {
				ins = append(ins, in)
				continue
			}
		}
		in.ok = true
		if a.of != nil {
			v, err := rn.run(a.of)
			if err != nil {
				return nil, wrap(r, "aggregates."+a.name+".of", err)
			}
			if in, err = toInput(a.fn, v); err != nil {
				return nil, wrap(r, "aggregates."+a.name+".of", err)
			}
		}
		ins = append(ins, in)
	}
	rn.ins = ins
	return ins, nil
}

// toInput types one value: numbers for sum, avg, min and max; a string,
// number or boolean for countDistinct. nil (a missing field) is skipped.
func toInput(fn aggFn, v any) (aggInput, error) {
	if v == nil {
		return aggInput{}, nil
	}
	if fn == fnCountDistinct {
		switch x := v.(type) {
		case string, bool, float64:
			return aggInput{ok: true, v: x}, nil
		}
		if f, ok := number(v); ok {
			return aggInput{ok: true, v: f}, nil
		}
		return aggInput{}, fmt.Errorf("countDistinct of a %T: want a string, number or boolean", v)
	}
	f, ok := number(v)
	if !ok {
		return aggInput{}, fmt.Errorf("value %v is a %T, not a number", v, v)
	}
	return aggInput{ok: true, f: f}, nil
}

func (rn *Runner) aggregateEvent(r *Rule, st *State, ev *Event, timers Timers, out []Alert) ([]Alert, error) {
	ins, err := rn.aggInputs(r)
	if err != nil {
		return out, err
	}
	w := &r.window
	switch w.typ {
	case Lookback:
		st.look.expire(ev.TS - w.size)
		st.look.add(ev.TS, ins)
		clear(rn.env.Agg)
		for j, a := range r.aggs {
			rn.env.Agg[a.name] = st.look.value(j, a.fn)
		}
		if err := rn.derive(r); err != nil {
			return out, err
		}
		n := len(out)
		out, err = rn.hit(r, st, ev.TS, nil, out)
		if err == nil && r.reset && len(out) > n {
			st.look.reset()
		}
		st.armCleanup(timers, ev.TS+w.size)
		return out, err
	case Tumbling:
		start := floorTo(ev.TS-w.offset, w.size) + w.offset
		addWindow(st.wins, start, r, ins)
		timers.Register(start + w.size - 1)
	case Sliding:
		for start := floorTo(ev.TS-w.offset, w.slide) + w.offset; start > ev.TS-w.size; start -= w.slide {
			addWindow(st.wins, start, r, ins)
			timers.Register(start + w.size - 1)
		}
	case Session:
		s := st.session
		switch {
		case s != nil && ev.TS >= s.last+w.gap:
			// The caller did not fire the old session's timer before this
			// event: close it now, as the watermark would have.
			if out, err = rn.fireSession(r, st, out); err != nil {
				return out, err
			}
			s = nil
		case s != nil && ev.TS <= s.start-w.gap:
			return out, wrap(r, "window", fmt.Errorf("event at %d is before the open session [%d, %d]: "+
				"session windows need each key's events in event-time order", ev.TS, s.start, s.last))
		}
		if s == nil {
			s = &sessionWindow{start: ev.TS, last: ev.TS, a: make([]acc, len(r.aggs))}
			st.session = s
		}
		s.start, s.last = min(s.start, ev.TS), max(s.last, ev.TS)
		for j, in := range ins {
			s.a[j].add(in)
		}
		timers.Register(s.last + w.gap - 1)
	}
	return out, nil
}

func addWindow(wins map[int64]*accs, start int64, r *Rule, ins []aggInput) {
	a := wins[start]
	if a == nil {
		v := make(accs, len(r.aggs))
		a = &v
		wins[start] = a
	}
	for j, in := range ins {
		(*a)[j].add(in)
	}
}

type accs []acc

// aggregateTimer closes the window whose last millisecond is t. With
// lateness, the window is kept until t+lateness for late events, and
// the timer at a kept window's t+lateness drops it.
func (rn *Runner) aggregateTimer(r *Rule, st *State, t int64, timers Timers, out []Alert) ([]Alert, error) {
	w := &r.window
	rn.env.E, rn.env.TS, rn.env.P, rn.env.Lists, rn.env.Prev = nil, t, r.params, r.lists, nil
	if w.typ == Session {
		if s := st.session; s != nil && s.last+w.gap-1 == t {
			return rn.fireSession(r, st, out)
		}
		return out, nil // a timer of a session that has grown since
	}
	if w.lateness > 0 {
		delete(st.wins, t+1-w.size-w.lateness)
	}
	start := t + 1 - w.size
	a := st.wins[start]
	if a == nil {
		return out, nil
	}
	if w.lateness > 0 {
		timers.Register(t + w.lateness)
	} else {
		delete(st.wins, start)
	}
	return rn.fire(r, st, *a, Bounds{Start: start, End: t + 1}, out)
}

// AcceptsLate reports whether r takes events behind the watermark (a
// window rule with lateness).
func (r *Rule) AcceptsLate() bool { return r.window.lateness > 0 }

// OnLateEvent adds ev, whose time is at or behind the watermark wm, to
// the windows of r it belongs to that are within their lateness, and
// fires again, at once, those that had fired (their alerts marked Late),
// as Flink's allowed lateness does. It reports whether any window took
// the event; a rule without lateness takes none. Unlike everything else a
// rule does, what a late event meets depends on when it arrived, not on
// event time alone.
func (rn *Runner) OnLateEvent(r *Rule, st *State, ev *Event, wm int64, timers Timers, out []Alert) ([]Alert, bool, error) {
	w := &r.window
	if r.Kind != KindAggregate || w.lateness == 0 {
		return out, false, nil
	}
	rn.bind(r, ev)
	if r.when != nil {
		ok, err := rn.runBool(r.when)
		if err != nil || !ok {
			return out, err == nil, wrap(r, "when", err) // filtered out: taken, as an event in time would be
		}
	}
	ins, err := rn.aggInputs(r)
	if err != nil {
		return out, false, err
	}
	step := w.size
	if w.typ == Sliding {
		step = w.slide
	}
	took := false
	for start := floorTo(ev.TS-w.offset, step) + w.offset; start > ev.TS-w.size; start -= step {
		end := start + w.size
		if end-1+w.lateness <= wm {
			continue // dropped already
		}
		took = true
		addWindow(st.wins, start, r, ins)
		if end-1 > wm {
			timers.Register(end - 1) // not fired yet: it will be
			continue
		}
		timers.Register(end - 1 + w.lateness) // a window that was empty until now
		n := len(out)
		rn.env.E, rn.env.TS = nil, end-1
		if out, err = rn.fire(r, st, *st.wins[start], Bounds{Start: start, End: end}, out); err != nil {
			return out, took, err
		}
		for i := n; i < len(out); i++ {
			out[i].Late = true
		}
	}
	return out, took, nil
}

func (rn *Runner) fireSession(r *Rule, st *State, out []Alert) ([]Alert, error) {
	s := st.session
	st.session = nil
	end := s.last + r.window.gap
	rn.env.TS = end - 1
	return rn.fire(r, st, s.a, Bounds{Start: s.start, End: end}, out)
}

func (rn *Runner) fire(r *Rule, st *State, a []acc, b Bounds, out []Alert) ([]Alert, error) {
	if rn.mute {
		return out, nil
	}
	clear(rn.env.Agg)
	for j, ag := range r.aggs {
		rn.env.Agg[ag.name] = a[j].value(ag.fn)
	}
	if err := rn.derive(r); err != nil {
		return out, err
	}
	return rn.hit(r, st, b.End-1, &b, out)
}

// derive adds the derived values to agg.
func (rn *Runner) derive(r *Rule) error {
	for _, d := range r.derived {
		v, err := rn.run(d.prog)
		if err != nil {
			return wrap(r, "derived."+d.name, err)
		}
		f, ok := number(v)
		if !ok {
			return wrap(r, "derived."+d.name, fmt.Errorf("value %v is a %T, not a number", v, v))
		}
		rn.env.Agg[d.name] = f
	}
	return nil
}

// floorTo rounds t down to a multiple of d, also for negative t.
func floorTo(t, d int64) int64 {
	m := t % d
	if m < 0 {
		m += d
	}
	return t - m
}
