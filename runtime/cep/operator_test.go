package cep

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
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

type event struct {
	user, kind string
	ts         int64
}

func (e event) String() string { return fmt.Sprintf("%s%d", e.kind, e.ts) }

type eventCodec struct{}

func (eventCodec) Append(dst []byte, e event) []byte {
	dst = binary.AppendVarint(dst, e.ts)
	dst = binary.AppendVarint(dst, int64(len(e.user)))
	dst = append(dst, e.user...)
	dst = binary.AppendVarint(dst, int64(len(e.kind)))
	return append(dst, e.kind...)
}

func (eventCodec) Decode(src []byte) (event, error) {
	r := runtime.NewReader(src)
	e := event{ts: r.Varint()}
	e.user = string(r.Bytes())
	e.kind = string(r.Bytes())
	return e, r.Done()
}

// batches emits one slice per poll (the task makes a watermark after each
// poll); before poll i it calls hook(i) if set.
type batches struct {
	polls [][]event
	hook  func(i int)
	i     int
}

func (b *batches) Poll(out runtime.Collector[event]) (time.Duration, error) {
	if b.hook != nil {
		b.hook(b.i)
	}
	if b.i == len(b.polls) {
		return 0, runtime.ErrEndOfInput
	}
	for _, e := range b.polls[b.i] {
		out.Collect(e)
	}
	b.i++
	return 0, nil
}

type sink struct {
	mu  *sync.Mutex
	out *[]string
}

func (s sink) Invoke(v string) error {
	s.mu.Lock()
	*s.out = append(*s.out, v)
	s.mu.Unlock()
	return nil
}

func kind(k string) func(event) bool { return func(e event) bool { return e.kind == k } }

// aThenB is the sequence detector: A followed by B within 10 s with no C
// in between.
func aThenB() *Pattern[event] {
	return Begin[event]("a").Where(kind("A")).NotFollowedBy("c").Where(kind("C")).
		FollowedBy("b").Where(kind("B")).Within(10 * time.Second)
}

type outputs struct {
	mu                      sync.Mutex
	matches, timedOut, late []string
}

// detectJob builds source -> timestamps -> keyBy user -> Detect, with its
// three outputs collected, all chained into one vertex.
func detectJob(t *testing.T, src func() runtime.SourceFunction[event], o *outputs, opts ...Option[event]) *runtime.JobGraph {
	t.Helper()
	env, _ := runtime.NewEnv("cep", 1)
	env.SetMaxParallelism(8)
	in := runtime.FromSource(env, "events", src, runtime.Codec[event](eventCodec{}))
	processingTime := false
	var cfg config[event]
	for _, o := range opts {
		o(&cfg)
	}
	processingTime = cfg.processingTime
	if !processingTime {
		in = runtime.AssignTimestampsAndWatermarks(in, runtime.ForBoundedOutOfOrderness(5*time.Second, func(e event) int64 { return e.ts }))
	}
	timeoutTag := runtime.NewOutputTag[string]("timed-out", runtime.StringCodec{})
	lateTag := runtime.NewOutputTag[event]("late", eventCodec{})
	opts = append(opts, TimedOutTo(timeoutTag, func(m Match[event], ts int64) string {
		return fmt.Sprintf("%s %v@%d", m["a"][0].user, m["a"], ts)
	}), LateDataTo(lateTag))
	matches, err := Detect(runtime.KeyBy(in, runtime.StringKey, func(e event) string { return e.user }), "cep", aThenB(), eventCodec{},
		func(user string, m Match[event]) string { return fmt.Sprintf("%s %v %v", user, m["a"], m["b"]) }, runtime.StringCodec{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	matches = matches.UID("cep")
	runtime.SinkTo(matches, "matches", func() runtime.SinkFunction[string] { return sink{&o.mu, &o.matches} })
	runtime.SinkTo(runtime.SideOutput(matches, timeoutTag), "timed-out", func() runtime.SinkFunction[string] { return sink{&o.mu, &o.timedOut} })
	late := runtime.Map(runtime.SideOutput(matches, lateTag), "late-name", func(e event) string { return e.user + " " + e.String() }, nil)
	runtime.SinkTo(late, "late", func() runtime.SinkFunction[string] { return sink{&o.mu, &o.late} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 1 {
		t.Fatalf("got %d vertices, want one chain", len(g.Vertices))
	}
	return g
}

func runTask(t *testing.T, task *runtime.Task) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDetectEventTime(t *testing.T) {
	polls := [][]event{
		// u1's B arrives before its A: matching follows event time.
		{{"u1", "B", 2000}, {"u1", "A", 1000}, {"u2", "A", 1000}, {"u2", "C", 1500}, {"u2", "B", 3000}, {"u3", "A", 1000}},
		{{"u9", "X", 20000}}, // watermark 14999
		{{"u4", "A", 5000}},  // late
		{{"u3", "B", 16000}, {"u5", "A", 16000}, {"u5", "B", 16000}},
	}
	var o outputs
	g := detectJob(t, func() runtime.SourceFunction[event] { return &batches{polls: polls} }, &o)
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	runTask(t, task)
	// u2 has a C between A and B; u3's B came after the window; u5's A and
	// B share a timestamp and match in arrival order.
	if want := []string{"u1 [A1000] [B2000]", "u5 [A16000] [B16000]"}; !slices.Equal(o.matches, want) {
		t.Errorf("matches %q, want %q", o.matches, want)
	}
	if want := []string{"u3 [A1000]@11000"}; !slices.Equal(o.timedOut, want) {
		t.Errorf("timed out %q, want %q", o.timedOut, want)
	}
	if want := []string{"u4 A5000"}; !slices.Equal(o.late, want) {
		t.Errorf("late %q, want %q", o.late, want)
	}
}

func TestDetectProcessingTime(t *testing.T) {
	// Arrival order counts, not the timestamps in the events.
	polls := [][]event{{{"u1", "B", 1}, {"u1", "A", 2}, {"u2", "A", 9}, {"u2", "B", 3}, {"u3", "A", 1}, {"u3", "C", 2}, {"u3", "B", 3}}}
	var o outputs
	g := detectJob(t, func() runtime.SourceFunction[event] { return &batches{polls: polls} }, &o, InProcessingTime[event]())
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	runTask(t, task)
	if want := []string{"u2 [A9] [B3]"}; !slices.Equal(o.matches, want) {
		t.Errorf("matches %q, want %q", o.matches, want)
	}
}

func TestDetectRejectsMalformedPattern(t *testing.T) {
	env, _ := runtime.NewEnv("cep", 1)
	in := runtime.FromSource(env, "events", func() runtime.SourceFunction[event] { return &batches{} }, runtime.Codec[event](eventCodec{}))
	p := Begin[event]("a").Where(kind("A")).NotFollowedBy("c").Where(kind("C"))
	_, err := Detect(runtime.KeyBy(in, runtime.StringKey, func(e event) string { return e.user }), "cep", p, eventCodec{},
		func(string, Match[event]) string { return "" }, runtime.StringCodec{})
	if err == nil {
		t.Fatal("a trailing NotFollowedBy without Within was accepted")
	}
}

type ackRecorder struct {
	mu    sync.Mutex
	acked []runtime.CheckpointAck
	errs  []error
	done  chan struct{}
}

func (a *ackRecorder) Acknowledge(ack runtime.CheckpointAck) {
	a.mu.Lock()
	a.acked = append(a.acked, ack)
	a.mu.Unlock()
	a.done <- struct{}{}
}

func (a *ackRecorder) Decline(_ int64, err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
	a.done <- struct{}{}
}

func (a *ackRecorder) EndOfInput() {}

// A partial match in a checkpoint completes after a restore, and an event
// still buffered behind the watermark is restored too.
func TestDetectCheckpointRestore(t *testing.T) {
	dir := t.TempDir()
	var task *runtime.Task
	polls := [][]event{
		// Watermark 1999: u1's A is matched into a partial match; u2's A
		// at 3000 stays buffered.
		{{"u1", "A", 1000}, {"u2", "A", 3000}, {"u9", "X", 7000}},
		{}, // the checkpoint is triggered before this poll and taken after it
	}
	var o outputs
	src := func() runtime.SourceFunction[event] {
		return &batches{polls: polls, hook: func(i int) {
			if i == 1 {
				if err := task.TriggerCheckpoint(runtime.Barrier{ID: 1, Location: dir}); err != nil {
					t.Error(err)
				}
			}
		}}
	}
	g := detectJob(t, src, &o)
	rep := &ackRecorder{done: make(chan struct{}, 4)}
	var err error
	task, err = runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1, Checkpoints: rep})
	if err != nil {
		t.Fatal(err)
	}
	runTask(t, task)
	<-rep.done
	if len(rep.errs) > 0 || len(rep.acked) != 1 || len(rep.acked[0].States) != 1 {
		t.Fatalf("acks %+v, declines %v", rep.acked, rep.errs)
	}
	h := rep.acked[0].States[0]

	ctx := context.Background()
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
	ks, err := sf.ReadKeyGroups(ctx, runtime.KeyGroupRange{First: 0, Last: 7})
	if err != nil {
		t.Fatal(err)
	}

	polls = [][]event{{{"u1", "B", 2000}, {"u2", "B", 4000}}}
	var o2 outputs
	g = detectJob(t, func() runtime.SourceFunction[event] { return &batches{polls: polls} }, &o2)
	restore := &runtime.TaskRestore{CheckpointID: 1, Operators: map[string]*runtime.OperatorRestore{"cep": {Keyed: []*statebackend.KeyedState{ks}}}}
	task2, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1, Restore: restore})
	if err != nil {
		t.Fatal(err)
	}
	runTask(t, task2)
	if want := []string{"u1 [A1000] [B2000]", "u2 [A3000] [B4000]"}; !slices.Equal(o2.matches, want) {
		t.Errorf("after restore: matches %q, want %q", o2.matches, want)
	}
}

// waitingSource emits its events, then keeps polling (idle, so that
// processing-time timers fire between polls) until done reports true.
type waitingSource struct {
	events []event
	done   func() bool
	sent   bool
}

func (s *waitingSource) Poll(out runtime.Collector[event]) (time.Duration, error) {
	if !s.sent {
		for _, e := range s.events {
			out.Collect(e)
		}
		s.sent = true
		return 0, nil
	}
	if s.done() {
		return 0, runtime.ErrEndOfInput
	}
	return 5 * time.Millisecond, nil
}

// In processing time a partial match times out by the wall clock, through
// a processing-time timer, without further events.
func TestDetectProcessingTimeTimeout(t *testing.T) {
	var o outputs
	done := func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.timedOut) > 0
	}
	p := Begin[event]("a").Where(kind("A")).FollowedBy("b").Where(kind("B")).Within(300 * time.Millisecond) // wide: u2's A and B must fall in one window even on a loaded machine
	env, _ := runtime.NewEnv("cep", 1)
	in := runtime.FromSource(env, "events", func() runtime.SourceFunction[event] {
		return &waitingSource{events: []event{{"u1", "A", 0}, {"u2", "A", 0}, {"u2", "B", 0}}, done: done}
	}, runtime.Codec[event](eventCodec{}))
	tag := runtime.NewOutputTag[string]("timed-out", runtime.StringCodec{})
	matches, err := Detect(runtime.KeyBy(in, runtime.StringKey, func(e event) string { return e.user }), "cep", p, eventCodec{},
		func(user string, m Match[event]) string { return user }, runtime.StringCodec{},
		InProcessingTime[event](), TimedOutTo(tag, func(m Match[event], ts int64) string { return m["a"][0].user }))
	if err != nil {
		t.Fatal(err)
	}
	runtime.SinkTo(matches.UID("cep"), "matches", func() runtime.SinkFunction[string] { return sink{&o.mu, &o.matches} })
	runtime.SinkTo(runtime.SideOutput(matches, tag), "timed-out", func() runtime.SinkFunction[string] { return sink{&o.mu, &o.timedOut} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	runTask(t, task)
	if !slices.Equal(o.matches, []string{"u2"}) || !slices.Equal(o.timedOut, []string{"u1"}) {
		t.Errorf("matches %q, timed out %q; want [u2] and [u1]", o.matches, o.timedOut)
	}
}

// Event time without timestamps is a job error that says what to do.
func TestDetectEventTimeNeedsTimestamps(t *testing.T) {
	env, _ := runtime.NewEnv("cep", 1)
	in := runtime.FromSource(env, "events", func() runtime.SourceFunction[event] {
		return &batches{polls: [][]event{{{"u1", "A", 1}}}}
	}, runtime.Codec[event](eventCodec{}))
	out, err := Detect(runtime.KeyBy(in, runtime.StringKey, func(e event) string { return e.user }), "cep", aThenB(), eventCodec{},
		func(string, Match[event]) string { return "" }, runtime.StringCodec{})
	if err != nil {
		t.Fatal(err)
	}
	runtime.SinkTo(out, "discard", func() runtime.SinkFunction[string] { var mu sync.Mutex; var got []string; return sink{&mu, &got} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := task.Run(ctx); err == nil || !strings.Contains(err.Error(), "AssignTimestampsAndWatermarks") {
		t.Errorf("run: %v, want an error naming AssignTimestampsAndWatermarks", err)
	}
}
