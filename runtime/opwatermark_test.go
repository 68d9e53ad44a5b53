package runtime

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// TestOperatorWatermarksInASourceChain: once a bounded source ends, every
// operator of its chain, before the assigner too, has the maximum
// watermark.
func TestOperatorWatermarksInASourceChain(t *testing.T) {
	env, _ := NewEnv("opwm", 1)
	src := FromSource(env, "in", func() SourceFunction[keyed] {
		return &sliceSource[keyed]{recs: []keyed{{"a", 10}, {"b", 20}}}
	}, nil)
	m := Map(src, "same", func(k keyed) keyed { return k }, nil)
	ts := AssignTimestampsAndWatermarks(m, ForMonotonousTimestamps(func(k keyed) int64 { return k.n }))
	SinkTo(ts, "collect", func() SinkFunction[keyed] { return collectSink[keyed]{new(sync.Mutex), new([]keyed)} })
	task := runSingleVertex(t, env)
	got := task.OperatorWatermarks()
	want := []int64{MaxWatermark, MaxWatermark, MaxWatermark, MaxWatermark}
	if len(got) != len(want) {
		t.Fatalf("%d operators, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("operator %d: watermark %d, want %d", i, got[i], want[i])
		}
	}
}

// TestOperatorWatermarksAfterAnExchange: an assigner behind an exchange
// replaces the watermark for itself and what follows it, but the operator
// before it keeps its inputs' (the lowest of the active channels), and its
// event-time timers fire with that one, as in Flink.
func TestOperatorWatermarksAfterAnExchange(t *testing.T) {
	env, _ := NewEnv("opwm2", 2)
	env.SetMaxParallelism(8)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	ts := AssignTimestampsAndWatermarks(src, ForMonotonousTimestamps(func(k keyed) int64 { return k.n }))
	alarms := Process(KeyBy(ts, StringKey, func(k keyed) string { return k.key }), "alarm",
		func() KeyedProcessFunction[string, keyed, string] { return &alarm{} }, nil).UID("alarm").Parallelism(1)
	later := AssignTimestampsAndWatermarks(alarms, ForMonotonousTimestamps(func(string) int64 { return 1_000 })).Parallelism(1)
	var mu sync.Mutex
	var out []string
	SinkTo(later, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &out} }).Parallelism(1)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	gate.stampedRecords(0, keyed{"a", 50}) // a timer at 60
	gate.watermark(0, 100)
	gate.watermark(1, 70) // the inputs are at 70: the timer fires, the assigner stamps its output 1000
	gate.end(0)
	gate.end(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0] != "a@60 seen=1 wm=70" {
		t.Fatalf("output %q, want the alarm at 60 with the inputs' watermark 70", out)
	}
	got := task.OperatorWatermarks()
	want := []int64{70, 999, 999}
	if len(got) != len(want) {
		t.Fatalf("%d operators, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("operator %d: watermark %d, want %d", i, got[i], want[i])
		}
	}
}
