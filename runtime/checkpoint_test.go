package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// keyedCodec serialises the test's keyed records.
type keyedCodec struct{}

func (keyedCodec) Append(dst []byte, k keyed) []byte {
	dst = binary.AppendVarint(dst, int64(len(k.key)))
	dst = append(dst, k.key...)
	return binary.AppendVarint(dst, k.n)
}

func (keyedCodec) Decode(src []byte) (keyed, error) {
	r := NewReader(src)
	k := keyed{key: string(r.Bytes())}
	k.n = r.Varint()
	return k, r.Done()
}

// fakeGate feeds hand-made buffers to a task.
type fakeGate struct {
	n    int
	bufs chan *engine.Buffer
	errs chan error
}

func (g *fakeGate) NumChannels() int               { return g.n }
func (g *fakeGate) Buffers() <-chan *engine.Buffer { return g.bufs }
func (g *fakeGate) Recycle(*engine.Buffer)         {}
func (g *fakeGate) Err() <-chan error              { return g.errs }
func (g *fakeGate) records(ch int, recs ...keyed) {
	b := &engine.Buffer{Kind: engine.BufferData, Channel: ch}
	for _, r := range recs {
		enc := keyedCodec{}.Append(nil, r)
		b.Data = binary.AppendUvarint(b.Data, uint64(len(enc)))
		b.Data = append(b.Data, enc...)
		b.Records++
	}
	g.bufs <- b
}
func (g *fakeGate) barrier(ch int, b Barrier) {
	g.bufs <- &engine.Buffer{Kind: engine.BufferBarrier, Channel: ch, Value: b.ID, Data: engine.EncodeBarrier(nil, b)}
}
func (g *fakeGate) end(ch int) {
	g.bufs <- &engine.Buffer{Kind: engine.BufferEndOfPartition, Channel: ch}
}

// acks collects a task's checkpoint reports.
type acks struct {
	mu      sync.Mutex
	acked   []CheckpointAck
	decline []error
	done    chan struct{}
}

func (a *acks) Acknowledge(ack CheckpointAck) {
	a.mu.Lock()
	a.acked = append(a.acked, ack)
	a.mu.Unlock()
	a.done <- struct{}{}
}
func (a *acks) Decline(_ int64, err error) {
	a.mu.Lock()
	a.decline = append(a.decline, err)
	a.mu.Unlock()
	a.done <- struct{}{}
}
func (a *acks) EndOfInput() {}

// keyedGraph is in (parallelism 2) -> keyBy -> sum (parallelism 1) ->
// collect: the sum vertex has two input channels.
func keyedGraph(t *testing.T, got *[]string, mu *sync.Mutex) *JobGraph {
	env, _ := NewEnv("align", 2)
	env.SetMaxParallelism(8)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	out := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "sum",
		func() KeyedProcessFunction[string, keyed, string] { return &summer{} }, nil).UID("sum").Parallelism(1)
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{mu, got} }).Parallelism(1)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 2 || g.InputChannels(g.Vertices[1].Inputs[0], 0) == nil {
		t.Fatalf("unexpected graph %+v", g.Vertices)
	}
	return g
}

// TestAlignmentAndRestore checks that a task with two inputs holds back a
// channel that delivered barrier 1 until the other one has too, so the
// snapshot holds exactly the records before the barrier on both inputs;
// and that a new task restored from the written file resumes from it.
//
// It runs on both state backends, and restores each backend's file on the
// other as well: the state files are the same format.
func TestAlignmentAndRestore(t *testing.T) {
	for _, from := range []string{StateBackendMemory, StateBackendPebble} {
		for _, to := range []string{StateBackendMemory, StateBackendPebble} {
			t.Run(from+"-to-"+to, func(t *testing.T) {
				dir := t.TempDir()
				alignAndRestore(t, StateBackend{Kind: from, Dir: dir}, StateBackend{Kind: to, Dir: dir})
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("state directory left behind: %v", ents)
				}
			})
		}
	}
}

func alignAndRestore(t *testing.T, from, to StateBackend) {
	var mu sync.Mutex
	var got []string
	g := keyedGraph(t, &got, &mu)
	dir := t.TempDir()
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	rep := &acks{done: make(chan struct{}, 4)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Checkpoints: rep, StateBackend: from})
	if err != nil {
		t.Fatal(err)
	}
	bar := Barrier{ID: 1, Location: dir}
	gate.records(0, keyed{"a", 1})
	gate.barrier(0, bar)
	gate.records(0, keyed{"a", 100}) // after the barrier: must wait for channel 1's
	gate.records(1, keyed{"b", 10}, keyed{"b", 20})
	gate.barrier(1, bar)
	gate.end(0)
	gate.end(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	<-rep.done
	want := []string{
		"a=1 list=1 distinct=1 dup=n",
		"b=10 list=1 distinct=1 dup=n",
		"b=30 list=2 distinct=2 dup=n",
		"a=101 list=2 distinct=2 dup=n", // released after the snapshot
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(rep.decline) > 0 || len(rep.acked) != 1 || len(rep.acked[0].States) != 1 {
		t.Fatalf("acks %+v, declines %v", rep.acked, rep.decline)
	}
	h := rep.acked[0].States[0]
	if h.UID != "sum" || h.KeyGroups != (KeyGroupRange{First: 0, Last: 7}) {
		t.Errorf("state handle %+v", h)
	}

	// Restore a fresh subtask from the file: a's sum is 1 and b's 30, not
	// 101: the record after the barrier is not in the snapshot.
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sf, err := statebackend.OpenStateFile(ctx, h.File, h.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
		return st.GetRange(ctx, h.File, off, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := sf.ReadKeyGroups(ctx, KeyGroupRange{First: 0, Last: 7})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	gate2 := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	restore := &TaskRestore{CheckpointID: 1, Operators: map[string]*OperatorRestore{"sum": {Keyed: []*statebackend.KeyedState{ks}}}}
	task2, err := NewTask(g, 1, 0, TaskIO{Input: gate2, LatencyInterval: -1, Restore: restore, StateBackend: to})
	if err != nil {
		t.Fatal(err)
	}
	gate2.records(1, keyed{"a", 5}, keyed{"b", 5})
	gate2.end(0)
	gate2.end(1)
	if err := task2.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{"a=6 list=2 distinct=2 dup=n", "b=35 list=3 distinct=3 dup=n"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after restore\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestNewerBarrierAbandonsAlignment: barrier 2 arriving while 1 is still
// aligning (1 was aborted upstream) gives 1 up and aligns 2 instead.
func TestNewerBarrierAbandonsAlignment(t *testing.T) {
	var mu sync.Mutex
	var got []string
	g := keyedGraph(t, &got, &mu)
	dir := t.TempDir()
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	rep := &acks{done: make(chan struct{}, 4)}
	task, err := NewTask(g, 1, 0, TaskIO{Input: gate, LatencyInterval: -1, Checkpoints: rep})
	if err != nil {
		t.Fatal(err)
	}
	gate.barrier(0, Barrier{ID: 1, Location: dir})
	gate.records(0, keyed{"a", 1}) // held for 1, released when 2 overtakes
	gate.barrier(1, Barrier{ID: 2, Location: dir})
	gate.barrier(0, Barrier{ID: 2, Location: dir})
	gate.barrier(1, Barrier{ID: 1, Location: dir}) // stale: ignored
	gate.end(0)
	gate.end(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	<-rep.done
	if len(rep.acked) != 1 || rep.acked[0].CheckpointID != 2 {
		t.Errorf("acks %+v; want checkpoint 2 alone", rep.acked)
	}
	if len(got) != 1 {
		t.Errorf("output %q; want the held record processed once", got)
	}
}

// TestTimersSurviveRescale writes a keyed operator's timers to a state
// file and restores them split over two subtasks: each gets exactly the
// timers of its key groups.
func TestTimersSurviveRescale(t *testing.T) {
	const maxP = 16
	rc := NewRuntimeContext(ContextConfig{MaxParallelism: maxP})
	all := KeyGroupRange{First: 0, Last: maxP - 1}
	oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: all}
	op, _ := newProcessOperator[string, string, string](oc, nil, StringKey, func(v string) string { return v }, discard[string]{})
	want := map[timerKey[string]]int{}
	for i := 0; i < 200; i++ {
		k := timerKey[string]{ts: int64(1000 + i%7), key: "k" + itoa(int64(i))}
		kg := KeyGroupForHash(StringHash(k.key), maxP)
		op.ctx.timers.add(timerEntry[string]{timerKey: k, kg: kg, hash: StringHash(k.key)})
		want[k] = kg
	}
	sections, err := op.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := statebackend.WriteStateFile(all, sections, nil)
	if err != nil {
		t.Fatal(err)
	}
	op.ctx.timers.add(timerEntry[string]{timerKey: timerKey[string]{ts: 1, key: "after"}}) // not in the snapshot
	ctx := context.Background()
	sf, err := statebackend.OpenStateFile(ctx, "t.state", int64(len(data)), func(_ context.Context, off, n int64) ([]byte, error) {
		return data[off : off+n], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for i := 0; i < 2; i++ {
		r := KeyGroupRangeForSubtask(maxP, 2, i)
		ks, err := sf.ReadKeyGroups(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		var h timerHeap[string]
		if err := restoreTimers(&h, timersSection, StringKey, ks); err != nil {
			t.Fatal(err)
		}
		var restored []timerEntry[string]
		h.each(func(e timerEntry[string]) { restored = append(restored, e) })
		for _, e := range restored {
			if kg, ok := want[e.timerKey]; !ok || kg != e.kg || !r.Contains(e.kg) {
				t.Errorf("subtask %d restored %+v (want key group %d in %v, known %v)", i, e, kg, r, ok)
			}
		}
		got += h.len()
		for _, e := range restored {
			if !h.remove(e.timerKey, StringHash(e.key)) {
				t.Errorf("subtask %d: restored timer %v not found by its key's hash", i, e.timerKey)
			}
		}
	}
	if got != len(want) {
		t.Errorf("restored %d timers, want %d", got, len(want))
	}
}

// TestTriggerAfterEndIsRefused: a source that has finished refuses
// triggers instead of queueing them for a loop that is gone, which would
// leave the checkpoint waiting until its timeout.
func TestTriggerAfterEndIsRefused(t *testing.T) {
	env, _ := NewEnv("ended", 1)
	src := FromSource(env, "in", func() SourceFunction[int64] { return &sliceSource[int64]{recs: []int64{1}} }, Int64Codec{})
	SinkTo(src, "discard", func() SinkFunction[int64] { return collectSink[int64]{&sync.Mutex{}, new([]int64)} })
	task := runSingleVertex(t, env)
	if err := task.TriggerCheckpoint(Barrier{ID: 1, Location: t.TempDir()}); err == nil || !errors.Is(err, ErrCheckpointDeclined) {
		t.Fatalf("trigger after the end: %v, want a declined error", err)
	}
}
