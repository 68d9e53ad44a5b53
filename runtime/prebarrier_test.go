package runtime

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// preCounter counts its records in memory (not in state) and sends the
// count downstream before each barrier.
type preCounter struct {
	n   int64
	out Collector[string]
}

func (p *preCounter) Open(ctx *KeyedContext[string]) error {
	p.out = SideCollector(ctx.RuntimeContext, preCounts)
	return nil
}

func (p *preCounter) ProcessElement(k keyed, _ *KeyedContext[string], out Collector[string]) error {
	p.n++
	out.Collect(fmt.Sprintf("%s=%d", k.key, k.n))
	return nil
}

func (p *preCounter) OnTimer(int64, *KeyedContext[string], Collector[string]) error { return nil }

func (p *preCounter) FlushPreBarrier(id int64) error {
	p.out.Collect(fmt.Sprintf("count %d before barrier %d", p.n, id))
	p.n = 0
	return nil
}

var preCounts = NewOutputTag[string]("counts", StringCodec{})

// snapSink records what it had received when each snapshot was taken.
type snapSink struct {
	mu    *sync.Mutex
	got   *[]string
	snaps *[][]string
}

func (s snapSink) Invoke(v string) error {
	s.mu.Lock()
	*s.got = append(*s.got, v)
	s.mu.Unlock()
	return nil
}
func (s snapSink) InitializeState(*RuntimeContext, [][]byte) error { return nil }
func (s snapSink) SnapshotState(int64) ([][]byte, error) {
	s.mu.Lock()
	*s.snaps = append(*s.snaps, slices.Clone(*s.got))
	s.mu.Unlock()
	return nil, nil
}

// TestFlushPreBarrier: what a PreBarrierFlusher emits when a barrier
// arrives reaches the chained operators after it before they snapshot,
// after the records before the barrier and before those after it.
func TestFlushPreBarrier(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var snaps [][]string
	env, _ := NewEnv("prebarrier", 2)
	env.SetMaxParallelism(8)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	main := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "count",
		func() KeyedProcessFunction[string, keyed, string] { return &preCounter{} }, StringCodec{}).UID("count").Parallelism(1)
	SinkTo(SideOutput(main, preCounts), "counts", func() SinkFunction[string] { return snapSink{&mu, &got, &snaps} }).UID("counts").Parallelism(1)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	rep := &acks{done: make(chan struct{}, 4)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Checkpoints: rep})
	if err != nil {
		t.Fatal(err)
	}
	b1, b2 := Barrier{ID: 1, Location: t.TempDir()}, Barrier{ID: 2, Location: t.TempDir()}
	gate.records(0, keyed{"a", 1}, keyed{"b", 2})
	gate.barrier(0, b1)
	gate.barrier(1, b1)
	gate.records(0, keyed{"a", 3})
	gate.barrier(0, b2)
	gate.barrier(1, b2)
	gate.end(0)
	gate.end(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	<-rep.done
	<-rep.done
	want := []string{"count 2 before barrier 1", "count 1 before barrier 2"}
	if !slices.Equal(got, want) {
		t.Fatalf("counts %q, want %q", got, want)
	}
	if len(snaps) != 2 || !slices.Equal(snaps[0], want[:1]) || !slices.Equal(snaps[1], want) {
		t.Errorf("the sink's snapshots saw %q", snaps)
	}
	if len(rep.decline) > 0 {
		t.Errorf("declined: %v", rep.decline)
	}
}

// noter sets a note while it has seen fewer than two records, and clears
// it after.
type noter struct {
	ctx *RuntimeContext
	n   int
}

func (f *noter) Open(ctx *KeyedContext[string]) error {
	f.ctx = ctx.RuntimeContext
	f.ctx.SetNote("waiting for two records")
	return nil
}

func (f *noter) ProcessElement(keyed, *KeyedContext[string], Collector[string]) error {
	if f.n++; f.n == 2 {
		f.ctx.SetNote("")
	}
	return nil
}

func (f *noter) OnTimer(int64, *KeyedContext[string], Collector[string]) error { return nil }

// TestTaskNotes: a function's note is the task's until it clears it.
func TestTaskNotes(t *testing.T) {
	env, _ := NewEnv("notes", 2)
	env.SetMaxParallelism(8)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "note",
		func() KeyedProcessFunction[string, keyed, string] { return &noter{} }, StringCodec{}).UID("note").Parallelism(1)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if n := task.Notes(); len(n) != 0 {
		t.Errorf("notes before Open: %q", n)
	}
	gate.records(0, keyed{"a", 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- task.Run(ctx) }()
	for deadline := time.Now().Add(5 * time.Second); !slices.Equal(task.Notes(), []string{"waiting for two records"}); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("notes %q", task.Notes())
		}
	}
	gate.records(1, keyed{"b", 2})
	gate.end(0)
	gate.end(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := task.Notes(); len(n) != 0 {
		t.Errorf("notes after the second record: %q", n)
	}
}
