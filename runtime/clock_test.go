package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// reminder asks for a processing-time timer 10 s after each record and
// reports the records and the timers with the task's processing time.
type reminder struct{ start int64 }

func (r reminder) ProcessElement(k keyed, ctx *KeyedContext[string], out Collector[string]) error {
	now := ctx.CurrentProcessingTime()
	ctx.RegisterProcessingTimeTimer(now + 10_000)
	out.Collect("in:" + k.key + "@" + itoa(now-r.start))
	return nil
}

func (r reminder) OnTimer(ts int64, ctx *KeyedContext[string], out Collector[string]) error {
	out.Collect("timer:" + ctx.CurrentKey() + "@" + itoa(ts-r.start) + " now=" + itoa(ctx.CurrentProcessingTime()-r.start))
	return nil
}

// chanSink hands every record to the test as it arrives.
type chanSink struct{ c chan<- string }

func (s chanSink) Invoke(v string) error {
	s.c <- v
	return nil
}

// TestManualClockFiresProcessingTimeTimers drives processing time by hand:
// the timers fire when the clock reaches them, not before, with no sleep
// and no dependence on how fast the machine is.
func TestManualClockFiresProcessingTimeTimers(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	clock := engine.NewManualClock(start)
	out := make(chan string, 16)
	env, _ := NewEnv("clock", 2)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	rem := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "remind",
		func() KeyedProcessFunction[string, keyed, string] { return reminder{start: start.UnixMilli()} }, nil).Parallelism(1)
	SinkTo(rem, "out", func() SinkFunction[string] { return chanSink{out} }).Parallelism(1)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- task.Run(ctx) }()

	var got []string
	expect := func(want string) {
		t.Helper()
		select {
		case s := <-out:
			got = append(got, s)
			if s != want {
				t.Fatalf("got %q, want %q (so far %q)", s, want, got)
			}
		case err := <-done:
			t.Fatalf("task ended early (%v) before %q", err, want)
		case <-ctx.Done():
			t.Fatalf("no %q (so far %q)", want, got)
		}
	}
	gate.records(0, keyed{"a", 1})
	expect("in:a@0")
	clock.Advance(5 * time.Second)
	gate.records(1, keyed{"b", 1})
	expect("in:b@5000")
	clock.Advance(5 * time.Second) // a's timer is due, b's is not
	expect("timer:a@10000 now=10000")
	clock.Advance(10 * time.Second)
	expect("timer:b@15000 now=20000")
	gate.end(0)
	gate.end(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(out)
	for s := range out {
		got = append(got, s)
	}
	want := "in:a@0|in:b@5000|timer:a@10000 now=10000|timer:b@15000 now=20000"
	if strings.Join(got, "|") != want {
		t.Fatalf("output %q, want %q", strings.Join(got, "|"), want)
	}
}
