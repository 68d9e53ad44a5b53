package rules

import "math"

// profileState is a baseline rule's history of one key over its horizon.
type profileState struct {
	stats  *lookback       // one column per profile.stats field
	global *lookback       // one column per global.stats field
	hist   []histRing      // per profile.lastN field
	seen   []map[any]int64 // per profile.seen field: value -> last time
	prev   map[string]any
	prevTS int64
}

// histRing keeps the last n values of a field and their times, oldest
// first; vals[head:] is what hist.<field> shows, without a copy.
type histRing struct {
	n    int
	head int
	ts   []int64
	vals []any
}

func newProfileState(p *profile) *profileState {
	ps := &profileState{hist: make([]histRing, len(p.lastN)), seen: make([]map[any]int64, len(p.seen))}
	if len(p.stats) > 0 {
		ps.stats = newLookback(make([]aggFn, len(p.stats)), true)
	}
	if len(p.global) > 0 {
		ps.global = newLookback(make([]aggFn, len(p.global)), true)
	}
	for i, l := range p.lastN {
		ps.hist[i].n = l.n
	}
	for i := range ps.seen {
		ps.seen[i] = map[any]int64{}
	}
	return ps
}

func (h *histRing) expire(t int64) {
	for h.head < len(h.ts) && h.ts[h.head] <= t {
		h.vals[h.head] = nil
		h.head++
	}
}

func (h *histRing) add(t int64, v any) {
	h.ts = append(h.ts, t)
	h.vals = append(h.vals, v)
	if len(h.ts)-h.head > h.n {
		h.vals[h.head] = nil
		h.head++
	}
	if h.head > 32 && h.head*2 > len(h.ts) {
		h.ts = append(h.ts[:0], h.ts[h.head:]...)
		h.vals = append(h.vals[:0], h.vals[h.head:]...)
		h.head = 0
	}
}

// baselineEvent evaluates the condition against the key's history
// before the event, then adds the event to it.
func (rn *Runner) baselineEvent(r *Rule, st *State, ev *Event, timers Timers, out []Alert) ([]Alert, error) {
	p, ps := &r.profile, st.prof
	// Inputs first: an event with a bad value changes nothing.
	ins := rn.ins[:0]
	for _, f := range p.stats {
		in, err := toInput(fnSum, ev.Fields[f])
		if err != nil {
			return out, wrap(r, "profile.stats."+f, err)
		}
		ins = append(ins, in)
	}
	for _, f := range p.global {
		in, err := toInput(fnSum, ev.Fields[f])
		if err != nil {
			return out, wrap(r, "global.stats."+f, err)
		}
		ins = append(ins, in)
	}
	rn.ins = ins
	for _, f := range p.seen {
		if v := ev.Fields[f]; v != nil {
			if _, err := toInput(fnCountDistinct, v); err != nil {
				return out, wrap(r, "profile.seen."+f, err)
			}
		}
	}
	ps.expire(p, ev.TS)
	rn.stats = bindStats(rn.env.Stats, rn.stats, p.stats, ps.stats)
	rn.global = bindStats(rn.env.Global, rn.global, p.global, ps.global)
	clear(rn.env.Hist)
	for i, l := range p.lastN {
		h := &ps.hist[i]
		rn.env.Hist[l.field] = h.vals[h.head:]
	}
	clear(rn.env.Seen)
	for i, f := range p.seen {
		rn.env.Seen[f] = ps.seen[i]
	}
	rn.env.Prev = ps.prev

	out, err := rn.hit(r, st, ev.TS, nil, out)
	if err != nil {
		return out, err
	}
	if ps.stats != nil {
		ps.stats.add(ev.TS, ins[:len(p.stats)])
	}
	if ps.global != nil {
		ps.global.add(ev.TS, ins[len(p.stats):])
	}
	for i, l := range p.lastN {
		ps.hist[i].add(ev.TS, ev.Fields[l.field])
	}
	for i, f := range p.seen {
		if v := ev.Fields[f]; v != nil {
			ps.seen[i][v] = ev.TS
		}
	}
	ps.prev, ps.prevTS = ev.Fields, ev.TS
	st.armCleanup(timers, ev.TS+p.keep())
	return out, nil
}

// bindStats fills env with the statistics of l's columns, one per field,
// in scratch (reused), and returns scratch.
func bindStats(env map[string]*Stats, scratch []Stats, fields []string, l *lookback) []Stats {
	clear(env)
	if cap(scratch) < len(fields) {
		scratch = make([]Stats, len(fields))
	}
	scratch = scratch[:len(fields)]
	for j, f := range fields {
		s, c := &scratch[j], &l.cols[j]
		*s = Stats{Count: c.count, Sum: c.sum, Min: l.value(j, fnMin), Max: l.value(j, fnMax)}
		if s.Count > 0 {
			s.Mean = s.Sum / s.Count
			s.Stddev = math.Sqrt(max(0, c.sumsq/s.Count-s.Mean*s.Mean))
		}
		env[f] = s
	}
	return scratch
}

// expire drops what has left its horizon at time t: the profile's
// entries at or before t-horizon, the global statistics' at or before
// t-global horizon.
func (ps *profileState) expire(p *profile, t int64) {
	if ps.global != nil {
		ps.global.expire(t - p.globalHorizon)
	}
	cut := t - p.horizon
	for i := range ps.seen {
		for v, t := range ps.seen[i] {
			if t <= cut {
				delete(ps.seen[i], v)
			}
		}
	}
	if ps.stats != nil {
		ps.stats.expire(cut)
	}
	for i := range ps.hist {
		ps.hist[i].expire(cut)
	}
	if ps.prev != nil && ps.prevTS <= t-p.keep() {
		ps.prev = nil
	}
}

// empty reports whether the profile holds nothing.
func (ps *profileState) empty() bool {
	if ps.prev != nil || ps.stats != nil && ps.stats.len() > 0 || ps.global != nil && ps.global.len() > 0 {
		return false
	}
	for i := range ps.hist {
		if len(ps.hist[i].ts) > ps.hist[i].head {
			return false
		}
	}
	for i := range ps.seen {
		if len(ps.seen[i]) > 0 {
			return false
		}
	}
	return true
}
