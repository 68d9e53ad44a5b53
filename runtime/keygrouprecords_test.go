package runtime

import (
	"sync"
	"testing"
)

// TestKeyGroupRecords: a keyed operator counts its records by key group;
// a task without one counts none.
func TestKeyGroupRecords(t *testing.T) {
	env, _ := NewEnv("kg", 1)
	recs := []keyed{{"a", 1}, {"b", 10}, {"a", 2}, {"a", 2}, {"c", 0}}
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{recs: recs} }, nil)
	out := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "sum",
		func() KeyedProcessFunction[string, keyed, string] { return &summer{} }, nil)
	var mu sync.Mutex
	var got []string
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &got} })
	task := runSingleVertex(t, env)
	first, counts := task.KeyGroupRecords()
	if first != 0 || len(counts) != task.graph.MaxParallelism {
		t.Fatalf("first %d, %d counts; want 0 and one per key group (%d)", first, len(counts), task.graph.MaxParallelism)
	}
	want := make([]int64, len(counts))
	for _, r := range recs {
		want[KeyGroupForHash(StringKey.Hash(r.key), task.graph.MaxParallelism)]++
	}
	for kg := range counts {
		if counts[kg] != want[kg] {
			t.Errorf("key group %d: %d records, want %d", kg, counts[kg], want[kg])
		}
	}

	plain, _ := NewEnv("plain", 1)
	s := FromSource(plain, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{recs: recs} }, nil)
	SinkTo(s, "drop", func() SinkFunction[keyed] { return collectSink[keyed]{&mu, new([]keyed)} })
	if _, counts := runSingleVertex(t, plain).KeyGroupRecords(); counts != nil {
		t.Errorf("a task without a keyed operator counts %v", counts)
	}
}
