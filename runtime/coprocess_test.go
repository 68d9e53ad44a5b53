package runtime

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

type nopCo struct{}

func (nopCo) ProcessElement1(keyed, *KeyedContext[string], Collector[string]) error { return nil }
func (nopCo) ProcessElement2(rule, *KeyedContext[string], Collector[string]) error  { return nil }
func (nopCo) OnTimer(int64, *KeyedContext[string], Collector[string]) error         { return nil }

// TestProcessConnectedGraph: both inputs of a keyed co-process function
// are hash edges, and one source chain feeds both once one side is
// rebalanced into a task of its own.
func TestProcessConnectedGraph(t *testing.T) {
	env, _ := NewEnv("connect", 3)
	events := FromSource(env, "events", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	rules := Map(events, "to-rule", func(k keyed) rule { return rule{k.key, k.n} }, ruleCodec{})
	co := func(rules Stream[rule]) {
		ProcessConnected(ConnectKeyed(KeyBy(events, StringKey, func(k keyed) string { return k.key }),
			KeyBy(rules, StringKey, func(r rule) string { return r.prefix })), "co",
			func() KeyedCoProcessFunction[string, keyed, rule, string] { return nopCo{} }, nil)
	}
	co(rules)
	if _, err := env.Graph(); err == nil || !strings.Contains(err.Error(), "two inputs come from one chain") {
		t.Fatalf("Graph: %v, want both inputs from one chain refused", err)
	}

	env, _ = NewEnv("connect", 3)
	events = FromSource(env, "events", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	rules = Map(Rebalanced(events), "to-rule", func(k keyed) rule { return rule{k.key, k.n} }, ruleCodec{})
	co(rules)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 3 {
		t.Fatalf("%d vertices, want events, rebalance -> to-rule, co", len(g.Vertices))
	}
	if in := g.Vertices[1].Inputs; len(in) != 1 || in[0].Partitioning != Rebalance {
		t.Errorf("rebalanced vertex inputs %+v", in)
	}
	if in := g.Vertices[2].Inputs; len(in) != 2 || in[0].Partitioning != Hash || in[1].Partitioning != Hash ||
		in[0].Source != 0 || in[1].Source != 1 {
		t.Errorf("co inputs %+v", in)
	}
}

// lastSeen remembers, per key, the number the previous record of either
// side carried, and emits it with each record.
type lastSeen struct{ last ValueState[int64] }

func (f *lastSeen) Open(ctx *KeyedContext[string]) (err error) {
	f.last, err = GetValueState(ctx, "last", Codec[int64](Int64Codec{}))
	return err
}

func (f *lastSeen) see(key, side string, n int64, out Collector[string]) {
	prev := "none"
	if v, ok := f.last.Value(); ok {
		prev = itoa(v)
	}
	out.Collect(key + side + prev)
	f.last.Update(n)
}

func (f *lastSeen) ProcessElement1(v keyed, _ *KeyedContext[string], out Collector[string]) error {
	f.see(v.key, ":1:", v.n, out)
	return nil
}

func (f *lastSeen) ProcessElement2(r rule, _ *KeyedContext[string], out Collector[string]) error {
	f.see(r.prefix, ":2:", r.limit, out)
	return nil
}

func (f *lastSeen) OnTimer(int64, *KeyedContext[string], Collector[string]) error { return nil }

// TestProcessConnectedSharesKeyedState: records of both sides see and
// change the same key's state, with the keys of the two sides
// interleaved.
func TestProcessConnectedSharesKeyedState(t *testing.T) {
	var mu sync.Mutex
	var got []string
	env, _ := NewEnv("connect", 1)
	events := FromSource(env, "events", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	rules := FromSource(env, "rules", func() SourceFunction[rule] { return &sliceSource[rule]{} }, ruleCodec{})
	out := ProcessConnected(ConnectKeyed(KeyBy(events, StringKey, func(k keyed) string { return k.key }),
		KeyBy(rules, StringKey, func(r rule) string { return r.prefix })), "co",
		func() KeyedCoProcessFunction[string, keyed, rule, string] { return &lastSeen{} }, nil).UID("co")
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &got} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 16), errs: make(chan error)}
	task, err := NewTask(g, 2, 0, TaskIO{Input: gate, LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	gate.records(0, keyed{"a", 1})
	gate.rules(1, rule{"b", 2})
	gate.records(0, keyed{"b", 3})
	gate.rules(1, rule{"a", 4})
	gate.records(0, keyed{"a", 5})
	gate.end(0)
	gate.end(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := "a:1:none,b:2:none,b:1:2,a:2:1,a:1:4"
	if strings.Join(got, ",") != want {
		t.Fatalf("output %q, want %q", strings.Join(got, ","), want)
	}
}
