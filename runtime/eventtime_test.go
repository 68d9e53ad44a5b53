package runtime

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// alarm registers an event-time timer at each record's time + 10 and
// reports, when it fires, the key, the time and the watermark.
type alarm struct{ seen ValueState[int64] }

func (a *alarm) Open(ctx *KeyedContext[string]) (err error) {
	a.seen, err = GetValueState(ctx, "seen", Int64Codec{})
	return err
}

func (a *alarm) ProcessElement(v keyed, ctx *KeyedContext[string], out Collector[string]) error {
	if ctx.Timestamp() != v.n {
		return fmt.Errorf("record %v has timestamp %d", v, ctx.Timestamp())
	}
	n, _ := a.seen.Value()
	a.seen.Update(n + 1)
	ctx.RegisterEventTimeTimer(v.n + 10)
	if v.n == 999 {
		ctx.DeleteEventTimeTimer(v.n + 10)
	}
	return nil
}

func (a *alarm) OnTimer(ts int64, ctx *KeyedContext[string], out Collector[string]) error {
	n, _ := a.seen.Value()
	if ctx.TimeDomain() != EventTime || ctx.Timestamp() != ts {
		return fmt.Errorf("timer %d: domain %v timestamp %d", ts, ctx.TimeDomain(), ctx.Timestamp())
	}
	wm := "max"
	if ctx.CurrentWatermark() != MaxWatermark {
		wm = itoa(ctx.CurrentWatermark())
	}
	out.Collect(fmt.Sprintf("%s@%d seen=%d wm=%s", ctx.CurrentKey(), ts, n, wm))
	return nil
}

// batches emits one slice of records per poll, so that the task makes a
// watermark between them.
type batches struct {
	polls [][]keyed
	i     int
}

func (b *batches) Poll(out Collector[keyed]) (time.Duration, error) {
	if b.i == len(b.polls) {
		return 0, ErrEndOfInput
	}
	for _, r := range b.polls[b.i] {
		out.Collect(r)
	}
	b.i++
	return 0, nil
}

func TestEventTimeTimersFireAsTheWatermarkPasses(t *testing.T) {
	env, _ := NewEnv("event-time", 1)
	src := FromSource(env, "events", func() SourceFunction[keyed] {
		return &batches{polls: [][]keyed{
			{{"a", 100}, {"b", 95}},  // watermark 100-5-1 = 94
			{{"a", 103}, {"a", 120}}, // 114: fires b@105, a@110, a@113
			{{"b", 104}},             // late by the watermark but not dropped: its timer 114 fires next
			{{"c", 999}, {"b", 990}}, // 993: fires b@114, a@130 ; c's timer is deleted
		}}
	}, keyedCodec{})
	ts := AssignTimestampsAndWatermarks(src, ForBoundedOutOfOrderness(5*time.Millisecond, func(k keyed) int64 { return k.n }))
	out := Process(KeyBy(ts, StringKey, func(k keyed) string { return k.key }), "alarm",
		func() KeyedProcessFunction[string, keyed, string] { return &alarm{} }, nil).UID("alarm")
	var mu sync.Mutex
	var got []string
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &got} })
	task := runSingleVertex(t, env)
	want := []string{
		"b@105 seen=1 wm=114", "a@110 seen=3 wm=114", "a@113 seen=3 wm=114",
		"b@114 seen=3 wm=993", "a@130 seen=3 wm=993",
		"b@1000 seen=3 wm=max", // the end of the input fires the rest
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timers fired\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if task.Watermark() != MaxWatermark {
		t.Errorf("final watermark %d, want MaxWatermark", task.Watermark())
	}
}

// recordingChannel keeps what a task sends on one output channel.
type recordingChannel struct {
	mu   sync.Mutex
	sent []engine.Buffer
}

func (c *recordingChannel) Send(_ context.Context, b *engine.Buffer) error {
	c.mu.Lock()
	cp := *b
	cp.Data = append([]byte(nil), b.Data...)
	c.sent = append(c.sent, cp)
	c.mu.Unlock()
	engine.PutBuffer(b)
	return nil
}
func (c *recordingChannel) Close() error { return nil }

// events lists the watermark events sent, as "wm:N" and "idle"/"active".
func (c *recordingChannel) events() []string {
	var out []string
	for _, b := range c.sent {
		switch b.Kind {
		case engine.BufferWatermark:
			if b.Value == MaxWatermark {
				out = append(out, "wm:max")
			} else {
				out = append(out, "wm:"+itoa(b.Value))
			}
		case engine.BufferWatermarkStatus:
			out = append(out, map[int64]string{0: "active", 1: "idle"}[b.Value])
		}
	}
	return out
}

func (g *fakeGate) watermark(ch int, wm int64) {
	g.bufs <- &engine.Buffer{Kind: engine.BufferWatermark, Channel: ch, Value: wm}
}
func (g *fakeGate) idle(ch int, idle bool) {
	v := int64(0)
	if idle {
		v = 1
	}
	g.bufs <- &engine.Buffer{Kind: engine.BufferWatermarkStatus, Channel: ch, Value: v}
}

// stampedRecords sends records with timestamps, as an event-time job's
// writers frame them.
func (g *fakeGate) stampedRecords(ch int, recs ...keyed) {
	b := &engine.Buffer{Kind: engine.BufferData, Channel: ch}
	for _, r := range recs {
		enc := binary.AppendVarint(nil, r.n)
		enc = keyedCodec{}.Append(enc, r)
		b.Data = binary.AppendUvarint(b.Data, uint64(len(enc)))
		b.Data = append(b.Data, enc...)
		b.Records++
	}
	g.bufs <- b
}

// twoInputGraph is events (parallelism 2, with timestamps) -> keyBy ->
// alarm (parallelism 1) -> forward (parallelism 1, another vertex): the
// alarm vertex has two input channels and one output channel.
func twoInputGraph(t *testing.T) *JobGraph {
	env, _ := NewEnv("watermarks", 2)
	env.SetMaxParallelism(8)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	ts := AssignTimestampsAndWatermarks(src, ForMonotonousTimestamps(func(k keyed) int64 { return k.n }))
	out := Process(KeyBy(ts, StringKey, func(k keyed) string { return k.key }), "alarm",
		func() KeyedProcessFunction[string, keyed, string] { return &alarm{} }, StringCodec{}).UID("alarm").Parallelism(1)
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{new(sync.Mutex), new([]string)} }).Parallelism(2)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if !g.EventTime || len(g.Vertices) != 3 {
		t.Fatalf("graph: event time %v, %d vertices", g.EventTime, len(g.Vertices))
	}
	return g
}

func TestWatermarkIsTheMinimumOfActiveInputs(t *testing.T) {
	g := twoInputGraph(t)
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 32), errs: make(chan error)}
	out, other := &recordingChannel{}, &recordingChannel{}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Outputs: [][]engine.OutputChannel{{out, other}}})
	if err != nil {
		t.Fatal(err)
	}
	gate.stampedRecords(0, keyed{"a", 50}) // timer at 60
	gate.watermark(0, 100)                 // channel 1 has none yet: no watermark
	gate.watermark(1, 55)                  // 55
	gate.watermark(1, 70)                  // 70: fires a@60
	gate.idle(0, true)                     // channel 1 alone: still 70
	gate.watermark(1, 80)                  // 80
	gate.idle(1, true)                     // both idle: the output is idle
	gate.idle(0, false)                    // channel 0 (at 100) is back: 100
	gate.watermark(0, 90)                  // a watermark never goes back
	gate.watermark(0, MaxWatermark)        // channel 0's input ends
	gate.end(0)                            // channel 0 ended; channel 1 idle
	gate.watermark(1, MaxWatermark)        // and channel 1's: max
	gate.end(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := "wm:55 wm:70 wm:80 idle active wm:100 wm:max"
	if got := strings.Join(out.events(), " "); got != want {
		t.Errorf("watermark events\n got %s\nwant %s", got, want)
	}
	// The timer's output went out before watermark 70, stamped with 60.
	if got := strings.Join(other.events(), " "); got != want {
		t.Errorf("watermark events on the second channel\n got %s\nwant %s", got, want)
	}
	var recs []string
	for _, b := range append(out.sent, other.sent...) {
		if b.Kind == engine.BufferData {
			_, n := binary.Uvarint(b.Data)
			ts, m := binary.Varint(b.Data[n:])
			recs = append(recs, fmt.Sprintf("%d:%s", ts, b.Data[n+m:]))
		}
	}
	if got := strings.Join(recs, ","); got != "60:a@60 seen=1 wm=70" {
		t.Errorf("records sent %q", got)
	}
}

func TestEventTimeTimersSurviveACheckpoint(t *testing.T) {
	g := twoInputGraph(t)
	dir := t.TempDir()
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	rep := &acks{done: make(chan struct{}, 4)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Checkpoints: rep,
		Outputs: [][]engine.OutputChannel{{&recordingChannel{}, &recordingChannel{}}}})
	if err != nil {
		t.Fatal(err)
	}
	gate.stampedRecords(0, keyed{"a", 50}, keyed{"b", 70})
	gate.barrier(0, Barrier{ID: 1, Location: dir})
	gate.barrier(1, Barrier{ID: 1, Location: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- task.Run(ctx) }()
	<-rep.done
	cancel()
	<-done
	if len(rep.acked) != 1 {
		t.Fatalf("acks %+v declines %v", rep.acked, rep.decline)
	}
	h := rep.acked[0].States[0]
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	sf, err := statebackend.OpenStateFile(ctx2, h.File, h.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
		return st.GetRange(ctx, h.File, off, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := sf.ReadKeyGroups(ctx2, KeyGroupRange{First: 0, Last: 7})
	if err != nil {
		t.Fatal(err)
	}
	gate2 := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	out, other := &recordingChannel{}, &recordingChannel{}
	restore := &TaskRestore{CheckpointID: 1, Operators: map[string]*OperatorRestore{"alarm": {Keyed: []*statebackend.KeyedState{ks}}}}
	task2, err := NewTask(g, 1, 0, TaskIO{Input: gate2, LatencyInterval: -1, Restore: restore, Outputs: [][]engine.OutputChannel{{out, other}}})
	if err != nil {
		t.Fatal(err)
	}
	gate2.watermark(0, 65)
	gate2.watermark(1, 65)
	gate2.end(0)
	gate2.end(1)
	if err := task2.Run(ctx2); err != nil {
		t.Fatal(err)
	}
	var recs []string
	for _, b := range append(out.sent, other.sent...) {
		if b.Kind == engine.BufferData {
			data := b.Data
			for len(data) > 0 {
				l, n := binary.Uvarint(data)
				_, m := binary.Varint(data[n:])
				recs = append(recs, string(data[n+m:n+int(l)]))
				data = data[n+int(l):]
			}
		}
	}
	// The inputs ended without the maximum watermark, as a stop with a
	// savepoint ends them: b's timer at 80 waits for the job resumed from
	// the savepoint instead of firing early.
	if got := strings.Join(recs, ","); got != "a@60 seen=1 wm=65" {
		t.Errorf("restored timers fired %q", got)
	}
}

// quietSource emits a record, stays quiet for a few polls, emits another,
// and ends.
type quietSource struct{ i int }

func (s *quietSource) Poll(out Collector[keyed]) (time.Duration, error) {
	s.i++
	switch {
	case s.i == 1:
		out.Collect(keyed{"a", 100})
	case s.i < 8:
		return 10 * time.Millisecond, nil // 70 ms without records: idle after 20
	case s.i == 8:
		out.Collect(keyed{"a", 200})
	default:
		return 0, ErrEndOfInput
	}
	return 0, nil
}

func TestAnIdleSourceSaysSo(t *testing.T) {
	env, _ := NewEnv("idle", 1)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &quietSource{} }, keyedCodec{})
	ts := AssignTimestampsAndWatermarks(src, ForMonotonousTimestamps(func(k keyed) int64 { return k.n }).WithIdleness(20*time.Millisecond))
	SinkTo(ts, "collect", func() SinkFunction[keyed] { return collectSink[keyed]{new(sync.Mutex), new([]keyed)} }).Parallelism(2)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	out, other := &recordingChannel{}, &recordingChannel{}
	task, err := NewTask(g, 0, 0, TaskIO{LatencyInterval: -1, Outputs: [][]engine.OutputChannel{{out, other}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(out.events(), " "), "wm:99 idle active wm:199 wm:max"; got != want {
		t.Errorf("watermark events\n got %s\nwant %s", got, want)
	}
}

func TestWatermarkStrategyValidation(t *testing.T) {
	env, _ := NewEnv("bad", 1)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &quietSource{} }, keyedCodec{})
	AssignTimestampsAndWatermarks(src, ForBoundedOutOfOrderness[keyed](-time.Second, func(k keyed) int64 { return k.n }))
	if _, err := env.Graph(); err == nil || !strings.Contains(err.Error(), "must not be negative") {
		t.Errorf("negative out-of-orderness: %v", err)
	}
	env, _ = NewEnv("bad", 1)
	src = FromSource(env, "in", func() SourceFunction[keyed] { return &quietSource{} }, keyedCodec{})
	AssignTimestampsAndWatermarks(src, WatermarkStrategy[keyed]{})
	if _, err := env.Graph(); err == nil || !strings.Contains(err.Error(), "needs a timestamp function") {
		t.Errorf("no timestamp function: %v", err)
	}
}

// A channel stopped by a savepoint ends without the maximum watermark and
// keeps holding the watermark where it stopped, so the other inputs cannot
// fire windows past it on partial data.
func TestAStoppedInputHoldsTheWatermark(t *testing.T) {
	g := twoInputGraph(t)
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	out, other := &recordingChannel{}, &recordingChannel{}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Outputs: [][]engine.OutputChannel{{out, other}}})
	if err != nil {
		t.Fatal(err)
	}
	gate.watermark(0, 100)
	gate.watermark(1, 50)
	gate.end(1) // stopped at 50
	gate.watermark(0, 200)
	gate.end(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(out.events(), " "); got != "wm:50" {
		t.Errorf("watermark events %q, want only wm:50", got)
	}
}
