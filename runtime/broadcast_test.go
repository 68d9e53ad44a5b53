package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// rule sets the threshold of a key prefix; records above it alert.
type rule struct {
	prefix string
	limit  int64
}

type ruleCodec struct{}

func (ruleCodec) Append(dst []byte, r rule) []byte {
	dst = binary.AppendVarint(dst, int64(len(r.prefix)))
	dst = append(dst, r.prefix...)
	return binary.AppendVarint(dst, r.limit)
}

func (ruleCodec) Decode(src []byte) (rule, error) {
	rd := NewReader(src)
	r := rule{prefix: string(rd.Bytes())}
	r.limit = rd.Varint()
	return r, rd.Done()
}

var limits = BroadcastStateDescriptor[string, int64]{Name: "limits", Key: StringCodec{}, Value: Int64Codec{}}

type thresholds struct {
	limits  BroadcastState[string, int64]
	cheat   bool // writes broadcast state from the keyed side
	applied int
}

func (f *thresholds) Open(ctx *KeyedContext[string]) (err error) {
	f.limits, err = GetBroadcastState(ctx.RuntimeContext, limits)
	return err
}

func (f *thresholds) ProcessElement(v keyed, ctx *KeyedContext[string], out Collector[string]) error {
	if f.cheat {
		f.limits.Put("x", 1)
		return nil
	}
	if l, ok := f.limits.Get(v.key[:1]); ok && v.n > l {
		out.Collect(v.key + ">" + itoa(l))
	}
	return nil
}

func (f *thresholds) OnTimer(int64, *KeyedContext[string], Collector[string]) error { return nil }

func (f *thresholds) ProcessBroadcastElement(r rule, _ *BroadcastContext, out Collector[string]) error {
	f.limits.Put(r.prefix, r.limit)
	f.applied++
	out.Collect("rule " + r.prefix + "=" + itoa(r.limit) + " rules=" + itoa(int64(f.limits.Len())))
	return nil
}

// broadcastGraph is events (parallelism 2) keyed and rules (parallelism
// 1) broadcast into thresholds (parallelism p), then a sink.
func broadcastGraph(t *testing.T, p int, got *[]string, mu *sync.Mutex, cheat bool) *JobGraph {
	env, _ := NewEnv("broadcast", 2)
	env.SetMaxParallelism(8)
	events := FromSource(env, "events", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	rules := FromSource(env, "rules", func() SourceFunction[rule] { return &sliceSource[rule]{} }, ruleCodec{}).Parallelism(1)
	out := ConnectBroadcast(KeyBy(events, StringKey, func(k keyed) string { return k.key }), Broadcast(rules), "thresholds",
		func() KeyedBroadcastProcessFunction[string, keyed, rule, string] { return &thresholds{cheat: cheat} }, nil).
		UID("thresholds").Parallelism(p)
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{mu, got} }).Parallelism(p)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *fakeGate) rules(ch int, rs ...rule) {
	b := &engine.Buffer{Kind: engine.BufferData, Channel: ch}
	for _, r := range rs {
		enc := ruleCodec{}.Append(nil, r)
		b.Data = binary.AppendUvarint(b.Data, uint64(len(enc)))
		b.Data = append(b.Data, enc...)
		b.Records++
	}
	g.bufs <- b
}

func TestConnectBroadcastGraph(t *testing.T) {
	g := broadcastGraph(t, 3, new([]string), new(sync.Mutex), false)
	if len(g.Vertices) != 3 {
		t.Fatalf("%d vertices", len(g.Vertices))
	}
	v := g.Vertices[2]
	if len(v.Inputs) != 2 || v.Inputs[0].Partitioning != Hash || v.Inputs[1].Partitioning != BroadcastEdge ||
		v.Inputs[0].Source != 0 || v.Inputs[1].Source != 1 {
		t.Fatalf("inputs %+v %+v", v.Inputs[0], v.Inputs[1])
	}
	if got := g.OutputChannels(v.Inputs[1], 0); len(got) != 3 {
		t.Errorf("the rules subtask sends to %v, want all 3", got)
	}
	if got := g.InputChannels(v.Inputs[1], 2); len(got) != 1 {
		t.Errorf("subtask 2 reads rules from %v", got)
	}
}

func TestBroadcastStateIsReadByTheKeyedSide(t *testing.T) {
	var mu sync.Mutex
	var got []string
	g := broadcastGraph(t, 1, &got, &mu, false)
	dir := t.TempDir()
	gate := &fakeGate{n: 3, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	rep := &acks{done: make(chan struct{}, 4)}
	task, err := NewTask(g, 2, 0, TaskIO{Input: gate, LatencyInterval: -1, Checkpoints: rep})
	if err != nil {
		t.Fatal(err)
	}
	gate.records(0, keyed{"a1", 50}) // no rule yet
	gate.rules(2, rule{"a", 10}, rule{"b", 100})
	gate.records(0, keyed{"a1", 50}, keyed{"b1", 50})
	gate.records(1, keyed{"b2", 500})
	bar := Barrier{ID: 1, Location: dir}
	for ch := range 3 {
		gate.barrier(ch, bar)
	}
	for ch := range 3 {
		gate.end(ch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	<-rep.done
	want := "rule a=10 rules=1,rule b=100 rules=2,a1>10,b2>100"
	if strings.Join(got, ",") != want {
		t.Fatalf("output %q, want %q", strings.Join(got, ","), want)
	}
	if len(rep.acked) != 1 || len(rep.acked[0].States) != 1 {
		t.Fatalf("ack %+v, declines %v", rep.acked, rep.decline)
	}
	h := rep.acked[0].States[0]
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
	entries, err := sf.ReadOperatorState(ctx)
	if err != nil || len(entries) != 2 {
		t.Fatalf("operator state %q, %v; want the two rules", entries, err)
	}

	// Restored at parallelism 3, every subtask holds both rules, from the
	// one copy subtask 0 wrote.
	g3 := broadcastGraph(t, 3, &got, &mu, false)
	for sub := range 3 {
		got = nil
		gate := &fakeGate{n: 3, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
		restore := &TaskRestore{CheckpointID: 1, Operators: map[string]*OperatorRestore{"thresholds": {OperatorState: entries}}}
		task, err := NewTask(g3, 2, sub, TaskIO{Input: gate, LatencyInterval: -1, Restore: restore})
		if err != nil {
			t.Fatal(err)
		}
		gate.rules(2, rule{"c", 1})
		for ch := range 3 {
			gate.end(ch)
		}
		if err := task.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if want := "rule c=1 rules=3"; strings.Join(got, ",") != want {
			t.Errorf("subtask %d after restore: %q, want %q", sub, strings.Join(got, ","), want)
		}
	}
}

func TestBroadcastStateIsReadOnlyOnTheKeyedSide(t *testing.T) {
	g := broadcastGraph(t, 1, new([]string), new(sync.Mutex), true)
	gate := &fakeGate{n: 3, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	task, err := NewTask(g, 2, 0, TaskIO{Input: gate, LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	gate.records(0, keyed{"a1", 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); !errors.Is(err, errBroadcastReadOnly) {
		t.Fatalf("Run: %v; want the read-only error", err)
	}
}

func TestBroadcastWriterSendsEveryRecordEverywhere(t *testing.T) {
	env, _ := NewEnv("broadcast", 3)
	events := FromSource(env, "events", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	rules := FromSource(env, "rules", func() SourceFunction[rule] {
		return &sliceSource[rule]{recs: []rule{{"a", 1}, {"b", 2}}}
	}, ruleCodec{}).Parallelism(1)
	ConnectBroadcast(KeyBy(events, StringKey, func(k keyed) string { return k.key }), Broadcast(rules), "thresholds",
		func() KeyedBroadcastProcessFunction[string, keyed, rule, string] { return &thresholds{} }, nil)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	chs := []*recordingChannel{{}, {}, {}}
	task, err := NewTask(g, 1, 0, TaskIO{LatencyInterval: -1, Outputs: [][]engine.OutputChannel{{chs[0], chs[1], chs[2]}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range chs {
		n := 0
		for _, b := range c.sent {
			n += b.Records
		}
		if n != 2 {
			t.Errorf("channel %d got %d records, want both", i, n)
		}
	}
}

var ruleTag = NewOutputTag[rule]("rules", ruleCodec{})

// ruleSplitter passes records on and emits a rule for each to a side output.
type ruleSplitter struct{ rules Collector[rule] }

func (r *ruleSplitter) Open(ctx *ProcessContext) error {
	r.rules = SideCollector(ctx.RuntimeContext, ruleTag)
	return nil
}

func (r *ruleSplitter) ProcessElement(v keyed, _ *ProcessContext, out Collector[keyed]) error {
	r.rules.Collect(rule{v.key, v.n})
	out.Collect(v)
	return nil
}

func TestConnectBroadcastRefusesOneChainForBothInputs(t *testing.T) {
	env, _ := NewEnv("broadcast", 1)
	events := FromSource(env, "events", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	split := ProcessStream(events, "split", func() ProcessFunction[keyed, keyed] { return &ruleSplitter{} }, keyedCodec{})
	ConnectBroadcast(KeyBy(split, StringKey, func(k keyed) string { return k.key }), Broadcast(SideOutput(split, ruleTag)), "thresholds",
		func() KeyedBroadcastProcessFunction[string, keyed, rule, string] { return &thresholds{} }, nil)
	if _, err := env.Graph(); err == nil || !strings.Contains(err.Error(), "two inputs come from one chain") {
		t.Fatalf("Graph: %v", err)
	}
}
