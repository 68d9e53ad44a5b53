package runtime

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// counting registers user metrics in Open and updates them per record.
type counting struct {
	hits    map[string]Counter
	last    Gauge
	amounts Observer
	group   *MetricGroup
}

func (c *counting) Open(ctx *ProcessContext) error {
	c.group = ctx.Metrics()
	c.hits = map[string]Counter{}
	c.last = c.group.Gauge("last_amount", "The amount of the latest record.")
	c.amounts = c.group.Histogram("amounts", "Amounts seen.", []float64{1, 10, 100})
	// Registering again returns the same metric.
	c.group.Gauge("last_amount", "The amount of the latest record.").Set(-1)
	return nil
}

func (c *counting) ProcessElement(v keyed, _ *ProcessContext, out Collector[keyed]) error {
	h, ok := c.hits[v.key]
	if !ok {
		h = c.group.With("rule", v.key).Counter("rule_hits_total", "Records per rule.")
		c.hits[v.key] = h
	}
	h.Inc()
	c.last.Set(float64(v.n))
	c.amounts.Observe(float64(v.n))
	out.Collect(v)
	return nil
}

func TestUserMetricsAreExportedWithTheirValues(t *testing.T) {
	env, _ := NewEnv("user-metrics", 1)
	src := FromSource(env, "in", func() SourceFunction[keyed] {
		return &sliceSource[keyed]{recs: []keyed{{"a", 5}, {"b", 50}, {"a", 500}, {"a", 1}}}
	}, keyedCodec{})
	counted := ProcessStream(src, "count", func() ProcessFunction[keyed, keyed] { return &counting{} }, keyedCodec{}).UID("count-uid")
	SinkTo(counted, "drop", func() SinkFunction[keyed] { return dropSink[keyed]{} })
	task := runSingleVertex(t, env)

	got := map[string]UserMetricValue{}
	for _, m := range task.UserMetrics() {
		if m.OperatorName != "count" || m.OperatorUID != "count-uid" {
			t.Errorf("metric %s registered by %s (%s), want count (count-uid)", m.Name, m.OperatorName, m.OperatorUID)
		}
		got[m.Name+strings.Join(m.Labels, ",")] = m
	}
	if len(got) != 4 {
		t.Fatalf("got %d metrics, want 4 (two rule counters, a gauge, a histogram): %+v", len(got), got)
	}
	if a, b := got["rule_hits_totalrule,a"], got["rule_hits_totalrule,b"]; a.Kind != UserCounter || a.Value != 3 || b.Value != 1 {
		t.Errorf("rule counters: a %+v, b %+v; want 3 and 1", a, b)
	}
	if g := got["last_amount"]; g.Kind != UserGauge || g.Value != 1 {
		t.Errorf("gauge %+v, want 1", g)
	}
	h := got["amounts"]
	if h.Kind != UserHistogram || h.Count != 4 || h.Sum != 556 {
		t.Errorf("histogram count %d sum %v, want 4 and 556", h.Count, h.Sum)
	}
	// 1 | 5 | 50 | 500 over bounds 1, 10, 100: cumulative 1, 2, 3 (+1 above).
	if want := []uint64{1, 2, 3}; len(h.Cumulative) != 3 || h.Cumulative[0] != want[0] || h.Cumulative[1] != want[1] || h.Cumulative[2] != want[2] {
		t.Errorf("cumulative buckets %v, want %v", h.Cumulative, want)
	}
}

type dropSink[T any] struct{}

func (dropSink[T]) Invoke(T) error { return nil }

// badMetrics registers what it is told to in Open.
type badMetrics struct{ register func(*MetricGroup) }

func (b *badMetrics) Open(ctx *ProcessContext) error {
	b.register(ctx.Metrics())
	return nil
}

func (b *badMetrics) ProcessElement(v keyed, _ *ProcessContext, out Collector[keyed]) error {
	out.Collect(v)
	return nil
}

func TestBadUserMetricsFailTheTaskAtOpen(t *testing.T) {
	for _, c := range []struct {
		name     string
		register func(*MetricGroup)
		want     string
	}{
		{"bad name", func(g *MetricGroup) { g.Counter("hits-total", "") }, `metric "hits-total"`},
		{"digit first", func(g *MetricGroup) { g.Gauge("9lives", "") }, `metric "9lives"`},
		{"reserved label", func(g *MetricGroup) { g.With("subtask", "x").Counter("x_total", "") }, `label "subtask"`},
		{"kind clash", func(g *MetricGroup) { g.Counter("x", ""); g.Gauge("x", "") }, "registered as a counter already"},
		{"buckets", func(g *MetricGroup) { g.Histogram("h", "", []float64{2, 1}) }, "not strictly increasing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env, _ := NewEnv("bad-metrics", 1)
			src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{recs: []keyed{{"a", 1}}} }, keyedCodec{})
			p := ProcessStream(src, "bad", func() ProcessFunction[keyed, keyed] { return &badMetrics{register: c.register} }, keyedCodec{})
			SinkTo(p, "drop", func() SinkFunction[keyed] { return dropSink[keyed]{} })
			g, err := env.Graph()
			if err != nil {
				t.Fatal(err)
			}
			task, err := NewTask(g, 0, 0, TaskIO{LatencyInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = task.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "operator bad") {
				t.Fatalf("Run: %v; want an open error naming the operator and %q", err, c.want)
			}
		})
	}
}

func TestMetricsOutsideATaskWork(t *testing.T) {
	ctx := NewRuntimeContext(ContextConfig{OperatorName: "alone"})
	c := ctx.Metrics().Counter("n_total", "")
	c.Add(2)
	c.Add(-5) // ignored: counters only grow
	c.Inc()
	if got := ctx.Metrics().Counter("n_total", "").(counter).m.count.Load(); got != 3 {
		t.Fatalf("counter %d, want 3", got)
	}
}

// slowChannel makes every Send wait, as a consumer without credit would,
// and reports that wait as backpressure.
type slowChannel struct {
	recordingChannel
	wait    time.Duration
	blocked time.Duration
}

func (c *slowChannel) Send(ctx context.Context, b *engine.Buffer) error {
	if b.Kind == engine.BufferData {
		time.Sleep(c.wait)
		c.mu.Lock()
		c.blocked += c.wait
		c.mu.Unlock()
	}
	return c.recordingChannel.Send(ctx, b)
}

func (c *slowChannel) BackpressuredNanos() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.blocked)
}

func (c *slowChannel) Credits() (int, int) { return 1, 2 }

func TestTaskStatsCountBytesAndTime(t *testing.T) {
	var mu sync.Mutex
	var got []string
	g := keyedGraph(t, &got, &mu)
	// The sum vertex reads a fake gate fed by hand.
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error, 1)}
	sum, err := NewTask(g, 1, 0, TaskIO{LatencyInterval: -1, Input: gate})
	if err != nil {
		t.Fatal(err)
	}
	if s := sum.Stats(); s.Busy != 0 || s.Idle != 0 || !s.HasInput || s.HasOutput {
		t.Fatalf("stats before Run: %+v", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sum.Run(ctx) }()
	time.Sleep(30 * time.Millisecond) // idle: nothing arrives
	gate.records(0, keyed{"a", 1}, keyed{"b", 2})
	gate.records(1, keyed{"a", 3})
	gate.end(0)
	gate.end(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := sum.Stats()
	if s.BuffersIn != 2 || s.BytesIn == 0 {
		t.Errorf("input stats %+v, want 2 buffers with bytes", s)
	}
	if s.Idle <= 0 {
		t.Errorf("idle %v, want the wait for input counted", s.Idle)
	}
	if s.Backpressured != 0 {
		t.Errorf("a sink task reports backpressure: %+v", s)
	}
	if again := sum.Stats(); again.Busy != s.Busy || again.Idle != s.Idle {
		t.Errorf("an ended task's times moved: %+v then %+v", s, again)
	}
}

func TestTaskStatsTakeBackpressureFromTheChannels(t *testing.T) {
	env, _ := NewEnv("bp", 2)
	recs := make([]keyed, 200)
	for i := range recs {
		recs[i] = keyed{strings.Repeat("k", 40), int64(i)}
	}
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{recs: recs} }, keyedCodec{})
	out := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "sum",
		func() KeyedProcessFunction[string, keyed, string] { return &summer{} }, nil)
	SinkTo(out, "drop", func() SinkFunction[string] { return dropSink[string]{} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	chs := []*slowChannel{{wait: 2 * time.Millisecond}, {wait: 2 * time.Millisecond}}
	task, err := NewTask(g, 0, 0, TaskIO{LatencyInterval: -1, Outputs: [][]engine.OutputChannel{{chs[0], chs[1]}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	s := task.Stats()
	var bytes int64
	for _, ch := range chs {
		for _, b := range ch.sent {
			if b.Kind == engine.BufferData {
				bytes += int64(len(b.Data))
			}
		}
	}
	if !s.HasOutput || s.HasInput || s.BytesOut != bytes || s.BuffersOut < 1 {
		t.Errorf("output stats %+v, want the %d bytes sent", s, bytes)
	}
	if want := time.Duration(s.BuffersOut) * chs[0].wait; s.Backpressured != want {
		t.Errorf("backpressured %v, want the channel's %v", s.Backpressured, want)
	}
	if s.OutputInUse != 2 || s.OutputCapacity != 4 {
		t.Errorf("output credit %d/%d, want the channels' 2/4", s.OutputInUse, s.OutputCapacity)
	}
}
