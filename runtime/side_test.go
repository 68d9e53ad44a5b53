package runtime

import (
	"strings"
	"sync"
	"testing"
)

// evenSplitter sends even numbers to its main output and odd ones, as
// text, to a side output.
type evenSplitter struct {
	odd Collector[string]
}

var oddTag = NewOutputTag[string]("odd", StringCodec{})

func (s *evenSplitter) Open(ctx *ProcessContext) error {
	s.odd = SideCollector(ctx.RuntimeContext, oddTag)
	return nil
}

func (s *evenSplitter) ProcessElement(v int64, _ *ProcessContext, out Collector[int64]) error {
	if v%2 == 0 {
		out.Collect(v)
	} else {
		s.odd.Collect("odd " + itoa(v))
	}
	return nil
}

func TestSideOutputsAreChainedBranches(t *testing.T) {
	env, _ := NewEnv("side", 1)
	src := FromSource(env, "numbers", func() SourceFunction[int64] {
		return &sliceSource[int64]{recs: []int64{1, 2, 3, 4, 5}}
	}, Int64Codec{})
	split := ProcessStream(src, "split", func() ProcessFunction[int64, int64] { return &evenSplitter{} }, Int64Codec{})
	var mu sync.Mutex
	var evens []int64
	var odds, upper []string
	SinkTo(split, "evens", func() SinkFunction[int64] { return collectSink[int64]{&mu, &evens} })
	odd := SideOutput(split, oddTag)
	SinkTo(odd, "odds", func() SinkFunction[string] { return collectSink[string]{&mu, &odds} })
	// A second consumer of the same tag sees the same records.
	SinkTo(Map(SideOutput(split, oddTag), "upper", strings.ToUpper, nil), "upper",
		func() SinkFunction[string] { return collectSink[string]{&mu, &upper} })

	task := runSingleVertex(t, env)
	if got := itoa(int64(len(evens))); got != "2" || evens[0] != 2 || evens[1] != 4 {
		t.Errorf("main output %v, want [2 4]", evens)
	}
	if got := strings.Join(odds, ","); got != "odd 1,odd 3,odd 5" {
		t.Errorf("side output %q", got)
	}
	if got := strings.Join(upper, ","); got != "ODD 1,ODD 3,ODD 5" {
		t.Errorf("second side consumer %q", got)
	}
	// numbers, split, evens, odd[side], odds, odd[side], upper, upper-sink
	counts := task.Operators()
	if counts[1] != (OperatorCounts{In: 5, Out: 2}) {
		t.Errorf("split counts %+v, want in 5 out 2 (main output only)", counts[1])
	}
	if counts[3].In != 3 {
		t.Errorf("side node counts %+v, want 3 in", counts[3])
	}
}

func TestSideOutputWithoutConsumerIsDiscarded(t *testing.T) {
	env, _ := NewEnv("side", 1)
	src := FromSource(env, "numbers", func() SourceFunction[int64] {
		return &sliceSource[int64]{recs: []int64{1, 2, 3}}
	}, Int64Codec{})
	split := ProcessStream(src, "split", func() ProcessFunction[int64, int64] { return &evenSplitter{} }, Int64Codec{})
	var mu sync.Mutex
	var evens []int64
	SinkTo(split, "evens", func() SinkFunction[int64] { return collectSink[int64]{&mu, &evens} })
	runSingleVertex(t, env)
	if len(evens) != 1 || evens[0] != 2 {
		t.Errorf("main output %v, want [2]", evens)
	}
}

func TestSideOutputCrossesAnExchange(t *testing.T) {
	env, _ := NewEnv("side", 1)
	src := FromSource(env, "numbers", func() SourceFunction[int64] {
		return &sliceSource[int64]{recs: []int64{1, 2, 3}}
	}, Int64Codec{})
	split := ProcessStream(src, "split", func() ProcessFunction[int64, int64] { return &evenSplitter{} }, Int64Codec{})
	SinkTo(split, "evens", func() SinkFunction[int64] { return collectSink[int64]{new(sync.Mutex), new([]int64)} })
	SinkTo(SideOutput(split, oddTag), "odds", func() SinkFunction[string] {
		return collectSink[string]{new(sync.Mutex), new([]string)}
	}).Parallelism(2)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 2 {
		t.Fatalf("%d vertices, want 2", len(g.Vertices))
	}
	v := g.Vertices[0]
	if len(v.Outputs) != 1 || v.Outputs[0].from.side != "odd" || v.Outputs[0].Partitioning != Rebalance {
		t.Fatalf("edge from %+v, want the side node, rebalanced", v.Outputs[0])
	}
	if want := "numbers -> split -> evens -> split[odd]"; v.Name != want {
		t.Errorf("vertex %q, want %q", v.Name, want)
	}
}

func TestSideOutputParallelismIsItsOperators(t *testing.T) {
	env, _ := NewEnv("side", 2)
	src := FromSource(env, "numbers", func() SourceFunction[int64] { return &sliceSource[int64]{} }, Int64Codec{})
	split := ProcessStream(src, "split", func() ProcessFunction[int64, int64] { return &evenSplitter{} }, Int64Codec{})
	SideOutput(split, oddTag).Parallelism(3)
	if _, err := env.Graph(); err == nil || !strings.Contains(err.Error(), "side output runs with its operator's parallelism 2") {
		t.Fatalf("err %v", err)
	}
}
