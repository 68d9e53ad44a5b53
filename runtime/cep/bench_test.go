package cep

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

const benchKeys = 100_000

// benchEvent is the i-th event of the benchmark stream: 20 events per ms
// round-robin over the keys, so a key sees an event every 5 s; each key
// cycles A, B, C, so every A is followed by B within the window.
func benchEvent(i int, users []string) event {
	k := i % benchKeys
	return event{user: users[k], kind: [3]string{"A", "B", "C"}[(i/benchKeys)%3], ts: int64(i / 20)}
}

func benchUsers() []string {
	users := make([]string, benchKeys)
	for i := range users {
		users[i] = "user-" + strconv.Itoa(i)
	}
	return users
}

// BenchmarkNFAThreeStep is the pure matcher: the sequence detector (A, no
// C, then B, within 10 s) over 100k keys, states in a map.
func BenchmarkNFAThreeStep(b *testing.B) {
	n, err := aThenB().Compile()
	if err != nil {
		b.Fatal(err)
	}
	users := benchUsers()
	states := make(map[string]*State[event], benchKeys)
	matches := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := benchEvent(i, users)
		s, ok := states[e.user]
		if !ok {
			s = n.NewState()
		}
		s, res, err := n.Process(s, e, e.ts)
		if err != nil {
			b.Fatal(err)
		}
		matches += len(res.Matches)
		states[e.user] = s
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = matches
}

type benchSource struct {
	n, i  int
	users []string
}

func (s *benchSource) Poll(out runtime.Collector[event]) (time.Duration, error) {
	if s.i >= s.n {
		return 0, runtime.ErrEndOfInput
	}
	for end := min(s.i+1000, s.n); s.i < end; s.i++ {
		out.Collect(benchEvent(s.i, s.users))
	}
	return 0, nil
}

type countSink struct{ n *atomic.Int64 }

func (c countSink) Invoke(string) error { c.n.Add(1); return nil }

// BenchmarkCEPThreeStep runs the sequence detector as a job: source,
// timestamps and watermarks, keyBy user, Detect in event time (buffering,
// timers, keyed state), a sink; one task on one goroutine.
func BenchmarkCEPThreeStep(b *testing.B) {
	users := benchUsers()
	env, _ := runtime.NewEnv("bench", 1)
	in := runtime.FromSource(env, "events", func() runtime.SourceFunction[event] {
		return &benchSource{n: b.N, users: users}
	}, runtime.Codec[event](eventCodec{}))
	in = runtime.AssignTimestampsAndWatermarks(in, runtime.ForBoundedOutOfOrderness(100*time.Millisecond, func(e event) int64 { return e.ts }))
	out, err := Detect(runtime.KeyBy(in, runtime.StringKey, func(e event) string { return e.user }), "cep", aThenB(), eventCodec{},
		func(user string, m Match[event]) string { return user }, runtime.StringCodec{})
	if err != nil {
		b.Fatal(err)
	}
	var matches atomic.Int64
	runtime.SinkTo(out.UID("cep"), "count", func() runtime.SinkFunction[string] { return countSink{&matches} })
	g, err := env.Graph()
	if err != nil {
		b.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := task.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if b.N >= 3*benchKeys && matches.Load() == 0 {
		b.Fatal("no matches")
	}
}
