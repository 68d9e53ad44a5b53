package window_test

import (
	"context"
	goruntime "runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

// txn is the benchmarks' event: an amount for an account at a time.
type txn struct {
	account int64
	ts      int64
	amount  int64
}

const (
	benchKeys   = 100_000
	benchEvents = 2_000_000
	// benchPerMs events per millisecond of event time: a 10 s window of a
	// key then gets about 10 of the key's events.
	benchPerMs = 100
)

// genSource emits n transactions over benchKeys accounts in ascending
// event time, in batches.
type genSource struct{ i, n int64 }

func (s *genSource) Poll(out runtime.Collector[txn]) (time.Duration, error) {
	if s.i == s.n {
		return 0, runtime.ErrEndOfInput
	}
	end := min(s.i+1024, s.n)
	for ; s.i < end; s.i++ {
		// A multiplicative permutation spreads consecutive events over
		// the keys, so the key space is swept as in real traffic.
		out.Collect(txn{account: s.i * 7919 % benchKeys, ts: 1_700_000_000_000 + s.i/benchPerMs, amount: s.i % 1000})
	}
	return 0, nil
}

// countSink counts results.
type countSink[T any] struct{ n *int64 }

func (s countSink[T]) Invoke(T) error { *s.n++; return nil }

// benchWindow runs source -> timestamps -> keyBy -> window -> sink chained
// in one task (one core) over benchEvents events per iteration and
// reports events/s and allocations per event.
func benchWindow(b *testing.B, build func(runtime.KeyedStream[txn, int64]) runtime.Stream[int64]) {
	env, _ := runtime.NewEnv("window-bench", 1)
	src := runtime.FromSource(env, "txns", func() runtime.SourceFunction[txn] { return &genSource{n: benchEvents} }, nil)
	ts := runtime.AssignTimestampsAndWatermarks(src, runtime.ForMonotonousTimestamps(func(t txn) int64 { return t.ts }))
	out := build(runtime.KeyBy(ts, runtime.Int64Key, func(t txn) int64 { return t.account }))
	var results int64
	runtime.SinkTo(out, "count", func() runtime.SinkFunction[int64] { return countSink[int64]{&results} })
	g, err := env.Graph()
	if err != nil {
		b.Fatal(err)
	}
	if len(g.Vertices) != 1 {
		b.Fatalf("%d vertices, want the job chained into one", len(g.Vertices))
	}
	b.ReportAllocs()
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	cpu0 := cpuTime()
	for b.Loop() {
		results = 0
		task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		if err := task.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		if results == 0 {
			b.Fatal("no window results")
		}
	}
	cpu := cpuTime() - cpu0
	goruntime.ReadMemStats(&after)
	events := float64(benchEvents * b.N)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	// On a shared machine wall time overstates the cost: events per
	// second of the process's CPU time is the per-core figure.
	b.ReportMetric(events/cpu.Seconds(), "events/cpu-s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
}

// cpuTime is the CPU time the process has used (user and system); the
// chained job runs on one goroutine, so it approximates one core's work.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTumblingCount counts events per account in 10 s tumbling
// windows.
func BenchmarkTumblingCount(b *testing.B) {
	benchWindow(b, func(ks runtime.KeyedStream[txn, int64]) runtime.Stream[int64] {
		return window.Aggregate(ks, "count", window.Tumbling(10*time.Second), window.Count[txn](), nil, nil)
	})
}

// BenchmarkSlidingSum sums amounts per account in 10 s windows sliding
// every 5 s (each event goes to two windows), as transfer-monitor does.
func BenchmarkSlidingSum(b *testing.B) {
	benchWindow(b, func(ks runtime.KeyedStream[txn, int64]) runtime.Stream[int64] {
		return window.Aggregate(ks, "sum", window.Sliding(10*time.Second, 5*time.Second),
			window.Sum(func(t txn) int64 { return t.amount }), nil, nil)
	})
}

// BenchmarkSlidingMinuteCount counts events per account in one-minute
// windows sliding every 10 s (six windows per event), as failed-logins
// does.
func BenchmarkSlidingMinuteCount(b *testing.B) {
	benchWindow(b, func(ks runtime.KeyedStream[txn, int64]) runtime.Stream[int64] {
		return window.Aggregate(ks, "count", window.Sliding(time.Minute, 10*time.Second), window.Count[txn](), nil, nil)
	})
}

// pacedSource emits transactions over benchKeys accounts at rate per
// second for d, timestamped with the wall clock.
type pacedSource struct {
	rate    float64
	d       time.Duration
	start   time.Time
	emitted int64
}

func (s *pacedSource) Poll(out runtime.Collector[txn]) (time.Duration, error) {
	now := time.Now()
	if s.start.IsZero() {
		s.start = now
	}
	el := now.Sub(s.start)
	if el >= s.d {
		return 0, runtime.ErrEndOfInput
	}
	due := int64(el.Seconds() * s.rate)
	ms := now.UnixMilli()
	for ; s.emitted < due; s.emitted++ {
		out.Collect(txn{account: s.emitted * 7919 % benchKeys, ts: ms, amount: s.emitted % 1000})
	}
	return time.Millisecond, nil
}

// latencySink records how long after its window's end each result
// arrived, in milliseconds.
type latencySink struct{ lat *[]int64 }

func (s latencySink) Invoke(end int64) error {
	*s.lat = append(*s.lat, time.Now().UnixMilli()-end)
	return nil
}

// BenchmarkTumblingCountLatency measures event-to-alert latency of a 1 s
// tumbling count over 100 k accounts at half the chained maximum
// throughput (measured first): the time from a window's end on the wall
// clock, when its last event can arrive, to its result at the sink. It
// includes the watermark interval, the wait for the watermark to pass the
// window.
func BenchmarkTumblingCountLatency(b *testing.B) {
	// Maximum throughput of the same job on generated events.
	maxRate := measureRate(b)
	for b.Loop() {
		env, _ := runtime.NewEnv("window-latency", 1)
		src := runtime.FromSource(env, "txns", func() runtime.SourceFunction[txn] {
			return &pacedSource{rate: maxRate / 2, d: 4 * time.Second}
		}, nil)
		ts := runtime.AssignTimestampsAndWatermarks(src, runtime.ForMonotonousTimestamps(func(t txn) int64 { return t.ts }))
		ends := window.AggregateProcess(runtime.KeyBy(ts, runtime.Int64Key, func(t txn) int64 { return t.account }),
			"count", window.Tumbling(time.Second), window.Count[txn](), nil,
			func() window.ProcessWindowFunction[int64, int64, int64] {
				return window.ProcessFunc[int64, int64, int64](func(_ int64, w window.Window, _ []int64, out runtime.Collector[int64]) error {
					out.Collect(w.End)
					return nil
				})
			}, nil)
		lat := make([]int64, 0, 1<<20)
		runtime.SinkTo(ends, "latency", func() runtime.SinkFunction[int64] { return latencySink{&lat} })
		g, err := env.Graph()
		if err != nil {
			b.Fatal(err)
		}
		task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		if err := task.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		// The windows still open at the end fire on the final watermark,
		// early: only the windows that closed while the source ran count.
		var closed []int64
		for _, l := range lat {
			if l >= 0 {
				closed = append(closed, l)
			}
		}
		if len(closed) == 0 {
			b.Fatal("no window closed")
		}
		slices.Sort(closed)
		b.ReportMetric(float64(closed[len(closed)*99/100]), "p99-ms")
		b.ReportMetric(float64(closed[len(closed)/2]), "p50-ms")
		b.ReportMetric(maxRate/2, "events/s")
	}
}

// measureRate runs the tumbling count on generated events and returns
// its events/s.
func measureRate(b *testing.B) float64 {
	env, _ := runtime.NewEnv("window-rate", 1)
	src := runtime.FromSource(env, "txns", func() runtime.SourceFunction[txn] { return &genSource{n: benchEvents} }, nil)
	ts := runtime.AssignTimestampsAndWatermarks(src, runtime.ForMonotonousTimestamps(func(t txn) int64 { return t.ts }))
	out := window.Aggregate(runtime.KeyBy(ts, runtime.Int64Key, func(t txn) int64 { return t.account }),
		"count", window.Tumbling(10*time.Second), window.Count[txn](), nil, nil)
	var n int64
	runtime.SinkTo(out, "count", func() runtime.SinkFunction[int64] { return countSink[int64]{&n} })
	g, err := env.Graph()
	if err != nil {
		b.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := task.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	return benchEvents / time.Since(start).Seconds()
}

// BenchmarkSessionCount counts events per account in sessions with a 5 s
// gap: an account's events come about 1 s apart, so every event extends
// its account's session, the merging path.
func BenchmarkSessionCount(b *testing.B) {
	benchWindow(b, func(ks runtime.KeyedStream[txn, int64]) runtime.Stream[int64] {
		return window.Aggregate(ks, "sessions", window.Session(5*time.Second), window.Count[txn](), nil, nil)
	})
}
