package window

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

func TestAssignTumbling(t *testing.T) {
	sec := time.Second
	cases := []struct {
		a    Assigner
		ts   int64
		want Window
	}{
		{Tumbling(10 * sec), 0, Window{0, 10000}},
		{Tumbling(10 * sec), 9999, Window{0, 10000}},
		{Tumbling(10 * sec), 10000, Window{10000, 20000}},
		{Tumbling(10 * sec), 123456, Window{120000, 130000}},
		{Tumbling(10 * sec), -1, Window{-10000, 0}},
		{Tumbling(10 * sec), -10000, Window{-10000, 0}},
		{Tumbling(10 * sec), -10001, Window{-20000, -10000}},
		{Tumbling(10 * sec).WithOffset(3 * sec), 2999, Window{-7000, 3000}},
		{Tumbling(10 * sec).WithOffset(3 * sec), 3000, Window{3000, 13000}},
		{Tumbling(10 * sec).WithOffset(-3 * sec), 7000, Window{7000, 17000}},
		{Tumbling(10 * sec).WithOffset(-3 * sec), 6999, Window{-3000, 7000}},
		{Tumbling(time.Millisecond), 42, Window{42, 43}},
		{Tumbling(10 * sec), math.MaxInt64 - 5, Window{math.MaxInt64 - 5 - (math.MaxInt64-5)%10000, math.MaxInt64}},
	}
	for _, c := range cases {
		if err := c.a.Err(); err != nil {
			t.Fatalf("%v: %v", c.a, err)
		}
		got := c.a.Assign(c.ts, nil)
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("%v: Assign(%d) = %v, want %v", c.a, c.ts, got, c.want)
		}
		if w := got[0]; c.ts < w.Start || c.ts > w.MaxTimestamp() {
			t.Errorf("%v: %d not in %v", c.a, c.ts, w)
		}
	}
}

func TestAssignSliding(t *testing.T) {
	sec := time.Second
	cases := []struct {
		a    Assigner
		ts   int64
		want []Window
	}{
		// A minute sliding every 10 s: six windows, latest first.
		{Sliding(60*sec, 10*sec), 65000, []Window{{60000, 120000}, {50000, 110000}, {40000, 100000}, {30000, 90000}, {20000, 80000}, {10000, 70000}}},
		{Sliding(10*sec, 5*sec), 5000, []Window{{5000, 15000}, {0, 10000}}},
		{Sliding(10*sec, 5*sec), 4999, []Window{{0, 10000}, {-5000, 5000}}},
		{Sliding(10*sec, 5*sec), -1, []Window{{-5000, 5000}, {-10000, 0}}},
		{Sliding(10*sec, 5*sec).WithOffset(2 * sec), 2000, []Window{{2000, 12000}, {-3000, 7000}}},
		// Slide longer than size: some timestamps fall in no window.
		{Sliding(5*sec, 10*sec), 4000, []Window{{0, 5000}}},
		{Sliding(5*sec, 10*sec), 7000, nil},
		// Size not a multiple of slide.
		{Sliding(10*sec, 3*sec), 9000, []Window{{9000, 19000}, {6000, 16000}, {3000, 13000}, {0, 10000}}},
	}
	for _, c := range cases {
		if err := c.a.Err(); err != nil {
			t.Fatalf("%v: %v", c.a, err)
		}
		got := c.a.Assign(c.ts, nil)
		if !slices.Equal(got, c.want) {
			t.Errorf("%v: Assign(%d) = %v, want %v", c.a, c.ts, got, c.want)
		}
	}
}

func TestAssignReusesBuffer(t *testing.T) {
	a := Sliding(time.Minute, 10*time.Second)
	buf := make([]Window, 0, 8)
	allocs := testing.AllocsPerRun(100, func() { buf = a.Assign(123456789, buf[:0]) })
	if allocs != 0 || len(buf) != 6 {
		t.Errorf("%v allocations, %d windows; want 0 and 6", allocs, len(buf))
	}
}

func TestAssignSession(t *testing.T) {
	got := Session(30*time.Second).Assign(1000, nil)
	if want := []Window{{1000, 31000}}; !slices.Equal(got, want) {
		t.Errorf("session: %v, want %v", got, want)
	}
}

func TestAssignerValidation(t *testing.T) {
	bad := []Assigner{
		Tumbling(0), Tumbling(-time.Second), Tumbling(time.Microsecond),
		Sliding(time.Second, 0), Sliding(0, time.Second), Sliding(time.Hour, time.Millisecond),
		Session(0), Session(time.Second).WithOffset(time.Millisecond),
		Tumbling(time.Second).WithOffset(time.Second), Tumbling(time.Second).WithOffset(-time.Second),
		Sliding(time.Minute, 10*time.Second).WithOffset(10 * time.Second),
		{}, // the zero value
	}
	for _, a := range bad {
		if a.Err() == nil {
			t.Errorf("%v: accepted", a)
		}
	}
	good := []Assigner{Tumbling(time.Second).WithOffset(999 * time.Millisecond), Sliding(time.Minute, 10*time.Second).InProcessingTime()}
	for _, a := range good {
		if err := a.Err(); err != nil {
			t.Errorf("%v: %v", a, err)
		}
	}
	if d := good[1].Domain(); d != ProcessingTime {
		t.Errorf("domain %v", d)
	}
}

// sessions adds windows to a merging set in order and describes the set
// and the merges of the last addition.
func sessions(ws ...Window) (*mergingSet, Window) {
	var s mergingSet
	var last Window
	for _, w := range ws {
		last = s.add(w)
	}
	return &s, last
}

func TestMergingSetKeepsDisjointSessions(t *testing.T) {
	s, got := sessions(Window{0, 10}, Window{20, 30}, Window{11, 19})
	if got != (Window{11, 19}) || len(s.set) != 3 || len(s.ops) != 0 {
		t.Fatalf("got %v, set %v, ops %v", got, s.set, s.ops)
	}
	for _, m := range s.set {
		if m.w != m.state {
			t.Errorf("unmerged window %v has state window %v", m.w, m.state)
		}
	}
}

func TestMergingSetMergesOverlapAndAdjacency(t *testing.T) {
	s, got := sessions(Window{0, 10}, Window{5, 15})
	if got != (Window{0, 15}) || len(s.set) != 1 || s.set[0] != (mapped{Window{0, 15}, Window{0, 10}}) {
		t.Fatalf("overlap: got %v, set %v", got, s.set)
	}
	if len(s.ops) != 1 || s.ops[0].result != (Window{0, 15}) || !slices.Equal(s.ops[0].merged, []Window{{0, 10}}) ||
		s.ops[0].state != (Window{0, 10}) || len(s.ops[0].mergedState) != 0 {
		t.Errorf("ops %+v", s.ops)
	}
	// Touching windows merge too.
	s, got = sessions(Window{0, 10}, Window{10, 20})
	if got != (Window{0, 20}) || len(s.set) != 1 {
		t.Errorf("adjacent: got %v, set %v", got, s.set)
	}
}

func TestMergingSetBridgingWindowMergesTwoSessions(t *testing.T) {
	s, got := sessions(Window{0, 10}, Window{20, 30}, Window{8, 22})
	if got != (Window{0, 30}) || len(s.set) != 1 {
		t.Fatalf("got %v, set %v", got, s.set)
	}
	// The first session's state window holds the merged state; the
	// second's accumulator is merged into it.
	if len(s.ops) != 1 {
		t.Fatalf("ops %+v", s.ops)
	}
	op := s.ops[0]
	if op.result != (Window{0, 30}) || op.state != (Window{0, 10}) || !slices.Equal(op.mergedState, []Window{{20, 30}}) ||
		!slices.Equal(op.merged, []Window{{0, 10}, {20, 30}}) {
		t.Errorf("op %+v", op)
	}
	if st, ok := s.stateOf(Window{0, 30}); !ok || st != (Window{0, 10}) {
		t.Errorf("stateOf = %v, %v", st, ok)
	}
	// A later merge keeps the original state window.
	got = s.add(Window{29, 40})
	if got != (Window{0, 40}) || s.set[0] != (mapped{Window{0, 40}, Window{0, 10}}) || s.ops[0].state != (Window{0, 10}) {
		t.Errorf("second merge: got %v, set %v, ops %+v", got, s.set, s.ops)
	}
}

func TestMergingSetContainedWindowNeedsNoMerge(t *testing.T) {
	s, got := sessions(Window{0, 30}, Window{5, 10})
	if got != (Window{0, 30}) || len(s.set) != 1 || len(s.ops) != 0 {
		t.Errorf("got %v, set %v, ops %+v", got, s.set, s.ops)
	}
	s, got = sessions(Window{0, 30}, Window{0, 30})
	if got != (Window{0, 30}) || len(s.set) != 1 || len(s.ops) != 0 {
		t.Errorf("duplicate: got %v, set %v, ops %+v", got, s.set, s.ops)
	}
	s.retire(Window{0, 30})
	if len(s.set) != 0 {
		t.Errorf("retire left %v", s.set)
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	w := Window{-5, math.MaxInt64}
	if got, err := (Codec{}).Decode(Codec{}.Append(nil, w)); err != nil || got != w {
		t.Errorf("window: %v, %v", got, err)
	}
	if got, err := (NumberCodec[uint64]{}).Decode(NumberCodec[uint64]{}.Append(nil, math.MaxUint64)); err != nil || got != math.MaxUint64 {
		t.Errorf("uint64: %v, %v", got, err)
	}
	if got, err := (NumberCodec[float32]{}).Decode(NumberCodec[float32]{}.Append(nil, 2.5)); err != nil || got != 2.5 {
		t.Errorf("float32: %v, %v", got, err)
	}
	if got, err := (ExtremeCodec[int]{}).Decode(ExtremeCodec[int]{}.Append(nil, Extreme[int]{V: -3, Set: true})); err != nil || got != (Extreme[int]{-3, true}) {
		t.Errorf("extreme: %v, %v", got, err)
	}
	if got, err := (ExtremeCodec[int]{}).Decode(ExtremeCodec[int]{}.Append(nil, Extreme[int]{})); err != nil || got.Set {
		t.Errorf("empty extreme: %v, %v", got, err)
	}
	if got, err := (MeanCodec{}).Decode(MeanCodec{}.Append(nil, Mean{1.5, 3})); err != nil || got != (Mean{1.5, 3}) {
		t.Errorf("mean: %v, %v", got, err)
	}
	set := []mapped{{Window{0, 30}, Window{0, 10}}, {Window{-40, -5}, Window{-40, -5}}}
	if got, err := (sessionsCodec{}).Decode(sessionsCodec{}.Append(nil, set)); err != nil || !slices.Equal(got, set) {
		t.Errorf("sessions: %v, %v", got, err)
	}
	sc := SliceCodec[string]{Elem: runtime.StringCodec{}}
	l := []string{"a", "", "ccc"}
	if got, err := sc.Decode(sc.Append(nil, l)); err != nil || !slices.Equal(got, l) {
		t.Errorf("slice: %q, %v", got, err)
	}
	for name, bad := range map[string]func() error{
		"window":   func() error { _, err := (Codec{}).Decode([]byte{2}); return err },
		"trail":    func() error { _, err := (Codec{}).Decode(append(Codec{}.Append(nil, w), 0)); return err },
		"number":   func() error { _, err := (NumberCodec[float64]{}).Decode([]byte{1, 2}); return err },
		"extreme":  func() error { _, err := (ExtremeCodec[int]{}).Decode([]byte{2, 4}); return err },
		"mean":     func() error { _, err := (MeanCodec{}).Decode([]byte{1}); return err },
		"slice":    func() error { _, err := sc.Decode([]byte{3, 1, 'a'}); return err },
		"elem":     func() error { _, err := sc.Decode([]byte{1, 5, 'a'}); return err },
		"tail":     func() error { _, err := sc.Decode([]byte{1, 1, 'a', 0}); return err },
		"sessions": func() error { _, err := (sessionsCodec{}).Decode([]byte{9, 0, 0, 0, 0}); return err },
	} {
		if err := bad(); !errors.Is(err, runtime.ErrCorrupt) {
			t.Errorf("%s: corrupt input gave %v", name, err)
		}
	}
}

type reading struct {
	dev string
	v   int64
}

func TestReadyMadeAggregates(t *testing.T) {
	in := []reading{{"a", 4}, {"a", -2}, {"a", 10}, {"a", 3}}
	val := func(r reading) int64 { return r.v }
	run := func(add func(reading), merge func()) {
		for i, r := range in {
			add(r)
			if i == 1 {
				merge()
			}
		}
	}
	// Each aggregate is fed the first two elements in one accumulator and
	// the rest in another, then merged, as session windows would.
	check := func(name string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	{
		f := Count[reading]()
		a, b := f.CreateAccumulator(), f.CreateAccumulator()
		cur := &a
		run(func(r reading) { *cur = f.Add(r, *cur) }, func() { cur = &b })
		check("count", f.Result(f.Merge(a, b)), 4)
	}
	{
		f := Sum(val)
		a, b := f.CreateAccumulator(), f.CreateAccumulator()
		cur := &a
		run(func(r reading) { *cur = f.Add(r, *cur) }, func() { cur = &b })
		check("sum", f.Result(f.Merge(a, b)), 15)
	}
	for _, c := range []struct {
		name string
		f    AggregateFunction[reading, Extreme[int64], int64]
		want int64
	}{{"min", Min(val), -2}, {"max", Max(val), 10}} {
		a, b := c.f.CreateAccumulator(), c.f.CreateAccumulator()
		cur := &a
		run(func(r reading) { *cur = c.f.Add(r, *cur) }, func() { cur = &b })
		check(c.name, c.f.Result(c.f.Merge(a, b)), c.want)
		check(c.name+" with empty", c.f.Result(c.f.Merge(c.f.CreateAccumulator(), a)), c.f.Result(a))
	}
	{
		f := Avg(val)
		a, b := f.CreateAccumulator(), f.CreateAccumulator()
		cur := &a
		run(func(r reading) { *cur = f.Add(r, *cur) }, func() { cur = &b })
		check("avg", f.Result(f.Merge(a, b)), 3.75)
		if !math.IsNaN(f.Result(f.CreateAccumulator())) {
			t.Error("avg of nothing is not NaN")
		}
	}
	if _, ok := Sum(val).(AccumulatorCoder[int64]); !ok {
		t.Error("Sum has no accumulator codec")
	}
}
