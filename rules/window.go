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
	n                 int
	base              int64      // sequence number of ts[0]
	head              int        // first live entry
	ts                []int64    // entry times
	in                []aggInput // len(ts)*n
	count, sum, sumsq []float64
	minQ, maxQ        [][]int64 // per aggregate: sequence numbers
	distinct          []map[any]int
}

func newLookback(n int) *lookback {
	return &lookback{n: n, count: make([]float64, n), sum: make([]float64, n), sumsq: make([]float64, n),
		minQ: make([][]int64, n), maxQ: make([][]int64, n), distinct: make([]map[any]int, n)}
}

func (l *lookback) len() int { return len(l.ts) - l.head }

func (l *lookback) input(seq int64, j int) aggInput { return l.in[int(seq-l.base)*l.n+j] }

// expire drops the entries at or before t.
func (l *lookback) expire(t int64) {
	for l.head < len(l.ts) && l.ts[l.head] <= t {
		seq := l.base + int64(l.head)
		for j := range l.n {
			in := l.in[l.head*l.n+j]
			if !in.ok {
				continue
			}
			l.count[j]--
			l.sum[j] -= in.f
			l.sumsq[j] -= in.f * in.f
			if l.count[j] == 0 {
				l.sum[j], l.sumsq[j] = 0, 0 // no rounding residue in an empty window
			}
			if q := l.minQ[j]; len(q) > 0 && q[0] == seq {
				l.minQ[j] = q[1:]
			}
			if q := l.maxQ[j]; len(q) > 0 && q[0] == seq {
				l.maxQ[j] = q[1:]
			}
			if d := l.distinct[j]; d != nil && in.v != nil {
				if d[in.v]--; d[in.v] <= 0 {
					delete(d, in.v)
				}
			}
		}
		l.head++
	}
	if l.head > 32 && l.head*2 > len(l.ts) {
		l.base += int64(l.head)
		l.ts = append(l.ts[:0], l.ts[l.head:]...)
		l.in = append(l.in[:0], l.in[l.head*l.n:]...)
		l.head = 0
	}
}

// add appends an entry at t with one input per aggregate.
func (l *lookback) add(t int64, ins []aggInput) {
	seq := l.base + int64(len(l.ts))
	l.ts = append(l.ts, t)
	l.in = append(l.in, ins...)
	for j, in := range ins {
		if !in.ok {
			continue
		}
		l.count[j]++
		l.sum[j] += in.f
		l.sumsq[j] += in.f * in.f
		q := l.minQ[j]
		for len(q) > 0 && l.input(q[len(q)-1], j).f >= in.f {
			q = q[:len(q)-1]
		}
		l.minQ[j] = append(q, seq)
		q = l.maxQ[j]
		for len(q) > 0 && l.input(q[len(q)-1], j).f <= in.f {
			q = q[:len(q)-1]
		}
		l.maxQ[j] = append(q, seq)
		if in.v != nil {
			if l.distinct[j] == nil {
				l.distinct[j] = map[any]int{}
			}
			l.distinct[j][in.v]++
		}
	}
}

func (l *lookback) reset() {
	l.expire(1<<63 - 1)
}

func (l *lookback) value(j int, fn aggFn) float64 {
	switch fn {
	case fnCount:
		return l.count[j]
	case fnSum:
		return l.sum[j]
	case fnAvg:
		if l.count[j] == 0 {
			return 0
		}
		return l.sum[j] / l.count[j]
	case fnMin:
		if q := l.minQ[j]; len(q) > 0 {
			return l.input(q[0], j).f
		}
	case fnMax:
		if q := l.maxQ[j]; len(q) > 0 {
			return l.input(q[0], j).f
		}
	case fnCountDistinct:
		return float64(len(l.distinct[j]))
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

// aggregateTimer closes the window whose last millisecond is t.
func (rn *Runner) aggregateTimer(r *Rule, st *State, t int64, out []Alert) ([]Alert, error) {
	w := &r.window
	rn.env.E, rn.env.TS, rn.env.P, rn.env.Lists, rn.env.Prev = nil, t, r.params, r.lists, nil
	if w.typ == Session {
		if s := st.session; s != nil && s.last+w.gap-1 == t {
			return rn.fireSession(r, st, out)
		}
		return out, nil // a timer of a session that has grown since
	}
	start := t + 1 - w.size
	a := st.wins[start]
	if a == nil {
		return out, nil
	}
	delete(st.wins, start)
	return rn.fire(r, st, *a, Bounds{Start: start, End: t + 1}, out)
}

func (rn *Runner) fireSession(r *Rule, st *State, out []Alert) ([]Alert, error) {
	s := st.session
	st.session = nil
	end := s.last + r.window.gap
	rn.env.TS = end - 1
	return rn.fire(r, st, s.a, Bounds{Start: s.start, End: end}, out)
}

func (rn *Runner) fire(r *Rule, st *State, a []acc, b Bounds, out []Alert) ([]Alert, error) {
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
