package window_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/runtime/window"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// gate feeds hand-made buffers to a task, as the exchange would deliver
// them from the upstream subtasks.
type gate struct {
	n    int
	bufs chan *engine.Buffer
	errs chan error
}

func newGate(n int) *gate {
	return &gate{n: n, bufs: make(chan *engine.Buffer, 256), errs: make(chan error)}
}

func (g *gate) NumChannels() int               { return g.n }
func (g *gate) Buffers() <-chan *engine.Buffer { return g.bufs }
func (g *gate) Recycle(*engine.Buffer)         {}
func (g *gate) Err() <-chan error              { return g.errs }

// records sends evs on channel ch, each framed with its timestamp as in an
// event-time job.
func (g *gate) records(ch int, evs ...ev) {
	b := &engine.Buffer{Kind: engine.BufferData, Channel: ch}
	for _, e := range evs {
		rec := binary.AppendVarint(nil, e.ts)
		rec = evCodec{}.Append(rec, e)
		b.Data = binary.AppendUvarint(b.Data, uint64(len(rec)))
		b.Data = append(b.Data, rec...)
		b.Records++
	}
	g.bufs <- b
}

// watermark, barrier and end send on every channel.
func (g *gate) watermark(wm int64) {
	for ch := range g.n {
		g.bufs <- &engine.Buffer{Kind: engine.BufferWatermark, Channel: ch, Value: wm}
	}
}

func (g *gate) barrier(b runtime.Barrier) {
	for ch := range g.n {
		g.bufs <- &engine.Buffer{Kind: engine.BufferBarrier, Channel: ch, Value: b.ID, Data: engine.EncodeBarrier(nil, b)}
	}
}

// end ends every channel as an upstream subtask that reached the end of
// its data does: with the maximum watermark, then the end of partition.
func (g *gate) end() {
	g.watermark(runtime.MaxWatermark)
	for ch := range g.n {
		g.bufs <- &engine.Buffer{Kind: engine.BufferEndOfPartition, Channel: ch}
	}
}

// acks collects checkpoint acknowledgements.
type acks struct {
	mu    sync.Mutex
	acked []runtime.CheckpointAck
	errs  []error
	done  chan struct{}
}

func (a *acks) Acknowledge(ack runtime.CheckpointAck) {
	a.mu.Lock()
	a.acked = append(a.acked, ack)
	a.mu.Unlock()
	a.done <- struct{}{}
}

func (a *acks) Decline(_ int64, err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
	a.done <- struct{}{}
}

func (a *acks) EndOfInput() {}

const maxP = 8

// restoreFrom builds what a TaskManager restores operator uid's subtask
// owning key groups r from: the operator-state entries of every state
// file (union redistribution) and the keyed state of r from each.
func restoreFrom(t *testing.T, dir, uid string, files []runtime.OperatorSnapshot, r runtime.KeyGroupRange) *runtime.TaskRestore {
	t.Helper()
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	or := &runtime.OperatorRestore{}
	for _, h := range files {
		sf, err := statebackend.OpenStateFile(ctx, h.File, h.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
			return st.GetRange(ctx, h.File, off, n)
		})
		if err != nil {
			t.Fatal(err)
		}
		entries, err := sf.ReadOperatorState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		or.OperatorState = append(or.OperatorState, entries...)
		if !h.KeyGroups.Overlaps(r) {
			continue
		}
		ks, err := sf.ReadKeyGroups(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		or.Keyed = append(or.Keyed, ks)
	}
	return &runtime.TaskRestore{CheckpointID: 1, Operators: map[string]*runtime.OperatorRestore{uid: or}}
}

// windowGraph is events (parallelism 2, not run) -> timestamps -> keyBy ->
// a 10 ms tumbling count with 5 ms allowed lateness (parallelism p) ->
// stamp -> collect: the test feeds the window vertex (vertex 1) itself.
func windowGraph(t *testing.T, p int, out *collector) *runtime.JobGraph {
	return windowGraphWith(t, p, out, window.Tumbling(10*time.Millisecond))
}

func windowGraphWith(t *testing.T, p int, out *collector, a window.Assigner) *runtime.JobGraph {
	t.Helper()
	env, _ := runtime.NewEnv("windows", 2)
	env.SetMaxParallelism(maxP)
	src := runtime.FromSource(env, "events", func() runtime.SourceFunction[ev] { return &batchSource{} }, evCodec{})
	ts := runtime.AssignTimestampsAndWatermarks(src, runtime.ForMonotonousTimestamps(func(e ev) int64 { return e.ts }))
	counts := window.AggregateProcess(runtime.KeyBy(ts, runtime.StringKey, func(e ev) string { return e.key }), "count",
		a, window.Count[ev](), nil, describe[int64], nil,
		window.AllowedLateness(5*time.Millisecond)).UID("win").Parallelism(p)
	stamped := runtime.ProcessStream(counts, "stamp", func() runtime.ProcessFunction[string, string] { return stamp{} }, nil).Parallelism(p)
	runtime.SinkTo(stamped, "collect", func() runtime.SinkFunction[string] { return out }).Parallelism(p)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 2 || !g.EventTime {
		t.Fatalf("unexpected graph %+v", g.Vertices)
	}
	return g
}

// run runs subtask i of the window vertex until its input ends.
func run(t *testing.T, g *runtime.JobGraph, i int, tio runtime.TaskIO) {
	t.Helper()
	tio.LatencyInterval = -1
	task, err := runtime.NewTask(g, 1, i, tio)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWindowStateAndTimersSurviveRescale snapshots a window operator at
// parallelism 1 with fired-but-retained windows (allowed lateness) and
// open ones, and restores it at parallelism 2: every subtask gets the
// windows and timers of its key groups, late firings see the restored
// counts, the restored timers fire the open windows, and once the
// watermark passes the cleanup times no window state is left.
func TestWindowStateAndTimersSurviveRescale(t *testing.T) {
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	var out collector
	g := windowGraph(t, 1, &out)
	dir := t.TempDir()
	in := newGate(2)
	rep := &acks{done: make(chan struct{}, 4)}
	for _, k := range keys {
		in.records(0, ev{k, 2, 0})
		in.records(1, ev{k, 12, 0})
	}
	in.watermark(10) // [0, 10) fires; its state stays until 14
	in.barrier(runtime.Barrier{ID: 1, Location: dir})
	for _, k := range keys {
		in.records(0, ev{k, 13, 0}) // after the snapshot
	}
	in.end()
	run(t, g, 0, runtime.TaskIO{Input: in, Checkpoints: rep})
	<-rep.done
	if len(rep.errs) > 0 || len(rep.acked) != 1 {
		t.Fatalf("acks %+v, declines %v", rep.acked, rep.errs)
	}
	var h runtime.OperatorSnapshot
	for _, s := range rep.acked[0].States {
		if s.UID == "win" {
			h = s
		}
	}
	if h.File == "" || h.Keys == 0 {
		t.Fatalf("no window state in the checkpoint: %+v", rep.acked[0].States)
	}
	var want []string
	for _, k := range keys {
		want = append(want, k+" [0, 10) [1] @9", k+" [10, 20) [2] @19")
	}
	expect(t, "before the rescale", out.sorted(), want)

	var got2 []string
	for i := range 2 {
		var out2 collector
		g2 := windowGraph(t, 2, &out2)
		r := runtime.KeyGroupRangeForSubtask(maxP, 2, i)
		restore := restoreFrom(t, dir, "win", []runtime.OperatorSnapshot{h}, r)
		var mine []string
		for _, k := range keys {
			if r.Contains(runtime.KeyGroupForHash(runtime.StringKey.Hash(k), maxP)) {
				mine = append(mine, k)
			}
		}
		if len(mine) == 0 || len(mine) == len(keys) {
			t.Fatalf("subtask %d owns %d of the keys; pick keys that spread", i, len(mine))
		}
		in := newGate(2)
		rep := &acks{done: make(chan struct{}, 4)}
		in.watermark(10) // watermarks are not checkpointed: event time resumes with the input
		for _, k := range mine {
			in.records(0, ev{k, 5, 0})  // late but allowed: fires [0, 10) again with the restored count
			in.records(1, ev{k, 15, 0}) // joins the restored open window
		}
		in.watermark(25) // restored timers: 14 purges [0, 10), 19 fires [10, 20), 24 purges it
		in.barrier(runtime.Barrier{ID: 2, Location: t.TempDir()})
		in.end()
		run(t, g2, i, runtime.TaskIO{Input: in, Checkpoints: rep, Restore: restore})
		<-rep.done
		found := false
		for _, s := range rep.acked[0].States {
			if s.UID == "win" {
				found = true
				if s.Keys != 0 {
					t.Errorf("subtask %d: %d keys of window state left after every cleanup time", i, s.Keys)
				}
			}
		}
		if !found {
			t.Errorf("subtask %d: no window operator in checkpoint 2: %+v", i, rep.acked[0].States)
		}
		var want []string
		for _, k := range mine {
			want = append(want, k+" [0, 10) [2] @9", k+" [10, 20) [2] @19")
		}
		expect(t, fmt.Sprintf("subtask %d after the rescale", i), out2.sorted(), want)
		got2 = append(got2, out2.sorted()...)
	}
	if len(got2) != 2*len(keys) {
		t.Errorf("%d results after the rescale, want %d", len(got2), 2*len(keys))
	}
}

// TestEveryPaneIsPurged: sliding windows of 10 ms every 4 ms are kept in
// 2 ms panes, two per slide; once the watermark has passed every cleanup
// time, a checkpoint finds no window state left.
func TestEveryPaneIsPurged(t *testing.T) {
	var out collector
	g := windowGraphWith(t, 1, &out, window.Sliding(10*time.Millisecond, 4*time.Millisecond))
	in := newGate(2)
	rep := &acks{done: make(chan struct{}, 4)}
	for ts := int64(0); ts < 40; ts++ {
		in.records(int(ts%2), ev{[]string{"a", "b", "c"}[ts%3], ts, 0})
	}
	in.watermark(60)
	in.barrier(runtime.Barrier{ID: 1, Location: t.TempDir()})
	in.end()
	run(t, g, 0, runtime.TaskIO{Input: in, Checkpoints: rep})
	<-rep.done
	if len(rep.acked) != 1 {
		t.Fatalf("acks %+v, declines %v", rep.acked, rep.errs)
	}
	for _, s := range rep.acked[0].States {
		if s.UID == "win" && s.Keys != 0 {
			t.Errorf("%d keys of window state left after every cleanup time", s.Keys)
		}
	}
	// Windows [-8, 2) to [36, 46) each fired once per key they hold:
	// all but [-8, 2) hold all three keys (c's first element is at 2).
	if n := len(out.sorted()); n != 3*12-1 {
		t.Errorf("%d results, want 35: %q", n, out.sorted())
	}
}

// sessionGraph is windowGraph with 10 ms session windows that keep their
// elements (window.Process).
func sessionGraph(t *testing.T, p int, out *collector) *runtime.JobGraph {
	t.Helper()
	env, _ := runtime.NewEnv("sessions", 2)
	env.SetMaxParallelism(maxP)
	src := runtime.FromSource(env, "events", func() runtime.SourceFunction[ev] { return &batchSource{} }, evCodec{})
	ts := runtime.AssignTimestampsAndWatermarks(src, runtime.ForMonotonousTimestamps(func(e ev) int64 { return e.ts }))
	sessions := window.Process(runtime.KeyBy(ts, runtime.StringKey, func(e ev) string { return e.key }), "sessions",
		window.Session(10*time.Millisecond), describe[ev], evCodec{}, nil).UID("sessions").Parallelism(p)
	stamped := runtime.ProcessStream(sessions, "stamp", func() runtime.ProcessFunction[string, string] { return stamp{} }, nil).Parallelism(p)
	runtime.SinkTo(stamped, "collect", func() runtime.SinkFunction[string] { return out }).Parallelism(p)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestSessionsSurviveRescale checkpoints two open sessions per key with
// their elements and restores them at parallelism 2, where a bridging
// element merges the restored sessions: the merged session has every
// element, and fires once, on the restored timer's successor.
func TestSessionsSurviveRescale(t *testing.T) {
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"}
	var out collector
	g := sessionGraph(t, 1, &out)
	dir := t.TempDir()
	in := newGate(2)
	rep := &acks{done: make(chan struct{}, 4)}
	for _, k := range keys {
		in.records(0, ev{k, 0, 0}, ev{k, 5, 0}) // session [0, 15)
		in.records(1, ev{k, 20, 0})             // session [20, 30)
	}
	in.barrier(runtime.Barrier{ID: 1, Location: dir})
	in.end()
	run(t, g, 0, runtime.TaskIO{Input: in, Checkpoints: rep})
	<-rep.done
	var h runtime.OperatorSnapshot
	for _, s := range rep.acked[0].States {
		if s.UID == "sessions" {
			h = s
		}
	}
	if h.File == "" {
		t.Fatalf("no session state in the checkpoint: %+v", rep.acked[0].States)
	}
	total := 0
	for i := range 2 {
		var out2 collector
		g2 := sessionGraph(t, 2, &out2)
		r := runtime.KeyGroupRangeForSubtask(maxP, 2, i)
		restore := restoreFrom(t, dir, "sessions", []runtime.OperatorSnapshot{h}, r)
		in := newGate(2)
		var want []string
		for _, k := range keys {
			if r.Contains(runtime.KeyGroupForHash(runtime.StringKey.Hash(k), maxP)) {
				in.records(0, ev{k, 12, 0}) // [12, 22) bridges [0, 15) and [20, 30)
				want = append(want, k+" [0, 30) [k@0 k@5 k@20 k@12] @29")
			}
		}
		in.watermark(40)
		in.end()
		run(t, g2, i, runtime.TaskIO{Input: in, Restore: restore})
		for j := range want {
			k := want[j][:2]
			want[j] = strings.ReplaceAll(want[j], "k@", k+"@")
		}
		expect(t, fmt.Sprintf("subtask %d", i), out2.sorted(), want)
		total += len(want)
	}
	if total != len(keys) {
		t.Errorf("%d sessions after the rescale, want %d", total, len(keys))
	}
}

// TestWindowStateMergesOnScaleIn checkpoints the window operator at
// parallelism 2 and restores both subtasks' state into one subtask: the
// restored windows of every key fire on their restored timers.
func TestWindowStateMergesOnScaleIn(t *testing.T) {
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}
	dir := t.TempDir()
	var handles []runtime.OperatorSnapshot
	for i := range 2 {
		var out collector
		g := windowGraph(t, 2, &out)
		r := runtime.KeyGroupRangeForSubtask(maxP, 2, i)
		in := newGate(2)
		rep := &acks{done: make(chan struct{}, 4)}
		for _, k := range keys {
			if r.Contains(runtime.KeyGroupForHash(runtime.StringKey.Hash(k), maxP)) {
				in.records(i, ev{k, 3, 0}, ev{k, 13, 0})
			}
		}
		in.watermark(10) // [0, 10) fires; [10, 20) stays open
		in.barrier(runtime.Barrier{ID: 1, Location: dir})
		in.end()
		run(t, g, i, runtime.TaskIO{Input: in, Checkpoints: rep})
		<-rep.done
		for _, s := range rep.acked[0].States {
			if s.UID == "win" {
				handles = append(handles, s)
			}
		}
	}
	if len(handles) != 2 {
		t.Fatalf("state handles %+v, want one per subtask", handles)
	}
	var out collector
	g := windowGraph(t, 1, &out)
	in := newGate(2)
	for _, k := range keys {
		in.records(0, ev{k, 4, 0}) // late but allowed: [0, 10) fires again with 2
	}
	in.watermark(10)
	in.watermark(30)
	in.end()
	restore := restoreFrom(t, dir, "win", handles, runtime.KeyGroupRangeForSubtask(maxP, 1, 0))
	run(t, g, 0, runtime.TaskIO{Input: in, Restore: restore})
	var want []string
	for _, k := range keys {
		want = append(want, k+" [0, 10) [2] @9", k+" [10, 20) [1] @19")
	}
	expect(t, "after the scale-in", out.sorted(), want)
}
