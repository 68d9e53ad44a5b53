package window_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

// pacedEvents emits its records one per poll, pause apart, then waits
// tail before it ends, so that processing-time timers get to fire.
type pacedEvents struct {
	recs        []ev
	i           int
	pause, tail time.Duration
	end         time.Time
}

func (s *pacedEvents) Poll(out runtime.Collector[ev]) (time.Duration, error) {
	if s.i < len(s.recs) {
		out.Collect(s.recs[s.i])
		s.i++
		return s.pause, nil
	}
	if s.end.IsZero() {
		s.end = time.Now().Add(s.tail)
	}
	if left := time.Until(s.end); left > 0 {
		return left, nil
	}
	return 0, runtime.ErrEndOfInput
}

// TestProcessingTimeWindowsFireOnTheWallClock counts records in 20 ms
// processing-time windows. Which window a record falls in depends on when
// it is processed, so the test checks what does not: every record is
// counted once, in aligned 20 ms windows, fired by the clock before the
// input ends (pending processing-time timers do not fire at the end).
func TestProcessingTimeWindowsFireOnTheWallClock(t *testing.T) {
	var recs []ev
	for i := range 12 {
		recs = append(recs, ev{key: []string{"a", "b", "c"}[i%3]})
	}
	env, _ := runtime.NewEnv("proc", 1)
	src := runtime.FromSource(env, "events", func() runtime.SourceFunction[ev] {
		return &pacedEvents{recs: recs, pause: 3 * time.Millisecond, tail: 300 * time.Millisecond}
	}, nil)
	var results []string
	counts := map[string]int64{}
	wins := window.AggregateProcess(runtime.KeyBy(src, runtime.StringKey, func(e ev) string { return e.key }), "count",
		window.Tumbling(20*time.Millisecond).InProcessingTime(), window.Count[ev](), nil,
		func() window.ProcessWindowFunction[string, int64, string] {
			return window.ProcessFunc[string, int64, string](func(k string, w window.Window, n []int64, out runtime.Collector[string]) error {
				if w.End-w.Start != 20 || w.Start%20 != 0 {
					t.Errorf("window %v is not an aligned 20 ms window", w)
				}
				if now := time.Now().UnixMilli(); now < w.MaxTimestamp() {
					t.Errorf("window %v fired at %d, before its end", w, now)
				}
				counts[k] += n[0]
				out.Collect(k)
				return nil
			})
		}, nil)
	runtime.SinkTo(wins, "out", func() runtime.SinkFunction[string] {
		return sinkFunc(func(s string) { results = append(results, s) })
	})
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
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
	for _, k := range []string{"a", "b", "c"} {
		if counts[k] != 4 {
			t.Errorf("key %s counted %d times, want 4 (results %v)", k, counts[k], results)
		}
	}
}

type sinkFunc func(string)

func (f sinkFunc) Invoke(s string) error { f(s); return nil }

// noCodec is an aggregate without an accumulator codec of its own.
type noCodec struct{}

func (noCodec) CreateAccumulator() int64  { return 0 }
func (noCodec) Add(_ ev, acc int64) int64 { return acc + 1 }
func (noCodec) Merge(a, b int64) int64    { return a + b }
func (noCodec) Result(acc int64) int64    { return acc }

func TestBadConfigurationFailsTheGraph(t *testing.T) {
	cases := map[string]struct {
		build func(runtime.KeyedStream[ev, string])
		want  string
	}{
		"size": {func(ks runtime.KeyedStream[ev, string]) {
			window.Aggregate(ks, "w", window.Tumbling(0), window.Count[ev](), nil, nil)
		}, "at least 1ms"},
		"offset": {func(ks runtime.KeyedStream[ev, string]) {
			window.Aggregate(ks, "w", window.Sliding(time.Minute, time.Second).WithOffset(time.Second), window.Count[ev](), nil, nil)
		}, "offset"},
		"acc codec": {func(ks runtime.KeyedStream[ev, string]) {
			window.Aggregate(ks, "w", window.Tumbling(time.Second), window.AggregateFunction[ev, int64, int64](noCodec{}), nil, nil)
		}, "accumulator codec"},
		"elem codec": {func(ks runtime.KeyedStream[ev, string]) {
			window.Process(ks, "w", window.Tumbling(time.Second), describe[ev], nil, nil)
		}, "element codec"},
		"lateness": {func(ks runtime.KeyedStream[ev, string]) {
			window.Aggregate(ks, "w", window.Tumbling(time.Second), window.Count[ev](), nil, nil, window.AllowedLateness(-time.Second))
		}, "lateness"},
		"late tag": {func(ks runtime.KeyedStream[ev, string]) {
			window.Aggregate(ks, "w", window.Tumbling(time.Second), window.Count[ev](), nil, nil,
				window.LateOutput(runtime.NewOutputTag("late", runtime.StringCodec{})))
		}, "late output"},
	}
	for name, c := range cases {
		env, _ := runtime.NewEnv("bad", 1)
		src := runtime.FromSource(env, "events", func() runtime.SourceFunction[ev] { return &batchSource{} }, nil)
		c.build(runtime.KeyBy(src, runtime.StringKey, func(e ev) string { return e.key }))
		if _, err := env.Graph(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Graph() = %v, want an error about %q", name, err, c.want)
		}
	}
	// A codec given explicitly will do.
	env, _ := runtime.NewEnv("good", 1)
	src := runtime.FromSource(env, "events", func() runtime.SourceFunction[ev] { return &batchSource{} }, nil)
	window.Aggregate(runtime.KeyBy(src, runtime.StringKey, func(e ev) string { return e.key }), "w", window.Tumbling(time.Second),
		window.AggregateFunction[ev, int64, int64](noCodec{}), runtime.Int64Codec{}, nil)
	if _, err := env.Graph(); err != nil {
		t.Errorf("explicit accumulator codec: %v", err)
	}
}

func TestEventTimeWindowNeedsTimestamps(t *testing.T) {
	env, _ := runtime.NewEnv("no-ts", 1)
	src := runtime.FromSource(env, "events", func() runtime.SourceFunction[ev] {
		return &batchSource{batches: [][]ev{{{"a", 1, 1}}}}
	}, nil)
	window.Aggregate(runtime.KeyBy(src, runtime.StringKey, func(e ev) string { return e.key }), "w",
		window.Tumbling(time.Second), window.Count[ev](), nil, nil)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "without a timestamp") {
		t.Errorf("Run = %v, want an error about the missing timestamp", err)
	}
}

// TestProcessingTimeSessions: records a few milliseconds apart form
// sessions on the wall clock, which fire once the gap has passed. How
// many sessions depends on scheduling, so the test checks that every
// record is in exactly one fired session that spans at least the gap.
func TestProcessingTimeSessions(t *testing.T) {
	recs := []ev{{key: "a"}, {key: "a"}, {key: "b"}, {key: "a"}}
	env, _ := runtime.NewEnv("proc-sessions", 1)
	src := runtime.FromSource(env, "events", func() runtime.SourceFunction[ev] {
		return &pacedEvents{recs: recs, pause: 2 * time.Millisecond, tail: 400 * time.Millisecond}
	}, nil)
	elems := map[string]int{}
	sessions := window.Process(runtime.KeyBy(src, runtime.StringKey, func(e ev) string { return e.key }), "sessions",
		window.Session(50*time.Millisecond).InProcessingTime(),
		func() window.ProcessWindowFunction[string, ev, string] {
			return window.ProcessFunc[string, ev, string](func(k string, w window.Window, es []ev, out runtime.Collector[string]) error {
				if w.End-w.Start < 50 {
					t.Errorf("session %v is shorter than the gap", w)
				}
				elems[k] += len(es)
				return nil
			})
		}, evCodec{}, nil)
	runtime.SinkTo(sessions, "out", func() runtime.SinkFunction[string] { return sinkFunc(func(string) {}) })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if elems["a"] != 3 || elems["b"] != 1 {
		t.Errorf("sessions held %v, want a:3 b:1", elems)
	}
}

// lifecycleFn records that Open and Close were called around Process.
type lifecycleFn struct {
	log *[]string
}

func (f lifecycleFn) Open(ctx *runtime.RuntimeContext) error {
	*f.log = append(*f.log, "open "+ctx.OperatorName())
	return nil
}

func (f lifecycleFn) Process(k string, w window.Window, n []int64, out runtime.Collector[string]) error {
	*f.log = append(*f.log, "process "+k)
	return nil
}

func (f lifecycleFn) Close() error {
	*f.log = append(*f.log, "close")
	return nil
}

func TestProcessWindowFunctionOpenAndClose(t *testing.T) {
	var log []string
	p := pipeline{batches: [][]ev{{{"a", 1, 1}}}}
	p.run(t, func(ks runtime.KeyedStream[ev, string]) runtime.Stream[string] {
		return window.AggregateProcess(ks, "lifecycle", window.Tumbling(time.Second), window.Count[ev](), nil,
			func() window.ProcessWindowFunction[string, int64, string] { return lifecycleFn{&log} }, nil)
	})
	if got := strings.Join(log, ", "); got != "open lifecycle, process a, close" {
		t.Errorf("calls: %s", got)
	}
}
