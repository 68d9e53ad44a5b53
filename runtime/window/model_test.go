package window_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

// model computes what Flink's WindowOperator with an event-time trigger
// emits for a sum over tumbling or sliding windows, one window at a time
// (no panes), as the reference for the operator.
type model struct {
	a         window.Assigner
	lateness  int64
	wm        int64
	state     map[string]map[window.Window]*modelWindow
	out, late []string
}

type modelWindow struct {
	sum     int64
	pending bool // its end-of-window timer has yet to fire
}

func (m *model) cleanup(w window.Window) int64 { return w.MaxTimestamp() + m.lateness }

func (m *model) element(e ev) {
	skipped := true
	for _, w := range m.a.Assign(e.ts, nil) {
		if m.cleanup(w) <= m.wm {
			continue
		}
		skipped = false
		ws := m.state[e.key]
		if ws == nil {
			ws = map[window.Window]*modelWindow{}
			m.state[e.key] = ws
		}
		mw := ws[w]
		if mw == nil {
			mw = &modelWindow{pending: w.MaxTimestamp() > m.wm}
			ws[w] = mw
		}
		mw.sum += e.n
		if w.MaxTimestamp() <= m.wm {
			m.out = append(m.out, fmt.Sprintf("%s %v [%d] @%d", e.key, w, mw.sum, w.MaxTimestamp()))
		}
	}
	if skipped && e.ts+m.lateness <= m.wm {
		m.late = append(m.late, e.String())
	}
}

func (m *model) advance(wm int64) {
	if wm <= m.wm {
		return
	}
	m.wm = wm
	for k, ws := range m.state {
		for w, mw := range ws {
			if mw.pending && w.MaxTimestamp() <= wm {
				mw.pending = false
				m.out = append(m.out, fmt.Sprintf("%s %v [%d] @%d", k, w, mw.sum, w.MaxTimestamp()))
			}
			if m.cleanup(w) <= wm {
				delete(ws, w)
			}
		}
	}
}

// TestSlicedWindowsMatchTheReference runs random tumbling and sliding
// windows (gaps, offsets, sizes that are not multiples of the slide,
// allowed lateness) over random out-of-order input through the operator,
// which keeps panes, and through the per-window model: the results, their
// timestamps and the late records must be the same.
func TestSlicedWindowsMatchTheReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	ms := time.Millisecond
	for iter := range 150 {
		size := rng.Int64N(20) + 1
		var a window.Assigner
		slide := size
		if rng.IntN(4) == 0 {
			a = window.Tumbling(time.Duration(size) * ms)
		} else {
			slide = rng.Int64N(size+5) + 1
			a = window.Sliding(time.Duration(size)*ms, time.Duration(slide)*ms)
		}
		if rng.IntN(2) == 0 {
			a = a.WithOffset(time.Duration(rng.Int64N(2*slide-1)-(slide-1)) * ms)
		}
		lateness := int64(0)
		if rng.IntN(2) == 0 {
			lateness = rng.Int64N(15)
		}
		ooo := rng.Int64N(10)
		var batches [][]ev
		base := rng.Int64N(100) - 50
		for range 12 {
			var b []ev
			for range rng.IntN(6) {
				b = append(b, ev{key: []string{"a", "b", "c"}[rng.IntN(3)], ts: base + rng.Int64N(20) - 10, n: rng.Int64N(9) + 1})
			}
			batches = append(batches, b)
			base += rng.Int64N(8)
		}

		m := &model{a: a, lateness: lateness, wm: math.MinInt64, state: map[string]map[window.Window]*modelWindow{}}
		maxTs := int64(math.MinInt64)
		for _, b := range batches {
			for _, e := range b {
				m.element(e)
				maxTs = max(maxTs, e.ts)
			}
			if maxTs != math.MinInt64 {
				m.advance(maxTs - ooo - 1)
			}
		}
		m.advance(math.MaxInt64)

		p := pipeline{batches: batches, ooo: time.Duration(ooo) * ms, late: &lateTag}
		out, late := p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
			return window.AggregateProcess(ks, "sum", a, window.Sum(func(e ev) int64 { return e.n }), nil, describe[int64], nil,
				window.AllowedLateness(time.Duration(lateness)*ms), window.LateOutput(lateTag))
		})
		slices.Sort(m.out)
		slices.Sort(m.late)
		if !slices.Equal(out, m.out) || !slices.Equal(late, m.late) {
			t.Fatalf("case %d: %v, lateness %d, out-of-orderness %d, input %v:\n got  %q\n want %q\n late %q, want %q",
				iter, a, lateness, ooo, batches, out, m.out, late, m.late)
		}
	}
}
