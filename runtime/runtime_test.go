package runtime

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sliceSource emits its records, then finishes.
type sliceSource[T any] struct {
	recs []T
	i    int
}

func (s *sliceSource[T]) Poll(out Collector[T]) (time.Duration, error) {
	if s.i == len(s.recs) {
		return 0, ErrEndOfInput
	}
	out.Collect(s.recs[s.i])
	s.i++
	return 0, nil
}

// collectSink records what reaches it; safe for use across subtasks.
type collectSink[T any] struct {
	mu  *sync.Mutex
	out *[]T
}

func (s collectSink[T]) Invoke(v T) error {
	s.mu.Lock()
	*s.out = append(*s.out, v)
	s.mu.Unlock()
	return nil
}

func runSingleVertex(t *testing.T, env *Env) *Task {
	t.Helper()
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 1 {
		t.Fatalf("got %d vertices, want everything chained into 1", len(g.Vertices))
	}
	task, err := NewTask(g, 0, 0, TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return task
}

func TestChainingRunsOneToOneOperatorsInOneTask(t *testing.T) {
	env, _ := NewEnv("chain", 1)
	src := FromSource(env, "numbers", func() SourceFunction[int64] {
		return &sliceSource[int64]{recs: []int64{1, 2, 3, 4, 5, 6}}
	}, Int64Codec{})
	doubled := Map(src, "double", func(v int64) int64 { return 2 * v }, nil)
	big := Filter(doubled, "over-4", func(v int64) bool { return v > 4 })
	split := FlatMap(big, "twice", func(v int64, out Collector[string]) {
		out.Collect("a" + string(rune('0'+v%10)))
		out.Collect("b")
	}, nil)
	var mu sync.Mutex
	var got []string
	SinkTo(split, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &got} })

	task := runSingleVertex(t, env)
	if want := "a6 b a8 b a0 b a2 b"; strings.Join(got, " ") != want {
		t.Errorf("sink got %q, want %q", strings.Join(got, " "), want)
	}
	want := []OperatorCounts{{0, 6}, {6, 6}, {6, 4}, {4, 8}, {8, 0}}
	for i, c := range task.Operators() {
		if c != want[i] {
			t.Errorf("operator %d counts %+v, want %+v", i, c, want[i])
		}
	}
}

type keyed struct {
	key string
	n   int64
}

// summer keeps a running sum, a list and a map per key.
type summer struct {
	sum   ValueState[int64]
	all   ListState[int64]
	seen  MapState[int64, bool]
	order []string
}

func (s *summer) Open(ctx *KeyedContext[string]) (err error) {
	if s.sum, err = GetValueState(ctx, "sum", Int64Codec{}); err != nil {
		return err
	}
	if s.all, err = GetListState(ctx, "all", Int64Codec{}); err != nil {
		return err
	}
	s.seen, err = GetMapState(ctx, "seen", Int64Codec{}, BoolCodec{})
	return err
}

func (s *summer) ProcessElement(v keyed, ctx *KeyedContext[string], out Collector[string]) error {
	if ctx.CurrentKey() != v.key {
		out.Collect("wrong key " + ctx.CurrentKey())
	}
	sum, _ := s.sum.Value()
	s.sum.Update(sum + v.n)
	s.all.Add(v.n)
	dup := s.seen.Contains(v.n)
	s.seen.Put(v.n, true)
	sum, _ = s.sum.Value()
	out.Collect(v.key + "=" + itoa(sum) + " list=" + itoa(int64(len(s.all.Get()))) + " distinct=" + itoa(int64(s.seen.Len())) + " dup=" + map[bool]string{true: "y", false: "n"}[dup])
	if v.n == 0 {
		s.sum.Clear()
		s.all.Clear()
		s.seen.Clear()
	}
	return nil
}

func (s *summer) OnTimer(int64, *KeyedContext[string], Collector[string]) error { return nil }

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func TestKeyedStateIsScopedToTheCurrentKey(t *testing.T) {
	env, _ := NewEnv("state", 1)
	src := FromSource(env, "in", func() SourceFunction[keyed] {
		return &sliceSource[keyed]{recs: []keyed{{"a", 1}, {"b", 10}, {"a", 2}, {"a", 2}, {"b", 0}, {"b", 5}, {"a", 3}}}
	}, nil)
	out := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "sum",
		func() KeyedProcessFunction[string, keyed, string] { return &summer{} }, nil)
	var mu sync.Mutex
	var got []string
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &got} })
	runSingleVertex(t, env)
	want := []string{
		"a=1 list=1 distinct=1 dup=n",
		"b=10 list=1 distinct=1 dup=n",
		"a=3 list=2 distinct=2 dup=n",
		"a=5 list=3 distinct=2 dup=y",
		"b=10 list=2 distinct=2 dup=n", // then b's state is cleared
		"b=5 list=1 distinct=1 dup=n",
		"a=8 list=4 distinct=3 dup=n",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// timerFn registers a timer per record at (now + n ms), deletes the timer of
// records with n < 0, and reports firings with their key.
type timerFn struct {
	pending ValueState[int64]
}

func (f *timerFn) Open(ctx *KeyedContext[string]) (err error) {
	f.pending, err = GetValueState(ctx, "pending", Int64Codec{})
	return err
}

func (f *timerFn) ProcessElement(v keyed, ctx *KeyedContext[string], out Collector[string]) error {
	if v.n < 0 {
		if ts, ok := f.pending.Value(); ok {
			ctx.DeleteProcessingTimeTimer(ts)
			f.pending.Clear()
		}
		return nil
	}
	ts := ctx.CurrentProcessingTime() + v.n
	ctx.RegisterProcessingTimeTimer(ts)
	ctx.RegisterProcessingTimeTimer(ts) // idempotent
	f.pending.Update(ts)
	return nil
}

func (f *timerFn) OnTimer(ts int64, ctx *KeyedContext[string], out Collector[string]) error {
	pending, ok := f.pending.Value()
	if !ok || pending != ts {
		out.Collect("unexpected timer for " + ctx.CurrentKey())
	}
	if now := ctx.CurrentProcessingTime(); now < ts {
		out.Collect("early timer for " + ctx.CurrentKey())
	}
	f.pending.Clear()
	out.Collect("fired " + ctx.CurrentKey())
	return nil
}

// pacedSource emits its records with a pause between them, then waits so
// that pending timers get their turn before the job ends.
type pacedSource struct {
	sliceSource[keyed]
	pause, tail time.Duration
	end         time.Time
}

func (s *pacedSource) Poll(out Collector[keyed]) (time.Duration, error) {
	if s.i == len(s.recs) {
		if s.end.IsZero() {
			s.end = time.Now().Add(s.tail)
		}
		if left := time.Until(s.end); left > 0 {
			return left, nil
		}
		return 0, ErrEndOfInput
	}
	s.sliceSource.Poll(out)
	return s.pause, nil
}

func TestProcessingTimeTimersFirePerKeyAndCanBeDeleted(t *testing.T) {
	env, _ := NewEnv("timers", 1)
	src := FromSource(env, "in", func() SourceFunction[keyed] {
		return &pacedSource{sliceSource: sliceSource[keyed]{recs: []keyed{
			{"a", 20}, {"b", 30}, {"c", 40}, {"b", -1}, // b's timer deleted
		}}, pause: time.Millisecond, tail: 300 * time.Millisecond}
	}, nil)
	out := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "timers",
		func() KeyedProcessFunction[string, keyed, string] { return &timerFn{} }, nil)
	var mu sync.Mutex
	var got []string
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &got} })
	runSingleVertex(t, env)
	if want := "fired a,fired c"; strings.Join(got, ",") != want {
		t.Errorf("got %q, want %q", strings.Join(got, ","), want)
	}
}

func TestTimerHeapOrderAndRemoval(t *testing.T) {
	var h timerHeap[int]
	for _, k := range []timerKey[int]{{50, 0}, {10, 1}, {40, 2}, {10, 1}, {30, 0}, {20, 1}} {
		h.add(timerEntry[int]{timerKey: k, hash: int32(k.key)})
	}
	if h.len() != 5 { // (10, key 1) was added twice
		t.Fatalf("len %d, want 5", h.len())
	}
	if !h.remove(timerKey[int]{ts: 40, key: 2}, 2) || h.remove(timerKey[int]{ts: 40, key: 2}, 2) {
		t.Fatal("remove should succeed once")
	}
	var order []int64
	for h.len() > 0 {
		order = append(order, h.pop().ts)
	}
	if want := []int64{10, 20, 30, 50}; len(order) != 4 || order[0] != 10 || order[1] != 20 || order[2] != 30 || order[3] != 50 {
		t.Errorf("order %v, want %v", order, want)
	}
}

func TestGraphValidation(t *testing.T) {
	build := func(p, maxP int, withCodec bool) error {
		env, err := NewEnv("v", p)
		if err != nil {
			return err
		}
		if maxP > 0 {
			env.SetMaxParallelism(maxP)
		}
		var codec Codec[int64]
		if withCodec {
			codec = Int64Codec{}
		}
		src := FromSource(env, "src", func() SourceFunction[int64] { return &sliceSource[int64]{} }, codec).Parallelism(1)
		SinkTo(src, "sink", func() SinkFunction[int64] { return collectSink[int64]{} })
		_, err = env.Graph()
		return err
	}
	if err := build(-1, 0, true); err == nil {
		t.Error("negative parallelism accepted")
	}
	if err := build(8, 4, true); err == nil || !strings.Contains(err.Error(), "above maxParallelism 4") {
		t.Errorf("parallelism above maxParallelism: got %v", err)
	}
	if err := build(2, 0, false); err == nil || !strings.Contains(err.Error(), "no codec") {
		t.Errorf("exchange without codec: got %v", err)
	}
	if err := build(2, 0, true); err != nil {
		t.Errorf("valid graph: %v", err)
	}
}
