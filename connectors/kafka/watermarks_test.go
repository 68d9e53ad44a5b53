package kafka

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

// wmOutput keeps what a source emits as the runtime would: records with
// their timestamps, the watermark (forward only) and idleness.
type wmOutput struct {
	got  []string
	wm   int64
	idle bool
}

func (o *wmOutput) Collect(v string) { o.CollectWithTimestamp(v, runtime.NoTimestamp) }
func (o *wmOutput) CollectWithTimestamp(v string, ts int64) {
	o.got = append(o.got, v+"@"+strconv.FormatInt(ts, 10))
	o.idle = false
}
func (o *wmOutput) EmitWatermark(wm int64) { o.wm, o.idle = max(o.wm, wm), false }
func (o *wmOutput) MarkIdle()              { o.idle = true }

// stampedAt produces value "pP:TS" to partition P with Kafka timestamp TS.
func stampedAt(t *testing.T, addrs []string, topic string, p int32, ts ...int64) {
	t.Helper()
	var rs []*kgo.Record
	for _, v := range ts {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Timestamp: time.UnixMilli(v),
			Value: []byte(fmt.Sprintf("p%d:%d", p, v))})
	}
	kafkatest.Produce(t, addrs, rs...)
}

func openEventTime(t *testing.T, e *EventTimeSource[string], sub, par int) {
	t.Helper()
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "j", UID: "src", Subtask: sub, Parallelism: par})
	if err := e.InitializeState(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
}

func pollEventTime(t *testing.T, e *EventTimeSource[string], out *wmOutput, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(out.got) < want {
		if _, err := e.Poll(out); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d records", len(out.got), want)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := e.Poll(out); err != nil { // and once more for the watermark
		t.Fatal(err)
	}
}

// The source's clock is set by the test, so idleness is exact.
func TestPerPartitionWatermarksLeaveIdlePartitionsOut(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"ev": 3})
	addrs := c.ListenAddrs()
	stampedAt(t, addrs, "ev", 0, 1000, 5000, 4000) // 4000 is out of order, within 2s
	stampedAt(t, addrs, "ev", 1, 2000, 6000)
	stampedAt(t, addrs, "ev", 2, 3000) // then quiet

	var clock int64
	e := newSource(addrs, "ev").EventTime(Watermarks[string]{OutOfOrderness: 2 * time.Second, Idleness: time.Second})
	e.now = func() int64 { return clock }
	openEventTime(t, e, 0, 1)
	clock = time.Now().UnixNano() // after Open: the partitions are new
	start := clock
	out := &wmOutput{wm: runtime.NoTimestamp}
	pollEventTime(t, e, out, 6)
	slices.Sort(out.got)
	if got, want := strings.Join(out.got, " "), "p0:1000@1000 p0:4000@4000 p0:5000@5000 p1:2000@2000 p1:6000@6000 p2:3000@3000"; got != want {
		t.Errorf("records\n got %s\nwant %s", got, want)
	}
	// The lowest partition: p2 at 3000 - 2000 - 1.
	if out.wm != 999 || out.idle {
		t.Fatalf("watermark %d idle %v, want 999 (p2's)", out.wm, out.idle)
	}

	clock = start + int64(600*time.Millisecond)
	stampedAt(t, addrs, "ev", 0, 7000)
	stampedAt(t, addrs, "ev", 1, 8000)
	pollEventTime(t, e, out, 8)
	if out.wm != 999 {
		t.Fatalf("watermark %d before p2's idleness, want 999", out.wm)
	}
	clock = start + int64(time.Second) // p2 idle; p0 and p1 active for 400ms more
	if _, err := e.Poll(out); err != nil {
		t.Fatal(err)
	}
	if out.wm != 4999 || out.idle {
		t.Fatalf("watermark %d idle %v with p2 idle, want 4999 (p0's 7000 - 2001)", out.wm, out.idle)
	}
	clock = start + int64(1600*time.Millisecond)
	if _, err := e.Poll(out); err != nil {
		t.Fatal(err)
	}
	if !out.idle || out.wm != 4999 {
		t.Fatalf("all partitions idle: idle %v watermark %d", out.idle, out.wm)
	}
	stampedAt(t, addrs, "ev", 2, 9500)
	pollEventTime(t, e, out, 9)
	// p0 and p1 are still idle: p2 alone makes 9500 - 2001.
	if out.idle || out.wm != 7499 {
		t.Fatalf("p2 back: idle %v watermark %d, want 7499", out.idle, out.wm)
	}
}

func TestASubtaskWithoutPartitionsIsIdle(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"one": 1})
	e := newSource(c.ListenAddrs(), "one").EventTime(Watermarks[string]{})
	openEventTime(t, e, 1-Owner("one", 0, 2), 2)
	out := &wmOutput{wm: runtime.NoTimestamp}
	if _, err := e.Poll(out); err != nil {
		t.Fatal(err)
	}
	if !out.idle {
		t.Error("a subtask reading no partition is not idle")
	}
}

func TestEventTimeRefusesNegativeDurations(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"one": 1})
	e := newSource(c.ListenAddrs(), "one").EventTime(Watermarks[string]{Idleness: -time.Second})
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "j", UID: "src"})
	if err := e.Open(ctx); err == nil || !strings.Contains(err.Error(), "must not be negative") {
		t.Errorf("Open with negative idleness: %v", err)
	}
}

// fireAt registers an event-time timer at each record's timestamp and
// emits "key@ts" when it fires.
type fireAt struct{}

func (fireAt) ProcessElement(v string, ctx *runtime.KeyedContext[string], _ runtime.Collector[string]) error {
	ctx.RegisterEventTimeTimer(ctx.Timestamp())
	return nil
}

func (fireAt) OnTimer(ts int64, ctx *runtime.KeyedContext[string], out runtime.Collector[string]) error {
	out.Collect(ctx.CurrentKey() + "@" + strconv.FormatInt(ts, 10))
	return nil
}

type lockedSink struct {
	mu  *sync.Mutex
	got *[]string
}

func (s lockedSink) Invoke(v string) error {
	s.mu.Lock()
	*s.got = append(*s.got, v)
	s.mu.Unlock()
	return nil
}

// Through a real task: p2 has one old record and goes quiet while p0 and
// p1 go on; once p2 is idle the watermark passes it and the timers and
// windows of all three fire (with p2 counted, nothing above 499 could).
func TestAQuietPartitionDoesNotHoldEventTimeBack(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"ev": 3})
	addrs := c.ListenAddrs()
	stampedAt(t, addrs, "ev", 2, 500)
	env, _ := runtime.NewEnv("per-partition", 1)
	src := runtime.FromWatermarkingSource(env, "kafka", func() runtime.WatermarkingSource[string] {
		return newSource(addrs, "ev").EventTime(Watermarks[string]{Idleness: 200 * time.Millisecond})
	}, runtime.StringCodec{})
	fired := runtime.Process(runtime.KeyBy(src, runtime.StringKey, func(v string) string { return v[:2] }), "fire",
		func() runtime.KeyedProcessFunction[string, string, string] { return fireAt{} }, nil).UID("fire")
	// And a tumbling window per partition: p2's [0,1000) closes too.
	windows := window.Process(runtime.KeyBy(src, runtime.StringKey, func(v string) string { return v[:2] }), "count",
		window.Tumbling(time.Second), func() window.ProcessWindowFunction[string, string, string] {
			return window.ProcessFunc[string, string, string](func(k string, w window.Window, els []string, out runtime.Collector[string]) error {
				out.Collect(fmt.Sprintf("%s[%d,%d)=%d", k, w.Start, w.End, len(els)))
				return nil
			})
		}, runtime.StringCodec{}, nil).UID("count")
	var mu sync.Mutex
	var got []string
	runtime.SinkTo(fired, "collect", func() runtime.SinkFunction[string] { return lockedSink{&mu, &got} })
	runtime.SinkTo(windows, "collect-windows", func() runtime.SinkFunction[string] { return lockedSink{&mu, &got} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- task.Run(ctx) }()
	has := func(want ...string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	}
	// p0 and p1 keep receiving records, so they never go idle.
	for ts := int64(1000); !has("p2@500", "p0@1000", "p1@1000", "p2[0,1000)=1", "p0[1000,2000)=1"); ts += 1000 {
		select {
		case err := <-done:
			t.Fatalf("task ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("timers fired: %v", got)
		case <-time.After(50 * time.Millisecond):
		}
		stampedAt(t, addrs, "ev", 0, ts)
		stampedAt(t, addrs, "ev", 1, ts)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, f := range got {
		if strings.HasPrefix(f, "p2") && f != "p2@500" && f != "p2[0,1000)=1" {
			t.Errorf("unexpected timer %s", f)
		}
	}
}

// Generators are not checkpointed: partitions restored at another
// parallelism start without a watermark and make one from their next
// records only.
func TestRestoredPartitionsRestartTheirGenerators(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"ev": 2})
	addrs := c.ListenAddrs()
	stampedAt(t, addrs, "ev", 0, 5000)
	stampedAt(t, addrs, "ev", 1, 6000)
	e := newSource(addrs, "ev").EventTime(Watermarks[string]{})
	openEventTime(t, e, 0, 1)
	out := &wmOutput{wm: runtime.NoTimestamp}
	pollEventTime(t, e, out, 2)
	if out.wm != 4999 {
		t.Fatalf("watermark %d, want 4999", out.wm)
	}
	entries, err := e.SnapshotState(1)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	stampedAt(t, addrs, "ev", 0, 1000) // behind the old watermark
	stampedAt(t, addrs, "ev", 1, 2000)
	for sub := range 2 {
		r := newSource(addrs, "ev").EventTime(Watermarks[string]{})
		ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "j", UID: "src", Subtask: sub, Parallelism: 2, Restored: true})
		if err := r.InitializeState(ctx, entries); err != nil {
			t.Fatal(err)
		}
		if err := r.Open(ctx); err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		ro := &wmOutput{wm: runtime.NoTimestamp}
		pollEventTime(t, r, ro, 1)
		if len(ro.got) != 1 || len(r.order) != 1 {
			t.Fatalf("subtask %d read %v from %d partitions, want one new record of one partition", sub, ro.got, len(r.order))
		}
		p := r.order[0].partition
		if want := []int64{999, 1999}[p]; ro.wm != want {
			t.Errorf("subtask %d (partition %d): watermark %d, want %d from its new record alone", sub, p, ro.wm, want)
		}
	}
}
