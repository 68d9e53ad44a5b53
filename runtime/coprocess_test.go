package runtime

import (
	"strings"
	"testing"
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
