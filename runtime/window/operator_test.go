package window_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

// ev is a test record: a key, an event time and a number. Records with key
// "" are watermark markers: they advance event time and are filtered out
// before the window.
type ev struct {
	key string
	ts  int64
	n   int64
}

func (e ev) String() string { return fmt.Sprintf("%s@%d", e.key, e.ts) }

func mark(ts int64) ev { return ev{ts: ts} }

// evCodec serialises evs for exchanges and element lists.
type evCodec struct{}

func (evCodec) Append(dst []byte, e ev) []byte {
	dst = runtime.Int64Codec{}.Append(dst, int64(len(e.key)))
	dst = append(dst, e.key...)
	dst = runtime.Int64Codec{}.Append(dst, e.ts)
	return runtime.Int64Codec{}.Append(dst, e.n)
}

func (evCodec) Decode(src []byte) (ev, error) {
	r := runtime.NewReader(src)
	e := ev{key: string(r.Bytes())}
	e.ts, e.n = r.Varint(), r.Varint()
	return e, r.Done()
}

// batchSource emits one batch per poll; the task advances the watermark
// after each poll, so the batches are the steps of event time.
type batchSource struct {
	batches [][]ev
	i       int
}

func (s *batchSource) Poll(out runtime.Collector[ev]) (time.Duration, error) {
	if s.i == len(s.batches) {
		return 0, runtime.ErrEndOfInput
	}
	for _, e := range s.batches[s.i] {
		out.Collect(e)
	}
	s.i++
	return 0, nil
}

// collector gathers a job's output lines.
type collector struct {
	mu    sync.Mutex
	lines []string
}

func (c *collector) Invoke(s string) error {
	c.mu.Lock()
	c.lines = append(c.lines, s)
	c.mu.Unlock()
	return nil
}

func (c *collector) sorted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(slices.Values(c.lines))
}

// stamp appends each record's timestamp to it, to check what timestamp
// the window operator gave its output.
type stamp struct{}

func (stamp) ProcessElement(v string, ctx *runtime.ProcessContext, out runtime.Collector[string]) error {
	out.Collect(fmt.Sprintf("%s @%d", v, ctx.Timestamp()))
	return nil
}

// describe is a process window function printing key, window and the
// (aggregated) elements.
func describe[T any]() window.ProcessWindowFunction[string, T, string] {
	return window.ProcessFunc[string, T, string](func(k string, w window.Window, elems []T, out runtime.Collector[string]) error {
		out.Collect(fmt.Sprintf("%s %v %v", k, w, elems))
		return nil
	})
}

// pipeline is source -> timestamps (out-of-orderness ooo) -> drop markers
// -> keyBy, handed to build; its output is stamped and collected, and so
// are the late records if late is set.
type pipeline struct {
	batches [][]ev
	ooo     time.Duration
	late    *runtime.OutputTag[ev]
}

func (p pipeline) run(t *testing.T, build func(runtime.KeyedStream[ev, string]) runtime.Stream[string]) (out, late []string) {
	t.Helper()
	env, _ := runtime.NewEnv("windows", 1)
	src := runtime.FromSource(env, "events", func() runtime.SourceFunction[ev] { return &batchSource{batches: p.batches} }, nil)
	ts := runtime.AssignTimestampsAndWatermarks(src, runtime.ForBoundedOutOfOrderness(p.ooo, func(e ev) int64 { return e.ts }))
	data := runtime.Filter(ts, "drop-marks", func(e ev) bool { return e.key != "" })
	windowed := build(runtime.KeyBy(data, runtime.StringKey, func(e ev) string { return e.key }))
	var res, lateRes collector
	stamped := runtime.ProcessStream(windowed, "stamp", func() runtime.ProcessFunction[string, string] { return stamp{} }, nil)
	runtime.SinkTo(stamped, "out", func() runtime.SinkFunction[string] { return &res })
	if p.late != nil {
		l := runtime.Map(runtime.SideOutput(windowed, *p.late), "late", ev.String, nil)
		runtime.SinkTo(l, "late-out", func() runtime.SinkFunction[string] { return &lateRes })
	}
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 1 {
		t.Fatalf("%d vertices, want one chain", len(g.Vertices))
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return res.sorted(), lateRes.sorted()
}

func expect(t *testing.T, what string, got, want []string) {
	t.Helper()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

var lateTag = runtime.NewOutputTag("late", evCodec{})

func TestTumblingFiresOnWatermarkWithOutOfOrderInput(t *testing.T) {
	p := pipeline{ooo: 5 * time.Millisecond, late: &lateTag, batches: [][]ev{
		{{"a", 1, 0}, {"a", 12, 0}, {"a", 5, 0}, {"b", 3, 0}}, // watermark 12-5-1 = 6: nothing fires
		{{"b", 9, 0}, mark(16)},                               // watermark 10: [0, 10) fires
		{{"a", 8, 0}, {"b", 14, 0}},                           // a@8 is late; b@14 is not
		{mark(25)},                                            // watermark 19: [10, 20) fires
	}}
	out, late := p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		return window.AggregateProcess(ks, "count", window.Tumbling(10*time.Millisecond), window.Count[ev](), nil, describe[int64], nil,
			window.LateOutput(lateTag))
	})
	// Results carry the window's maxTimestamp.
	expect(t, "results", out, []string{"a [0, 10) [2] @9", "b [0, 10) [2] @9", "a [10, 20) [1] @19", "b [10, 20) [1] @19"})
	expect(t, "late", late, []string{"a@8"})
}

func TestSlidingWindowsGetEveryElementOfTheirSpan(t *testing.T) {
	p := pipeline{batches: [][]ev{{{"a", 1, 1}, {"a", 6, 10}, {"a", 11, 100}, {"b", 7, 1000}}}}
	out, _ := p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		return window.AggregateProcess(ks, "sum", window.Sliding(10*time.Millisecond, 5*time.Millisecond),
			window.Sum(func(e ev) int64 { return e.n }), nil, describe[int64], nil)
	})
	expect(t, "results", out, []string{
		"a [-5, 5) [1] @4", "a [0, 10) [11] @9", "a [5, 15) [110] @14", "a [10, 20) [100] @19",
		"b [0, 10) [1000] @9", "b [5, 15) [1000] @14",
	})
}

func TestProcessWindowSeesElementsAndOffsetWindows(t *testing.T) {
	p := pipeline{batches: [][]ev{{{"a", 1, 1}, {"a", 3, 2}, {"a", 4, 3}, {"a", 13, 4}}}}
	out, _ := p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		return window.Process(ks, "list", window.Tumbling(10*time.Millisecond).WithOffset(3*time.Millisecond),
			describe[ev], evCodec{}, nil)
	})
	expect(t, "results", out, []string{"a [-7, 3) [a@1] @2", "a [3, 13) [a@3 a@4] @12", "a [13, 23) [a@13] @22"})
}

func TestAllowedLatenessFiresLateThenPurges(t *testing.T) {
	p := pipeline{late: &lateTag, batches: [][]ev{
		{{"a", 1, 1}, {"a", 2, 2}, mark(11)}, // watermark 10: [0, 10) fires with 3
		{{"a", 3, 10}},                       // late but allowed: fires again at once with 13
		{{"a", 5, 0}, mark(14)},              // watermark 13: within lateness still; fires with 13
		{mark(15)},                           // watermark 14 = 9 + 5: the window is purged
		{{"a", 4, 100}},                      // too late: side output
		{{"b", 9, 1}},                        // too late without a window ever existing: side output
	}}
	out, late := p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		return window.AggregateProcess(ks, "sum", window.Tumbling(10*time.Millisecond), window.Sum(func(e ev) int64 { return e.n }), nil,
			describe[int64], nil, window.AllowedLateness(5*time.Millisecond), window.LateOutput(lateTag))
	})
	// Late firings carry the window's maxTimestamp too.
	expect(t, "results", out, []string{"a [0, 10) [3] @9", "a [0, 10) [13] @9", "a [0, 10) [13] @9"})
	expect(t, "late", late, []string{"a@4", "b@9"})
}

func TestLateRecordsAreDroppedWithoutLateOutput(t *testing.T) {
	p := pipeline{batches: [][]ev{{{"a", 1, 1}, mark(20)}, {{"a", 2, 1}}}}
	out, _ := p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		counts := window.Aggregate(ks, "count", window.Tumbling(10*time.Millisecond), window.Count[ev](), nil, nil)
		return runtime.Map(counts, "format", func(n int64) string { return fmt.Sprint(n) }, nil)
	})
	expect(t, "results", out, []string{"1 @9"})
}

func TestSessionWindowsMerge(t *testing.T) {
	p := pipeline{ooo: 20 * time.Millisecond, late: &lateTag, batches: [][]ev{
		{{"a", 0, 1}, {"a", 20, 2}},               // sessions [0, 10) and [20, 30)
		{{"a", 9, 3}},                             // [9, 19) grows the first to [0, 19)
		{{"a", 15, 4}},                            // [15, 25) bridges both: [0, 30)
		{{"b", 2, 5}, {"b", 11, 6}},               // b: [2, 12) and [11, 21) merge: [2, 21)
		{mark(51)},                                // watermark 30: both sessions fire
		{{"a", 31, 7}, {"a", 35, 8}, {"a", 5, 9}}, // a new session [31, 45); a@5 is late
	}}
	out, late := p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		return window.Process(ks, "sessions", window.Session(10*time.Millisecond), describe[ev], evCodec{}, nil, window.LateOutput(lateTag))
	})
	// The bridged session's elements: the first session's list, the
	// second's merged into it, then the bridging element.
	expect(t, "elements", out, []string{"a [0, 30) [a@0 a@9 a@20 a@15] @29", "b [2, 21) [b@2 b@11] @20", "a [31, 45) [a@31 a@35] @44"})
	expect(t, "late", late, []string{"a@5"})

	// The same with an incremental aggregate: accumulators merge.
	p.late = nil
	out, _ = p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		return window.AggregateProcess(ks, "sessions", window.Session(10*time.Millisecond), window.Sum(func(e ev) int64 { return e.n }), nil,
			describe[int64], nil)
	})
	expect(t, "sums", out, []string{"a [0, 30) [10] @29", "b [2, 21) [11] @20", "a [31, 45) [15] @44"})
}

func TestSessionLateFiringAndCleanup(t *testing.T) {
	p := pipeline{late: &lateTag, batches: [][]ev{
		{{"a", 0, 1}, mark(16)}, // watermark 15: [0, 10) fires
		{{"a", 5, 2}},           // [5, 15) merges into [0, 15), already past: fires at once
		{{"a", 30, 4}},          // watermark 29 passes [0, 15)'s cleanup time 24
		{{"a", 1, 8}},           // late: its session is gone
	}}
	out, late := p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		return window.AggregateProcess(ks, "sessions", window.Session(10*time.Millisecond), window.Sum(func(e ev) int64 { return e.n }), nil,
			describe[int64], nil, window.AllowedLateness(10*time.Millisecond), window.LateOutput(lateTag))
	})
	expect(t, "results", out, []string{"a [0, 10) [1] @9", "a [0, 15) [3] @14", "a [30, 40) [4] @39"})
	expect(t, "late", late, []string{"a@1"})
}
