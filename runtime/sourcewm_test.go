package runtime

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// scripted runs one step per poll, then ends (or, if endless, waits).
type scripted struct {
	steps   []func(out SourceOutput[keyed])
	i       int
	endless bool
}

func (s *scripted) Poll(out SourceOutput[keyed]) (time.Duration, error) {
	if s.i == len(s.steps) {
		if s.endless {
			return 5 * time.Millisecond, nil
		}
		return 0, ErrEndOfInput
	}
	s.steps[s.i](out)
	s.i++
	return 0, nil
}

// stamped emits records stamped with their n, then watermark wm (if not
// NoTimestamp).
func stamped(wm int64, recs ...keyed) func(SourceOutput[keyed]) {
	return func(out SourceOutput[keyed]) {
		for _, r := range recs {
			out.CollectWithTimestamp(r, r.n)
		}
		if wm != NoTimestamp {
			out.EmitWatermark(wm)
		}
	}
}

func TestWatermarkingSourceDrivesEventTimeInItsChain(t *testing.T) {
	env, _ := NewEnv("source-wm", 1)
	src := FromWatermarkingSource(env, "events", func() WatermarkingSource[keyed] {
		return &scripted{steps: []func(SourceOutput[keyed]){
			stamped(94, keyed{"a", 100}, keyed{"b", 95}),
			stamped(114, keyed{"a", 103}, keyed{"a", 120}), // fires b@105, a@110, a@113
			stamped(90, keyed{"b", 104}),                   // a watermark going back is ignored
			stamped(993, keyed{"c", 999}, keyed{"b", 990}), // fires b@114, a@130
		}}
	}, keyedCodec{})
	out := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "alarm",
		func() KeyedProcessFunction[string, keyed, string] { return &alarm{} }, nil).UID("alarm")
	var mu sync.Mutex
	var got []string
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &got} })
	task := runSingleVertex(t, env) // alarm fails the job if a record lacks its timestamp
	want := []string{
		"b@105 seen=1 wm=114", "a@110 seen=3 wm=114", "a@113 seen=3 wm=114",
		"b@114 seen=3 wm=993", "a@130 seen=3 wm=993",
		"b@1000 seen=3 wm=max",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timers fired\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if task.Watermark() != MaxWatermark {
		t.Errorf("final watermark %d, want MaxWatermark", task.Watermark())
	}
}

// sourceGraph is a watermarking source (parallelism 1) feeding a sink of
// parallelism 2 over an exchange.
func sourceGraph(t *testing.T, src func() WatermarkingSource[keyed]) *JobGraph {
	t.Helper()
	env, _ := NewEnv("source-wm", 1)
	s := FromWatermarkingSource(env, "events", src, keyedCodec{})
	SinkTo(s, "collect", func() SinkFunction[keyed] { return collectSink[keyed]{new(sync.Mutex), new([]keyed)} }).Parallelism(2)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if !g.EventTime || len(g.Vertices) != 2 || !g.Vertices[1].Inputs[0].Watermarks {
		t.Fatalf("graph: event time %v, %d vertices", g.EventTime, len(g.Vertices))
	}
	return g
}

// sentRecords decodes the data buffers' records as "ts:key".
func sentRecords(c *recordingChannel) []string {
	var recs []string
	for _, b := range c.sent {
		data := b.Data
		for b.Kind == engine.BufferData && len(data) > 0 {
			l, n := binary.Uvarint(data)
			ts, m := binary.Varint(data[n:])
			k, _ := keyedCodec{}.Decode(data[n+m : n+int(l)])
			recs = append(recs, fmt.Sprintf("%d:%s", ts, k.key))
			data = data[n+int(l):]
		}
	}
	return recs
}

func TestWatermarkingSourceIdlenessAndTimestampsCrossExchanges(t *testing.T) {
	g := sourceGraph(t, func() WatermarkingSource[keyed] {
		return &scripted{steps: []func(SourceOutput[keyed]){
			stamped(49, keyed{"a", 50}),
			func(out SourceOutput[keyed]) { out.MarkIdle() },
			func(out SourceOutput[keyed]) { out.MarkIdle() },             // still idle: nothing new
			func(out SourceOutput[keyed]) { out.Collect(keyed{"b", 0}) }, // no timestamp; active again
			stamped(NoTimestamp, keyed{"c", 70}),
			func(out SourceOutput[keyed]) { out.MarkIdle() },
			func(out SourceOutput[keyed]) { out.EmitWatermark(69) }, // a watermark makes it active too
		}}
	})
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
	if got, want := strings.Join(out.events(), " "), "wm:49 idle active idle active wm:69 wm:max"; got != want {
		t.Errorf("watermark events\n got %s\nwant %s", got, want)
	}
	recs := append(sentRecords(out), sentRecords(other)...) // round-robin over both
	slices.Sort(recs)
	if got, want := strings.Join(recs, " "), fmt.Sprintf("%d:b 50:a 70:c", NoTimestamp); got != want {
		t.Errorf("records sent %q, want %q", got, want)
	}
}

// A source stopped by a savepoint ends without MaxWatermark, so that
// its consumers do not fire windows it may still have records for.
func TestAStoppedWatermarkingSourceKeepsItsWatermark(t *testing.T) {
	g := sourceGraph(t, func() WatermarkingSource[keyed] {
		return &scripted{endless: true, steps: []func(SourceOutput[keyed]){stamped(49, keyed{"a", 50})}}
	})
	out, other := &recordingChannel{}, &recordingChannel{}
	rep := &acks{done: make(chan struct{}, 4)}
	task, err := NewTask(g, 0, 0, TaskIO{LatencyInterval: -1, Checkpointing: true, Checkpoints: rep,
		Outputs: [][]engine.OutputChannel{{out, other}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- task.Run(ctx) }()
	for task.Watermark() != 49 {
		select {
		case err := <-done:
			t.Fatalf("task ended early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if err := task.TriggerCheckpoint(Barrier{ID: 1, Location: t.TempDir(), Savepoint: true, Stop: true}); err != nil {
		t.Fatal(err)
	}
	<-rep.done
	if len(rep.acked) != 1 {
		t.Fatalf("acks %+v declines %v", rep.acked, rep.decline)
	}
	task.NotifyCheckpointComplete(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(out.events(), " "); got != "wm:49" {
		t.Errorf("watermark events %q, want only wm:49", got)
	}
	if last := out.sent[len(out.sent)-1]; last.Kind != engine.BufferEndOfPartition {
		t.Errorf("last buffer of kind %v, want the end of the partition", last.Kind)
	}
}
