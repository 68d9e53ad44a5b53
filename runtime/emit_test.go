package runtime

import (
	"strings"
	"sync"
	"testing"
)

// restamper emits each record and its negation at a timestamp of its
// choosing, then the record again as usual, at its own timestamp.
type restamper struct{}

func (restamper) ProcessElement(v int64, ctx *ProcessContext, out Collector[int64]) error {
	err := AtTimestamp(ctx.RuntimeContext, 1000+v, func() error {
		out.Collect(v)
		out.Collect(-v)
		return nil
	})
	out.Collect(v)
	return err
}

type stamps struct{}

func (stamps) ProcessElement(v int64, ctx *ProcessContext, out Collector[string]) error {
	out.Collect(itoa(v) + "@" + itoa(ctx.Timestamp()))
	return nil
}

func TestAtTimestampSetsTheOutputTimestamp(t *testing.T) {
	env, _ := NewEnv("collect-at", 1)
	src := FromSource(env, "in", func() SourceFunction[int64] { return &sliceSource[int64]{recs: []int64{1, 2}} }, nil)
	timed := AssignTimestampsAndWatermarks(src, ForMonotonousTimestamps(func(v int64) int64 { return 10 * v }))
	re := ProcessStream(timed, "restamp", func() ProcessFunction[int64, int64] { return restamper{} }, nil)
	out := ProcessStream(re, "stamps", func() ProcessFunction[int64, string] { return stamps{} }, nil)
	var mu sync.Mutex
	var got []string
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{&mu, &got} })
	runSingleVertex(t, env)
	if want := "1@1001 -1@1001 1@10 2@1002 -2@1002 2@20"; strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
}
