package join_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/runtime/join"
	"github.com/weirstream/weir/runtime/window"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// ev is a record of either side: a key, an event time and a number that
// names it in the output.
type ev struct {
	key   string
	ts, n int64
}

type evCodec struct{}

func (evCodec) Append(dst []byte, e ev) []byte {
	dst = binary.AppendVarint(dst, int64(len(e.key)))
	dst = append(dst, e.key...)
	dst = binary.AppendVarint(dst, e.ts)
	return binary.AppendVarint(dst, e.n)
}

func (evCodec) Decode(src []byte) (ev, error) {
	r := runtime.NewReader(src)
	e := ev{key: string(r.Bytes()), ts: r.Varint(), n: r.Varint()}
	return e, r.Done()
}

// noSource is a source the tests never run: they feed the join's vertex.
type noSource struct{}

func (noSource) Poll(runtime.Collector[ev]) (time.Duration, error) { return 0, runtime.ErrEndOfInput }

type collector struct {
	mu    sync.Mutex
	lines []string
}

func (c *collector) Invoke(s string) error {
	c.mu.Lock()
	c.lines = append(c.lines, s)
	c.mu.Unlock()
	return nil
}

func (c *collector) sorted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(slices.Values(c.lines))
}

// stamp appends each result's timestamp.
type stamp struct{}

func (stamp) ProcessElement(v string, ctx *runtime.ProcessContext, out runtime.Collector[string]) error {
	out.Collect(fmt.Sprintf("%s @%d", v, ctx.Timestamp()))
	return nil
}

func pair(key string, a, b ev, out runtime.Collector[string]) error {
	out.Collect(fmt.Sprintf("%s %d-%d", key, a.n, b.n))
	return nil
}

const maxP = 8

// kind picks the join under test.
type kind int

const (
	regular kind = iota
	interval
	windowed
)

// The interval join's bounds and the window join's size, in ms.
const (
	lower, upper = -5, 10
	size         = 20
)

// joinGraph is left and right (each one subtask, with event time, not
// run) -> keyBy(key) -> the join (parallelism p) -> stamp -> collect; the
// tests feed the join's vertex (vertex 2) on channel 0 (left) and 1
// (right).
func joinGraph(t *testing.T, k kind, p int, out *collector) *runtime.JobGraph {
	t.Helper()
	env, _ := runtime.NewEnv("join", 1)
	env.SetMaxParallelism(maxP)
	side := func(name string) runtime.KeyedStream[ev, string] {
		s := runtime.FromSource(env, name, func() runtime.SourceFunction[ev] { return noSource{} }, evCodec{})
		s = runtime.AssignTimestampsAndWatermarks(s, runtime.ForMonotonousTimestamps(func(e ev) int64 { return e.ts }))
		return runtime.KeyBy(s, runtime.StringKey, func(e ev) string { return e.key })
	}
	l, r := side("left"), side("right")
	var joined runtime.Stream[string]
	switch k {
	case regular:
		joined = join.Regular(l, r, "join", pair, evCodec{}, evCodec{}, nil)
	case interval:
		joined = join.Interval(l, r, "join", lower*time.Millisecond, upper*time.Millisecond, pair, evCodec{}, evCodec{}, nil)
	case windowed:
		joined = join.Window(l, r, "join", size*time.Millisecond,
			func(key string, w window.Window, as, bs []ev, out runtime.Collector[string]) error {
				for _, a := range as {
					for _, b := range bs {
						out.Collect(fmt.Sprintf("%s %d-%d %v", key, a.n, b.n, w))
					}
				}
				return nil
			}, evCodec{}, evCodec{}, nil)
	}
	joined = joined.UID("join").Parallelism(p)
	stamped := runtime.ProcessStream(joined, "stamp", func() runtime.ProcessFunction[string, string] { return stamp{} }, nil).Parallelism(p)
	runtime.SinkTo(stamped, "collect", func() runtime.SinkFunction[string] { return out }).Parallelism(p)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 3 || len(g.Vertices[2].Inputs) != 2 ||
		g.Vertices[2].Inputs[0].Partitioning != runtime.Hash || g.Vertices[2].Inputs[1].Partitioning != runtime.Hash {
		t.Fatalf("want two sources hash-partitioned into the join, got %+v", g.Vertices)
	}
	return g
}

// model is the join's expected output on every record of both sides,
// when none is late.
func model(k kind, left, right []ev) []string {
	var out []string
	for _, a := range left {
		for _, b := range right {
			if a.key != b.key {
				continue
			}
			switch k {
			case regular:
				// A regular join's result carries the timestamp of the
				// record that completed the pair: the later one to arrive,
				// which in these tests is the later in time.
				out = append(out, fmt.Sprintf("%s %d-%d @%d", a.key, a.n, b.n, max(a.ts, b.ts)))
			case interval:
				if a.ts+lower <= b.ts && b.ts <= a.ts+upper {
					out = append(out, fmt.Sprintf("%s %d-%d @%d", a.key, a.n, b.n, max(a.ts, b.ts)))
				}
			case windowed:
				if a.ts/size == b.ts/size {
					w := window.Window{Start: a.ts / size * size, End: a.ts/size*size + size}
					out = append(out, fmt.Sprintf("%s %d-%d %v @%d", a.key, a.n, b.n, w, w.End-1))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// gate feeds hand-made buffers to the join's task.
type gate struct {
	bufs chan *engine.Buffer
	errs chan error
}

func newGate() *gate { return &gate{bufs: make(chan *engine.Buffer, 1024), errs: make(chan error)} }

func (g *gate) NumChannels() int               { return 2 }
func (g *gate) Buffers() <-chan *engine.Buffer { return g.bufs }
func (g *gate) Recycle(*engine.Buffer)         {}
func (g *gate) Err() <-chan error              { return g.errs }

func (g *gate) records(ch int, evs ...ev) {
	for _, e := range evs {
		rec := binary.AppendVarint(nil, e.ts)
		rec = evCodec{}.Append(rec, e)
		b := &engine.Buffer{Kind: engine.BufferData, Channel: ch, Records: 1}
		b.Data = binary.AppendUvarint(b.Data, uint64(len(rec)))
		b.Data = append(b.Data, rec...)
		g.bufs <- b
	}
}

func (g *gate) watermark(wm int64) {
	for ch := range 2 {
		g.bufs <- &engine.Buffer{Kind: engine.BufferWatermark, Channel: ch, Value: wm}
	}
}

func (g *gate) barrier(b runtime.Barrier) {
	for ch := range 2 {
		g.bufs <- &engine.Buffer{Kind: engine.BufferBarrier, Channel: ch, Value: b.ID, Data: engine.EncodeBarrier(nil, b)}
	}
}

func (g *gate) end() {
	g.watermark(runtime.MaxWatermark)
	for ch := range 2 {
		g.bufs <- &engine.Buffer{Kind: engine.BufferEndOfPartition, Channel: ch}
	}
}

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

// joinState is the join's state file of a checkpoint.
func joinState(t *testing.T, rep *acks) runtime.OperatorSnapshot {
	t.Helper()
	<-rep.done
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.errs) > 0 || len(rep.acked) != 1 {
		t.Fatalf("acks %+v, declines %v", rep.acked, rep.errs)
	}
	for _, s := range rep.acked[0].States {
		if s.UID == "join" {
			return s
		}
	}
	return runtime.OperatorSnapshot{}
}

// stateBytes is the size of the keyed state (tables and timers) in the
// state file h.
func stateBytes(t *testing.T, dir string, h runtime.OperatorSnapshot) int64 {
	t.Helper()
	if h.File == "" {
		return 0
	}
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sf, err := statebackend.OpenStateFile(context.Background(), h.File, h.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
		return st.GetRange(ctx, h.File, off, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range sf.KeyGroupSizes() {
		n += s
	}
	return n
}

// restoreFrom reads what subtask range r of the join restores from h.
func restoreFrom(t *testing.T, dir string, h runtime.OperatorSnapshot, r runtime.KeyGroupRange) *runtime.TaskRestore {
	t.Helper()
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sf, err := statebackend.OpenStateFile(ctx, h.File, h.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
		return st.GetRange(ctx, h.File, off, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	or := &runtime.OperatorRestore{}
	if h.KeyGroups.Overlaps(r) {
		ks, err := sf.ReadKeyGroups(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		or.Keyed = append(or.Keyed, ks)
	}
	return &runtime.TaskRestore{CheckpointID: 1, Operators: map[string]*runtime.OperatorRestore{"join": or}}
}

// TestJoinsSurviveRescale runs each join at parallelism 1 on the first
// half of the records, with a watermark that makes the interval and window
// joins emit and drop part of their state, checkpoints it, restores it at
// parallelism 2 and feeds each subtask the second half of its keys'
// records: the output of both runs is the model's, and once the watermark
// has passed every record, the interval and window joins hold no state.
func TestJoinsSurviveRescale(t *testing.T) {
	keys := make([]string, 12)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	// Left records every 3 ms, right every 4 ms, per key, over 0..99;
	// the first half is below 50, the watermark of the first run 44.
	var left, right [2][]ev
	n := int64(0)
	for ts := int64(0); ts < 100; ts++ {
		half := 0
		if ts >= 50 {
			half = 1
		}
		for _, k := range keys {
			if ts%3 == 0 {
				n++
				left[half] = append(left[half], ev{k, ts, n})
			}
			if ts%4 == 1 {
				n++
				right[half] = append(right[half], ev{k, ts, n})
			}
		}
	}
	const wm1 = 44
	for _, tc := range []struct {
		name string
		kind kind
	}{{"regular", regular}, {"interval", interval}, {"window", windowed}} {
		t.Run(tc.name, func(t *testing.T) {
			var out collector
			g := joinGraph(t, tc.kind, 1, &out)
			dir := t.TempDir()
			in := newGate()
			rep := &acks{done: make(chan struct{}, 4)}
			// Sides interleaved in time order, as a real exchange would.
			li, ri := 0, 0
			for li < len(left[0]) || ri < len(right[0]) {
				if ri == len(right[0]) || (li < len(left[0]) && left[0][li].ts <= right[0][ri].ts) {
					in.records(0, left[0][li])
					li++
				} else {
					in.records(1, right[0][ri])
					ri++
				}
			}
			in.watermark(wm1)
			in.barrier(runtime.Barrier{ID: 1, Location: dir})
			task, err := runtime.NewTask(g, 2, 0, runtime.TaskIO{Input: in, Checkpoints: rep, LatencyInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			done := make(chan error, 1)
			go func() { done <- task.Run(ctx) }()
			h := joinState(t, rep)
			cancel() // the first run fails after its checkpoint
			<-done
			if h.File == "" || h.Keys == 0 {
				t.Fatalf("no join state in the checkpoint")
			}
			got := out.sorted()

			for i := range 2 {
				var out2 collector
				g2 := joinGraph(t, tc.kind, 2, &out2)
				r := runtime.KeyGroupRangeForSubtask(maxP, 2, i)
				mine := func(e ev) bool { return r.Contains(runtime.KeyGroupForHash(runtime.StringKey.Hash(e.key), maxP)) }
				in := newGate()
				rep := &acks{done: make(chan struct{}, 4)}
				li, ri := 0, 0
				for li < len(left[1]) || ri < len(right[1]) {
					if ri == len(right[1]) || (li < len(left[1]) && left[1][li].ts <= right[1][ri].ts) {
						if mine(left[1][li]) {
							in.records(0, left[1][li])
						}
						li++
					} else {
						if mine(right[1][ri]) {
							in.records(1, right[1][ri])
						}
						ri++
					}
				}
				in.watermark(1 << 40)
				dir2 := t.TempDir()
				in.barrier(runtime.Barrier{ID: 2, Location: dir2})
				in.end()
				task, err := runtime.NewTask(g2, 2, i, runtime.TaskIO{Input: in, Checkpoints: rep, LatencyInterval: -1,
					Restore: restoreFrom(t, dir, h, r)})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err = task.Run(ctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				h2 := joinState(t, rep)
				if n := stateBytes(t, dir2, h2); tc.kind != regular && n != 0 {
					t.Errorf("subtask %d: %d bytes of join state left after the watermark passed every record", i, n)
				}
				if tc.kind == regular && h2.Keys == 0 {
					t.Errorf("subtask %d: a regular join dropped its state", i)
				}
				got = append(got, out2.sorted()...)
			}
			slices.Sort(got)
			want := model(tc.kind, append(left[0], left[1]...), append(right[0], right[1]...))
			if len(want) < 100 {
				t.Fatalf("the model has only %d results; make the test bigger", len(want))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%d results, want %d:\n%s", len(got), len(want), diff(got, want))
			}
		})
	}
}

func diff(got, want []string) string {
	var b strings.Builder
	for _, w := range want {
		if !slices.Contains(got, w) {
			fmt.Fprintf(&b, "missing %s\n", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			fmt.Fprintf(&b, "extra %s\n", g)
		}
	}
	return b.String()
}

// TestLateRecordsAreDropped: a record at or behind the watermark joins
// nothing in the interval and window joins.
func TestLateRecordsAreDropped(t *testing.T) {
	for _, k := range []kind{interval, windowed} {
		var out collector
		g := joinGraph(t, k, 1, &out)
		in := newGate()
		in.records(0, ev{"a", 100, 1})
		in.watermark(200)
		in.records(1, ev{"a", 105, 2}) // would match, but is late
		in.records(0, ev{"a", 150, 3})
		in.records(1, ev{"a", 150, 4}) // late too
		in.end()
		task, err := runtime.NewTask(g, 2, 0, runtime.TaskIO{Input: in, LatencyInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := out.sorted(); len(got) != 0 {
			t.Errorf("join %d: late records joined: %q", k, got)
		}
	}
}

func TestBadConfigurations(t *testing.T) {
	env, _ := runtime.NewEnv("join", 1)
	s := runtime.FromSource(env, "s", func() runtime.SourceFunction[ev] { return noSource{} }, evCodec{})
	ks := runtime.KeyBy(s, runtime.StringKey, func(e ev) string { return e.key })
	join.Interval(ks, ks, "j", time.Second, -time.Second, pair, evCodec{}, evCodec{}, nil)
	if _, err := env.Graph(); err == nil || !strings.Contains(err.Error(), "lower bound") {
		t.Errorf("Graph: %v, want the bounds refused", err)
	}
	env, _ = runtime.NewEnv("join", 1)
	s = runtime.FromSource(env, "s", func() runtime.SourceFunction[ev] { return noSource{} }, evCodec{})
	ks = runtime.KeyBy(s, runtime.StringKey, func(e ev) string { return e.key })
	join.Regular(ks, ks, "j", pair, nil, evCodec{}, nil)
	if _, err := env.Graph(); err == nil || !strings.Contains(err.Error(), "codecs") {
		t.Errorf("Graph: %v, want the missing codec refused", err)
	}
}
