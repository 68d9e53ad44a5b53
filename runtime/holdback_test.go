package runtime

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// batchSource emits its records a batch at a time, as real sources do,
// so that keyed operators downstream hold records back.
type batchSource struct {
	recs  []keyed
	i     int
	batch int
}

func (s *batchSource) Poll(out Collector[keyed]) (time.Duration, error) {
	if s.i == len(s.recs) {
		return 0, ErrEndOfInput
	}
	end := min(s.i+s.batch, len(s.recs))
	for ; s.i < end; s.i++ {
		out.Collect(s.recs[s.i])
	}
	return 0, nil
}

// churner reads and writes a word state, a value state and a map state,
// and registers and deletes timers of both domains, writing down what it
// saw: any change in the order of records, timers and watermarks shows in
// its output.
type churner struct {
	count ValueState[int64]
	last  ValueState[string]
	seen  MapState[int64, bool]
}

func (c *churner) Open(ctx *KeyedContext[string]) (err error) {
	if c.count, err = GetValueState(ctx, "count", Int64Codec{}); err != nil {
		return err
	}
	if c.last, err = GetValueState(ctx, "last", StringCodec{}); err != nil {
		return err
	}
	c.seen, err = GetMapState(ctx, "seen", Int64Codec{}, BoolCodec{})
	return err
}

func (c *churner) ProcessElement(v keyed, ctx *KeyedContext[string], out Collector[string]) error {
	n, _ := c.count.Value()
	last, _ := c.last.Value()
	had, _ := c.seen.Get(v.n % 7)
	out.Collect(fmt.Sprintf("%s n=%d last=%q had=%v ts=%d wm=%d pt=%d", v.key, n, last, had, ctx.Timestamp(), ctx.CurrentWatermark(), ctx.CurrentProcessingTime()))
	switch v.n % 5 {
	case 0:
		c.count.Clear()
		c.last.Clear()
		ctx.DeleteEventTimeTimer(v.n - 1)
	case 1:
		ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime())
	default:
		c.count.Update(n + 1)
		c.last.Update(fmt.Sprint(v.n))
		ctx.RegisterEventTimeTimer(v.n + 3)
	}
	c.seen.Put(v.n%7, true)
	return nil
}

func (c *churner) OnTimer(ts int64, ctx *KeyedContext[string], out Collector[string]) error {
	n, _ := c.count.Value()
	out.Collect(fmt.Sprintf("timer %s %v@%d n=%d wm=%d", ctx.CurrentKey(), ctx.TimeDomain(), ts, n, ctx.CurrentWatermark()))
	if ctx.TimeDomain() == EventTime && ts%2 == 0 && ts < 4000 {
		ctx.RegisterEventTimeTimer(ts + 2)
	}
	return nil
}

// TestHeldRecordsMatchRecordByRecord runs a chain of two keyed operators,
// with timers of both domains and watermarks between batches, once with
// records held back within batches and once processed as they come: each
// sink must get the same lines in the same order. (Across the two sinks
// the interleaving differs: the second operator's lines come later.)
// It runs on the memory backend and on pebble with both timer services
// (pebble operators prefetch their value caches' slots for held records).
func TestHeldRecordsMatchRecordByRecord(t *testing.T) {
	for _, sb := range []StateBackend{{}, {Kind: StateBackendPebble}, {Kind: StateBackendPebble, Timers: TimerServiceHeap}} {
		name := sb.Kind
		if name == "" {
			name = StateBackendMemory
		} else {
			name += "/" + cmp.Or(sb.Timers, TimerServiceStore)
		}
		t.Run(name, func(t *testing.T) {
			sb.Dir = t.TempDir()
			heldMatchRecordByRecord(t, sb)
		})
	}
}

func heldMatchRecordByRecord(t *testing.T, sb StateBackend) {
	r := rand.New(rand.NewPCG(1, 2))
	recs := make([]keyed, 2000)
	for i := range recs {
		// Timestamps mostly rising, some late, over 40 keys.
		recs[i] = keyed{key: fmt.Sprintf("k%d", r.IntN(40)), n: int64(i) - int64(r.IntN(20))}
	}
	run := func(hold bool) ([]string, *Task) {
		holdBackRecords = hold
		defer func() { holdBackRecords = true }()
		env, _ := NewEnv("held", 1)
		src := FromSource(env, "in", func() SourceFunction[keyed] { return &batchSource{recs: recs, batch: 300} }, keyedCodec{})
		src = AssignTimestampsAndWatermarks(src, ForBoundedOutOfOrderness(10*time.Millisecond, func(k keyed) int64 { return k.n }))
		first := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "first",
			func() KeyedProcessFunction[string, keyed, string] { return &churner{} }, StringCodec{})
		// The second operator keys the first's lines by their first word.
		again := Map(first, "parse", func(s string) keyed {
			w, _, _ := strings.Cut(s, " ")
			return keyed{key: w, n: int64(len(s))}
		}, keyedCodec{})
		second := Process(KeyBy(again, StringKey, func(k keyed) string { return k.key }), "second",
			func() KeyedProcessFunction[string, keyed, string] { return &churner{} }, StringCodec{})
		var mu sync.Mutex
		var got []string
		sink := func(prefix string) func() SinkFunction[string] {
			return func() SinkFunction[string] {
				return sinkFunc(func(s string) { mu.Lock(); got = append(got, prefix+s); mu.Unlock() })
			}
		}
		SinkTo(first, "first-out", sink("1 "))
		SinkTo(second, "second-out", sink("2 "))
		g, err := env.Graph()
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Vertices) != 1 {
			t.Fatalf("got %d vertices, want one chain", len(g.Vertices))
		}
		task, err := NewTask(g, 0, 0, TaskIO{LatencyInterval: -1, Clock: engine.NewManualClock(time.UnixMilli(1_700_000_000_000)), StateBackend: sb})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := task.Run(ctx); err != nil {
			t.Fatal(err)
		}
		slices.SortStableFunc(got, func(a, b string) int { return strings.Compare(a[:1], b[:1]) })
		return got, task
	}
	want, _ := run(false)
	got, task := run(true)
	held := 0
	for _, f := range task.chain.batchers {
		if f != nil {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("%d operators held records back, want 2", held)
	}
	var timers int
	for _, l := range want {
		if strings.Contains(l, "timer") {
			timers++
		}
	}
	if timers < 100 || len(want) < 2*len(recs) {
		t.Fatalf("the job is too quiet to tell: %d lines, %d timers", len(want), timers)
	}
	if len(got) != len(want) {
		t.Fatalf("held back: %d lines, record by record: %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d: held back %q, record by record %q", i, got[i], want[i])
		}
	}
}

type sinkFunc func(string)

func (f sinkFunc) Invoke(s string) error { f(s); return nil }

// stamper registers an event-time timer at the record's value and writes
// down records and timers.
type stamper struct{ out *[]string }

func (s stamper) ProcessElement(v int64, ctx *KeyedContext[int64], _ Collector[int64]) error {
	ctx.RegisterEventTimeTimer(v)
	*s.out = append(*s.out, fmt.Sprint("record ", v))
	return nil
}

func (s stamper) OnTimer(ts int64, ctx *KeyedContext[int64], _ Collector[int64]) error {
	*s.out = append(*s.out, fmt.Sprint("timer ", ts))
	return nil
}

// TestHeldRecordsGoBeforeTimersAndSnapshots: whatever reaches a keyed
// operator other than a record (its timers, a snapshot) finds the records
// it held back processed first. A task ends its batches before any of
// these, so this drives the operator directly, within a batch.
func TestHeldRecordsGoBeforeTimersAndSnapshots(t *testing.T) {
	var got []string
	inRecords := true
	rc := NewRuntimeContext(ContextConfig{MaxParallelism: 128})
	oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: KeyGroupRange{First: 0, Last: 127}}
	ts, wm := NoTimestamp, NoTimestamp
	oc.inRecords, oc.ts, oc.wm = &inRecords, &ts, &wm
	op, err := newProcessOperator[int64, int64, int64](oc, stamper{&got}, Int64Key, func(v int64) int64 { return v }, discard[int64]{})
	if err != nil {
		t.Fatal(err)
	}
	op.holdBack(oc)
	op.Collect(1)
	op.Collect(2)
	if len(got) != 0 {
		t.Fatalf("processed %q within the batch, want them held", got)
	}
	op.fireEventTimers(1)
	if want := "record 1,record 2,timer 1"; strings.Join(got, ",") != want {
		t.Fatalf("got %q, want %s", got, want)
	}
	op.Collect(3)
	sections, err := op.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var timers []string
	for _, s := range sections {
		if s.Name() == eventTimersSection {
			for kg := range 128 {
				b, n := s.AppendGroup(nil, kg)
				if n > 0 {
					timers = append(timers, fmt.Sprint(kg, ":", len(b)))
				}
			}
		}
	}
	if len(timers) != 2 {
		t.Fatalf("snapshot holds event-time timers in key groups %q, want two (records 2 and 3)", timers)
	}
	op.Collect(4)
	inRecords = false
	for _, f := range oc.batchers {
		f()
	}
	if want := "record 1,record 2,timer 1,record 3,record 4"; strings.Join(got, ",") != want {
		t.Fatalf("got %q, want %s", got, want)
	}
}

// slowReader advances the task's manual clock by a second per record, as
// a slow function would, and writes down the processing time it sees.
type slowReader struct {
	clock *engine.ManualClock
	start int64
	out   *[]string
}

func (s slowReader) ProcessElement(v keyed, ctx *KeyedContext[string], _ Collector[string]) error {
	now := ctx.CurrentProcessingTime()
	*s.out = append(*s.out, fmt.Sprint(v.n, "@", now-s.start))
	if v.n == 0 {
		ctx.RegisterProcessingTimeTimer(now + 1500)
	}
	s.clock.Advance(time.Second)
	return nil
}

func (s slowReader) OnTimer(ts int64, ctx *KeyedContext[string], _ Collector[string]) error {
	*s.out = append(*s.out, fmt.Sprint("timer ", ts-s.start, " at ", ctx.CurrentProcessingTime()-s.start))
	return nil
}

// TestProcessingTimeIsReadOncePerBatch: the records of one batch see the
// time the batch started, and a timer registered at that time plus 1.5 s
// fires once the clock has passed it, not before.
func TestProcessingTimeIsReadOncePerBatch(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	clock := engine.NewManualClock(start)
	var got []string
	env, _ := NewEnv("batchtime", 1)
	src := FromSource(env, "in", func() SourceFunction[keyed] {
		return &batchSource{recs: []keyed{{"a", 0}, {"b", 1}, {"c", 2}, {"a", 3}, {"b", 4}}, batch: 3}
	}, keyedCodec{})
	out := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "slow",
		func() KeyedProcessFunction[string, keyed, string] {
			return slowReader{clock: clock, start: start.UnixMilli(), out: &got}
		}, StringCodec{})
	SinkTo(out, "none", func() SinkFunction[string] { return sinkFunc(func(string) {}) })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := NewTask(g, 0, 0, TaskIO{LatencyInterval: -1, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// The first batch starts at 0 s and runs to 3 s; the timer at 1.5 s
	// fires after it, with the clock at 3 s; the second batch starts at 3 s.
	if want := "0@0,1@0,2@0,timer 1500 at 3000,3@3000,4@3000"; strings.Join(got, ",") != want {
		t.Fatalf("got %q, want %s", strings.Join(got, ","), want)
	}
}
